"""End-to-end test of the training monitor in a real JupyterLab, driven in headless Chromium with Selenium.

It needs Debian's `chromium` and `chromium-driver` packages (/usr/bin/chromium, /usr/bin/chromedriver) and
skips with a message where either is missing. Deselect it with `pytest -m "not browser"`."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "artifacts" / "dashboard"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")

pytestmark = pytest.mark.browser

DEMO_CELLS = [
    """\
import numpy as np
from muon_gan_nb.batches import sample_batches
from muon_gan_nb.dashboard import TrainingMonitor
from muon_gan_nb.data import MuonSample
from muon_gan_nb.models import make_gan
from muon_gan_nb.preprocessing import MuonScaler

rng = np.random.default_rng(0)
n = 4_000
prompt = rng.random(n) < 0.559
x = np.where(prompt, 0.0, rng.laplace(0, 3.0, n))
y = np.where(prompt, 0.0, rng.laplace(0, 3.0, n))
z = -7084.9 + rng.exponential(40.0, n)
pz = 10.3 + rng.exponential(25.0, n)
pt = rng.exponential(0.8, n)
phi = rng.uniform(-np.pi, np.pi, n)
muons = MuonSample(np.column_stack([x, y, z, pt * np.cos(phi), pt * np.sin(phi), pz]),
                   np.where(rng.random(n) < 0.5, -13, 13), np.ones(n))
scaler = MuonScaler().fit(muons.features)""",
    """\
monitor = TrainingMonitor(muons, every=20, sample_size=1_000, evaluation_size=300, scaler=scaler,
                          max_overhead=None)
display(monitor)""",
    """\
gan = make_gan("vanilla", seed=0, noise_dim=8, generator_hidden=(32, 32), discriminator_hidden=(32, 32))
gan.compile()
gan.fit(sample_batches(scaler.transform(muons.features), rows=100), epochs=1, steps_per_epoch=60,
        callbacks=[monitor], verbose=0)
print("demo finished with", monitor.refresh_count, "refreshes")""",
]


def free_port() -> int:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        return server.getsockname()[1]


def wait_for_server(url: str, process: subprocess.Popen, timeout: float):
    "Wait until JupyterLab answers at `url`; fail early if it exits."
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"JupyterLab exited with code {process.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer at {url} within {timeout:.0f} s")


def accept_kernel_dialog(browser, by, timeout: float = 15):
    "Accept JupyterLab's kernel selection dialog (Python 3) if it appears within `timeout` seconds."
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        buttons = browser.find_elements(by.CSS_SELECTOR, ".jp-Dialog .jp-Dialog-button.jp-mod-accept")
        if buttons:
            buttons[0].click()
            return
        time.sleep(0.5)


def stop_process(process: subprocess.Popen | None):
    "Stop a process group that this test started: SIGTERM, then SIGKILL after 10 s."
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def test_monitor_updates_in_jupyterlab():
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not found: install Debian's chromium and chromium-driver "
                    "(apt-get install -y chromium chromium-driver) to run the browser test")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install selenium")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="dashboard-browser-"))
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in DEMO_CELLS])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, root / "dashboard_demo.ipynb")
    port, token = free_port(), uuid.uuid4().hex
    environment = {**os.environ, "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
                   "JUPYTER_CONFIG_DIR": str(root / "config"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    lab, browser = None, None
    log = open(ARTIFACTS / "jupyterlab.log", "w")
    try:
        lab = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--ServerApp.token={token}",
             "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
             f"--ServerApp.root_dir={root}", "--allow-root", f"--LabApp.user_settings_dir={root / 'settings'}",
             f"--LabApp.workspaces_dir={root / 'workspaces'}"],
            cwd=root, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        wait_for_server(f"{base}/api/status?token={token}", lab, timeout=60)

        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run",
                     "--disable-dev-shm-usage", "--window-size=1400,2400", f"--user-data-dir={root / 'chromium'}"):
            options.add_argument(flag)
        browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        browser.get(f"{base}/lab/tree/dashboard_demo.ipynb?token={token}")
        wait = WebDriverWait(browser, 60)
        wait.until(expected_conditions.presence_of_element_located(
            (By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell .jp-InputArea-editor")))
        accept_kernel_dialog(browser, By)
        wait.until(expected_conditions.element_to_be_clickable(
            (By.XPATH, "//div[contains(@class, 'lm-MenuBar-itemLabel') and text()='Run']"))).click()
        wait.until(expected_conditions.element_to_be_clickable(
            (By.XPATH, "//li[contains(@class, 'lm-Menu-item')]"
                       "[.//div[contains(@class, 'lm-Menu-itemLabel') and text()='Run All Cells']]"))).click()

        accept_kernel_dialog(browser, By)

        def monitor_updates(driver) -> int:
            labels = driver.find_elements(By.CSS_SELECTOR, ".muon-monitor-counter")
            texts = [label.text for label in labels if label.text.startswith("updates: ")]
            return max((int(text.split(": ")[1]) for text in texts), default=-1)

        def finished(driver) -> bool:
            outputs = driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output")
            return any("demo finished with" in output.text for output in outputs)

        WebDriverWait(browser, 120, poll_frequency=0.5).until(lambda driver: monitor_updates(driver) >= 2)
        WebDriverWait(browser, 60, poll_frequency=0.5).until(finished)
        browser.save_screenshot(str(ARTIFACTS / "monitor.png"))

        assert monitor_updates(browser) == 3  # refreshes at iterations 20, 40 and 60
        images = browser.find_elements(By.CSS_SELECTOR, ".jp-OutputArea img")
        assert len([image for image in images if image.get_attribute("src").startswith("blob:")
                    or image.get_attribute("src").startswith("data:image/png")]) >= 3
        buttons = [button.text for button in browser.find_elements(By.CSS_SELECTOR, ".jp-OutputArea button")]
        assert "Stop training" in buttons
        outputs = browser.find_element(By.CSS_SELECTOR, ".jp-NotebookPanel").text
        assert "Traceback" not in outputs
        assert "Error displaying widget" not in outputs
    finally:
        if browser is not None:
            try:
                browser.save_screenshot(str(ARTIFACTS / "last.png"))
            finally:
                browser.quit()
        stop_process(lab)
        log.close()
        shutil.rmtree(root, ignore_errors=True)
