"""Feature transforms on SHiP-like muons: round trips, saving, the KDE snap and the sample-axis filter."""
import json

import numpy as np
import pytest

from muon_gan_nb.data import InvalidInputError, MuonSample
from muon_gan_nb.features import (TRANSFORMS, GaussianFilterAlongSamples, bandwidth_scan, filter_blindness,
                                  filter_diagnostics, gaussian_xy, generated_to_physical, load_transform,
                                  make_transform, prepare_training_features, save_transform, shuffled_xy)


@pytest.fixture(scope="module")
def muons(ship_like_muons) -> MuonSample:
    "40,000 muons of the bundled sample, or synthetic SHiP-like muons where it is missing."
    return ship_like_muons.sample(40_000, seed=1)


@pytest.mark.parametrize("name", ["none", "polar", "sign-sqrt", "widening"])
def test_invertible_round_trip(muons, name):
    transform = make_transform(name).fit(muons.features)
    back = transform.inverse(transform.forward(muons.features))
    assert transform.invertible
    np.testing.assert_allclose(back, muons.features, rtol=1e-5, atol=1e-5)
    assert np.all(back[muons.prompt, :2] == 0)
    assert np.array_equal(back[:, 2:], muons.features[:, 2:])


def test_polar_origin_angle_zero(muons):
    transformed = make_transform("polar").forward(muons.features)
    assert np.all(transformed[muons.prompt, :2] == 0)
    assert np.all(transformed[:, 0] >= 0)
    assert np.all(np.abs(transformed[:, 1]) <= np.pi + 1e-6)
    # Any angle at r = 0 maps back to the origin exactly.
    at_origin = np.array([[0.0, angle, -7000, 0.1, 0.1, 20] for angle in (-3.0, 0.0, 1.0, np.pi)])
    assert np.all(make_transform("polar").inverse(at_origin)[:, :2] == 0)


def test_sign_sqrt_values():
    features = np.array([[-4.0, 0.25, -7000.0, 0.0, 0.0, 20.0], [0.0, 0.0, -7000.0, 1.0, 1.0, 30.0]])
    transformed = make_transform("sign-sqrt").forward(features)
    np.testing.assert_allclose(transformed[:, :2], [[-2.0, 0.5], [0.0, 0.0]])


def test_widening_scale_from_displaced(muons):
    widening = make_transform("widening").fit(muons.features)
    displaced = np.abs(muons.features[~muons.prompt][:, :2]).ravel()
    assert widening.scale == pytest.approx(np.median(displaced[displaced > 0]), rel=1e-6)
    with pytest.raises(InvalidInputError, match="has no scale"):
        make_transform("widening").forward(muons.features)


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_transform_file_round_trip(muons, tmp_path, name):
    transform = make_transform(name).fit(muons.features)
    path = save_transform(transform, tmp_path / "transform.json")
    loaded = load_transform(path)
    assert type(loaded) is type(transform)
    assert loaded.to_dict() == transform.to_dict()
    assert json.loads(path.read_text())["name"] == name
    if name != "kde":  # KDE draws noise from its own stream; the reloaded one starts it again
        np.testing.assert_array_equal(loaded.forward(muons.features), transform.forward(muons.features))


def test_load_transform_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_transform(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        load_transform(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(InvalidInputError, match="Not a saved feature transform"):
        load_transform(tmp_path / "other.json")


def test_kde_smoothing_and_snap(muons):
    kde = make_transform("kde", bandwidth=0.002, snap=3.0, seed=4)
    smoothed = kde.forward(muons.features)
    assert not kde.invertible
    assert np.count_nonzero(smoothed[:, :2] == 0) == 0
    np.testing.assert_allclose(smoothed[muons.prompt, :2].std(axis=0), 0.002, rtol=0.05)
    snapped = kde.inverse(smoothed)
    at_origin = (snapped[:, :2] == 0).all(axis=1)
    assert at_origin[muons.prompt].mean() == pytest.approx(1 - np.exp(-4.5), abs=0.005)
    # Muons away from the axis are left exactly as they were after smoothing.
    assert np.array_equal(snapped[~at_origin], smoothed[~at_origin])
    assert np.all(np.hypot(*smoothed[at_origin, :2].T) < 3.0 * 0.002)


def test_bandwidth_scan_picks_interior(muons):
    scan = bandwidth_scan(muons, bandwidths=np.geomspace(1e-3, 1.0, 7), n=2_000)
    assert scan.bandwidths[0] < scan.best_bandwidth < scan.bandwidths[-1]
    assert scan.log_likelihood[np.argmax(scan.log_likelihood)] == scan.log_likelihood.max()
    assert scan.displaced_only
    assert json.loads(json.dumps(scan.to_dict()))["best_bandwidth"] == scan.best_bandwidth


def test_gaussian_filter_matches_scipy(muons):
    from scipy.ndimage import gaussian_filter1d
    filtered = GaussianFilterAlongSamples(4.0).forward(muons.features)
    expected = gaussian_filter1d(muons.features[:, 0].astype(np.float64), 4.0)
    np.testing.assert_allclose(filtered[:, 0], expected, rtol=1e-6, atol=1e-7)
    assert np.array_equal(filtered[:, 2:], muons.features[:, 2:])


def test_filter_diagnostics_spike_and_correlation(muons):
    diagnostics = filter_diagnostics(muons, sigma=4.0)
    assert diagnostics["prompt_fraction_before"] == pytest.approx(muons.prompt.mean())
    assert diagnostics["prompt_fraction_after"] == 0.0
    assert diagnostics["own_correlation_x"] == pytest.approx(diagnostics["expected_own_correlation"], abs=0.03)
    assert diagnostics["own_correlation_y"] == pytest.approx(diagnostics["expected_own_correlation"], abs=0.03)


def test_filter_blindness_gaussian_impostor(muons):
    real, other = muons.subset(np.arange(20_000)), muons.subset(np.arange(20_000, 40_000))
    result = filter_blindness(real, gaussian_xy(other, seed=2), n=10_000)
    assert result["auc_physical"] > 0.9
    assert result["auc_filtered"] < result["auc_physical"] - 0.15
    shuffled = filter_blindness(real, shuffled_xy(other, seed=2), n=10_000)
    assert shuffled["auc_filtered"] < shuffled["auc_physical"]


def test_training_features_round_trip(muons):
    transform = make_transform("sign-sqrt")
    scaled, scaler = prepare_training_features(transform, muons)
    assert scaled.min() >= -1 - 1e-6
    assert scaled.max() <= 1 + 1e-6
    back = generated_to_physical(transform, scaler, scaled)
    np.testing.assert_allclose(back, muons.features, rtol=1e-4, atol=1e-3)


def test_bad_inputs():
    with pytest.raises(InvalidInputError, match="Unknown feature transform"):
        make_transform("fourier")
    with pytest.raises(InvalidInputError, match="shape"):
        make_transform("polar").forward(np.zeros((4, 3)))
    with pytest.raises(InvalidInputError, match="bandwidth"):
        make_transform("kde", bandwidth=-1.0)
    with pytest.raises(InvalidInputError, match="sigma"):
        make_transform("gaussian-filter", sigma=0)
