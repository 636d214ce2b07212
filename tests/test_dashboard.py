"""Integration tests of the dashboards: real short trainings with training.train and model.fit, real XGBoost,
run folders written and read back, the stop button clicked from another thread, and a console process."""
import json
import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from muon_gan_nb.batches import sample_batches
from muon_gan_nb.checkpoints import list_checkpoints
from muon_gan_nb.dashboard import TrainingMonitor
from muon_gan_nb.explorer import SampleExplorer
from muon_gan_nb.data import FEATURES, MUON_PDG, MuonSample
from muon_gan_nb.models import make_gan
from muon_gan_nb.preprocessing import MuonScaler
from muon_gan_nb.training import load_run, train

REPO = Path(__file__).resolve().parents[1]
SMALL_NETWORKS = {"noise_dim": 8, "generator_hidden": (32, 32), "discriminator_hidden": (32, 32)}


def ship_like_muons(n: int, seed: int = 0) -> MuonSample:
    "SHiP-like muons: prompt ones at x = y = 0 exactly, displaced ones spread, exponential pz above 10 GeV/c."
    rng = np.random.default_rng(seed)
    prompt = rng.random(n) < 0.559
    x = np.where(prompt, 0.0, rng.laplace(0, 3.0, n).clip(-46.5, 46.5))
    y = np.where(prompt, 0.0, rng.laplace(0, 3.0, n).clip(-46.5, 46.5))
    z = -7084.9 + np.where(prompt, rng.exponential(15.0, n), rng.exponential(60.0, n)).clip(0, 600)
    pz = 10.3 + rng.exponential(25.0, n).clip(0, 375)
    transverse = rng.exponential(0.6 + 0.005 * pz).clip(0, 8)
    phi = rng.uniform(-np.pi, np.pi, n)
    features = np.column_stack([x, y, z, transverse * np.cos(phi), transverse * np.sin(phi), pz])
    return MuonSample(features, np.where(rng.random(n) < 0.498, -MUON_PDG, MUON_PDG), np.ones(n))


@pytest.fixture(scope="module")
def muons() -> MuonSample:
    return ship_like_muons(8_000)


def assert_histograms_match(monitor: TrainingMonitor, model, scaler: MuonScaler):
    "The monitor's generated counts equal NumPy histograms of the muons the model makes with the monitor's seed."
    assert_histograms_of(monitor, scaler.inverse_transform(model.generate_scaled(monitor.sample_size,
                                                                                 seed=monitor.seed)))


def assert_histograms_of(monitor: TrainingMonitor, generated: np.ndarray):
    "The monitor's generated counts equal NumPy histograms of `generated` (muons in cm and GeV/c)."
    for column, name in enumerate(FEATURES):
        expected, _ = np.histogram(generated[:, column], monitor.histograms[name]["edges"])
        np.testing.assert_array_equal(monitor.histograms[name]["generated"], expected, err_msg=name)
        assert monitor.histograms[name]["generated_total"] == monitor.sample_size


@pytest.mark.parametrize("model", ["vanilla", "wgan-gp", "guided"])
def test_monitor_follows_train(tmp_path, muons, model):
    out = tmp_path / model
    monitor = TrainingMonitor(muons, every=20, sample_size=1_500, evaluation_size=400, run_folder=out,
                              max_overhead=None, interactive=True)
    run = train(model, data=muons, out=out, iterations=40, batch_size=64, eval_every=20, eval_size=400,
                checkpoint_every=20, steps_per_execution=10, progress=False,
                evaluation_options={"bootstrap": 0}, callbacks=[monitor], **SMALL_NETWORKS)
    assert monitor.iteration == 40
    assert [check["iteration"] for check in monitor.checks] == [20, 40]
    assert len(monitor.losses["discriminator_loss"]) == 4  # one entry per fused group of 10 steps
    assert all(np.isfinite(monitor.losses["generator_loss"]))
    assert [entry["iteration"] for entry in monitor.run_evaluations] == [20, 40]
    heldout_aucs = [entry["auc"] for entry in run.metrics["evaluations"]]
    assert [entry["auc"] for entry in monitor.run_evaluations] == pytest.approx(heldout_aucs)
    assert monitor._counter.value == "updates: 2"
    assert monitor.status == "training ended at iteration 40"
    assert 0.5 <= monitor.report.auc <= 1.0
    assert monitor.floor_auc is not None
    # the monitor read scaler.json from the run folder, so its histograms match the saved run
    saved = load_run(out)
    assert_histograms_match(monitor, saved.model, saved.scaler)


@pytest.mark.parametrize("model, transform, folder_given", [("prompt", None, False), ("vanilla", "polar", False),
                                                          ("wgan-gp", "polar", True)])
def test_monitor_muons_match_run(tmp_path, muons, model, transform, folder_given):
    "Prompt-aware GANs and feature transforms: the monitor's muons are the run's, with or without run_folder."
    out = tmp_path / model
    # 12,000 muons span two of the run's 10,000-row noise blocks.
    monitor = TrainingMonitor(muons, every=20, sample_size=12_000, evaluation_size=300, max_overhead=None,
                              run_folder=out if folder_given else None, interactive=False)
    run = train(model, data=muons, out=out, iterations=40, batch_size=64, eval_every=20, eval_size=300,
                checkpoint_every=20, steps_per_execution=10, progress=False, transform=transform,
                evaluation_options={"bootstrap": 0}, callbacks=[monitor], **SMALL_NETWORKS)
    assert [check["iteration"] for check in monitor.checks] == [20, 40]
    assert 0.5 <= monitor.report.auc <= 1.0

    # Independently of the shared conversion: the scaler's inverse, then the transform's or the labels' meaning.
    # The run's noise stream: blocks of 10,000 rows, block k drawn with the seed pair (seed, k).
    rows = run.model.stream_rows(monitor.seed, [(0, 10_000), (1, 2_000)])
    if transform is None:
        expected = run.model.rows_to_sample(rows, run.scaler)
        np.testing.assert_array_equal(monitor.generated.pdg, expected.pdg)  # charges from the charge label
        prompt_labels = int((rows[:, len(FEATURES)] > 0).sum())
        assert prompt_labels > 0
        assert monitor.generated.prompt.sum() == prompt_labels  # prompt muons at x = y = 0 exactly
        expected = expected.features
    else:
        assert run.transform is not None
        expected = run.transform.inverse(run.scaler.inverse_transform(rows)).astype(np.float32)
    np.testing.assert_array_equal(monitor.generated.features, expected)
    assert_histograms_of(monitor, expected)
    # and they are the muons the finished run generates with the same seed, charges included
    generated = run.generate(monitor.sample_size, seed=monitor.seed)
    np.testing.assert_array_equal(monitor.generated.features, generated.features)
    np.testing.assert_array_equal(monitor.generated.pdg, generated.pdg)


def test_refresh_after_train_updates_check(tmp_path, muons):
    out = tmp_path / "refreshed"
    monitor = TrainingMonitor(muons, every=20, sample_size=1_000, evaluation_size=300, run_folder=out,
                              max_overhead=None, interactive=True)
    run = train("vanilla", data=muons, out=out, iterations=40, batch_size=64, eval_every=20, eval_size=300,
                checkpoint_every=20, steps_per_execution=10, progress=False, evaluation_options={"bootstrap": 0},
                callbacks=[monitor], **SMALL_NETWORKS)
    assert [check["iteration"] for check in monitor.checks] == [20, 40]
    last_auc = monitor.checks[-1]["auc"]
    assert monitor.refresh() is True
    # ipywidgets logs (or, under IPython, prints) an exception raised by a click handler instead of raising it,
    # so the asserts below are what catch a failed refresh.
    monitor.controls["refresh"].click()
    assert [check["iteration"] for check in monitor.checks] == [20, 40]
    assert monitor.refresh_count == 4
    assert monitor._counter.value == "updates: 4"
    # the same model and seed give the same muons, so the updated check has the same AUC
    assert monitor.checks[-1]["auc"] == pytest.approx(last_auc)
    assert [row["checks"] for row in monitor.convergence_state()] == [2, 2]
    assert monitor.summary().startswith("iteration 40,")
    assert_histograms_match(monitor, run.model, run.scaler)


def test_stop_button_stops_train_and_keeps_checkpoint(tmp_path, muons):
    out = tmp_path / "stopped"
    monitor = TrainingMonitor(muons, every=25, sample_size=1_000, evaluation_size=300, run_folder=out,
                              max_overhead=None, interactive=True)
    target = 200_000
    future = monitor.train_in_background(
        train, "vanilla", data=muons, out=out, iterations=target, batch_size=64, eval_every=10_000,
        eval_size=400, checkpoint_every=10_000, steps_per_execution=25, progress=False,
        evaluation_options={"bootstrap": 0}, callbacks=[monitor], **SMALL_NETWORKS)
    deadline = time.monotonic() + 300
    while monitor.refresh_count < 1 and not future.done() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert monitor.refresh_count >= 1, "the monitor never refreshed"
    monitor.controls["stop"].click()
    run = future.result(timeout=300)

    assert monitor.stopped_by_monitor
    assert monitor.iteration < target
    assert monitor.status == f"training stopped by the monitor at iteration {monitor.iteration}"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "stopped"
    assert metrics["iterations_trained"] == monitor.iteration
    checkpoints = list_checkpoints(out / "checkpoints")
    assert checkpoints[-1].name == f"iteration-{monitor.iteration:09d}"
    assert (out / "model.keras").is_file()
    reloaded = load_run(out)
    assert len(reloaded.generate(100)) == 100
    assert_histograms_match(monitor, run.model, run.scaler)


def test_monitor_controls_with_model_fit(muons):
    scaler = MuonScaler().fit(muons.features)
    gan = make_gan("vanilla", seed=3, **SMALL_NETWORKS)
    gan.compile()
    monitor = TrainingMonitor(muons, every=30, sample_size=1_000, evaluation_size=300, scaler=scaler,
                              features=("x", "y"), log_scale=False, max_overhead=None, interactive=True)
    assert monitor.controls["features"].value == ("x", "y")
    monitor.controls["every"].value = 15
    assert monitor.every == 15
    gan.fit(sample_batches(scaler.transform(muons.features), rows=100), epochs=2, steps_per_epoch=15,
            callbacks=[monitor], verbose=0)
    assert monitor.iteration == 30  # epochs continue the iteration count
    assert [check["iteration"] for check in monitor.checks] == [15, 30]
    assert_histograms_match(monitor, gan, scaler)

    image = monitor._images["histograms"].value
    monitor.controls["log_scale"].value = True
    assert monitor.log_scale is True
    assert monitor._images["histograms"].value != image
    monitor.controls["features"].value = ("pz",)
    assert monitor.features == ("pz",)
    assert [row["source"] for row in monitor.convergence_state()] == ["monitor estimate", "monitor estimate"]



def test_monitor_reused_for_later_fits(muons, caplog):
    scaler = MuonScaler().fit(muons.features)
    gan = make_gan("vanilla", seed=3, **SMALL_NETWORKS)
    gan.compile(steps_per_execution=5)
    monitor = TrainingMonitor(muons, every=10, sample_size=1_000, evaluation_size=300, scaler=scaler,
                              max_overhead=None, interactive=False)
    batches = sample_batches(scaler.transform(muons.features), rows=100)
    gan.fit(batches, epochs=2, steps_per_epoch=10, callbacks=[monitor], verbose=0)
    # A second fit continues the count instead of starting again at start_iteration.
    gan.fit(batches, epochs=1, steps_per_epoch=10, callbacks=[monitor], verbose=0)
    assert monitor.iteration == 30
    assert monitor.iterations == list(range(5, 31, 5))
    assert [check["iteration"] for check in monitor.checks] == [10, 20, 30]
    # A fit from an earlier state, as after resuming from a checkpoint, drops the records made after that state.
    gan.generator_optimizer.iterations.assign(10)
    gan.fit(batches, epochs=1, steps_per_epoch=15, callbacks=[monitor], verbose=0)
    assert monitor.iterations == [5, 10, 15, 20, 25]
    assert len(monitor.losses["discriminator_loss"]) == 5
    assert [check["iteration"] for check in monitor.checks] == [10, 20, 25]
    assert [row["checks"] for row in monitor.convergence_state()] == [3, 3]
    # A new monitor on a model that has already trained warns and names the start that follows the model.
    late = TrainingMonitor(muons, every=10, sample_size=1_000, evaluation_size=300, scaler=scaler,
                           max_overhead=None, interactive=False)
    with caplog.at_level(logging.WARNING, logger="muon_gan_nb.dashboard"):
        gan.fit(batches, epochs=1, steps_per_epoch=5, callbacks=[late], verbose=0)
    assert late.iterations == [5]
    assert "pass start_iteration=25 to count on from them" in caplog.text

def test_overhead_guard_postpones_refreshes(muons):
    scaler = MuonScaler().fit(muons.features)
    gan = make_gan("vanilla", seed=4, **SMALL_NETWORKS)
    gan.compile(steps_per_execution=5)
    monitor = TrainingMonitor(muons, every=5, sample_size=2_000, evaluation_size=500, scaler=scaler,
                              max_overhead=0.05, interactive=False)
    gan.fit(sample_batches(scaler.transform(muons.features), rows=100), epochs=1, steps_per_epoch=400,
            callbacks=[monitor], verbose=0)
    # a refresh costs far more than 5% of five tiny iterations, so most due refreshes wait
    assert monitor.postponed > 0
    assert len(monitor.checks) < 400 // 5
    # At the end the monitor refreshes once more if the budget allows; otherwise it must say it skipped.
    if monitor.checks[-1]["iteration"] != 400:
        assert "last refresh was skipped to respect max_overhead" in monitor.status


CONSOLE_SCRIPT = textwrap.dedent("""
    import logging, sys
    import numpy as np
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    sys.path.insert(0, {tests!r})
    from test_dashboard import ship_like_muons, SMALL_NETWORKS
    from muon_gan_nb.dashboard import TrainingMonitor, in_notebook
    from muon_gan_nb.models import make_gan
    from muon_gan_nb.preprocessing import MuonScaler

    muons = ship_like_muons(3_000)
    scaler = MuonScaler().fit(muons.features)
    monitor = TrainingMonitor(muons, every=10, sample_size=500, evaluation_size=200, scaler=scaler,
                              max_overhead=None)
    gan = make_gan("vanilla", seed=0, **SMALL_NETWORKS)
    gan.compile()
    gan.fit(scaler.transform(muons.features), batch_size=100, epochs=1, steps_per_epoch=20,
            callbacks=[monitor], verbose=0)
    from IPython.display import display
    display(monitor)
    print("in_notebook", in_notebook(), "widget", monitor.widget, "checks", len(monitor.checks))
    """)


def test_monitor_in_console_logs_only(tmp_path):
    script = tmp_path / "console_monitor.py"
    script.write_text(CONSOLE_SCRIPT.format(tests=str(REPO / "tests")))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "in_notebook False widget None checks 2" in result.stdout
    assert "muon_gan_nb.dashboard INFO monitor iteration 10:" in result.stderr
    assert "muon_gan_nb.dashboard INFO monitor iteration 20:" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Widget" not in result.stderr
    assert "Widget" not in result.stdout


def test_explorer_follows_widgets(tmp_path, muons):
    out = tmp_path / "explored"
    train("wgan-gp", data=muons, out=out, iterations=20, batch_size=64, eval_every=20, eval_size=400,
          checkpoint_every=20, steps_per_execution=10, progress=False, evaluation_options={"bootstrap": 0},
          **SMALL_NETWORKS)
    explorer = SampleExplorer(out, muons, sample_size=2_000, bins=20, prompt_tolerance=0.5, interactive=True)
    assert list(explorer.histograms) == ["real", "explored"]
    real = muons.sample(2_000, seed=0)
    generated = load_run(out).generate(2_000, seed=0)

    explorer.controls["x_feature"].value = "z"
    explorer.controls["y_feature"].value = "pz"
    assert (explorer.x_feature, explorer.y_feature) == ("z", "pz")
    counts, _, _ = np.histogram2d(generated.column("z"), generated.column("pz"), bins=explorer.edges)
    np.testing.assert_array_equal(explorer.histograms["explored"], counts)
    assert explorer.edges[1][-1] == pytest.approx(real.column("pz").max())

    explorer.controls["selection"].value = "prompt"
    near_zero = (np.abs(generated.column("x")) <= 0.5) & (np.abs(generated.column("y")) <= 0.5)
    assert explorer.selected_counts == {"real": int(real.prompt.sum()), "explored": int(near_zero.sum())}

    explorer.controls["view"].value = "p–pT"
    explorer.controls["selection"].value = "displaced"
    momentum = np.linalg.norm(real.features[~real.prompt, 3:6].astype(np.float64), axis=1)
    assert explorer.edges[0][-1] == pytest.approx(momentum.max(), rel=1e-5)
    assert explorer.histograms["real"].sum() == (~real.prompt).sum()

    explorer.controls["sample_size"].value = 1_000
    assert explorer.sample_size == 1_000
    assert explorer.selected_counts["real"] == int((~muons.sample(1_000, seed=0).prompt).sum())
    explorer.controls["evaluate"].click()
    assert list(explorer.reports) == ["explored"]
    assert 0.5 <= explorer.reports["explored"].auc <= 1.0
    assert len(explorer._reports_box.children) == 4


def test_explorer_rejects_bad_input(tmp_path, muons):
    with pytest.raises(FileNotFoundError, match="not found"):
        SampleExplorer(tmp_path / "missing", muons)
    with pytest.raises(ValueError, match="one or two runs"):
        SampleExplorer([tmp_path, tmp_path, tmp_path], muons)


@pytest.mark.slow
def test_monitor_overhead(muons):
    "Cost of a monitor at the default settings: its own share of the fit time, and a run with against one without."
    scaler = MuonScaler().fit(muons.features)
    batches = sample_batches(scaler.transform(muons.features), rows=100)
    iterations = 6_000  # long enough for at least one refresh within the 5% budget

    def fit_seconds(callbacks) -> float:
        gan = make_gan("vanilla", seed=0)
        gan.compile(steps_per_execution=25)
        gan.fit(batches, epochs=1, steps_per_epoch=25, verbose=0)  # trace outside the timing
        started = time.perf_counter()
        gan.fit(batches, epochs=1, steps_per_epoch=iterations, callbacks=callbacks, verbose=0)
        return time.perf_counter() - started

    baseline = fit_seconds([])
    monitor = TrainingMonitor(muons, scaler=scaler, interactive=True)  # default every, sizes and max_overhead
    monitored = fit_seconds([monitor])
    share = monitor.callback_seconds / monitor.fit_seconds
    print(f"monitor: {share:.1%} of the fit time in its hooks, {len(monitor.checks)} refreshes, "
          f"{monitor.postponed} postponements; wall time {baseline:.1f} s without, {monitored:.1f} s with "
          f"({monitored / baseline - 1:+.1%}, rough on a shared machine)")
    assert monitor.checks, "the monitor never refreshed"
    assert share < 0.10
