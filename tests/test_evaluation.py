"""Integration tests of the XGBoost real-versus-generated evaluation on SHiP-like muons, with real XGBoost fits."""
import json

import matplotlib.image
import numpy as np
import pytest

from muon_gan_nb import data
from muon_gan_nb.data import FEATURES, MUON_PDG, InvalidInputError, MuonSample
from muon_gan_nb.evaluation import (FidelityReport, bootstrap_auc, evaluate_fidelity, feature_importances,
                                    frechet_distance, importance_fit, kernel_mmd, plot_report)

PZ = FEATURES.index("pz")


def make_muons(n: int, seed: int, pz_scale: float = 25.0, xy_jitter: float = 0.0) -> MuonSample:
    "SHiP-like muons: 56% prompt at x = y = 0 exactly, exponential pz above 10 GeV/c, pT near 1 GeV/c."
    rng = np.random.default_rng(seed)
    prompt = rng.random(n) < 0.559
    x = np.where(prompt, 0.0, rng.laplace(0, 3.0, n)) + rng.normal(0, xy_jitter, n)
    y = np.where(prompt, 0.0, rng.laplace(0, 3.0, n)) + rng.normal(0, xy_jitter, n)
    z = -7084.9 + np.where(prompt, rng.exponential(15.0, n), rng.exponential(60.0, n)).clip(0, 600)
    pz = 10.3 + rng.exponential(pz_scale, n).clip(0, 375)
    transverse_momentum = rng.exponential(0.6 + 0.005 * pz).clip(0, 8)
    phi = rng.uniform(-np.pi, np.pi, n)
    features = np.column_stack([x, y, z, transverse_momentum * np.cos(phi), transverse_momentum * np.sin(phi), pz])
    pdg = np.where(rng.random(n) < 0.498, -MUON_PDG, MUON_PDG)
    return MuonSample(features, pdg, np.ones(n), source=f"test muons, seed {seed}")


def shifted_pz(sample: MuonSample, shift: float) -> MuonSample:
    "The same muons with pz shifted by `shift` GeV/c."
    features = sample.features.copy()
    features[:, PZ] += shift
    return MuonSample(features, sample.pdg, sample.weight, source="shifted")


@pytest.fixture(scope="module")
def real() -> MuonSample:
    return make_muons(20_000, seed=1)


@pytest.fixture(scope="module")
def twin() -> MuonSample:
    return make_muons(20_000, seed=2)


@pytest.fixture(scope="module")
def identical_report(real, twin) -> FidelityReport:
    return evaluate_fidelity(real, twin, reference=make_muons(20_000, seed=3), n=20_000, mmd_blocks=20)


@pytest.fixture(scope="module")
def shifted_report(real) -> FidelityReport:
    return evaluate_fidelity(real, shifted_pz(real, 100.0), n=20_000, mmd_blocks=20)


def test_identical_samples_auc_near_half(identical_report):
    assert abs(identical_report.auc - 0.5) < 0.02
    assert abs(identical_report.floor_auc - 0.5) < 0.02
    assert identical_report.floor_source == "reference sample"
    assert identical_report.n_floor == 20_000


def test_identical_samples_p_value_large(identical_report):
    assert identical_report.accuracy_p_value > 0.001


def test_identical_samples_distances_small(identical_report):
    assert identical_report.frechet < 0.01
    # blocks share one finite sample, so the mean scatters by more than mmd_std / sqrt(blocks)
    assert abs(identical_report.mmd) < identical_report.mmd_std
    assert max(identical_report.ks_statistic.values()) < 0.03


def test_shifted_pz_auc_near_one(shifted_report):
    assert shifted_report.auc > 0.97
    assert shifted_report.accuracy > 0.9
    assert shifted_report.accuracy_p_value < 1e-100


def test_shifted_pz_top_importance(shifted_report):
    importances = shifted_report.feature_importances
    assert max(importances, key=importances.get) == "pz"
    assert importances["pz"] > 0.5
    assert sum(importances.values()) == pytest.approx(1.0)
    assert shifted_report.importance_type == "gain"


def test_shifted_pz_wasserstein_equals_shift(shifted_report):
    # every muon is used on both sides (n = len), so the pz distributions differ by the shift alone
    assert shifted_report.wasserstein["pz"] == pytest.approx(100.0, abs=1e-2)
    assert shifted_report.wasserstein["x"] == pytest.approx(0.0, abs=1e-6)


def test_shifted_pz_distances_larger(identical_report, shifted_report):
    assert shifted_report.mmd > 10 * max(abs(identical_report.mmd), 1e-4)
    assert shifted_report.frechet > 10 * identical_report.frechet
    assert shifted_report.ks_statistic["pz"] > 0.3


def test_floor_from_split_halves(shifted_report):
    assert shifted_report.floor_source == "real sample split in two halves"
    assert shifted_report.n_floor == 10_000
    assert abs(shifted_report.floor_auc - 0.5) < 0.03


def test_bootstrap_interval_contains_auc(identical_report, shifted_report):
    for report in (identical_report, shifted_report):
        low, high = report.auc_interval
        assert low < report.auc < high
        assert report.floor_auc_interval[0] < report.floor_auc < report.floor_auc_interval[1]
        assert high - low < 0.05


def test_bootstrap_auc_mean_matches_sklearn():
    labels = np.r_[np.zeros(2000), np.ones(2000)]
    scores = np.round(np.r_[np.random.default_rng(0).normal(0, 1, 2000),
                            np.random.default_rng(1).normal(1, 1, 2000)], 1)
    from sklearn.metrics import roc_auc_score
    aucs = bootstrap_auc(labels, scores, resamples=400, seed=5)
    assert aucs.shape == (400,)
    assert aucs.mean() == pytest.approx(roc_auc_score(labels, scores), abs=0.003)


def test_missing_prompt_spike_found_in_x_and_y(real):
    # a generator that smears x and y by 0.5 cm puts no muon at x = y = 0: the study's main failure
    generated = make_muons(20_000, seed=4, xy_jitter=0.5)
    report = evaluate_fidelity(real, generated, n=20_000, bootstrap=50, mmd_blocks=5)
    assert report.prompt_fraction_real == pytest.approx(0.559, abs=0.02)
    assert report.prompt_fraction_generated == 0.0
    assert report.feature_importances["x"] + report.feature_importances["y"] > 0.8
    assert report.auc > 0.7


def test_dropping_x_and_y(real):
    generated = make_muons(20_000, seed=4, xy_jitter=0.5)
    report = evaluate_fidelity(real, generated, n=20_000, features=("z", "px", "py", "pz"), bootstrap=50,
                               mmd_blocks=5)
    assert report.features == ("z", "px", "py", "pz")
    assert set(report.feature_importances) == {"z", "px", "py", "pz"}
    assert abs(report.auc - 0.5) < 0.03  # only x and y differ, and the classifier no longer gets them
    assert set(report.wasserstein) == set(FEATURES)


def test_n_larger_than_samples_recorded(real):
    report = evaluate_fidelity(real.sample(3000, seed=1), make_muons(5000, seed=9), n=100_000, bootstrap=20,
                               mmd_blocks=2)
    assert (report.n_real, report.n_generated, report.n_test) == (3000, 3000, 3000)
    assert report.mmd_block_size == 1000


def test_same_seed_same_result(real, twin):
    first = evaluate_fidelity(real, twin, n=5000, bootstrap=20, mmd_blocks=2, seed=7)
    second = evaluate_fidelity(real, twin, n=5000, bootstrap=20, mmd_blocks=2, seed=7)
    assert first.auc == second.auc
    assert first.auc_interval == second.auc_interval
    assert first.feature_importances == second.feature_importances


def test_classifier_options_override(real, twin):
    report = evaluate_fidelity(real, twin, n=5000, bootstrap=0, distances=False, floor=False,
                               n_estimators=10, max_depth=2, n_jobs=1)
    assert report.classifier["n_estimators"] == 10
    assert report.classifier["max_depth"] == 2
    assert report.classifier["nthread"] == 1
    assert report.floor_auc is None
    assert report.auc_interval is None
    assert report.frechet is None


def test_to_dict_written_and_read_back(shifted_report, tmp_path):
    path = tmp_path / "metrics.json"
    with data.atomic_write(path) as temporary:
        temporary.write_text(json.dumps(shifted_report.to_dict(roc_points=21)))
    saved = json.loads(path.read_text())
    assert saved["auc"] == pytest.approx(shifted_report.auc)
    assert saved["feature_importances"] == pytest.approx(shifted_report.feature_importances)
    assert len(saved["roc"]["fpr"]) == 21
    assert saved["roc"]["tpr"][-1] == pytest.approx(1.0)
    assert np.array(saved["correlation_generated"]).shape == (6, 6)
    assert not {"fpr", "tpr", "proba_real", "proba_generated"} & set(saved)
    assert len(json.dumps(saved)) < 10_000


def test_to_dict_constant_feature_gives_null(real):
    # a collapsed generator that always returns the same z has an undefined correlation for z
    features = real.features.copy()
    features[:, 2] = -7000.0
    collapsed = MuonSample(features, real.pdg, real.weight)
    report = evaluate_fidelity(real, collapsed, n=3000, bootstrap=10, mmd_blocks=2)
    saved = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert saved["correlation_generated"][2][0] is None
    assert saved["feature_importances"]["z"] > 0.5


def test_plots_saved_as_png(shifted_report, real, tmp_path):
    figures = plot_report(shifted_report, real, shifted_pz(real, 100.0))
    assert set(figures) == {"roc", "probabilities", "importances", "features", "momentum", "correlations"}
    for name, figure in figures.items():
        path = tmp_path / f"{name}.png"
        figure.savefig(path)
        image = matplotlib.image.imread(path)
        assert image.ndim == 3, name
        assert min(image.shape[:2]) > 100, name


def test_importances_same_on_scaled_features(real):
    # trees split on order, so an affine rescaling to [-1, 1] leaves the importances nearly unchanged
    generated = shifted_pz(make_muons(20_000, seed=5), 5.0).features
    low, high = real.features.min(axis=0), real.features.max(axis=0)
    physical, physical_auc = importance_fit(real.features, generated, n=5000)
    scaled, scaled_auc = importance_fit(2 * (real.features - low) / (high - low) - 1,
                                        2 * (generated - low) / (high - low) - 1, n=5000)
    assert np.argmax(physical) == PZ == np.argmax(scaled)
    assert scaled == pytest.approx(physical, abs=0.03)
    assert scaled_auc == pytest.approx(physical_auc, abs=0.01)
    assert feature_importances(real.features, generated, n=5000) == pytest.approx(physical)


def test_frechet_and_mmd_functions(real, twin):
    assert frechet_distance(real.features, real.features) == pytest.approx(0.0, abs=1e-6)
    same, same_std = kernel_mmd(real.features, twin.features, blocks=10, block_size=500)
    shifted, _ = kernel_mmd(real.features, shifted_pz(twin, 20.0).features, blocks=10, block_size=500)
    assert abs(same) < 3 * same_std
    assert shifted > 0.1


@pytest.mark.parametrize("call, message", [
    (lambda real: evaluate_fidelity(real, real.features), "MuonSample"),
    (lambda real: evaluate_fidelity(real, real.subset(np.arange(10))), "10 muons"),
    (lambda real: evaluate_fidelity(real, real, features=("x", "x")), "distinct"),
    (lambda real: evaluate_fidelity(real, real, features=()), "one or more"),
    (lambda real: evaluate_fidelity(real, real, n=5), "n=5"),
    (lambda real: evaluate_fidelity(real, real, bootstrap=-1), "bootstrap=-1"),
    (lambda real: evaluate_fidelity(real, real, n_estimators=0), "n_estimators=0"),
    (lambda real: feature_importances(real.features, real.features[:, :4]), "columns"),
])
def test_invalid_input_rejected(real, call, message):
    with pytest.raises(InvalidInputError, match=message):
        call(real)


def test_diverged_generator_rejected(real):
    features = real.features.copy()
    features[:7, 0] = np.nan
    features[7, 5] = np.inf
    with pytest.raises(InvalidInputError, match="8 muons with NaN"):
        evaluate_fidelity(real, MuonSample(features, real.pdg, real.weight))


def test_default_sample_held_out_halves_match():
    if not hasattr(data, "load_default_sample"):
        pytest.skip("muon_gan_nb.data.load_default_sample is not available yet")
    try:
        sample = data.load_default_sample()
    except FileNotFoundError as error:
        pytest.skip(f"bundled sample not built yet: {error}")
    first, second = sample.split(heldout_fraction=0.5, seed=0)
    report = evaluate_fidelity(first, second, n=20_000, bootstrap=50, mmd_blocks=5)
    assert abs(report.auc - 0.5) < 0.03
    assert report.prompt_fraction_real == pytest.approx(report.prompt_fraction_generated, abs=0.02)


def test_auc_and_roc_curves_are_sklearns(shifted_report, real):
    # The AUC is the area under the one ROC curve the report stores, equal to roc_auc_score to the last bit.
    # The real-versus-real floor's curve comes from the same function and is stored beside it.
    from sklearn.metrics import roc_auc_score, roc_curve

    labels = np.r_[np.zeros(len(shifted_report.proba_real)), np.ones(len(shifted_report.proba_generated))]
    scores = np.r_[shifted_report.proba_real, shifted_report.proba_generated]
    assert shifted_report.auc == roc_auc_score(labels, scores)
    fpr, tpr, _ = roc_curve(labels, scores)
    np.testing.assert_array_equal(shifted_report.fpr, fpr)
    np.testing.assert_array_equal(shifted_report.tpr, tpr)
    assert shifted_report.floor_fpr is not None and 0.4 < shifted_report.floor_auc < 0.6


def test_importance_fit_rejects_nan_in_used_muons(real):
    # The fit checks the muons it draws: with n at least the sample size it draws them all.
    generated = real.features[:1000].copy()
    generated[:3, 1] = np.nan
    with pytest.raises(InvalidInputError, match="generated_features has 3 muons with NaN"):
        importance_fit(real.features[:1000], generated, n=1000)
    with pytest.raises(InvalidInputError, match="real_features has 3 muons with NaN"):
        importance_fit(generated, real.features[:1000], n=1000)
    weights, auc = importance_fit(real.features[:1000], real.features[1000:2000], n=2)  # two muons of each class
    assert weights.shape == (6,)
