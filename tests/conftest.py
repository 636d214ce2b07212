"""Shared pytest fixtures: paths to the repository, the team's input cases and a SHiP-like muon sample."""
import os
from pathlib import Path

import numpy as np
import pytest

from muon_gan_nb.data import MUON_PDG, MuonSample, load_default_sample

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


def synthetic_ship_like(n: int, seed: int = 0) -> MuonSample:
    "SHiP-like muons: 56% prompt at x = y = 0, displaced x, y correlated with px, py; μ+ 0.50 prompt, 0.545 displaced."
    rng = np.random.default_rng(seed)
    prompt = rng.random(n) < 0.56
    px, py = rng.laplace(0, 0.5, n), rng.laplace(0, 0.5, n)
    decay_length = rng.exponential(0.15, n)
    x = np.where(prompt, 0.0, decay_length * px + rng.normal(0, 0.01, n))
    y = np.where(prompt, 0.0, decay_length * py + rng.normal(0, 0.01, n))
    z, pz = -7084.9 + rng.exponential(20.0, n), 10.3 + rng.exponential(25.0, n)
    pdg = np.where(rng.random(n) < np.where(prompt, 0.50, 0.545), -MUON_PDG, MUON_PDG)
    return MuonSample(np.column_stack([x, y, z, px, py, pz]), pdg, np.ones(n), source="synthetic")


@pytest.fixture(scope="session")
def ship_like_muons() -> MuonSample:
    "The bundled sample, or 200,000 synthetic SHiP-like muons where it is missing."
    try:
        return load_default_sample()
    except FileNotFoundError:
        return synthetic_ship_like(200_000)


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: end-to-end test in JupyterLab and headless Chromium "
                                       "(deselect with -m 'not browser')")
    config.addinivalue_line("markers", "slow: takes minutes on two cores (deselect with -m 'not slow')")
