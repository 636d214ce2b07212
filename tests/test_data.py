"""Loading, validating and writing muon files: the shared input cases, streamed SPLIT files, round trips."""
import logging
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import uproot

from muon_gan_nb import data
from muon_gan_nb.data import (FAIRSHIP_BRANCHES, FAIRSHIP_TREE, SUPPORTED_SUFFIXES, InvalidInputError, MuonSample,
                              iter_muon_chunks, load_default_sample, load_muons)
from muon_gan_nb.writers import MuonWriter, write_muons


def _ship_rows(count: int, seed: int = 0, first_id: int = 0) -> np.ndarray:
    "SHiP-layout float32 rows; the weight column holds a running id so rows can be traced back."
    rng = np.random.default_rng(seed)
    displaced = rng.random(count) < 0.44
    return np.column_stack([
        np.arange(first_id, first_id + count), rng.choice([13, -13], count),
        np.where(displaced, rng.normal(0, 5, count), 0), np.where(displaced, rng.normal(0, 5, count), 0),
        rng.uniform(-7084.9, -6460.8, count), rng.normal(0, 1, count), rng.normal(0, 1, count),
        rng.uniform(10.3, 386.0, count)]).astype(np.float32)


def _sample(count: int = 200, seed: int = 1) -> MuonSample:
    rows = _ship_rows(count, seed)
    origin = np.random.default_rng(seed).integers(0, len(data.ORIGINS), count)
    return MuonSample(rows[:, 2:], rows[:, 1], rows[:, 0] + 0.5, origin, "test")


# --- the shared input cases -------------------------------------------------------------------------

REJECTED = {
    "nan_values.npy": ["nan_values.npy", "4 non-finite values", "px", "pz"],
    "inf_values.npy": ["inf_values.npy", "non-finite values", "x (1)", "pz (1)"],
    "wrong_columns.npy": ["wrong_columns.npy", "5 columns", "expected 8 columns", "weight, pdg, x, y, z, px, py, pz"],
    "empty.npy": ["empty.npy", "no muons"],
    "one_dimensional.npy": ["one_dimensional.npy", "1-D array", "2-D array of shape (N, 8)"],
    "object_array.npy": ["object_array.npy", "Python objects", "unpickling"],
    "truncated.npy": ["truncated.npy", "truncated or corrupt"],
    "not_numpy.npy": ["not_numpy.npy", "not a NumPy .npy file"],
    "string_dtype.npy": ["string_dtype.npy", "strings", "expected numbers"],
    "bad_pdg.npy": ["bad_pdg.npy", "PDG id", "211", "(0)", "drop_invalid=True"],
    "zero_momentum.npy": ["zero_momentum.npy", "zero momentum", "row "],
    "fairship_missing_branch.root": ["fairship_missing_branch.root", "lacks the branches pz"],
    "wrong_tree_name.root": ["wrong_tree_name.root", "'pythia8-Geant4'", "found: events"],
    "empty_file.root": ["empty_file.root", "not a ROOT file"],
    "csv_missing_column.csv": ["csv_missing_column.csv", "lacks the columns pz"],
    "csv_non_numeric.csv": ["csv_non_numeric.csv", "column pz", "'fast'", "row 4", "line 6"],
}


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_case_rejected(cases_dir, name):
    with pytest.raises(InvalidInputError) as raised:
        load_muons(cases_dir / name)
    message = str(raised.value)
    for fragment in REJECTED[name]:
        assert fragment in message, f"{fragment!r} missing from: {message}"


def test_valid_small_loads(cases_dir):
    sample = load_muons(cases_dir / "valid_small.npy")
    raw = np.load(cases_dir / "valid_small.npy")
    assert len(sample) == 1000
    assert sample.features.dtype == np.float32
    np.testing.assert_array_equal(sample.to_ship_array(), raw)
    prompt = (raw[:, 2] == 0) & (raw[:, 3] == 0)
    assert prompt.any()
    assert (~prompt).any()
    np.testing.assert_array_equal(sample.prompt, prompt)


def test_fairship_buffer_dropped(cases_dir):
    sample = load_muons(cases_dir / "fairship_with_buffer.root")
    expected = np.load(cases_dir / "fairship_with_buffer_expected.npy")
    assert len(sample) == 400
    # metres to centimetres costs at most one float32 rounding step
    np.testing.assert_allclose(sample.to_ship_array(), expected, rtol=2.5e-7, atol=0)
    assert np.abs(sample.column("z")).min() > 6000  # positions in cm, not m


def test_constant_feature_loads(cases_dir):
    sample = load_muons(cases_dir / "constant_feature.npy")
    assert len(sample) == 300
    assert np.ptp(sample.column("z")) == 0


@pytest.mark.parametrize("name, dropped", [("bad_pdg.npy", 2), ("zero_momentum.npy", 1)])
def test_drop_invalid_counts(cases_dir, caplog, name, dropped):
    with caplog.at_level(logging.WARNING, logger="muon_gan_nb.data"):
        sample = load_muons(cases_dir / name, drop_invalid=True)
    assert len(sample) == 100 - dropped
    assert set(np.unique(sample.pdg)) <= {13, -13}
    assert np.all(np.any(sample.features[:, 3:] != 0, axis=1))
    assert f"dropped {dropped} of 100 rows" in caplog.text


def test_object_array_not_unpickled(cases_dir, monkeypatch):
    def _fail_on_unpickle(*args, **kwargs):
        raise AssertionError("the loader tried to unpickle a file")

    monkeypatch.setattr("pickle.load", _fail_on_unpickle)
    monkeypatch.setattr("pickle.loads", _fail_on_unpickle)
    with pytest.raises(InvalidInputError, match="Python objects"):
        load_muons(cases_dir / "object_array.npy")


def test_missing_file_and_extension(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.npy"):
        load_muons(tmp_path / "absent.npy")
    with pytest.raises(FileNotFoundError, match="SPLIT_"):
        load_muons(tmp_path / "SPLIT_*.npy")
    (tmp_path / "muons.txt").write_text("1,2,3\n")
    with pytest.raises(InvalidInputError, match=r"'\.txt'"):
        load_muons(tmp_path / "muons.txt")
    with pytest.raises(InvalidInputError, match="is a folder"):
        load_muons(tmp_path)


# --- many SPLIT files, streamed ---------------------------------------------------------------------

@pytest.fixture
def split_files(tmp_path) -> tuple[Path, np.ndarray]:
    "Five SPLIT files of 40,000 rows each (6.4 MB in all); the weight column numbers the rows 0..199,999."
    rows = [_ship_rows(40_000, seed=index, first_id=index * 40_000) for index in range(5)]
    for index, block in enumerate(rows):
        np.save(tmp_path / f"SPLIT_{index}.npy", block)
    return tmp_path, np.concatenate(rows)


def test_split_subsample_uniform(split_files):
    folder, rows = split_files
    sample = load_muons(folder / "SPLIT_*.npy", n=5_000, seed=4)
    ids = sample.weight.astype(np.int64)
    assert len(sample) == 5_000
    assert len(np.unique(ids)) == 5_000
    np.testing.assert_array_equal(sample.to_ship_array(), rows[ids])
    per_file = np.bincount(ids // 40_000, minlength=5)
    assert np.all(np.abs(per_file - 1_000) < 150), per_file  # hypergeometric sd is about 28


def test_split_subsample_seeded(split_files):
    folder, _ = split_files
    first = load_muons(folder / "SPLIT_*.npy", n=500, seed=1)
    again = load_muons(folder / "SPLIT_*.npy", n=500, seed=1)
    other = load_muons(folder / "SPLIT_*.npy", n=500, seed=2)
    np.testing.assert_array_equal(first.weight, again.weight)
    assert not np.array_equal(first.weight, other.weight)


def test_split_subsample_memory_mapped(split_files):
    folder, _ = split_files
    tracemalloc.start()
    try:
        load_muons(folder / "SPLIT_*.npy", n=1_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # reading the files whole would allocate 6.4 MB; the chosen rows need 1,000 x 8 x 8 bytes
    assert peak < 1_500_000, peak


def test_split_all_rows(split_files):
    folder, rows = split_files
    sample = load_muons(folder / "SPLIT_*.npy")
    np.testing.assert_array_equal(sample.to_ship_array(), rows)


def test_iter_chunks_covers_files(split_files):
    folder, rows = split_files
    chunks = list(iter_muon_chunks(folder / "SPLIT_*.npy", chunk_size=15_000))
    assert max(len(chunk) for chunk in chunks) == 15_000
    assert len(chunks) == 5 * 3  # 40,000 rows per file make chunks of 15,000, 15,000 and 10,000
    np.testing.assert_array_equal(MuonSample.concatenate(chunks).to_ship_array(), rows)


def test_split_bad_file_named(split_files):
    folder, _ = split_files
    broken = _ship_rows(10, first_id=10**6)
    broken[3, 7] = np.nan
    np.save(folder / "SPLIT_9.npy", broken)
    with pytest.raises(InvalidInputError, match=r"SPLIT_9\.npy: 1 non-finite value .* pz \(1\), the first in row 3"):
        load_muons(folder / "SPLIT_*.npy")


# --- writing ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", SUPPORTED_SUFFIXES)
def test_round_trip(tmp_path, suffix):
    sample = _sample()
    back = load_muons(write_muons(sample, tmp_path / f"muons{suffix}"))
    if suffix == ".root":
        np.testing.assert_allclose(back.features, sample.features, rtol=2.5e-7, atol=1e-6)
    else:
        np.testing.assert_array_equal(back.features, sample.features)
    np.testing.assert_array_equal(back.pdg, sample.pdg)
    np.testing.assert_array_equal(back.weight, sample.weight)
    if suffix in (".npz", ".parquet", ".csv"):
        np.testing.assert_array_equal(back.origin, sample.origin)
    else:
        assert back.origin is None


def test_root_is_fairship_tree(tmp_path):
    sample = _sample(30)
    write_muons(sample, tmp_path / "muons.root", buffer_entry=True)
    with uproot.open(tmp_path / "muons.root") as file:
        assert file.classnames() == {f"{FAIRSHIP_TREE};1": "TTree"}
        tree = file[FAIRSHIP_TREE]
        assert tree.keys() == list(FAIRSHIP_BRANCHES)
        assert {tree[name].typename for name in FAIRSHIP_BRANCHES} == {"float"}
        branches = tree.arrays(library="np")
    assert len(branches["id"]) == 31
    assert all(branches[name][-1] == 0 for name in FAIRSHIP_BRANCHES)
    np.testing.assert_allclose(branches["z"][:-1], sample.column("z") / 100, rtol=2.5e-7)
    np.testing.assert_array_equal(branches["pythiaid"][:-1], sample.pdg)
    assert len(load_muons(tmp_path / "muons.root")) == 30


@pytest.mark.parametrize("suffix", [".npy", ".root", ".parquet", ".csv"])
def test_chunked_writer(tmp_path, suffix):
    sample = _sample(1_000)
    path = tmp_path / f"chunks{suffix}"
    with MuonWriter(path) as writer:
        for start in range(0, 1_000, 300):
            writer.write(sample.subset(slice(start, start + 300)))
        assert not path.exists()
    assert writer.rows_written == 1_000
    back = load_muons(path)
    np.testing.assert_allclose(back.features, sample.features, rtol=2.5e-7, atol=1e-6)
    np.testing.assert_array_equal(back.pdg, sample.pdg)


def test_npy_writer_header_is_numpy(tmp_path):
    sample = _sample(77)
    with MuonWriter(tmp_path / "muons.npy") as writer:
        writer.write(sample)
    array = np.load(tmp_path / "muons.npy", allow_pickle=False)
    assert array.shape == (77, 8)
    assert array.dtype == np.float32
    np.testing.assert_array_equal(array, sample.to_ship_array())


@pytest.mark.parametrize("suffix", [".npy", ".root", ".parquet", ".csv"])
def test_crash_keeps_previous_file(tmp_path, suffix):
    path = tmp_path / f"muons{suffix}"
    write_muons(_sample(50), path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="simulated crash"):
        with MuonWriter(path) as writer:
            writer.write(_sample(500, seed=9))
            raise RuntimeError("simulated crash")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_crash_leaves_no_file(tmp_path):
    path = tmp_path / "new.parquet"
    with pytest.raises(RuntimeError):
        with MuonWriter(path) as writer:
            writer.write(_sample(20))
            raise RuntimeError("simulated crash")
    assert list(tmp_path.iterdir()) == []


def test_unknown_output_extension(tmp_path):
    with pytest.raises(InvalidInputError, match=r"'\.h5'"):
        write_muons(_sample(5), tmp_path / "muons.h5")
    assert list(tmp_path.iterdir()) == []


# --- the bundled sample ----------------------------------------------------------------------------

def test_default_sample_loads(tmp_path, monkeypatch):
    sample = _sample(300)
    write_muons(sample, tmp_path / data.DEFAULT_SAMPLE)
    (tmp_path / data.DEFAULT_SAMPLE).with_suffix(".json").write_text('{"seed": 7, "n": 300}')
    monkeypatch.setattr(data, "_default_sample_path", lambda: tmp_path / data.DEFAULT_SAMPLE)
    loaded = load_default_sample()
    np.testing.assert_array_equal(loaded.features, sample.features)
    np.testing.assert_array_equal(loaded.origin, sample.origin)
    assert data.default_sample_settings() == {"seed": 7, "n": 300}


def test_default_sample_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_default_sample_path", lambda: tmp_path / data.DEFAULT_SAMPLE)
    with pytest.raises(FileNotFoundError, match="bundled muon sample is missing"):
        load_default_sample()


def test_bundled_sample_when_present():
    path = data._default_sample_path()
    if not path.exists():
        pytest.skip(f"the bundled sample is not generated yet at {path}")
    sample = load_default_sample()
    assert len(sample) >= 200_000
    assert sample.origin is not None
    assert set(np.unique(sample.pdg)) == {13, -13}
