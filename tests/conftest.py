"""Shared pytest fixtures: paths to the repository and to the team's input cases."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The team's shared folder sits beside the checkout; MUON_GAN_SHARED points elsewhere when it does not.
SHARED = Path(os.environ.get("MUON_GAN_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def cases_dir() -> Path:
    "The folder of input cases (valid and broken muon files); skips the test where it is absent."
    cases = SHARED / "cases"
    if not cases.is_dir():
        pytest.skip(f"shared input cases not found at {cases}: set MUON_GAN_SHARED to the shared folder")
    return cases


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: end-to-end test in JupyterLab and headless Chromium "
                                       "(deselect with -m 'not browser')")
    config.addinivalue_line("markers", "slow: takes minutes on two cores (deselect with -m 'not slow')")
