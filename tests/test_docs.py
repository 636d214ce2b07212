"""The documentation check in .ci/docs_check.py: notebook lint, site configuration, and pages opened in Chromium."""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / ".ci" / "docs_check.py"
_spec = importlib.util.spec_from_file_location("docs_check", SCRIPT)
docs_check = importlib.util.module_from_spec(_spec)
sys.modules["docs_check"] = docs_check  # dataclasses look their module up by name
_spec.loader.exec_module(docs_check)

needs_browser = pytest.mark.skipif(
    not (Path(docs_check.CHROMIUM).is_file() and Path(docs_check.CHROMEDRIVER).is_file()),
    reason="Debian's chromium and chromium-driver are not installed (apt-get install -y chromium chromium-driver)")


def _write_notebook(path: Path, *cells) -> Path:
    "Write a notebook of ('markdown' | 'code', source) cells."
    notebook = nbformat.v4.new_notebook()
    for kind, source in cells:
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        notebook.cells.append(make(source))
    nbformat.write(notebook, path)
    return path


def _run_check(*arguments, timeout=600):
    return subprocess.run([sys.executable, str(SCRIPT), *arguments], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_lint_accepts_title_summary_frontmatter(tmp_path):
    path = _write_notebook(tmp_path / "good.ipynb",
                           ("markdown", "# Muon data\n> Loading SHiP muons.\n\n- skip_showdoc: true"),
                           ("markdown", "## Internals -"),
                           ("markdown", "## Loading\n\nText."))
    assert docs_check.lint_notebook(path) == []


def test_lint_reports_missing_title(tmp_path):
    path = _write_notebook(tmp_path / "untitled.ipynb", ("markdown", "## Only a section\n> summary"))
    problems = docs_check.lint_notebook(path)
    assert len(problems) == 1
    assert "H1 title" in problems[0]


def test_lint_reports_missing_summary(tmp_path):
    path = _write_notebook(tmp_path / "bare.ipynb", ("markdown", "# Muon data"), ("code", "1 + 1"))
    problems = docs_check.lint_notebook(path)
    assert len(problems) == 1
    assert "one-line summary" in problems[0]


def test_lint_reports_prose_in_title_cell(tmp_path):
    path = _write_notebook(tmp_path / "crowded.ipynb", ("markdown", "# Muon data\n> Summary.\n\nA paragraph."))
    problems = docs_check.lint_notebook(path)
    assert len(problems) == 1
    assert "A paragraph." in problems[0]


def test_lint_reports_hidden_heading_sharing_cell(tmp_path):
    path = _write_notebook(tmp_path / "dash.ipynb", ("markdown", "# Muon data\n> Summary."),
                           ("markdown", "## Helpers -\n\nThis prose would vanish with the heading."))
    problems = docs_check.lint_notebook(path)
    assert len(problems) == 1
    assert "'## Helpers -'" in problems[0]


def _copy_site_config(destination: Path) -> Path:
    (destination / "nbs").mkdir()
    shutil.copy2(REPO / "settings.ini", destination / "settings.ini")
    shutil.copy2(REPO / "_quarto.yml", destination / "_quarto.yml")
    for name in ("_quarto.yml", "nbdev.yml", "sidebar.yml", "styles.css"):
        shutil.copy2(REPO / "nbs" / name, destination / "nbs" / name)
    return destination


def test_site_config_reports_missing_sidebar_page(tmp_path):
    repo = _copy_site_config(tmp_path)
    _write_notebook(repo / "nbs" / "index.ipynb", ("markdown", "# Home\n> Summary."))
    _write_notebook(repo / "nbs" / "99_unlisted.ipynb", ("markdown", "# Extra\n> Summary."))
    problems = docs_check.check_site_config(repo)
    assert any("entry 03_evaluation.ipynb points to a missing file" in p for p in problems)
    assert any("navbar link 15_benchmarks.ipynb points to a missing file" in p for p in problems)
    assert any("99_unlisted.ipynb is not listed" in p for p in problems)
    assert not any("entry index.ipynb" in p for p in problems)


def test_site_config_reports_stale_nbdev_yml_and_symlink(tmp_path):
    repo = _copy_site_config(tmp_path)
    (repo / "nbs" / "nbdev.yml").write_text("website:\n  title: old\n")
    (repo / "_quarto.yml").unlink()
    (repo / "_quarto.yml").symlink_to(repo / "nbs" / "_quarto.yml")
    problems = docs_check.check_site_config(repo)
    assert any("nbdev.yml differs" in p for p in problems)
    assert any("must be a regular file" in p for p in problems)


def test_repository_site_config_is_complete():
    "Every problem in the project's own configuration except pages that other notebooks will add."
    problems = [p for p in docs_check.check_site_config(REPO) if "points to a missing file" not in p]
    assert problems == []


@needs_browser
def test_check_passes_figure_page(tmp_path):
    "A histogram is found on the page; cells behind eval: false and the slow flag are skipped."
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _write_notebook(nbs / "index.ipynb",
                    ("markdown", "# Muon momenta\n> A histogram of pz."),
                    ("code", "import matplotlib.pyplot as plt"),
                    ("code", "plt.hist([10.0, 20.0, 20.0, 35.0], bins=3);"),
                    ("code", "#| eval: false\nraise RuntimeError('never run in checks')"),
                    ("code", "#| slow\nraise RuntimeError('slow cells are skipped')"))
    artifacts = tmp_path / "artifacts"
    completed = _run_check("--nbs", str(nbs), "--skip-site-config", "--artifacts", str(artifacts))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "index.ipynb: ok (1 figure cell(s)" in completed.stdout
    assert (artifacts / "nbconvert_index.png").stat().st_size > 1000
    assert "Muon momenta" in (artifacts / "html" / "index.html").read_text(encoding="utf-8")


@needs_browser
def test_check_reports_broken_page(tmp_path):
    "An error output, a plotting cell without an image and a cell mixing imports with code."
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _write_notebook(nbs / "00_broken.ipynb",
                    ("markdown", "# Broken page\n> Each cell shows one defect."),
                    ("code", "#| export\ndef plot_nothing():\n    \"Draw nothing.\"\n    return None"),
                    ("code", "plot_nothing()"),
                    ("code", "import math\nvalue = math.sqrt(4.0)"),
                    ("code", "raise ValueError('invalid muon file')"))
    completed = _run_check("--nbs", str(nbs), "--skip-site-config", "--artifacts", str(tmp_path / "artifacts"))
    assert completed.returncode == 1
    failures = [line for line in completed.stdout.splitlines() if line.startswith("FAIL")]
    assert any("execution failed" in line and "ValueError" in line for line in failures), completed.stdout
    assert any("shows an error output" in line and "invalid muon file" in line for line in failures)
    assert any("calls a plotting function but shows no loaded image" in line for line in failures)
    assert any("Found cells containing imports and other code" in line for line in failures)


@needs_browser
def test_check_project_subset():
    "The real home page and data notebook: executed, processed by nbdev, and opened in Chromium."
    completed = _run_check("--notebooks", "index", "00_data", "--skip-site-config", timeout=900)
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-2000:]
    assert (REPO / "artifacts" / "docs" / "nbconvert_index.png").is_file()
