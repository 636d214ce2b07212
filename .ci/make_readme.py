"""Write README.md from nbs/index.ipynb without Quarto.

nbdev_readme renders through Quarto, which cannot be installed on the CI machines, so this script does
the same conversion with nbconvert: hidden cells are dropped, nbdev directives are stripped, and the
notebook's markdown and code cells become the README. With --check it only reports whether README.md
is up to date and exits 1 when it is not.
"""
import argparse
import os
import re
import sys
from pathlib import Path

import nbformat
from nbconvert import MarkdownExporter

REPO = Path(__file__).resolve().parents[1]


def _is_hidden(cell) -> bool:
    directives = [line.replace(" ", "") for line in cell.source.splitlines() if line.startswith("#|")]
    return any(d in ("#|hide", "#|include:false", "#|echo:false") for d in directives)


def _link_from_root(match: re.Match) -> str:
    "Rewrite a relative link of the index notebook, which the site resolves from nbs/, to one from the repository root."
    target = match.group(2)
    if re.match(r"[a-z][a-z0-9+.-]*:|#|/", target):  # a URL, an anchor or an absolute path
        return match.group(0)
    path, _, anchor = target.partition("#")
    rooted = Path(os.path.relpath(REPO / "nbs" / path, REPO)).as_posix()
    return f"{match.group(1)}{rooted}{'#' + anchor if anchor else ''})"


def render_readme(notebook: Path) -> str:
    "Convert the index notebook into README markdown."
    nb = nbformat.read(notebook, as_version=4)
    kept = []
    for cell in nb.cells:
        if cell.cell_type == "raw" or _is_hidden(cell):
            continue
        cell.source = "\n".join(line for line in cell.source.splitlines() if not line.startswith("#|")).strip()
        if cell.source:
            kept.append(cell)
    nb.cells = kept
    body, _ = MarkdownExporter(exclude_output=True).from_notebook_node(nb)
    body = re.sub(r"(\]\()([^)\s]+)\)", _link_from_root, body)
    note = "<!-- Generated from nbs/index.ipynb by .ci/make_readme.py: edit the notebook, not this file. -->\n\n"
    return note + body.strip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that README.md is up to date")
    args = parser.parse_args()
    text = render_readme(REPO / "nbs" / "index.ipynb")
    readme = REPO / "README.md"
    if args.check:
        if not readme.exists() or readme.read_text(encoding="utf-8") != text:
            print("README.md is out of date with nbs/index.ipynb: run python .ci/make_readme.py", file=sys.stderr)
            return 1
        return 0
    readme.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
