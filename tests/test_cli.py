"""End-to-end tests of the `muon-gan` command line: real training, evaluation, generation and bad input."""
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from muon_gan_nb import cli
from muon_gan_nb.checkpoints import checkpoint_iteration, list_checkpoints
from muon_gan_nb.data import FEATURES, InvalidInputError, load_default_sample, load_muons
from muon_gan_nb.writers import write_muons

# Broken files among the input cases, each with a fragment that its error message must contain besides
# the file name: the feature, column, branch or value at fault, where the case has one.
BROKEN_CASES = {
    "nan_values.npy": "px",
    "inf_values.npy": "x",
    "wrong_columns.npy": "8",
    "empty.npy": "muon",
    "one_dimensional.npy": "2-D",
    "object_array.npy": "object",
    "truncated.npy": "",
    "not_numpy.npy": "",
    "string_dtype.npy": "",
    "bad_pdg.npy": "211",
    "zero_momentum.npy": "momentum",
    "constant_feature.npy": "z",
    "fairship_missing_branch.root": "pz",
    "wrong_tree_name.root": "pythia8-Geant4",
    "empty_file.root": "",
    "csv_missing_column.csv": "pz",
    "csv_non_numeric.csv": "fast",
}
TINY_TRAINING = ["--iterations", "40", "--batch-size", "64", "--eval-every", "20", "--eval-size", "400",
                 "--checkpoint-every", "20", "--seed", "1"]


def run_cli(*arguments, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess:
    "Run `python -m muon_gan_nb.cli ARGUMENTS` in a fresh process, in `cwd` if given; return the finished process."
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "-m", "muon_gan_nb.cli", *map(str, arguments)],
                          capture_output=True, text=True, timeout=timeout, env=environment, cwd=cwd)


def assert_one_line_error(process: subprocess.CompletedProcess, *fragments: str):
    "Check that the CLI exited with status 2 and printed one `muon-gan: error:` line with every fragment."
    assert process.returncode == 2, process.stderr
    assert "Traceback" not in process.stderr, process.stderr
    error_lines = [line for line in process.stderr.splitlines() if line.startswith("muon-gan: error: ")]
    assert len(error_lines) == 1, process.stderr
    assert process.stderr.strip().splitlines()[-1] == error_lines[0], process.stderr
    for fragment in fragments:
        assert fragment in error_lines[0], (fragment, error_lines[0])


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    "3,000 muons of the bundled sample written as a SHiP .npy file."
    path = tmp_path_factory.mktemp("data") / "muons.npy"
    write_muons(load_default_sample().sample(3000, seed=5), path)
    return path


@pytest.fixture(scope="session")
def training(tmp_path_factory, small_data) -> subprocess.CompletedProcess:
    "A short `muon-gan train` on the small data, finished; its run folder is `trained_run`."
    out = tmp_path_factory.mktemp("runs") / "vanilla"
    process = run_cli("train", "--data", small_data, "--out", out, *TINY_TRAINING)
    assert process.returncode == 0, process.stderr
    process.out = out
    return process


@pytest.fixture(scope="session")
def trained_run(training) -> Path:
    "The run folder written by the short training."
    return training.out


@pytest.fixture()
def run_copy(trained_run, tmp_path) -> Path:
    "A copy of the trained run that a test may damage."
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


# --- help and option values -------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["train", "evaluate", "generate", "make-sample"])
def test_help_lists_every_option(command):
    process = run_cli(command, "--help")
    assert process.returncode == 0, process.stderr
    subcommands = next(action for action in cli.build_parser()._actions if action.dest == "command")
    for action in subcommands.choices[command]._actions:
        long_names = [name for name in action.option_strings if name.startswith("--")]
        for name in long_names:
            assert name in process.stdout, name
    assert "(default:" in process.stdout


def test_entry_point_help():
    executable = shutil.which("muon-gan") or str(Path(sys.executable).with_name("muon-gan"))
    process = subprocess.run([executable, "--help"], capture_output=True, text=True, timeout=60)
    assert process.returncode == 0, process.stderr
    for command in ("train", "evaluate", "generate", "make-sample"):
        assert command in process.stdout


@pytest.mark.parametrize("arguments, fragments", [
    (["train", "--iterations", "0"], ["--iterations", "'0'"]),
    (["train", "--iterations", "-10"], ["--iterations", "'-10'"]),
    (["train", "--batch-size", "0"], ["--batch-size", "'0'"]),
    (["train", "--eval-size", "-1"], ["--eval-size", "'-1'"]),
    (["train", "--eval-size", "5"], ["--eval-size", "'5'", "at least 20 muons"]),
    (["evaluate", "RUN", "--n", "10"], ["--n", "'10'", "at least 20 muons"]),
    (["train", "--transform-option", "bandwidth=0.05"], ["--transform-option", "--transform kde"]),
    (["train", "--transform", "kde", "--transform-option", "bandwidth"], ["--transform-option", "NAME=VALUE"]),
    (["train", "--eval-every", "2.5"], ["--eval-every", "'2.5'"]),
    (["train", "--checkpoint-every", "ten"], ["--checkpoint-every", "'ten'"]),
    (["train", "--model", "dcgan"], ["--model", "'dcgan'", "vanilla"]),
    (["train", "--strategy", "tpu"], ["--strategy", "'tpu'"]),
    (["train", "--seed", "-3"], ["seed", "'-3'"]),
    (["train", "--alpha", "-0.5", "--model", "guided"], ["--alpha", "'-0.5'"]),
    (["train", "--alpha", "0.5"], ["--alpha", "--model guided"]),
    (["train", "--ema-decay", "1"], ["--ema-decay", "'1'", "below 1"]),
    (["train", "--ema-decay", "fast"], ["--ema-decay", "'fast'"]),
    (["train", "--model", "guided", "--guidance", "sideways"], ["--guidance", "'sideways'", "features"]),
    (["train", "--resume", "--force", "--out", "somewhere"], ["--resume", "--force"]),
    (["generate", "RUN", "--n", "0", "--out", "muons.npy"], ["--n", "'0'"]),
    (["generate", "RUN", "--n", "10", "--chunk-size", "-1", "--out", "muons.npy"], ["--chunk-size"]),
    (["generate", "RUN", "--n", "10", "--shards", "0", "--out", "muons.npy"], ["--shards"]),
    (["generate", "RUN", "--n", "10", "--shards", "2", "--only", "-1", "--out", "muons.npy"], ["shard index", "'-1'"]),
    (["generate", "RUN", "--n", "10", "--out", "muons.txt"], ["muons.txt", ".npy"]),
    (["generate", "RUN", "--out", "muons.npy"], ["--n"]),
    (["evaluate", "RUN", "--n", "-100"], ["--n", "'-100'"]),
    (["make-sample", "--n", "0", "--out", "muons.npy"], ["--n", "'0'"]),
    (["make-sample", "--n", "10", "--out", "muons.csv.gz"], [".gz"]),
    (["train", "--no-such-option"], ["--no-such-option", "muon-gan train --help"]),
    (["fly"], ["'fly'"]),
])
def test_bad_option_value_exits_2(arguments, fragments):
    assert_one_line_error(run_cli(*arguments), *fragments)


def test_transform_options_reach_train():
    parsed = cli.build_parser().parse_args(["train", "--transform", "gaussian-filter", "--transform-option", "sigma=2",
                                            "--transform-option", "mode=nearest"])
    arguments = cli._train_arguments(parsed)
    assert arguments["transform_options"] == {"sigma": 2, "mode": "nearest"}
    assert arguments["model"] == "vanilla"
    assert "transform_options" not in cli._train_arguments(cli.build_parser().parse_args(["train"]))


def test_too_few_heldout_muons_exit_2(small_data, tmp_path):
    out = tmp_path / "run"
    process = run_cli("train", "--data", small_data, "--sample-size", "60", "--out", out, *TINY_TRAINING)
    assert_one_line_error(process, "60 muons", "12 held out", "at least 20", "about 100 or more", "--sample-size")
    assert not (out / "options.json").exists()  # refused before the run folder is written
    assert not (out / "metrics.json").exists()


def test_file_inside_run_folder_exits_2(trained_run, tmp_path):
    model = trained_run / "model.keras"
    process = run_cli("generate", model, "--n", "10", "--out", tmp_path / "m.npy")
    assert_one_line_error(process, "is a file, not a run folder", str(trained_run))
    assert_one_line_error(run_cli("evaluate", model), "is a file, not a run folder")


def test_missing_paths_exit_2(tmp_path):
    assert_one_line_error(run_cli("train", "--data", tmp_path / "nothing.npy", "--out", tmp_path / "run"),
                          "nothing.npy")
    assert_one_line_error(run_cli("evaluate", tmp_path / "no_run"), "no_run")
    assert_one_line_error(run_cli("generate", tmp_path / "no_run", "--n", "10", "--out", tmp_path / "m.npy"),
                          "no_run")
    assert_one_line_error(run_cli("train", "--resume", tmp_path / "no_run"), "no_run", "--resume")


# --- the shared input cases -------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(BROKEN_CASES))
def test_train_rejects_broken_case(name, cases_dir, tmp_path):
    out = tmp_path / "run"
    process = run_cli("train", "--data", cases_dir / name, "--out", out, *TINY_TRAINING)
    assert_one_line_error(process, name, BROKEN_CASES[name])
    assert not (out / "model.keras").exists()


@pytest.mark.parametrize("name", sorted(set(BROKEN_CASES) - {"constant_feature.npy"}))
def test_load_muons_rejects_broken_case(name, cases_dir):
    with pytest.raises((InvalidInputError, FileNotFoundError), match=name.replace(".", r"\.")):
        load_muons(cases_dir / name)


def test_train_api_rejects_constant_feature(cases_dir, tmp_path):
    from muon_gan_nb.training import train
    with pytest.raises(InvalidInputError, match="z"):
        train(data=str(cases_dir / "constant_feature.npy"), out=tmp_path / "run", iterations=2, eval_every=1,
              eval_size=100)


# --- train, evaluate, generate end to end -----------------------------------------------------------

def test_train_writes_run_folder(trained_run):
    for name in ("model.keras", "scaler.json", "metrics.json", "options.json", "versions.json"):
        assert (trained_run / name).is_file(), name
    assert list((trained_run / "plots").glob("*.png"))
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert len(metrics["generator_loss"]) > 0
    assert np.all(np.isfinite(metrics["generator_loss"]))
    evaluations = metrics["evaluations"]
    assert [evaluation["iteration"] for evaluation in evaluations][-1] == 40
    assert 0.0 <= evaluations[-1]["auc"] <= 1.0
    assert 0.0 <= evaluations[-1]["floor_auc"] <= 1.0


def test_train_prints_auc_and_paths(training):
    lines = training.stdout.splitlines()
    assert any(line.startswith("Held-out AUC") and "floor" in line for line in lines), training.stdout
    assert f"Model:   {training.out / 'model.keras'}" in lines
    assert f"Plots:   {training.out / 'plots'}" in lines


def test_train_resume_continues(run_copy):
    before = json.loads((run_copy / "metrics.json").read_text())
    process = run_cli("train", "--resume", run_copy, "--iterations", "60")
    assert process.returncode == 0, process.stderr
    after = json.loads((run_copy / "metrics.json").read_text())
    assert after["iteration"][:len(before["iteration"])] == before["iteration"]
    assert after["iteration"][-1] == 60
    assert [evaluation["iteration"] for evaluation in after["evaluations"]] == [20, 40, 60]
    assert json.loads((run_copy / "options.json").read_text())["batch_size"] == 64  # the run's own option


def test_guidance_modes_match_guided_model():
    from muon_gan_nb.guided import GUIDANCE_MODES
    assert cli.GUIDANCE_MODES == GUIDANCE_MODES


def test_train_guided_options(small_data, tmp_path):
    out = tmp_path / "guided"
    process = run_cli("train", "--model", "guided", "--guidance", "features", "--alpha", "0.5", "--data", small_data,
                      "--out", out, "--iterations", "4", "--eval-every", "4", "--eval-size", "300", "--batch-size", "32")
    assert process.returncode == 0, process.stderr
    options = json.loads((out / "options.json").read_text())
    assert options["model"] == "guided"
    assert options["model_options"] == {"mode": "features", "alpha": 0.5}


def test_relative_data_path_from_other_folder(small_data, tmp_path):
    out = tmp_path / "relative"
    process = run_cli("train", "--data", small_data.name, "--out", out, *TINY_TRAINING, cwd=small_data.parent)
    assert process.returncode == 0, process.stderr
    assert json.loads((out / "options.json").read_text())["data"] == str(small_data.resolve())
    evaluated = run_cli("evaluate", out, "--n", "300", "--out", tmp_path / "evaluation", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr


def test_train_refuses_existing_folder(trained_run, small_data):
    model_bytes = (trained_run / "model.keras").read_bytes()
    process = run_cli("train", "--data", small_data, "--out", trained_run, *TINY_TRAINING)
    assert_one_line_error(process, str(trained_run), "--force", "--resume")
    assert (trained_run / "model.keras").read_bytes() == model_bytes


def test_evaluate_heldout_split(trained_run, tmp_path):
    out = tmp_path / "evaluation"
    process = run_cli("evaluate", trained_run, "--n", "400", "--out", out)
    assert process.returncode == 0, process.stderr
    assert "Held-out AUC" in process.stdout
    report = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= report["auc"] <= 1.0
    assert 0.0 <= report["floor_auc"] <= 1.0
    assert list((out / "plots").glob("*.png"))
    # the report names the model it judged, which a later --resume replaces
    options = json.loads((trained_run / "options.json").read_text())
    assert report["run"] == os.path.abspath(trained_run)
    assert report["run_id"] == options["run_id"]
    assert report["iteration"] == 40
    assert report["real"] == "held-out split"


def test_evaluate_repeats_final_evaluation(trained_run, tmp_path):
    process = run_cli("evaluate", trained_run, "--out", tmp_path / "again")
    assert process.returncode == 0, process.stderr
    assert "Same muons, floor sample and classifier as the run's final evaluation" in process.stdout
    report = json.loads((tmp_path / "again" / "metrics.json").read_text())
    metrics = json.loads((trained_run / "metrics.json").read_text())
    final = metrics["evaluations"][-1]
    assert (report["auc"], report["floor_auc"], report["n_real"]) == (final["auc"], final["floor_auc"], 400)
    assert report["generated_seed"] == metrics["evaluation_seed"]
    assert report["repeats_final_evaluation"] is True

    other = run_cli("evaluate", trained_run, "--seed", "3", "--out", tmp_path / "other")
    assert other.returncode == 0, other.stderr
    assert "final evaluation" not in other.stdout
    report = json.loads((tmp_path / "other" / "metrics.json").read_text())
    assert report["auc"] != final["auc"]
    assert (report["generated_seed"], report["seed"], report["repeats_final_evaluation"]) == (3, 3, False)


def test_evaluate_against_data(trained_run, small_data, tmp_path):
    process = run_cli("evaluate", trained_run, "--data", small_data, "--n", "500", "--out", tmp_path)
    assert process.returncode == 0, process.stderr
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["n_generated"] == 500


def test_evaluate_n_above_real_sample(trained_run, tmp_path):
    process = run_cli("evaluate", trained_run, "--n", "1e6", "--out", tmp_path)
    assert process.returncode == 0, process.stderr
    report = json.loads((tmp_path / "metrics.json").read_text())
    used = report["n_real"]
    assert used == report["n_generated"]
    assert 100 < used < 1_000_000
    assert f"Comparing {used:,} real and {used:,} generated muons" in process.stdout, process.stdout
    assert "fewer than --n 1,000,000" in process.stdout


def test_evaluate_drop_invalid(trained_run, cases_dir, tmp_path):
    process = run_cli("evaluate", trained_run, "--data", cases_dir / "bad_pdg.npy", "--n", "300", "--out", tmp_path)
    assert_one_line_error(process, "bad_pdg.npy", "211")
    process = run_cli("evaluate", trained_run, "--data", cases_dir / "bad_pdg.npy", "--drop-invalid", "--n", "300",
                      "--out", tmp_path)
    assert process.returncode == 0, process.stderr
    assert (tmp_path / "metrics.json").is_file()


@pytest.mark.parametrize("extension", [".npy", ".root", ".parquet"])
def test_generate_each_format(trained_run, tmp_path, extension):
    out = tmp_path / f"generated{extension}"
    process = run_cli("generate", trained_run, "--n", "2500", "--chunk-size", "1000", "--seed", "3",
                      "--out", out)
    assert process.returncode == 0, process.stderr
    muons = load_muons(out)
    assert len(muons) == 2500
    assert muons.features.shape == (2500, len(FEATURES))
    assert np.all(np.isfinite(muons.features))
    assert set(np.unique(muons.pdg)) <= {13, -13}
    assert np.unique(muons.features[:, FEATURES.index("pz")]).size > 100  # not one muon repeated


def test_generate_matches_api(trained_run, tmp_path):
    from muon_gan_nb.training import load_run
    out = tmp_path / "generated.npy"
    process = run_cli("generate", trained_run, "--n", "300", "--seed", "1", "--out", out)
    assert process.returncode == 0, process.stderr
    run = load_run(trained_run)
    np.testing.assert_allclose(load_muons(out).features, run.generate(300, seed=1).features, rtol=1e-6)
    assert not np.array_equal(run.generate(300, seed=1).features, run.generate(300, seed=2).features)


def test_generate_shards_manifest(trained_run, tmp_path):
    out = tmp_path / "shards.parquet"
    process = run_cli("generate", trained_run, "--n", "1001", "--shards", "2", "--seed", "4", "--out", out)
    assert process.returncode == 0, process.stderr
    manifest = json.loads((tmp_path / "shards.manifest.json").read_text())
    assert manifest["total"] == 1001
    counts = [len(load_muons(tmp_path / shard["file"])) for shard in manifest["shards"]]
    assert counts == [shard["count"] for shard in manifest["shards"]]
    assert sum(counts) == 1001
    assert len(load_muons(str(tmp_path / "shards-*.parquet"))) == 1001  # the shards read back as one sample
    first, second = (load_muons(tmp_path / shard["file"]).features for shard in manifest["shards"])
    assert not np.array_equal(first[:500], second[:500])


def test_generate_shards_split_over_processes(trained_run, tmp_path):
    # Two processes, each with its own --only, write the same files as one process writing all shards.
    whole, split = tmp_path / "whole", tmp_path / "split"
    common = ["--n", "1001", "--shards", "3", "--seed", "4", "--chunk-size", "200"]
    assert run_cli("generate", trained_run, *common, "--out", whole / "muons.npy").returncode == 0
    for only in (["0", "2"], ["1"]):
        process = run_cli("generate", trained_run, *common, "--only", *only, "--out", split / "muons.npy")
        assert process.returncode == 0, process.stderr
    assert f"Wrote shard 1 of 3 (334 of 1001 muons); manifest: {split / 'muons.manifest.json'}" in process.stdout
    for shard in sorted(whole.glob("muons-*.npy")):
        assert (split / shard.name).read_bytes() == shard.read_bytes(), shard.name

    assert json.loads((split / "muons.manifest.json").read_text())["shards"] == \
        json.loads((whole / "muons.manifest.json").read_text())["shards"]
    assert len(load_muons(split / "muons.manifest.json")) == 1001

    # Writing a shard again needs --force. Invalid indices are rejected before anything is written.
    again = run_cli("generate", trained_run, *common, "--only", "1", "--out", split / "muons.npy")
    assert_one_line_error(again, "muons-00001-of-00003.npy", "--force")
    assert_one_line_error(run_cli("generate", trained_run, *common, "--only", "3", "--out", tmp_path / "m.npy"),
                          "--only 3", "0 to 2")
    assert_one_line_error(run_cli("generate", trained_run, "--n", "10", "--only", "0", "--out", tmp_path / "m.npy"),
                          "--only", "--shards is 1")
    assert_one_line_error(run_cli("generate", trained_run, "--n", "2", "--shards", "3", "--out", tmp_path / "m.npy"),
                          "--shards 3 is more than --n 2")
    assert not list(tmp_path.glob("m*.npy"))

    # A part started with another seed (or number of muons or shards) is rejected before it writes anything.
    listing = (split / "muons.manifest.json").read_text()
    for changed in (["--seed", "5"], ["--n", "1002"]):
        options = [*common, "--force", "--only", "1", "--out", split / "muons.npy", *changed]
        assert_one_line_error(run_cli("generate", trained_run, *options), "muons.manifest.json belongs to another "
                              f"generation (1001 muons of {os.path.abspath(trained_run)} in 3 shards with seed 4)", "--seed")
    assert (split / "muons.manifest.json").read_text() == listing
    for shard in sorted(whole.glob("muons-*.npy")):
        assert (split / shard.name).read_bytes() == shard.read_bytes(), shard.name


def test_tensorflow_startup_lines_need_verbose(trained_run, tmp_path):
    quiet = run_cli("generate", trained_run, "--n", "10", "--out", tmp_path / "a.npy")
    assert quiet.returncode == 0, quiet.stderr
    assert "TensorFlow 2." in quiet.stderr
    assert "runs on the CPU" in quiet.stderr
    for line in ("cuInit", "oneDNN", "absl::InitializeLog"):
        assert line not in quiet.stderr, quiet.stderr
    verbose = run_cli("--verbose", "generate", trained_run, "--n", "10", "--out", tmp_path / "b.npy")
    assert verbose.returncode == 0, verbose.stderr
    # `python -m` names the command line's logger __main__.
    assert re.search(r"DEBUG \S+: TensorFlow: .*oneDNN", verbose.stderr), verbose.stderr


def test_generate_existing_files_need_force(trained_run, tmp_path):
    out = tmp_path / "muons.npy"
    write_muons(load_default_sample().sample(50, seed=1), out)
    previous = out.read_bytes()
    assert_one_line_error(run_cli("generate", trained_run, "--n", "200", "--out", out), str(out), "--force")
    assert out.read_bytes() == previous
    process = run_cli("generate", trained_run, "--n", "200", "--out", out, "--force")
    assert process.returncode == 0, process.stderr
    assert len(load_muons(out)) == 200
    # With --shards, an existing manifest is refused before any shard is written.
    (tmp_path / "shards.manifest.json").write_text("{}")
    process = run_cli("generate", trained_run, "--n", "20", "--shards", "2", "--out", tmp_path / "shards.npy")
    assert_one_line_error(process, "shards.manifest.json", "--force")
    assert not list(tmp_path.glob("shards-*.npy"))


# --- damaged runs and a full disk -------------------------------------------------------------------

def test_run_without_scaler_exits_2(run_copy, tmp_path):
    (run_copy / "scaler.json").unlink()
    process = run_cli("generate", run_copy, "--n", "10", "--out", tmp_path / "muons.npy")
    assert_one_line_error(process, "scaler")
    assert not (tmp_path / "muons.npy").exists()
    from muon_gan_nb.training import load_run
    with pytest.raises((InvalidInputError, FileNotFoundError), match="scaler"):
        load_run(run_copy)


def test_model_of_other_architecture_exits_2(run_copy, tmp_path):
    import keras
    other = keras.Sequential([keras.Input((6,)), keras.layers.Dense(6)])  # a plain Keras model, not a GAN
    other.save(run_copy / "model.keras")
    process = run_cli("evaluate", run_copy, "--n", "300", "--out", tmp_path / "evaluation")
    assert_one_line_error(process, "model.keras")
    assert not (tmp_path / "evaluation").exists()
    from muon_gan_nb.training import load_run
    with pytest.raises(InvalidInputError, match="model.keras"):
        load_run(run_copy)


def test_disk_full_keeps_previous_file(trained_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "muons.npy"
    write_muons(load_default_sample().sample(50, seed=1), out)
    previous = out.read_bytes()

    def full_disk(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    status = cli.main(["generate", str(trained_run), "--n", "200", "--out", str(out), "--force"])
    captured = capsys.readouterr()
    assert status == 2
    error_lines = [line for line in captured.err.splitlines() if line.startswith("muon-gan: error: ")]
    assert len(error_lines) == 1, captured.err
    assert "no space left on device" in error_lines[0]
    assert out.read_bytes() == previous
    assert sorted(path.name for path in tmp_path.iterdir()) == ["muons.npy"]  # no temporary file left


def test_unexpected_error_keeps_traceback(monkeypatch):
    def broken_handler(arguments):
        raise KeyError("a bug, not bad input")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    subcommands = next(action for action in parser._actions if action.dest == "command")
    subcommands.choices["generate"].set_defaults(handler=broken_handler)
    with pytest.raises(KeyError):
        cli.main(["generate", "RUN", "--n", "10", "--out", "muons.npy"])


# --- make-sample ------------------------------------------------------------------------------------

def test_make_sample_existing_file_needs_force(tmp_path, capsys):
    out = tmp_path / "sample.npy"
    out.write_bytes(b"an earlier sample")
    assert cli.main(["make-sample", "--n", "10", "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == f"muon-gan: error: {out} already exists: pass --force to overwrite it, or choose another --out"
    assert out.read_bytes() == b"an earlier sample"


def test_make_sample_without_pythia(monkeypatch, tmp_path, capsys):
    # The source module imports pythia8mc only when it runs, so hiding pythia8mc is enough; re-importing
    # the module itself would leave two copies of its functions, which process pools cannot pickle.
    monkeypatch.setitem(sys.modules, "pythia8mc", None)  # makes `import pythia8mc` fail
    status = cli.main(["make-sample", "--n", "100", "--out", str(tmp_path / "muons.npy")])
    assert status == 2
    assert "pip install 'muon_gan_nb[source]'" in capsys.readouterr().err
    assert not (tmp_path / "muons.npy").exists()


@pytest.mark.parametrize("extension", [".npy", ".parquet"])
def test_make_sample_writes_file(tmp_path, extension):
    pytest.importorskip("pythia8mc", reason="make-sample needs the optional extra muon_gan_nb[source]")
    out = tmp_path / f"sample{extension}"
    process = run_cli("make-sample", "--n", "300", "--seed", "11", "--out", out)
    assert process.returncode == 0, process.stderr
    muons = load_muons(out)
    assert len(muons) == 300
    assert np.all(np.linalg.norm(muons.features[:, 3:], axis=1) > 10)  # the SHiP cut p > 10 GeV/c


def test_model_with_lambda_layer_refused(run_copy, tmp_path):
    # A crafted GAN whose generator hides arbitrary Python in a Lambda layer: safe mode must refuse it.
    import keras

    from muon_gan_nb.models import VanillaGAN, build_discriminator
    from muon_gan_nb.training import load_run
    noise = keras.Input((8,))
    hidden = keras.layers.Lambda(lambda tensor: tensor * 2.0)(noise)
    generator = keras.Model(noise, keras.layers.Dense(6, activation="tanh")(hidden))
    crafted = VanillaGAN(generator, build_discriminator(hidden=(8,)))
    crafted.save(run_copy / "model.keras")
    with pytest.raises(InvalidInputError, match="safe mode"):
        load_run(run_copy)
    process = run_cli("generate", run_copy, "--n", "10", "--out", tmp_path / "muons.npy")
    assert_one_line_error(process, "model.keras", "safe mode")
    assert not (tmp_path / "muons.npy").exists()


def test_pickled_npy_refused_without_unpickling(tmp_path, monkeypatch):
    # An object array is stored with pickle; loading it must fail before anything is unpickled.
    crafted = tmp_path / "crafted.npy"
    np.save(crafted, np.array([{"x": 1.0}] * 4, dtype=object), allow_pickle=True)
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("the loader tried to unpickle crafted.npy")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    with pytest.raises(InvalidInputError, match="crafted.npy"):
        load_muons(crafted)
    process = run_cli("train", "--data", crafted, "--out", tmp_path / "run", *TINY_TRAINING)
    assert_one_line_error(process, "crafted.npy")
    assert not (tmp_path / "run").exists()


# --- resuming and interrupting ------------------------------------------------------------------------

def test_resume_refuses_other_options(run_copy):
    before = (run_copy / "options.json").read_text()
    process = run_cli("train", "--resume", run_copy, "--iterations", "60", "--batch-size", "50", "--model", "wgan-gp")
    assert_one_line_error(process, "only --iterations may change", "--model", "--batch-size")
    assert (run_copy / "options.json").read_text() == before  # nothing trained, nothing rewritten


def test_resume_refuses_default_model_named(run_copy):
    # vanilla is the default of a new run, and naming it beside --resume is still a change to refuse.
    before = (run_copy / "options.json").read_text()
    process = run_cli("train", "--resume", run_copy, "--iterations", "60", "--model", "vanilla")
    assert_one_line_error(process, "only --iterations may change", "--model")
    assert (run_copy / "options.json").read_text() == before


def test_resume_refuses_fewer_iterations_than_trained(run_copy):
    before = (run_copy / "options.json").read_text()
    process = run_cli("train", "--resume", run_copy, "--iterations", "30")
    assert_one_line_error(process, "iterations=30 is below the 40 iterations", "pass at least 40")
    assert (run_copy / "options.json").read_text() == before


def test_evaluate_rejects_non_run_folder(tmp_path):
    process = run_cli("evaluate", tmp_path)
    assert_one_line_error(process, "is not a run folder", "muon-gan train")


def test_swallowed_interrupt_reported_once(monkeypatch, capsys):
    "Ctrl-C inside XGBoost's callback: ctypes reports it through sys.unraisablehook, then XGBoost raises its own error."
    reported = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)

    def handler(arguments):
        for error in (KeyboardInterrupt(), RuntimeError("another unraisable error")):
            sys.unraisablehook(SimpleNamespace(exc_type=type(error), exc_value=error, exc_traceback=None,
                                               err_msg="Exception ignored on calling ctypes callback function",
                                               object=None))
        cli._interrupted = True  # what the SIGINT handler records
        raise RuntimeError("XGBoostError: the data iterator stopped")

    monkeypatch.setattr(cli, "_run_generate", handler)
    assert cli.main(["generate", "RUN", "--n", "10", "--out", "muons.npy"]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "muon-gan: interrupted"
    # Only the interrupt is dropped; any other unraisable error still reaches the hook that was there before.
    assert [type(unraisable.exc_value) for unraisable in reported] == [RuntimeError]
    assert sys.unraisablehook == reported.append


def test_interrupted_train_names_resume(small_data, tmp_path):
    "A real run stopped by SIGINT (Ctrl-C) after its first checkpoint exits 130 and names the --resume command."
    out = tmp_path / "interrupted"
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    process = subprocess.Popen([sys.executable, "-m", "muon_gan_nb.cli", "train", "--data", str(small_data),
                                "--out", str(out), "--iterations", "1000000", "--batch-size", "64",
                                "--eval-every", "100", "--eval-size", "400", "--checkpoint-every", "100"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    try:
        deadline = time.monotonic() + 300
        while not (out / "checkpoints").is_dir() or not any((out / "checkpoints").glob("iteration-*")):
            assert process.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint was written within 300 s"
            time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    checkpoint = checkpoint_iteration(list_checkpoints(out / "checkpoints")[-1])
    last = stderr.strip().splitlines()[-1]
    assert last == (f"muon-gan: interrupted: the run is saved up to its newest checkpoint, iteration {checkpoint}: "
                    f"continue it with `muon-gan train --resume {out}`, or end it there with "
                    f"`muon-gan train --resume {out} --iterations {checkpoint}`"), last
    assert "Traceback" not in stderr
    # metrics.json keeps the losses up to the interruption and names the checkpoint to resume from.
    stopped = json.loads((out / "metrics.json").read_text())
    assert stopped["status"] == "interrupted"
    assert stopped["interruption"]["iteration"] >= checkpoint
    assert stopped["interruption"]["last_checkpoint"].endswith(f"iteration-{checkpoint:09d}")
    assert stopped["iteration"][-1] >= checkpoint
    evaluate = run_cli("evaluate", out)
    assert evaluate.returncode != 0
    assert f"--iterations {checkpoint}`" in evaluate.stderr, evaluate.stderr
    # Resumed at its newest checkpoint, the run has nothing to train but still gets its final evaluation and plots.
    at_checkpoint = run_cli("train", "--resume", out, "--iterations", str(checkpoint))
    assert at_checkpoint.returncode == 0, at_checkpoint.stderr
    assert list((out / "plots").glob("*.png")), "no plots after resuming at the newest checkpoint"
    evaluations = json.loads((out / "metrics.json").read_text())["evaluations"]
    assert [entry["iteration"] for entry in evaluations].count(checkpoint) == 1
    assert evaluations[-1]["bootstrap_resamples"] > 0  # the final evaluation, with its intervals
    resumed = run_cli("train", "--resume", out, "--iterations", str(checkpoint + 100))
    assert resumed.returncode == 0, resumed.stderr
    assert f"at iteration {checkpoint}" in resumed.stderr
    assert json.loads((out / "metrics.json").read_text())["iteration"][-1] == checkpoint + 100
