"""Integration tests of muon_gan_nb.training: real TensorFlow training on small toy samples, real XGBoost."""
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from muon_gan_nb.checkpoints import list_checkpoints
from muon_gan_nb.convergence import AUCPlateau
from muon_gan_nb.data import InvalidInputError, MuonSample, load_muons
from muon_gan_nb.evaluation import evaluate_fidelity
from muon_gan_nb.models import make_gan
from muon_gan_nb.training import TrainedRun, TrainingDivergedError, generate_shards, generate_to_file, load_run, train
from muon_gan_nb.writers import write_muons

REPO = Path(__file__).resolve().parents[1]
FAST_EVALUATION = {"bootstrap": 0, "mmd_blocks": 2}
SMALL = dict(eval_size=400, progress=False, evaluation_options=FAST_EVALUATION)


def toy_muons(n: int, seed: int = 0) -> MuonSample:
    "SHiP-like toy muons: 56% prompt at x = y = 0, displaced ones spread in x and y, falling pz spectrum."
    rng = np.random.default_rng(seed)
    displaced = rng.random(n) > 0.56
    xy = rng.normal(0, 5, (n, 2)) * displaced[:, None]
    z = np.where(displaced, rng.uniform(-7080, -6460, n), -7084.0 + rng.normal(0, 2, n))
    features = np.column_stack([xy, z, rng.normal(0, 0.6, (n, 2)), 10.3 + rng.exponential(25, n)])
    return MuonSample(features.astype(np.float32), rng.choice([-13, 13], n), rng.uniform(1, 3, n),
                      source="toy muons")


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory) -> Path:
    "The toy sample written as a SHiP .npy file, so subprocesses and resumed runs reload the same muons."
    return write_muons(toy_muons(4_000), tmp_path_factory.mktemp("data") / "toy.npy")


@pytest.fixture(scope="module")
def reference_run(toy_file, tmp_path_factory) -> TrainedRun:
    "An uninterrupted 200-iteration run, the baseline for the resume and reproducibility tests."
    return train(data=str(toy_file), out=tmp_path_factory.mktemp("runs") / "reference", iterations=200,
                 eval_every=100, checkpoint_every=100, seed=3, **SMALL)


def test_short_run_writes_every_file(reference_run):
    folder = reference_run.path
    for name in ("options.json", "versions.json", "scaler.json", "model.keras", "metrics.json"):
        assert (folder / name).is_file(), name
    options = json.loads((folder / "options.json").read_text())
    assert options["seed"] == 3
    assert options["iterations"] == 200
    assert options["data"].endswith("toy.npy")
    versions = json.loads((folder / "versions.json").read_text())
    assert {"python", "numpy", "tensorflow", "keras", "xgboost", "muon_gan_nb", "platform"} <= set(versions)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert metrics["iteration"][-1] == 200
    assert len(metrics["generator_loss"]) == len(metrics["iteration"])
    assert [entry["iteration"] for entry in metrics["evaluations"]] == [100, 200]
    assert 0.3 < metrics["evaluations"][0]["floor_auc"] < 0.7
    assert set(metrics["convergence"]) == {"loss_stability", "auc_plateau"}
    assert all(criterion["iteration"] == 200 for criterion in metrics["convergence"].values())
    assert metrics["seconds"] > 0
    pngs = sorted((folder / "plots").glob("*.png"))
    assert pngs and all(png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for png in pngs)
    assert [path.name for path in list_checkpoints(folder / "checkpoints")] == \
        ["iteration-000000100", "iteration-000000200"]

    loaded = load_run(folder)
    generated = loaded.generate(500, seed=1)
    assert generated.features.shape == (500, 6)
    assert set(np.unique(generated.pdg)) <= {-13, 13}
    np.testing.assert_array_equal(generated.weight, 1)
    np.testing.assert_array_equal(generated.features, reference_run.generate(500, seed=1).features)
    assert loaded.scaler.to_dict() == reference_run.scaler.to_dict()


def test_existing_folder_refused(reference_run):
    with pytest.raises(InvalidInputError, match="force=True.*resume=True") as error:
        train(data=toy_muons(1_000), out=reference_run.path, iterations=10, **SMALL)
    assert str(reference_run.path) in str(error.value)
    assert (reference_run.path / "model.keras").is_file()  # nothing was touched


def _judged(run: TrainedRun) -> list[tuple]:
    return [(entry["iteration"], entry["auc"], entry["floor_auc"]) for entry in run.metrics["evaluations"]]


def test_same_seed_same_losses_and_auc(reference_run, toy_file, tmp_path):
    # The reference run's intermediate classifier ran beside training; here every evaluation runs in step.
    again = train(data=str(toy_file), out=tmp_path / "again", iterations=200, eval_every=100,
                  checkpoint_every=100, seed=3, background_evaluation=False, **SMALL)
    assert again.metrics["generator_loss"] == reference_run.metrics["generator_loss"]
    assert again.metrics["discriminator_loss"] == reference_run.metrics["discriminator_loss"]
    assert _judged(again) == _judged(reference_run)
    assert reference_run.metrics["convergence"]["auc_plateau"]["iterations"] == [100, 200]


def test_auc_plateau_callback_gets_every_evaluation(toy_file, tmp_path):
    # At 60 the worker's result for 40 and the final result arrive at the same epoch end. The epoch logs keep
    # only one, so the run passes both to record_evaluation.
    plateau = AUCPlateau(patience=50)
    run = train(data=str(toy_file), out=tmp_path / "plateau", iterations=60, eval_every=20, checkpoint_every=60,
                callbacks=[plateau], **SMALL, **TINY_NETWORKS)
    evaluations = run.metrics["evaluations"]
    assert plateau.iterations == [entry["iteration"] for entry in evaluations] == [20, 40, 60]
    assert plateau.values == [entry["auc"] for entry in evaluations]


_KILLED_RUN = """
import sys, time, keras
from muon_gan_nb.training import train

class PauseAfterCheckpoint(keras.callbacks.Callback):
    "After the first checkpoint, tell the test and wait to be killed."
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            open(sys.argv[3], "w").close()
            time.sleep(120)

train(data=sys.argv[1], out=sys.argv[2], iterations=200, eval_every=100, checkpoint_every=100, seed=3,
      eval_size=400, progress=False, evaluation_options={"bootstrap": 0, "mmd_blocks": 2},
      callbacks=[PauseAfterCheckpoint()])
"""


def test_resume_after_sigkill_matches_uninterrupted(reference_run, toy_file, tmp_path):
    out, marker = tmp_path / "killed", tmp_path / "checkpointed"
    process = subprocess.Popen([sys.executable, "-c", _KILLED_RUN, str(toy_file), str(out), str(marker)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the training subprocess never reached its first checkpoint"
            time.sleep(0.5)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (out / "model.keras").exists()
    assert [path.name for path in list_checkpoints(out / "checkpoints")] == ["iteration-000000100"]
    json.loads((out / "options.json").read_text())  # complete, not truncated

    resumed = train(out=out, resume=True, iterations=200, progress=False)
    assert resumed.metrics["iteration"] == reference_run.metrics["iteration"]
    later = [index for index, iteration in enumerate(resumed.metrics["iteration"]) if iteration > 100]
    assert later
    for key in ("generator_loss", "discriminator_loss"):
        np.testing.assert_allclose(np.array(resumed.metrics[key])[later],
                                   np.array(reference_run.metrics[key])[later], rtol=1e-5)
    # The checkpoint at 100 was written while its evaluation ran beside training; the resume evaluates it again.
    checkpoint_state = json.loads((list_checkpoints(out / "checkpoints")[0] / "state.json").read_text())
    assert checkpoint_state["pending_evaluation"] == 100
    assert [entry["iteration"] for entry in checkpoint_state["metrics"]["evaluations"]] == []
    np.testing.assert_allclose([entry[1:] for entry in _judged(resumed)],
                               [entry[1:] for entry in _judged(reference_run)], rtol=1e-6)
    assert [entry[0] for entry in _judged(resumed)] == [100, 200]
    np.testing.assert_array_equal(load_run(out).generate(300).features, reference_run.generate(300).features)


class _PoisonWeights(keras.callbacks.Callback):
    "Set one generator weight to NaN after one fused group of steps, as a diverging run would."

    def __init__(self, epoch: int, batch: int):
        super().__init__()
        self.poison_epoch, self.poison_batch, self._epoch = epoch, batch, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self._epoch, batch) == (self.poison_epoch, self.poison_batch):
            kernel = self.model.generator.trainable_variables[0]
            kernel.assign(np.full(kernel.shape, np.nan, np.float32))


def test_nan_loss_stops_run(tmp_path):
    out = tmp_path / "diverged"
    with pytest.raises(TrainingDivergedError, match="iteration-000000050"):
        train(data=toy_muons(2_000), out=out, iterations=200, eval_every=50, checkpoint_every=50,
              steps_per_execution=25, callbacks=[_PoisonWeights(epoch=1, batch=24)], **SMALL)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "failed"
    assert metrics["failure"]["iteration"] == 100
    assert metrics["failure"]["last_checkpoint"].endswith("iteration-000000050")
    assert not (out / "model.keras").exists()
    assert [path.name for path in list_checkpoints(out / "checkpoints")] == ["iteration-000000050"]
    assert [entry["iteration"] for entry in metrics["evaluations"]] == [50]


class _StopAtEpoch(keras.callbacks.Callback):
    "Raise `error` at the end of epoch `epoch`, as Ctrl-C or a failing library would."

    def __init__(self, epoch: int, error: BaseException):
        super().__init__()
        self.stop_epoch, self.error = epoch, error

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.stop_epoch:
            raise self.error


@pytest.mark.parametrize("error, status, key", [(KeyboardInterrupt(), "interrupted", "interruption"),
                                                (RuntimeError("disk on fire"), "failed", "failure")])
def test_stopped_run_writes_metrics(tmp_path, error, status, key):
    out = tmp_path / "stopped"
    with pytest.raises(type(error)):
        train(data=toy_muons(2_000), out=out, iterations=200, eval_every=50, checkpoint_every=50,
              steps_per_execution=25, callbacks=[_StopAtEpoch(1, error)], **SMALL)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == status
    assert metrics[key]["iteration"] == 100 == metrics["iteration"][-1]
    # The run's own checkpointer ran before the failing callback at iteration 100.
    assert metrics[key]["last_checkpoint"].endswith("iteration-000000100")
    assert [entry["iteration"] for entry in metrics["evaluations"]] == [50, 100]
    assert ("error" in metrics[key]) == (status == "failed")
    if status == "failed":
        assert metrics[key]["error"] == "RuntimeError: disk on fire"
    assert not (out / "model.keras").exists()
    with pytest.raises(FileNotFoundError, match="--iterations 100`"):
        load_run(out)


def test_trained_beats_untrained(tmp_path):
    sample = toy_muons(6_000, seed=5)
    run = train(data=sample, out=tmp_path / "brief", iterations=300, eval_every=300, checkpoint_every=300,
                seed=1, eval_size=1_000, progress=False, evaluation_options=FAST_EVALUATION)
    untrained = TrainedRun(make_gan("vanilla", seed=1), run.scaler, run.options, {}, tmp_path)
    _, heldout = sample.split(0.2, seed=1)
    untrained_auc = evaluate_fidelity(heldout, untrained.generate(1_000), n=1_000, floor=False,
                                      **FAST_EVALUATION).auc
    trained_auc = evaluate_fidelity(heldout, run.generate(1_000), n=1_000, floor=False, **FAST_EVALUATION).auc
    assert trained_auc < untrained_auc - 0.02, (trained_auc, untrained_auc)


def test_in_memory_run_heldout_and_resume(tmp_path):
    sample = toy_muons(2_000, seed=2)  # its source is "toy muons", which is not a file
    out = tmp_path / "in_memory"
    run = train(data=sample, out=out, iterations=50, eval_every=50, checkpoint_every=50, seed=1, **SMALL)
    assert run.options["data"] == "in-memory MuonSample: toy muons"
    with pytest.raises(InvalidInputError, match="in-memory sample.*evaluate RUN --data FILE"):
        load_run(out).heldout()
    with pytest.raises(InvalidInputError, match="pass the same muons as data to resume it"):
        train(out=out, resume=True, iterations=100, **SMALL)
    # A run whose data file has gone names the file and the fix instead of failing on a missing path.
    options = json.loads((out / "options.json").read_text())
    (out / "options.json").write_text(json.dumps({**options, "data": str(tmp_path / "moved.npy")}))
    with pytest.raises(InvalidInputError, match="moved.npy.*--data FILE"):
        load_run(out).heldout()


def test_generate_to_file_chunked(reference_run, tmp_path):
    path = generate_to_file(reference_run, 25_001, tmp_path / "muons.npy", chunk_size=7_000, seed=2, progress=False)
    written = load_muons(path)
    assert len(written) == 25_001
    np.testing.assert_array_equal(written.features, reference_run.generate(25_001, seed=2).features)
    parquet = generate_to_file(reference_run, 1_234, tmp_path / "muons.parquet", chunk_size=500, progress=False)
    assert len(load_muons(parquet)) == 1_234


def test_shards_and_manifest(reference_run, tmp_path):
    manifest_path = generate_shards(reference_run, 3_001, tmp_path / "shards", shards=2, seed=4, progress=False)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["total"] == 3_001
    assert sum(shard["count"] for shard in manifest["shards"]) == 3_001
    assert len({shard["seed"] for shard in manifest["shards"]}) == 2
    first, second = (load_muons(manifest_path.parent / shard["file"]) for shard in manifest["shards"])
    assert len(first) + len(second) == 3_001
    assert not np.array_equal(first.features[:100], second.features[:100])
    # The manifest, or its folder, loads the whole sample in shard order.
    joined = load_muons(manifest_path)
    np.testing.assert_array_equal(joined.features, np.concatenate([first.features, second.features]))
    np.testing.assert_array_equal(load_muons(manifest_path.parent).pdg, joined.pdg)
    assert len(load_muons(manifest_path, n=1_000, seed=1)) == 1_000
    # Parquet shards are named after the output file, with the manifest beside them.
    parquet = generate_shards(reference_run, 1_001, tmp_path / "muons.parquet", shards=3, seed=4, progress=False)
    assert parquet.name == "muons.manifest.json"
    assert len(load_muons(parquet)) == 1_001
    assert Path(json.loads(parquet.read_text())["run"]).is_absolute()
    # A part of another generation (here another seed) is rejected before it writes its shard.
    before = parquet.read_text()
    with pytest.raises(InvalidInputError, match="belongs to another generation"):
        generate_shards(reference_run, 1_001, tmp_path / "muons.parquet", shards=3, seed=5, only=[1], progress=False)
    assert parquet.read_text() == before
    assert len(load_muons(tmp_path)) == 1_001  # the folder is read through its one manifest
    # So is a part generated by another run into the same manifest.
    copy = Path(shutil.copytree(reference_run.path, tmp_path / "copy"))
    with pytest.raises(InvalidInputError, match="same run"):
        generate_shards(load_run(copy), 1_001, tmp_path / "muons.parquet", shards=3, seed=4, only=[1], progress=False)
    assert parquet.read_text() == before


def test_load_run_errors(reference_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_run(tmp_path / "missing")
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    for name in ("model.keras", "options.json"):
        (incomplete / name).write_bytes((reference_run.path / name).read_bytes())
    with pytest.raises(FileNotFoundError, match="scaler.json"):
        load_run(incomplete)

    other = tmp_path / "other"
    other.mkdir()
    for name in ("scaler.json", "options.json"):
        (other / name).write_bytes((reference_run.path / name).read_bytes())
    inputs = keras.Input((6,))
    keras.Model(inputs, keras.layers.Dense(1)(inputs)).save(other / "model.keras")
    with pytest.raises(InvalidInputError, match="another architecture"):
        load_run(other)


def test_stream_from_split_files(tmp_path):
    sample = toy_muons(6_000, seed=7)
    for index in range(3):
        write_muons(sample.subset(slice(index * 2_000, (index + 1) * 2_000)), tmp_path / f"SPLIT_{index}.npy")
    run = train(data=str(tmp_path / "SPLIT_*.npy"), stream=True, out=tmp_path / "streamed", iterations=100,
                eval_every=50, checkpoint_every=50, **SMALL)
    assert run.options["n_train"] + run.options["n_heldout"] == 6_000
    assert run.metrics["status"] == "completed"
    assert np.all(np.isfinite(run.metrics["generator_loss"]))
    resumed = train(out=tmp_path / "streamed", resume=True, iterations=150, progress=False)
    assert resumed.metrics["iteration"][-1] == 150
    # A file added to the set renumbers the files and moves rows between the training and held-out parts.
    write_muons(toy_muons(2_000, seed=8), tmp_path / "SPLIT_10.npy")
    with pytest.raises(InvalidInputError, match="differ from those the run"):
        train(data=str(tmp_path / "SPLIT_*.npy"), stream=True, out=tmp_path / "streamed", resume=True, iterations=200,
              progress=False)
    with pytest.raises(InvalidInputError, match="sample_size=500 would be ignored"):
        train(data=str(tmp_path / "SPLIT_*.npy"), stream=True, sample_size=500, out=tmp_path / "other", **SMALL)


def test_stream_rejects_invalid_rows(tmp_path):
    rows = np.asarray(np.load(write_muons(toy_muons(1_000), tmp_path / "SPLIT_0.npy")))
    rows[5, 1], rows[20, 5:8] = 211, 0.0  # a pion, and a muon without momentum
    np.save(tmp_path / "SPLIT_0.npy", rows)
    with pytest.raises(InvalidInputError, match="PDG id that is not a muon") as error:
        train(data=str(tmp_path / "SPLIT_*.npy"), stream=True, out=tmp_path / "run", iterations=10, **SMALL)
    assert "rows 5 (211)" in str(error.value) or "row 5 (211)" in str(error.value)
    assert "zero momentum" in str(error.value)
    assert "streaming cannot drop them" in str(error.value)


def test_batch_datasets_leave_autotuning_off(tmp_path):
    "tf.data's autotuning thread delayed the end of every fit by seconds; neither batch dataset may start it."
    from muon_gan_nb.preprocessing import MuonScaler
    from muon_gan_nb.batches import sample_batches, stream_batches

    sample = toy_muons(1_000, seed=2)
    path = write_muons(sample, tmp_path / "SPLIT_0.npy")
    scaler = MuonScaler().fit(sample.features)
    for dataset in (sample_batches(scaler.transform(sample.features), rows=100),
                    stream_batches([path], scaler, rows=100)):
        assert dataset.options().autotune.enabled is False
        assert next(iter(dataset)).shape == (100, 6)


_MIRRORED = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from muon_gan_nb.training import train
losses = {}
for strategy in (None, "mirrored"):
    run = train(data=sys.argv[1], out=f"{sys.argv[2]}/{strategy}", iterations=150, eval_every=150,
                checkpoint_every=150, eval_size=400, progress=False, strategy=strategy, steps_per_execution=1,
                evaluation_options={"bootstrap": 0, "mmd_blocks": 2})
    losses[str(strategy)] = {"discriminator": run.metrics["discriminator_loss"],
                             "replicas": run.model.distribute_strategy.num_replicas_in_sync}
print(json.dumps(losses))
"""


def test_mirrored_matches_single_device(toy_file, tmp_path):
    result = subprocess.run([sys.executable, "-c", _MIRRORED, str(toy_file), str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    losses = json.loads(result.stdout.strip().splitlines()[-1])
    assert losses["mirrored"]["replicas"] == 2
    assert losses["None"]["replicas"] == 1
    single, mirrored = (np.array(losses[name]["discriminator"]) for name in ("None", "mirrored"))
    assert single.shape == mirrored.shape
    # Same trend: the discriminator loss falls in both, and ends within 15% of each other.
    assert single[-1] < single[0] and mirrored[-1] < mirrored[0]
    assert abs(mirrored[-1] - single[-1]) < 0.15 * single[-1]


# --- guided refreshes, feature transforms, prompt-aware models ------------------------------------

TINY_NETWORKS = dict(noise_dim=8, generator_hidden=(16, 16), discriminator_hidden=(16, 16))


def test_guided_refreshes_checkpoint_and_resume(toy_file, tmp_path):
    out = tmp_path / "guided"
    options = dict(data=str(toy_file), out=out, eval_every=40, checkpoint_every=40, refresh_every=20,
                   refresh_size=400, steps_per_execution=10, seed=2, **SMALL, **TINY_NETWORKS)
    run = train("guided", iterations=80, mode="features", alpha=2.0, **options)
    metrics = json.loads((out / "metrics.json").read_text())
    refreshes = metrics["importance_refreshes"]
    assert [entry["iteration"] for entry in refreshes] == [20, 40, 60, 80]
    for entry in refreshes:
        assert len(entry["weights"]) == 6
        np.testing.assert_allclose(sum(entry["weights"]), 1.0, rtol=1e-5)
    assert refreshes[0]["weights"] != refreshes[-1]["weights"]  # W follows the generator as it trains
    np.testing.assert_allclose(run.model.importances.numpy(), refreshes[-1]["weights"], rtol=1e-6)
    assert run.model.mode == "features"
    assert run.model.alpha == 2.0
    assert run.options["refresh_every"] == 20
    assert run.options["refresh_size"] == 400

    # W is a model variable: the checkpoint at 80 and model.keras both hold the last refresh's weights.
    checkpoint = list_checkpoints(out / "checkpoints")[-1]
    layout = json.loads((checkpoint / "state.json").read_text())["variables"]["model"]
    index = next(index for index, (path, _) in enumerate(layout) if path.endswith("importances"))
    with np.load(checkpoint / "variables.npz", allow_pickle=False) as archive:
        np.testing.assert_allclose(archive[f"model.{index}"], refreshes[-1]["weights"], rtol=1e-6)
    np.testing.assert_allclose(load_run(out).model.importances.numpy(), refreshes[-1]["weights"], rtol=1e-6)

    resumed = train(out=out, resume=True, iterations=120, progress=False)
    history = resumed.metrics["importance_refreshes"]
    assert [entry["iteration"] for entry in history] == [20, 40, 60, 80, 100, 120]
    assert history[:4] == refreshes
    saved = json.loads((out / "metrics.json").read_text())["importance_refreshes"]
    assert [entry["iteration"] for entry in saved] == [20, 40, 60, 80, 100, 120]


def test_diverged_guided_run_fails_cleanly(tmp_path):
    out = tmp_path / "diverged"
    with pytest.raises(TrainingDivergedError, match="iteration-000000020"):
        train("guided", data=toy_muons(2_000), out=out, iterations=60, eval_every=20, checkpoint_every=20,
              refresh_every=10, refresh_size=300, steps_per_execution=10, callbacks=[_PoisonWeights(epoch=1, batch=9)],
              **SMALL, **TINY_NETWORKS)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "failed"
    assert [entry["iteration"] for entry in metrics["importance_refreshes"]] == [10, 20, 30]


def test_refresh_options_only_for_guided(tmp_path):
    with pytest.raises(InvalidInputError, match="refresh_every and refresh_size apply to model 'guided'"):
        train("vanilla", data=toy_muons(500), out=tmp_path / "run", refresh_every=10, **SMALL)
    with pytest.raises(InvalidInputError, match="refresh_size must be an integer >= 2"):
        train("guided", data=toy_muons(500), out=tmp_path / "run", refresh_size=1, **SMALL)


@pytest.mark.parametrize("transform, model", [("polar", "vanilla"), ("sign-sqrt", "prompt")])
def test_transform_run_generates_physical_muons(transform, model, toy_file, tmp_path):
    from muon_gan_nb.features import load_transform
    out = tmp_path / transform
    run = train(model, data=str(toy_file), out=out, iterations=100, eval_every=100, checkpoint_every=100,
                transform=transform, seed=4, **SMALL, **TINY_NETWORKS)
    assert load_transform(out / "transform.json").name == transform
    assert json.loads((out / "options.json").read_text())["transform"] == transform

    real = load_muons(toy_file)
    generated = run.generate(2_000, seed=1)
    x, z = generated.column("x"), generated.column("z")
    # Physical units: z inside the data's range in cm (the generator's tanh output cannot leave it),
    # and x = r cos θ takes both signs, unlike the radius the polar GAN learned.
    assert z.min() >= real.column("z").min() - 1e-3
    assert z.max() <= real.column("z").max() + 1e-3
    assert (x < 0).any()
    assert (x > 0).any()
    assert np.abs(x).max() <= np.hypot(real.column("x"), real.column("y")).max() * 1.001 + 1e-3
    transformed = run.transform.forward(generated.features)
    assert not np.allclose(transformed[:, 0], x)
    scaled = run.scaler.transform(transformed)
    assert scaled.min() >= -1.001
    assert scaled.max() <= 1.001
    if model == "prompt":  # sign·√ keeps 0 at 0, so prompt muons stay exactly at the origin
        assert 0.45 < generated.prompt.mean() < 0.67

    # Judged in physical units: the recorded AUC is that of the physical muons against the held-out ones.
    final = run.metrics["evaluations"][-1]
    assert final["iteration"] == 100
    again = evaluate_fidelity(run.heldout(), run.generate_range(0, 400, run.metrics["evaluation_seed"]), n=400,
                              seed=4, floor=False, **FAST_EVALUATION)
    np.testing.assert_allclose(again.auc, final["auc"], rtol=1e-6)

    loaded = load_run(out)
    assert loaded.transform.to_dict() == run.transform.to_dict()
    np.testing.assert_array_equal(loaded.generate(500, seed=3).features, run.generate(500, seed=3).features)


def test_kde_draws_follow_run_seed(toy_file, tmp_path):
    options = dict(data=str(toy_file), iterations=10, eval_every=10, checkpoint_every=10, transform="kde",
                   transform_options={"bandwidth": 0.05}, **SMALL, **TINY_NETWORKS)
    first = train(out=tmp_path / "seed3", seed=3, **options)
    second = train(out=tmp_path / "seed4", seed=4, **options)
    stored = json.loads((tmp_path / "seed3" / "transform.json").read_text())
    assert stored["options"]["seed"] == 3
    assert stored["options"]["bandwidth"] == 0.05
    assert json.loads((tmp_path / "seed4" / "options.json").read_text())["transform_options"]["seed"] == 4
    # The same muons smoothed with the two runs' draws: the kernels differ.
    muons = load_muons(toy_file).features[:500]
    assert not np.array_equal(first.transform.forward(muons), second.transform.forward(muons))
    own_seed = train(out=tmp_path / "own", seed=3, **{**options, "transform_options": {"bandwidth": 0.05, "seed": 9}})
    assert own_seed.options["transform_options"]["seed"] == 9


def test_too_few_heldout_muons_refused(tmp_path):
    with pytest.raises(InvalidInputError, match="held out") as error:
        train(data=toy_muons(50), out=tmp_path / "run", iterations=10, **SMALL)
    assert "10 held out" in str(error.value)
    assert "about 100 or more" in str(error.value)
    assert not (tmp_path / "run" / "options.json").exists()


def test_unusable_data_keeps_earlier_run(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text('{"status": "completed"}')
    with pytest.raises(InvalidInputError, match="held out"):
        train(data=toy_muons(50), out=out, iterations=10, force=True, **SMALL)
    assert (out / "metrics.json").read_text() == '{"status": "completed"}'


def test_prompt_aware_run(toy_file, tmp_path):
    out = tmp_path / "prompt"
    run = train("prompt-wgan-gp", data=str(toy_file), out=out, iterations=60, eval_every=60, checkpoint_every=60,
                seed=5, **SMALL, **TINY_NETWORKS)
    real = load_muons(toy_file)
    assert run.options["data_model_options"]["prompt_fraction"] == pytest.approx(real.prompt.mean(), abs=0.02)
    generated = run.generate(4_000, seed=2)
    assert generated.features.shape == (4_000, 6)
    assert abs(generated.prompt.mean() - real.prompt.mean()) < 0.03
    rows = run.model.generate_scaled(1_000, seed=2)
    prompt_rows = rows[:, 6] > 0
    from_rows = run.model.rows_to_sample(rows, run.scaler)
    np.testing.assert_array_equal(from_rows.features[prompt_rows][:, :2], 0.0)
    assert np.all((from_rows.features[~prompt_rows][:, :2] != 0).any(axis=1))
    assert set(np.unique(generated.pdg)) == {-13, 13}
    assert run.metrics["status"] == "completed"
    assert run.metrics["evaluations"]

    loaded = load_run(out)
    assert type(loaded.model).__name__ == "PromptAwareWGANGP"
    np.testing.assert_array_equal(loaded.generate(1_000, seed=6).features, run.generate(1_000, seed=6).features)
    np.testing.assert_array_equal(loaded.generate(1_000, seed=6).pdg, run.generate(1_000, seed=6).pdg)


def test_stream_rejects_transform_and_prompt(tmp_path):
    write_muons(toy_muons(1_000), tmp_path / "SPLIT_0.npy")
    pattern = str(tmp_path / "SPLIT_*.npy")
    with pytest.raises(InvalidInputError, match="stream=True does not support transform='polar'"):
        train(data=pattern, stream=True, out=tmp_path / "a", transform="polar", **SMALL)
    with pytest.raises(InvalidInputError, match="stream=True does not support model='prompt'"):
        train("prompt", data=pattern, stream=True, out=tmp_path / "b", **SMALL)
    with pytest.raises(InvalidInputError, match="Unknown feature transform 'cubic'"):
        train(data=toy_muons(500), out=tmp_path / "c", transform="cubic", **SMALL)
    with pytest.raises(InvalidInputError, match="'kde' transform has no exact inverse"):
        train("prompt", data=toy_muons(500), out=tmp_path / "d", transform="kde", **SMALL)


def test_constant_feature_names_file(cases_dir, tmp_path):
    path = cases_dir / "constant_feature.npy"
    with pytest.raises(InvalidInputError, match="constant_feature.npy") as error:
        train(data=str(path), out=tmp_path / "run", iterations=2, eval_every=1, **SMALL)
    assert "'z'" in str(error.value)
    assert str(path) in str(error.value)


def test_drop_invalid_trains_on_good_rows(cases_dir, tmp_path):
    path = str(cases_dir / "bad_pdg.npy")
    with pytest.raises(InvalidInputError, match="211"):
        train(data=path, out=tmp_path / "strict", iterations=10, **SMALL)
    run = train(data=path, out=tmp_path / "dropped", iterations=10, eval_every=10, checkpoint_every=10,
                drop_invalid=True, **SMALL, **TINY_NETWORKS)
    assert run.options["drop_invalid"] is True
    assert run.options["n_train"] + run.options["n_heldout"] == len(load_muons(path, drop_invalid=True))
    assert run.metrics["status"] == "completed"


def test_cli_choices_follow_training():
    from muon_gan_nb import cli, training
    from muon_gan_nb.features import TRANSFORMS
    assert cli.MODELS + cli.PROMPT_MODELS == training.MODELS
    assert set(cli.TRANSFORM_NAMES) == set(TRANSFORMS) - {"none"}


def test_train_defaults_match_cli():
    # A notebook calling train() with no options reproduces the README's main job, `muon-gan train`.
    import inspect

    from muon_gan_nb import cli
    defaults = {name: parameter.default for name, parameter in inspect.signature(train).parameters.items()}
    assert defaults["iterations"] == cli.DEFAULT_ITERATIONS
    assert defaults["batch_size"] == cli.DEFAULT_BATCH_SIZE
    assert defaults["eval_every"] == cli.DEFAULT_EVAL_EVERY
    assert defaults["eval_size"] == cli.DEFAULT_EVAL_SIZE
    assert defaults["checkpoint_every"] == cli.DEFAULT_CHECKPOINT_EVERY
    assert defaults["model"] == cli.DEFAULT_MODEL


def test_cli_trains_guided_with_transform(toy_file, tmp_path, capsys):
    from muon_gan_nb import cli
    assert cli.main(["train", "--refresh-every", "10", "--out", str(tmp_path / "vanilla")]) == 2
    assert "--refresh-every applies only to --model guided" in capsys.readouterr().err
    out = tmp_path / "guided"
    arguments = ["train", "--model", "guided", "--refresh-every", "10", "--refresh-size", "200", "--transform",
                 "sign-sqrt", "--data", str(toy_file), "--out", str(out), "--iterations", "20", "--eval-every", "20",
                 "--eval-size", "300", "--checkpoint-every", "20", "--quiet"]
    assert cli.main(arguments) == 0
    options = json.loads((out / "options.json").read_text())
    assert (options["transform"], options["refresh_every"], options["refresh_size"]) == ("sign-sqrt", 10, 200)
    metrics = json.loads((out / "metrics.json").read_text())
    assert [entry["iteration"] for entry in metrics["importance_refreshes"]] == [10, 20]
    assert cli.main(["train", "--resume", str(out), "--iterations", "30", "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [entry["iteration"] for entry in metrics["importance_refreshes"]] == [10, 20, 30]
