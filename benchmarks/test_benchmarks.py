"""Checks of the benchmark scripts' logic on tiny sizes; no test here asserts a time."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import bench_generation  # noqa: E402
import bench_training  # noqa: E402
import run_all  # noqa: E402
from reference_loop import ReferenceTrainer, full_size_fit  # noqa: E402


@pytest.fixture(scope="module")
def data():
    return bench_training.prepare_data(copies=1)


def test_flops_default_generator():
    from muon_gan_nb.models import build_generator
    flops = bench_generation.generator_flops_per_muon(build_generator())
    assert flops["matmul"] == 2 * (100 * 250 + 250 * 250 + 250 * 50 + 50 * 6)
    biases, tanh = 250 + 250 + 50 + 6, 6
    batch_normalization, leaky_relu = 2 * (250 + 250 + 50), 250 + 250 + 50
    assert flops["elementwise"] == biases + tanh + batch_normalization + leaky_relu
    assert flops["total"] == flops["matmul"] + flops["elementwise"]


@pytest.mark.parametrize("model", ["vanilla", "wgan-gp", "guided"])
def test_reference_step_trains(model, data):
    trainer = ReferenceTrainer(model, data["train_scaled"], data["heldout_physical"], data["scaler"],
                               eval_size=400)
    before = [weight.copy() for weight in trainer.generator.get_weights()]
    trainer.train(4, eval_every=2, refresh_every=2)
    after = trainer.generator.get_weights()
    assert any(not np.array_equal(old, new) for old, new in zip(before, after))
    assert [entry["iteration"] for entry in trainer.evaluations] == [2, 4]
    assert all(0.0 <= entry["auc"] <= 1.0 for entry in trainer.evaluations)
    if model == "guided":
        assert [entry["iteration"] for entry in trainer.refreshes] == [2, 4]
        assert not np.allclose(trainer.noise_scale.numpy(), 1.0)
    else:
        assert trainer.refreshes == []


def test_full_size_fit_separates_shifted_muons(data):
    real = data["heldout_physical"][:2000]
    auc_same, importances = full_size_fit(real, data["heldout_physical"][2000:4000], seed=0)
    shifted = data["heldout_physical"][2000:4000].copy()
    shifted[:, 5] += 3 * real[:, 5].std()  # pz moved by three standard deviations
    auc_shifted, shifted_importances = full_size_fit(real, shifted, seed=0)
    assert auc_same < 0.6
    assert auc_shifted > 0.9
    assert np.isclose(importances.sum(), 1.0)
    assert np.argmax(shifted_importances) == 5  # pz, the shifted feature


def test_markdown_flags_high_load():
    machine = {"cpu": "test CPU", "cores": 2, "gpus": [], "platform": "linux", "versions": {"numpy": "2"},
               "load_average": [3.5, 1.0, 1.0]}
    report = {"command": "python benchmarks/run_all.py", "date": "2026-01-01T00:00:00+00:00", "machine": machine,
              "sizes": "standard",
              "results": {"evaluation": {"command": "python benchmarks/bench_evaluation.py", "machine": machine,
                                         "date": "2026-01-01T00:01:00+00:00", "load_average_end": [2.5, 1.0, 1.0],
                                         "table": "| a |\n|---|\n| 1 |"}}}
    page = run_all.markdown(report)
    assert "test CPU, 2 usable core(s)" in page
    assert "**Load.**" in page
    assert "| a |" in page
    assert "load average 3.50 at the start and 2.50 at the end" in page
    quiet = {**machine, "load_average": [0.2, 0.1, 0.1]}
    report["machine"] = report["results"]["evaluation"]["machine"] = quiet
    assert "**Load.**" not in run_all.markdown(report)


def test_wait_for_settled_load(monkeypatch):
    loads = iter([3.0, 2.0, 0.5])
    monkeypatch.setattr(run_all.os, "getloadavg", lambda: (next(loads), 1.0, 1.0))
    monkeypatch.setattr(run_all.time, "sleep", lambda seconds: None)
    assert run_all.wait_for_settled_load(limit=60, poll=5) == 10
    monkeypatch.setattr(run_all.os, "getloadavg", lambda: (3.0, 1.0, 1.0))
    assert run_all.wait_for_settled_load(limit=12, poll=5) == 15  # gives up once the limit is passed


def test_markdown_table_layout():
    table = _common.markdown_table(["a", "b"], [[1, 2]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | 2 |"]


def test_measure_gives_each_side_its_thread_pools():
    # Each side runs in its own process: ours with the library's pools, the reference with TensorFlow's.
    ours = bench_training.measure("ours_bare", "library", model="vanilla", iterations=50, repeats=2)
    reference = bench_training.measure("reference_bare", "tensorflow", model="vanilla", iterations=10, repeats=1)
    assert (ours["intra_op_threads"], ours["inter_op_threads"]) == (1, _common.usable_cores())
    assert (reference["intra_op_threads"], reference["inter_op_threads"]) == (0, 0)
    assert ours["iterations"] == 50
    assert len(ours["runs_seconds"]) == 2
    assert ours["seconds"] == np.median(ours["runs_seconds"])
    with pytest.raises(ValueError, match="threads must be"):
        bench_training.thread_environment("two")
