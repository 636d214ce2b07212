#!/usr/bin/env python
"""Check the documentation site offline, without Quarto.

For every notebook in nbs/ the check
1. lints the opening nbdev needs: an H1 title with a `>` one-line summary, and headings hidden
   with a trailing ` -` kept in cells of their own;
2. executes a copy of the notebook with nbclient (cwd nbs/, IN_TEST=1), skipping the cells that
   `nbdev_test` skips (`#| eval: false` and cells carrying a flag from `tst_flags` in settings.ini);
3. runs nbdev's documentation processors (`nbdev.processors.FilterDefaults`, the same ones
   `nbdev_docs` runs into _proc/) on the executed notebook and fails on any warning nbdev raises,
   such as the one about cells mixing imports and other code;
4. exports the processed notebook to HTML with nbconvert, with the frontmatter turned into an H1
   title and summary, as Quarto renders it;
5. opens every page from disk in headless Chromium (Debian's chromium and chromium-driver) and
   asserts its title, the absence of error outputs, and a loaded image in every cell that calls a
   plotting function. It saves screenshots of the home page and the evaluation page.
It also checks the Quarto configuration (nbs/_quarto.yml, nbs/nbdev.yml, nbs/sidebar.yml and the
top-level _quarto.yml). Where `quarto` is on PATH it runs `nbdev_docs` on a copy of the project
with the executed notebooks and checks the rendered _docs/ pages the same way.

Usage: python .ci/docs_check.py [--notebooks index 00_data] [--no-execute] [--jobs 2]
       python .ci/docs_check.py --no-browser --skip-site-config --save-executed nbs   (publishing job)
Exit status 0 when every check passes and 1 when any fails. Each problem is printed on its own line.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOT_PAGES = ("index", "03_evaluation")  # notebook stems whose pages are kept as screenshots
SKIP_TAG = "skip-execution"  # nbclient does not run cells with this tag
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"

# Top-level calls that draw a figure: the library's plot_* functions, pyplot and seaborn calls,
# and the plotting methods of axes and pandas objects.
_PLOT_MODULES = {"plt", "pyplot", "sns", "seaborn"}
_PLOT_METHODS = {"plot", "hist", "hist2d", "scatter", "imshow", "pcolormesh", "contourf", "bar", "errorbar"}


# ---------------------------------------------------------------- notebook lint

def _heading_lines(source: str) -> list[str]:
    return [line for line in source.splitlines() if re.match(r"#{1,6}\s", line)]


def lint_notebook(path: Path) -> list[str]:
    "Return the problems in a notebook's title cell and hidden headings, one message each."
    notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    problems = []
    markdown = [("".join(cell["source"]), index) for index, cell in enumerate(notebook["cells"])
                if cell["cell_type"] == "markdown"]
    if not markdown or not re.search(r"^#\s+\S", markdown[0][0], re.MULTILINE):
        problems.append(f"{path.name}: the first markdown cell must start with an H1 title ('# Title'), "
                        "which nbdev turns into the page title")
    else:
        title_cell = markdown[0][0]
        if not re.search(r"^>\s+\S", title_cell, re.MULTILINE):
            problems.append(f"{path.name}: the title cell has no one-line summary: add a line '> summary' "
                            "under the H1 title")
        # nbdev moves the whole title cell into the frontmatter, so any other text in it disappears.
        extra = [line for line in title_cell.splitlines()
                 if line.strip() and not re.match(r"^(#\s|>\s|-\s+\S.*:)", line)]
        if extra:
            problems.append(f"{path.name}: the title cell holds text that nbdev drops from the page "
                            f"({extra[0]!r}): move it to a cell of its own")

    for source, index in markdown:
        for line in _heading_lines(source):
            if not line.rstrip().endswith(" -"):
                continue
            # nbdev removes a whole cell whose text starts with '#' and ends with ' -'. A hidden heading
            # that shares its cell either renders with its dash or takes the prose beside it away.
            if source.strip() != line.strip():
                problems.append(f"{path.name}: cell {index}: the hidden heading {line.strip()!r} must be "
                                "alone in its cell, or nbdev either shows it or drops the text beside it")
    return problems


# ---------------------------------------------------------------- site configuration

def _sidebar_entries(contents) -> list[str]:
    "Flatten the file names a Quarto sidebar `contents` list points to."
    entries = []
    for item in contents or []:
        if isinstance(item, str):
            entries.append(item)
        elif isinstance(item, dict):
            if "href" in item:
                entries.append(item["href"])
            entries.extend(_sidebar_entries(item.get("contents")))
    return entries


def _is_local(href: str) -> bool:
    return not re.match(r"^[a-z]+:", href) and not href.startswith("#")


def _expected_nbdev_yml(repo: Path) -> str:
    "Return the nbdev.yml that `nbdev_docs` writes from settings.ini (nbdev 2.4 overwrites the file on every build)."
    from nbdev.config import get_config
    from nbdev.quarto import _nbdev_yml  # NOTE: private template of nbdev 2.4; its refresh_quarto_yml writes it

    config = get_config(path=repo)
    values = {key: config[key] for key in ("title", "description", "branch", "git_url", "doc_host", "doc_baseurl")}
    values["doc_path"] = config.doc_path.name
    return _nbdev_yml.format(**values)


def check_site_config(repo: Path = REPO) -> list[str]:
    "Return the problems in the Quarto site configuration: the site files, the sidebar and the top-level _quarto.yml."
    nbs = repo / "nbs"
    problems = []

    quarto_path = nbs / "_quarto.yml"
    if not quarto_path.is_file():
        return [f"{quarto_path} is missing: nbdev_docs renders the site with it"]
    quarto = yaml.safe_load(quarto_path.read_text(encoding="utf-8")) or {}
    if (quarto.get("project") or {}).get("type") != "website":
        problems.append(f"{quarto_path}: project type must be 'website'")
    theme = ((quarto.get("format") or {}).get("html") or {}).get("theme")
    if not (isinstance(theme, dict) and theme.get("light") and theme.get("dark")):
        problems.append(f"{quarto_path}: format.html.theme needs a light and a dark theme")
    for name in quarto.get("metadata-files") or []:
        if not (nbs / name).is_file():
            problems.append(f"{quarto_path}: metadata file {name} not found in {nbs}")
    if not {"nbdev.yml", "sidebar.yml"} <= set(quarto.get("metadata-files") or []):
        problems.append(f"{quarto_path}: metadata-files must list nbdev.yml and sidebar.yml")
    navbar = ((quarto.get("website") or {}).get("navbar") or {})
    for item in (navbar.get("left") or []) + (navbar.get("right") or []):
        href = item.get("href", "") if isinstance(item, dict) else item
        if href and _is_local(href) and not (nbs / href).is_file():
            problems.append(f"{quarto_path}: navbar link {href} points to a missing file in {nbs}")

    nbdev_path = nbs / "nbdev.yml"
    expected = _expected_nbdev_yml(repo)
    if not nbdev_path.is_file() or nbdev_path.read_text(encoding="utf-8") != expected:
        problems.append(f"{nbdev_path} differs from what nbdev_docs generates from settings.ini: "
                        "edit settings.ini instead, then copy the generated text into it")

    sidebar_path = nbs / "sidebar.yml"
    if not sidebar_path.is_file():
        problems.append(f"{sidebar_path} is missing: settings.ini sets custom_sidebar = True, so nbdev does not write it")
    else:
        sidebar = yaml.safe_load(sidebar_path.read_text(encoding="utf-8")) or {}
        entries = _sidebar_entries(((sidebar.get("website") or {}).get("sidebar") or {}).get("contents"))
        for entry in entries:
            if _is_local(entry) and not (nbs / entry).is_file():
                problems.append(f"{sidebar_path}: entry {entry} points to a missing file in {nbs}")
        for notebook in sorted(nbs.glob("*.ipynb")):
            if notebook.name not in entries:
                problems.append(f"{sidebar_path}: {notebook.name} is not listed, so it has no place in the navigation")
        numbered = [entry for entry in entries if re.match(r"^\d+_", entry)]
        if numbered != sorted(numbered):
            problems.append(f"{sidebar_path}: numbered notebooks must appear in reading order, found {numbered}")

    top_level = repo / "_quarto.yml"
    if not top_level.is_file() or top_level.is_symlink():
        problems.append(f"{top_level} must be a regular file (a symbolic link breaks on Windows checkouts)")
    else:
        top = yaml.safe_load(top_level.read_text(encoding="utf-8")) or {}
        if (top.get("project") or {}).get("type") == "website":
            problems.append(f"{top_level}: must not define the website; nbdev renders the site from nbs/_quarto.yml")
    return problems


# ---------------------------------------------------------------- one notebook: execute, process, export

@dataclass
class PageResult:
    "The outcome of checking one notebook before the browser opens its page."
    notebook: str
    problems: list[str] = field(default_factory=list)
    html: str | None = None  # path of the exported page
    title: str | None = None
    description: str | None = None
    figure_cells: list[str] = field(default_factory=list)  # ids of cells whose output must hold an image
    executed: str | None = None  # path of the executed notebook, where one was saved
    seconds: float = 0.0


def _directives(cell) -> dict:
    from nbdev.process import extract_directives
    from execnb.nbio import NbCell

    return extract_directives(NbCell(0, {"cell_type": cell["cell_type"], "source": cell["source"]}),
                              remove=False, lang="python")


def _skipped(cell, skip_flags: set[str]) -> bool:
    "Whether `nbdev_test` would skip this code cell (nbdev 2.4's rules)."
    if "nbdev_export" + "(" in cell["source"]:
        return True
    directives = _directives(cell)
    if directives.get("eval:", [""])[0].lower() == "false":
        return True
    return bool(skip_flags & directives.keys())


def _calls_plotting(source: str) -> bool:
    "Whether the cell's top-level code (not inside a def or class) calls a plotting function."
    try:
        tree = ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))
    except SyntaxError:
        return False
    for statement in tree.body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for node in ast.walk(statement):
            if not isinstance(node, ast.Call):
                continue
            function = node.func
            if isinstance(function, ast.Name) and function.id.startswith("plot_"):
                return True
            if isinstance(function, ast.Attribute):
                if function.attr.startswith("plot_") or function.attr in _PLOT_METHODS:
                    return True
                if isinstance(function.value, ast.Name) and function.value.id in _PLOT_MODULES:
                    return True
    return False


def _execute(notebook, path: Path, skip_flags: set[str], cell_timeout: int) -> list[str]:
    "Execute `notebook` in place in a fresh kernel started in the notebook's folder; return the problems."
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    for cell in notebook.cells:
        if cell.cell_type == "code" and _skipped(cell, skip_flags):
            cell.metadata.setdefault("tags", []).append(SKIP_TAG)
    client = NotebookClient(notebook, timeout=cell_timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}, skip_cells_with_tag=SKIP_TAG)
    problems = []
    try:
        client.execute()
    except CellTimeoutError:
        problems.append(f"{path.name}: a cell ran longer than {cell_timeout} s and was stopped")
    except CellExecutionError as error:
        problems.append(f"{path.name}: execution failed: {_last_line(str(error))}")
    except Exception as error:  # a kernel that dies or does not start fails this page, not the whole check
        problems.append(f"{path.name}: execution failed: {type(error).__name__}: {error}")
    for cell in notebook.cells:
        tags = cell.metadata.get("tags", [])
        if SKIP_TAG in tags:
            tags.remove(SKIP_TAG)
            if not tags:
                del cell.metadata["tags"]
    return problems


def _shorten(text: str, max_lines: int = 6) -> str:
    "Keep the first lines of a long message, and its last line, which names the error."
    lines = [line for line in text.strip().splitlines() if line.strip() and line.strip() != "---"]
    if len(lines) <= max_lines:
        return "\n  ".join(lines)
    return "\n  ".join(lines[:max_lines - 1] + ["...", lines[-1]])


class NbdevProcessingError(Exception):
    "nbdev's processors raised; carries the warnings they gave before failing."
    def __init__(self, message: str, nbdev_warnings: list[str]):
        super().__init__(message)
        self.nbdev_warnings = nbdev_warnings


def _nbdev_process(notebook_dict: dict, path: Path):
    "Run nbdev's documentation processors on a notebook dict; return the processed notebook and nbdev's warnings."
    from execnb.nbio import dict2nb
    from nbdev.processors import FilterDefaults

    notebook = dict2nb(notebook_dict)
    notebook.path_ = str(path)  # FrontmatterProc names the output page after it
    nbdev_folder = str(Path(sys.modules["nbdev"].__file__).parent)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            FilterDefaults()(notebook)
            error = None
        except Exception as raised:  # exec_show_docs re-raises a failing cell with the cell's error as cause
            cause = raised.__cause__
            error = f"{raised}".strip() + (f"\n{type(cause).__name__}: {cause}" if cause else "")
    # nbdev's own deprecation notices (such as the one about settings.ini's cell_number) are not page defects.
    nbdev_warnings = [str(w.message).strip() for w in caught if str(w.filename).startswith(nbdev_folder)
                      and not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))]
    if error:
        raise NbdevProcessingError(error, nbdev_warnings)
    return notebook, nbdev_warnings


def _quarto_directives(source: str) -> tuple[dict, str]:
    "Split the leading `#| key: value` lines Quarto reads from a code cell; return them and the code."
    options, lines = {}, source.splitlines()
    while lines and lines[0].startswith("#|"):
        key, _, value = lines.pop(0)[2:].partition(":")
        options[key.strip()] = value.strip()
    return options, "\n".join(lines)


def _to_page_notebook(processed, title: str | None, description: str | None):
    "Turn nbdev's processed notebook into the notebook nbconvert exports, applying what Quarto would."
    import nbformat
    from execnb.nbio import nb2dict

    data = nb2dict(processed)
    cells = []
    for cell in data["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "raw" and source.startswith("---"):
            continue  # the frontmatter: Quarto shows it as the title block added below
        if cell["cell_type"] == "code":
            options, source = _quarto_directives(source)
            if options.get("include") == "false":
                continue
            tags = cell.setdefault("metadata", {}).setdefault("tags", [])
            if options.get("echo") == "false":
                tags.append("remove_input")
            if options.get("output") == "false":
                tags.append("remove_output")
        cell["source"] = source
        cells.append(cell)
    if title:
        heading = f"# {title}" + (f"\n\n> {description}" if description else "")
        cells.insert(0, {"cell_type": "markdown", "metadata": {}, "source": heading})
    for index, cell in enumerate(cells):
        cell.setdefault("id", f"added-{index}")  # cells nbdev adds (show_doc) have no id
    data["cells"] = cells
    data.setdefault("metadata", {})["title"] = title or ""
    return nbformat.reads(json.dumps(data), as_version=4)  # joins the line lists nbdev keeps in outputs


def _export_html(notebook, out: Path) -> None:
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor
    from traitlets.config import Config

    config = Config()
    config.TagRemovePreprocessor.remove_input_tags = {"remove_input"}
    config.TagRemovePreprocessor.remove_all_outputs_tags = {"remove_output"}
    exporter = HTMLExporter(config=config, template_name="lab")
    exporter.register_preprocessor(TagRemovePreprocessor(config=config), enabled=True)
    body, _ = exporter.from_notebook_node(notebook)
    out.write_text(body, encoding="utf-8")


def check_notebook(path: str, html_folder: str, execute: bool, cell_timeout: int,
                   save_executed: str | None) -> PageResult:
    "Lint, execute, process and export one notebook; runs in its own process."
    import nbformat
    from nbdev.config import get_config

    start = time.time()
    path = Path(path)
    result = PageResult(notebook=path.name)
    os.chdir(REPO)  # nbdev_docs runs the processors from the project root
    os.environ["IN_TEST"] = "1"  # as nbdev_test and nbdev_docs set it
    os.environ["MPLBACKEND"] = INLINE_BACKEND  # figures must reach the outputs even where CI sets Agg
    result.problems += lint_notebook(path)
    try:
        notebook = nbformat.read(path, as_version=4)
        skip_flags = set(filter(None, get_config().get("tst_flags", "").split()))
        fresh_ids = {cell.id for cell in notebook.cells if cell.cell_type == "code" and not _skipped(cell, skip_flags)
                     and _calls_plotting(cell.source)}
        if execute:
            result.problems += _execute(notebook, path, skip_flags, cell_timeout)
            if save_executed:
                result.executed = str(Path(save_executed) / path.name)
                nbformat.write(notebook, result.executed)

        try:
            processed, nbdev_warnings = _nbdev_process(json.loads(nbformat.writes(notebook)), path)
        except NbdevProcessingError as error:
            result.problems += [f"{path.name}: nbdev warning during doc processing: {_shorten(message)}"
                                for message in error.nbdev_warnings]
            result.problems.append(f"{path.name}: nbdev doc processing failed (as nbdev_docs would): "
                                   f"{_shorten(str(error))}")
            result.seconds = time.time() - start
            return result
        result.problems += [f"{path.name}: nbdev warning during doc processing: {_shorten(message)}"
                            for message in nbdev_warnings]
        frontmatter = getattr(processed, "frontmatter_", {}) or {}
        result.title, result.description = frontmatter.get("title"), frontmatter.get("description")
        page = _to_page_notebook(processed, result.title, result.description)
        if execute:
            result.figure_cells = [cell.id for cell in page.cells if cell.id in fresh_ids
                                   and "remove_output" not in cell.metadata.get("tags", [])]
        result.html = str(Path(html_folder) / f"{path.stem}.html")
        _export_html(page, Path(result.html))
    except Exception as error:
        detail = traceback.format_exc(limit=-3)
        result.problems.append(f"{path.name}: doc processing or HTML export failed: {type(error).__name__}: {error}\n{detail}")
    result.seconds = time.time() - start
    return result


# ---------------------------------------------------------------- browser

_PAGE_REPORT_JS = """
const figureCells = arguments[0];
const errorSelectors = arguments[1];
const h1 = Array.from(document.querySelectorAll('h1')).map(e => e.textContent.replace(/\\u00b6/g, '').trim());
const errors = [];
for (const selector of errorSelectors) {
  for (const element of document.querySelectorAll(selector)) errors.push(element.textContent.slice(-3000));
}
const streams = document.querySelectorAll(
  '[data-mime-type="application/vnd.jupyter.stderr"], .cell-output-stderr, .cell-output-error');
for (const element of streams) {
  const text = element.textContent;
  if (/Traceback \\(most recent call last\\)/.test(text) || /^\\s*[A-Za-z_.]*(Error|Exception): /m.test(text))
    errors.push(text.slice(-3000));
}
const figures = {};
for (const id of figureCells) {
  const cell = document.getElementById('cell-id=' + id);
  figures[id] = cell ? Array.from(cell.querySelectorAll('img')).filter(i => i.complete && i.naturalWidth > 0).length : -1;
}
const images = Array.from(document.querySelectorAll('img')).filter(i => i.complete && i.naturalWidth > 0).length;
return {title: document.title, h1: h1, errors: errors, figures: figures, images: images};
"""

def _last_line(text: str) -> str:
    "Return the line of an error output that names the exception, or its last non-empty line."
    lines = [line.strip() for line in _ANSI.sub("", text).splitlines() if line.strip()]
    named = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception|Interrupt|Exit)\b", line)]
    return (named or lines or [""])[-1][:300]


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_NBCONVERT_ERROR_SELECTORS = [".output_error", ".jp-OutputArea-output.output_error"]
_QUARTO_ERROR_SELECTORS = [".cell-output-error"]


def _start_browser(chromium: str, chromedriver: str, profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.set_page_load_timeout(120)
    return driver


def _screenshot(driver, out: Path) -> None:
    height = driver.execute_script("return Math.min(document.documentElement.scrollHeight, 12000)")
    driver.set_window_size(1280, max(int(height), 800))
    driver.save_screenshot(str(out))
    driver.set_window_size(1280, 1000)


def check_pages(pages: list[tuple[str, Path, str | None, list[str]]], driver, error_selectors: list[str],
                screenshots: Path | None, label: str) -> list[str]:
    "Open each (name, html, expected title, figure cell ids) page in the browser; return the problems."
    problems = []
    for name, html, title, figure_cells in pages:
        driver.get(html.resolve().as_uri())
        report = driver.execute_script(_PAGE_REPORT_JS, figure_cells, error_selectors)
        where = f"{label} page {html.name} ({name})"
        if not title:
            problems.append(f"{where}: the notebook has no title for the page")
        elif title not in report["h1"]:
            problems.append(f"{where}: no H1 reads {title!r} (found {report['h1'][:3]})")
        elif title not in report["title"]:
            problems.append(f"{where}: the document title is {report['title']!r}, expected it to contain {title!r}")
        for text in report["errors"]:
            problems.append(f"{where}: shows an error output ending {_last_line(text)!r}")
        for cell_id, count in report["figures"].items():
            if count == -1:
                problems.append(f"{where}: cell {cell_id} calls a plotting function but is not on the page")
            elif count == 0:
                problems.append(f"{where}: cell {cell_id} calls a plotting function but shows no loaded image")
        stem = Path(name).stem
        if screenshots is not None and stem in SCREENSHOT_PAGES:
            _screenshot(driver, screenshots / f"{label}_{stem}.png")
    return problems


# ---------------------------------------------------------------- Quarto, where installed

def check_quarto_site(results: list[PageResult], driver, screenshots: Path, work: Path) -> list[str]:
    "Render the site with `nbdev_docs` in a copy of the project holding the executed notebooks; check its pages."
    # NOTE: never run on the machines this check was written on, which have no Quarto. The selectors
    # follow Quarto's page layout (h1.title, .cell-output-display, .cell-output-error).
    copy = work / "project"
    _mkdir(copy)
    for name in ("settings.ini", "setup.py", "pyproject.toml", "README.md", "_quarto.yml"):
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, copy / name)
    shutil.copytree(REPO / "nbs", copy / "nbs", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copytree(REPO / "muon_gan_nb", copy / "muon_gan_nb", ignore=shutil.ignore_patterns("__pycache__"))
    for result in results:
        if result.executed:
            shutil.copy2(result.executed, copy / "nbs" / result.notebook)
    completed = subprocess.run(["nbdev_docs"], cwd=copy, capture_output=True, text=True, timeout=1800)
    if completed.returncode != 0:
        return [f"nbdev_docs failed with exit status {completed.returncode}:\n{completed.stderr[-3000:]}"]

    from nbdev.doclinks import _nbpath2html  # NOTE: private in nbdev 2.4; it names the page nbdev renders
    pages, problems = [], []
    for result in results:
        html = copy / "_docs" / _nbpath2html(Path(result.notebook))
        if not html.is_file():
            problems.append(f"quarto: nbdev_docs wrote no page for {result.notebook} (expected {html.name})")
            continue
        # Quarto writes no cell ids into the page, so figures are counted per page below.
        pages.append((result.notebook, html, result.title, []))
    problems += check_pages(pages, driver, _QUARTO_ERROR_SELECTORS, screenshots, "quarto")
    for name, html, _, _ in pages:
        expected = next(len(r.figure_cells) for r in results if r.notebook == name)
        if expected:
            driver.get(html.resolve().as_uri())
            images = driver.execute_script(
                "return Array.from(document.querySelectorAll('.cell-output-display img'))"
                ".filter(i => i.complete && i.naturalWidth > 0).length")
            if images < expected:
                problems.append(f"quarto page {html.name}: {images} figures shown, expected at least {expected}")
    return problems


def _mkdir(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# ---------------------------------------------------------------- command line

def _select_notebooks(folder: Path, names: list[str] | None) -> list[Path]:
    available = sorted(folder.glob("*.ipynb"))
    if not names:
        return available
    selected = []
    for name in names:
        path = folder / (name if name.endswith(".ipynb") else f"{name}.ipynb")
        if not path.is_file():
            raise SystemExit(f"--notebooks: {path} not found; choose from {[p.stem for p in available]}")
        selected.append(path)
    return selected


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", nargs="+", metavar="NAME",
                        help="check only these notebooks (file stems such as index 00_data); default: all")
    parser.add_argument("--nbs", type=Path, default=REPO / "nbs",
                        help="folder of the notebooks to check (default nbs/; settings.ini is always the project's)")
    parser.add_argument("--no-execute", action="store_true",
                        help="do not execute the notebooks: check processing, HTML export and titles only")
    parser.add_argument("--jobs", type=int, default=1, choices=(1, 2, 3, 4),
                        help="notebooks checked at the same time, each in its own process (default 1)")
    parser.add_argument("--cell-timeout", type=int, default=600, help="seconds one cell may run (default 600)")
    parser.add_argument("--artifacts", type=Path, default=REPO / "artifacts" / "docs",
                        help="folder for the HTML pages and screenshots (default artifacts/docs)")
    parser.add_argument("--save-executed", type=Path, metavar="FOLDER",
                        help="also write each executed notebook (with outputs) into FOLDER")
    parser.add_argument("--skip-site-config", action="store_true",
                        help="skip the checks of the Quarto configuration and the sidebar")
    parser.add_argument("--no-browser", action="store_true",
                        help="do not open the pages in Chromium (for a publishing job that only needs "
                             "--save-executed); the project's CI runs the browser checks")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", CHROMIUM),
                        help=f"Chromium binary (default {CHROMIUM}, or $CHROMIUM)")
    parser.add_argument("--chromedriver", default=os.environ.get("CHROMEDRIVER", CHROMEDRIVER),
                        help=f"chromedriver binary (default {CHROMEDRIVER}, or $CHROMEDRIVER)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    arguments = parse_arguments(argv)
    notebooks = _select_notebooks(arguments.nbs.resolve(), arguments.notebooks)
    artifacts = _mkdir(arguments.artifacts.resolve())
    html_folder = _mkdir(artifacts / "html")
    if arguments.save_executed:
        _mkdir(arguments.save_executed.resolve())
    problems = [] if arguments.skip_site_config else check_site_config(REPO)

    for binary in () if arguments.no_browser else (arguments.chromium, arguments.chromedriver):
        if not Path(binary).is_file():
            problems.append(f"{binary} not found: install Debian's browser with "
                            "'apt-get install -y chromium chromium-driver', or pass --chromium/--chromedriver")
    if any("not found: install Debian" in problem for problem in problems):
        return _finish(problems)

    execute = not arguments.no_execute
    save_executed = str(arguments.save_executed.resolve()) if arguments.save_executed else None
    if arguments.save_executed is None and shutil.which("quarto") and execute:
        save_executed = str(_mkdir(artifacts / "executed"))
    print(f"docs check: {len(notebooks)} notebook(s), execute={execute}, jobs={arguments.jobs}", flush=True)
    context = get_context("spawn")
    with ProcessPoolExecutor(max_workers=arguments.jobs, mp_context=context, max_tasks_per_child=1) as pool:
        futures = [pool.submit(check_notebook, str(path), str(html_folder), execute, arguments.cell_timeout,
                               save_executed) for path in notebooks]
        results = []
        for future in futures:
            result = future.result()
            print(f"  {result.notebook}: {'ok' if not result.problems else 'FAILED'}"
                  f" ({len(result.figure_cells)} figure cell(s), {result.seconds:.0f} s)", flush=True)
            results.append(result)
    for result in results:
        problems += result.problems

    if arguments.no_browser:
        print("--no-browser: pages exported but not opened in Chromium; nbdev_docs render skipped", flush=True)
        return _finish(problems)
    with tempfile.TemporaryDirectory(prefix="docs-check-") as work:
        driver = _start_browser(arguments.chromium, arguments.chromedriver, Path(work) / "profile")
        try:
            pages = [(r.notebook, Path(r.html), r.title, r.figure_cells) for r in results
                     if r.html and Path(r.html).is_file()]
            problems += check_pages(pages, driver, _NBCONVERT_ERROR_SELECTORS, artifacts, "nbconvert")
            if not shutil.which("quarto"):
                print("quarto not on PATH: skipping the nbdev_docs render of the Quarto site", flush=True)
            elif not execute:
                print("quarto found but --no-execute given: skipping the nbdev_docs render", flush=True)
            elif arguments.nbs.resolve() != REPO / "nbs":
                print("quarto found but --nbs is not the project's nbs/: skipping the nbdev_docs render", flush=True)
            else:
                problems += check_quarto_site(results, driver, artifacts, Path(work))
        finally:
            driver.quit()
    print(f"pages and screenshots in {artifacts}")
    return _finish(problems)


def _finish(problems: list[str]) -> int:
    for problem in problems:
        print(f"FAIL {problem}")
    print("docs check passed" if not problems else f"docs check failed: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
