"""MuonScaler on the team's input cases and through real JSON files."""
import json

import numpy as np
import pytest

from muon_gan_nb.data import FEATURES, InvalidInputError, MuonSample
from muon_gan_nb.preprocessing import MuonScaler


def _case_features(cases_dir, name: str) -> np.ndarray:
    "The six feature columns of a SHiP-layout case file (weight, PDG id, x, y, z, px, py, pz)."
    return np.load(cases_dir / name, allow_pickle=False)[:, 2:].astype(np.float32)


def _float32_step(scaler: MuonScaler) -> np.ndarray:
    "One float32 step at the largest magnitude of each feature's fitted range."
    largest = np.maximum(np.abs(scaler.data_min), np.abs(scaler.data_max)).astype(np.float32)
    return np.spacing(largest)


@pytest.mark.parametrize("symmetric", [False, True])
def test_round_trip_on_valid_case(cases_dir, symmetric):
    features = _case_features(cases_dir, "valid_small.npy")
    scaler = MuonScaler(symmetric=symmetric).fit(features)
    scaled = scaler.transform(features)
    assert scaled.dtype == np.float32
    assert scaled.min() >= -1 - 1e-6
    assert scaled.max() <= 1 + 1e-6
    restored = scaler.inverse_transform(scaled)
    assert np.all(np.abs(restored - features) <= _float32_step(scaler))


def test_symmetric_ranges_on_valid_case(cases_dir):
    features = _case_features(cases_dir, "valid_small.npy")
    scaler = MuonScaler(symmetric=True).fit(features)
    for first, second in (("x", "y"), ("px", "py")):
        i, j = FEATURES.index(first), FEATURES.index(second)
        half_width = np.abs(features[:, [i, j]]).max()
        assert scaler.data_max[i] == scaler.data_max[j] == half_width
        assert scaler.data_min[i] == scaler.data_min[j] == -half_width


def test_constant_feature_case_rejected(cases_dir):
    features = _case_features(cases_dir, "constant_feature.npy")
    with pytest.raises(InvalidInputError, match=r"Feature 'z' has the same value -?\d"):
        MuonScaler().fit(features)


def test_heldout_muons_beyond_training_range_invert(cases_dir):
    "Fitted on the training split only; held-out muons outside its range still map back exactly."
    features = _case_features(cases_dir, "valid_small.npy")
    sample = MuonSample(features, pdg=np.full(len(features), 13), weight=np.ones(len(features)))
    train, heldout = sample.split(heldout_fraction=0.5, seed=1)
    scaler = MuonScaler().fit(train)
    scaled = scaler.transform(heldout)
    assert (np.abs(scaled) > 1).any()  # with half the muons held out, some fall outside the training range
    assert np.all(np.abs(scaler.inverse_transform(scaled) - heldout.features) <= _float32_step(scaler))


def test_saved_file_is_plain_json_and_reloads_exactly(cases_dir, tmp_path):
    features = _case_features(cases_dir, "valid_small.npy")
    scaler = MuonScaler(symmetric=True).fit(features)
    path = scaler.save(tmp_path / "run" / "scaler.json")
    state = json.loads(path.read_text())
    assert state["features"] == list(FEATURES)
    assert state["symmetric"] is True
    assert [entry.name for entry in path.parent.iterdir()] == ["scaler.json"]
    loaded = MuonScaler.load(path)
    np.testing.assert_array_equal(loaded.transform(features), scaler.transform(features))
    np.testing.assert_array_equal(loaded.data_max, scaler.data_max)


def test_failed_save_keeps_previous_file(cases_dir, tmp_path):
    path = MuonScaler().fit(_case_features(cases_dir, "valid_small.npy")).save(tmp_path / "scaler.json")
    before = path.read_text()
    with pytest.raises(ValueError, match="needs a fitted scaler"):
        MuonScaler().save(path)
    assert path.read_text() == before


def test_zero_range_file_rejected(cases_dir, tmp_path):
    path = MuonScaler().fit(_case_features(cases_dir, "valid_small.npy")).save(tmp_path / "scaler.json")
    state = json.loads(path.read_text())
    state["data_max"][2] = state["data_min"][2]
    path.write_text(json.dumps(state))
    with pytest.raises(InvalidInputError, match=r"scaler\.json: Feature 'z'"):
        MuonScaler.load(path)
