"""Tests of the SHiP-like muon source: decay physics in NumPy, and small end-to-end Pythia 8 runs."""
import importlib.util
import sys

import numpy as np
import pytest

from muon_gan_nb import source
from muon_gan_nb.data import ORIGINS, InvalidInputError
from muon_gan_nb.source import (INTERACTION_LENGTH, KAON_CTAU, KAON_MASS, MOMENTUM_CUT, MUON_MASS, PION_CTAU,
                                PION_MASS, PION_TO_MUON_BR, SHIP_TARGET_FRONT_Z, TARGET_LENGTH, boost,
                                decay_in_flight, decay_probability, draw_decay_distance, draw_interaction_depth,
                                make_sample, two_body_decay)

PYTHIA_MISSING = importlib.util.find_spec("pythia8mc") is None or importlib.util.find_spec("awkward") is None
needs_pythia = pytest.mark.skipif(
    PYTHIA_MISSING, reason="pythia8mc or awkward is not installed: pip install 'muon_gan_nb[source]' to run this test")


def invariant_mass_squared(four_momenta: np.ndarray) -> np.ndarray:
    return four_momenta[:, 3]**2 - (four_momenta[:, :3]**2).sum(axis=1)


@pytest.mark.parametrize("parent_mass", [PION_MASS, KAON_MASS])
def test_decay_conserves_four_momentum(parent_mass):
    rng = np.random.default_rng(1)
    parents = rng.normal(0, 1, (500, 3)) * [1.0, 1.0, 0.0] + [0.0, 0.0, 1.0] * rng.uniform(10, 300, (500, 1))
    muon, neutrino = two_body_decay(parent_mass, MUON_MASS, 0.0, 500, rng)
    muon_lab, neutrino_lab = boost(muon, parents, parent_mass), boost(neutrino, parents, parent_mass)
    parent_energy = np.sqrt((parents**2).sum(axis=1) + parent_mass**2)
    np.testing.assert_allclose(muon_lab[:, :3] + neutrino_lab[:, :3], parents, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(muon_lab[:, 3] + neutrino_lab[:, 3], parent_energy, rtol=1e-9)
    np.testing.assert_allclose(invariant_mass_squared(muon_lab), MUON_MASS**2, atol=1e-8)
    np.testing.assert_allclose(invariant_mass_squared(neutrino_lab), 0.0, atol=1e-8)


def test_two_body_momentum_at_rest():
    rng = np.random.default_rng(2)
    muon, neutrino = two_body_decay(KAON_MASS, MUON_MASS, 0.0, 1000, rng)
    expected = (KAON_MASS**2 - MUON_MASS**2) / (2 * KAON_MASS)
    np.testing.assert_allclose(np.linalg.norm(muon[:, :3], axis=1), expected, rtol=1e-12)
    np.testing.assert_allclose(muon[:, 3] + neutrino[:, 3], KAON_MASS, rtol=1e-12)


def test_two_body_rejects_heavy_daughters():
    with pytest.raises(InvalidInputError, match="must be lighter"):
        two_body_decay(MUON_MASS, PION_MASS, 0.0, 1, np.random.default_rng(0))


def test_boost_of_parent_at_rest_is_identity():
    muon, _ = two_body_decay(PION_MASS, MUON_MASS, 0.0, 10, np.random.default_rng(3))
    np.testing.assert_allclose(boost(muon, np.zeros((10, 3)), PION_MASS), muon, atol=1e-15)


def test_boost_forward_muon_momentum_range():
    muon, _ = two_body_decay(PION_MASS, MUON_MASS, 0.0, 50_000, np.random.default_rng(4))
    momentum = np.linalg.norm(boost(muon, np.tile([0.0, 0.0, 100.0], (50_000, 1)), PION_MASS)[:, :3], axis=1)
    assert momentum.max() <= 100.0 + 1e-6
    assert momentum.min() >= 100.0 * (MUON_MASS / PION_MASS)**2 - 0.05


def test_decay_probability_short_decay_length():
    assert decay_probability(1e-3, PION_MASS, 1e-6, 50.0) == pytest.approx(1.0, abs=1e-9)


def test_decay_probability_long_decay_length():
    momentum, path = 1e8, 120.0
    decay_length = momentum / PION_MASS * PION_CTAU
    effective_path = INTERACTION_LENGTH * -np.expm1(-path / INTERACTION_LENGTH)
    assert decay_probability(momentum, PION_MASS, PION_CTAU, path) == pytest.approx(effective_path / decay_length,
                                                                                  rel=1e-6)


def test_decay_probability_without_absorption():
    probability = decay_probability(30.0, KAON_MASS, KAON_CTAU, 200.0, interaction_length=np.inf)
    assert probability == pytest.approx(-np.expm1(-200.0 / (30.0 / KAON_MASS * KAON_CTAU)), rel=1e-12)


def test_decay_probability_zero_path():
    assert decay_probability(20.0, PION_MASS, PION_CTAU, 0.0) == 0.0


def test_interaction_depth_stays_in_target():
    depth = draw_interaction_depth(100_000, np.random.default_rng(5))
    assert depth.min() >= 0
    assert depth.max() <= TARGET_LENGTH
    expected_mean = INTERACTION_LENGTH - TARGET_LENGTH / np.expm1(TARGET_LENGTH / INTERACTION_LENGTH)
    assert depth.mean() == pytest.approx(expected_mean, abs=0.15)


def test_decay_distance_stays_on_path():
    paths = np.linspace(1.0, 150.0, 10_000)
    distance = draw_decay_distance(np.full(10_000, 15.0), KAON_MASS, KAON_CTAU, paths, np.random.default_rng(6))
    assert (distance >= 0).all()
    assert (distance <= paths).all()


def test_decay_in_flight_charges_and_weights():
    rng = np.random.default_rng(7)
    parent_pdg = np.array([211, -211, 321, -321] * 500)
    momenta = np.column_stack([rng.normal(0, 0.5, 2000), rng.normal(0, 0.5, 2000), rng.uniform(5, 150, 2000)])
    depth = rng.uniform(0, 100, 2000)
    muons = decay_in_flight(parent_pdg, momenta, depth, rng)
    parents = muons["parent"]
    np.testing.assert_array_equal(muons["pdg"], -13 * np.sign(parent_pdg[parents]))
    assert (np.linalg.norm(momenta[parents], axis=1) > MOMENTUM_CUT).all()
    assert (np.linalg.norm(muons["features"][:, 3:], axis=1) > MOMENTUM_CUT).all()
    assert (muons["features"][:, 2] >= depth[parents]).all()
    assert (muons["features"][:, 2] <= TARGET_LENGTH + 1e-9).all()
    is_pion = np.abs(parent_pdg[parents]) == 211
    np.testing.assert_array_equal(muons["origin"][is_pion], ORIGINS.index("pion"))
    np.testing.assert_array_equal(muons["origin"][~is_pion], ORIGINS.index("kaon"))
    pion_p = np.linalg.norm(momenta[parents][is_pion], axis=1)
    path = (TARGET_LENGTH - depth[parents][is_pion]) * pion_p / momenta[parents][is_pion, 2]
    np.testing.assert_allclose(muons["weight"][is_pion],
                               PION_TO_MUON_BR * decay_probability(pion_p, PION_MASS, PION_CTAU, path), rtol=1e-9)


def test_decay_in_flight_rejects_other_particles():
    with pytest.raises(InvalidInputError, match="PDG ±211, ±321"):
        decay_in_flight([2212, 211], [[0, 0, 50.0], [0, 0, 50.0]], [0.0, 0.0], np.random.default_rng(0))


@pytest.mark.parametrize("options, message", [
    ({"n": 0}, "n must be an integer of at least 1"),
    ({"n": 10, "seed": -3}, "seed must be an integer of at least 0"),
    ({"n": 10, "workers": 0}, "workers must be an integer of at least 1"),
    ({"n": 10, "composition": {"bottom": 1.0}}, "unknown runs"),
    ({"n": 10, "composition": {"charm": 0.0}}, "not all 0"),
])
def test_make_sample_rejects_bad_options(options, message):
    with pytest.raises(InvalidInputError, match=message):
        make_sample(**options)


def test_missing_pythia_explains_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pythia8mc", None)  # makes `import pythia8mc` raise ImportError
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'muon_gan_nb\[source\]'"):
        make_sample(10)


@pytest.fixture(scope="module")
def small_sample():
    return make_sample(400, seed=11, return_info=True)


@needs_pythia
def test_pythia_sample_end_to_end(small_sample):
    sample, info = small_sample
    assert len(sample) == 400
    assert sample.features.dtype == np.float32
    assert set(np.unique(sample.pdg)) == {-13, 13}
    assert (np.linalg.norm(sample.features[:, 3:], axis=1) > MOMENTUM_CUT).all()
    prompt_origin = np.isin(sample.origin, [ORIGINS.index("light_meson"), ORIGINS.index("charm")])
    np.testing.assert_array_equal(sample.prompt, prompt_origin)
    assert sample.prompt.mean() == pytest.approx(0.56, abs=0.005)
    assert sample.column("z").min() >= SHIP_TARGET_FRONT_Z
    assert sample.column("z").max() <= SHIP_TARGET_FRONT_Z + TARGET_LENGTH
    assert (sample.weight > 0).all()
    assert {name: run["muons"] for name, run in info["runs"].items()} == {
        "displaced": 176, "light_meson": 112, "charm": 112}
    assert info["runs"]["charm"]["sigma_inelastic_mb"] == pytest.approx(32.9, abs=1.0)
    assert sum(run["weight_sum"] for run in info["runs"].values()) == pytest.approx(float(sample.weight.sum()),
                                                                                    rel=1e-5)


@needs_pythia
def test_pythia_sample_reproducible(small_sample):
    sample, _ = small_sample
    again = make_sample(400, seed=11)
    np.testing.assert_array_equal(again.features, sample.features)
    np.testing.assert_array_equal(again.weight, sample.weight)
    np.testing.assert_array_equal(again.origin, sample.origin)
    other = make_sample(400, seed=12)
    assert not np.array_equal(other.features, sample.features)


@needs_pythia
def test_pythia_sample_two_workers_local_z():
    sample = make_sample(300, seed=5, workers=2, ship_coordinates=False)
    assert len(sample) == 300
    assert sample.column("z").min() >= 0
    assert sample.column("z").max() <= TARGET_LENGTH
    assert sample.prompt.mean() == pytest.approx(0.56, abs=0.005)


@needs_pythia
def test_pythia_rejected_setting_raises(monkeypatch):
    monkeypatch.setattr(source, "_run_settings", lambda run: ["NoSuchGroup:noSuchSetting = on"])
    with pytest.raises(RuntimeError, match="Pythia rejected the setting 'NoSuchGroup:noSuchSetting = on'"):
        source._start_pythia("displaced", 2212, 1)
