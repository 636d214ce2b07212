"""End-to-end tests of the study runner: real training, real XGBoost, report files written and read back."""

import json
import math

import pytest

from muon_gan_nb.cli import main
from muon_gan_nb.data import FEATURES, InvalidInputError, load_default_sample
from muon_gan_nb.study import ABLATION_FEATURES, STUDY_PUBLISHED, load_study, run_study, spread
from muon_gan_nb.writers import write_muons

TABLES = ("table1_importances", "figure4_ablation", "table2_guided_importances", "table3_time_convergence",
          "feature_engineering", "prompt_spike", "fidelity")


@pytest.fixture(scope="module")
def tiny_sample():
    return load_default_sample().sample(3_000, seed=5)


@pytest.fixture(scope="module")
def tiny_study(tiny_sample, tmp_path_factory):
    "Two models, one transform, the prompt-aware vanilla GAN, one seed, 50 iterations."
    out = tmp_path_factory.mktemp("study")
    result = run_study(out, seeds=(0,), models=("vanilla", "wgan-gp"), transforms=("polar",), iterations=50,
                       data=tiny_sample, eval_size=300, monitor_size=200, eval_every=25, prompt_models=("vanilla",))
    return out, result


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def test_study_writes_report_files(tiny_study):
    out, result = tiny_study
    for name in ("report.md", "results.json"):
        assert (out / name).is_file()
    figures = sorted(path.name for path in (out / "figures").iterdir())
    assert figures == sorted(result.figures)
    for name in ("figure4_ablation.png", "importances.png", "roc.png", "transforms.png"):
        assert name in figures
        assert (out / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.rglob("*.tmp*")), "a temporary file of an atomic write was left behind"


def test_study_tables_structure(tiny_study):
    _, result = tiny_study
    tables = result.tables
    assert sorted(tables) == sorted(TABLES)
    table1 = tables["table1_importances"]
    assert [row["feature"] for row in table1] == list(FEATURES)
    for row in table1:
        for model in ("vanilla", "wgan-gp"):
            assert _finite(row[model]["mean"])
            assert row[f"study {model}"] == STUDY_PUBLISHED["table1_importances"][model][row["feature"]]
    for model in ("vanilla", "wgan-gp"):
        assert sum(row[model]["mean"] for row in table1) == pytest.approx(1.0, abs=1e-6)
    assert tables["table2_guided_importances"] == []  # no guided model was asked for

    table3 = tables["table3_time_convergence"]
    assert [row["model"] for row in table3] == ["vanilla", "wgan-gp"]
    for row in table3:
        assert row["seconds_per_10k"]["mean"] > 0
        assert 0 < row["training_seconds_per_10k"]["mean"] <= row["seconds_per_10k"]["mean"]
        assert 0.0 <= row["auc"]["mean"] <= 1.0
        assert _finite(row["floor_auc"]["mean"])
        assert row["convergence_checks"] == [2]  # evaluations at iterations 25 and 50
        assert row["study_seconds_per_10k"] == STUDY_PUBLISHED["table3"][row["model"]]["seconds_per_10k"]

    trials = tables["feature_engineering"]
    assert [(row["transform"], row["model"]) for row in trials] == [
        ("none", "vanilla"), ("none", "wgan-gp"), ("polar", "vanilla"), ("polar", "wgan-gp")]
    for row in trials:
        assert _finite(row["auc"]["mean"])
        assert _finite(row["floor_auc"]["mean"])
        assert sorted(row["importances"]) == sorted(FEATURES)
    for row in trials[2:]:
        assert row["invertible"] is True
        assert _finite(row["transformed_space_auc"]["mean"])


def test_ablation_excludes_x_and_y(tiny_study):
    _, result = tiny_study
    for row in result.tables["figure4_ablation"]:
        assert "x" not in row["importances_without_xy"]
        assert "y" not in row["importances_without_xy"]
        assert sorted(row["importances_without_xy"]) == sorted(ABLATION_FEATURES)
        assert _finite(row["auc_without_xy"]["mean"])
        assert _finite(row["floor_without_xy"]["mean"])
    for record in result.runs:
        assert record["without_xy"]["features"] == list(ABLATION_FEATURES)
        assert set(record["without_xy"]["feature_importances"]).isdisjoint({"x", "y"})
        assert set(record["feature_importances"]) == set(FEATURES)


def test_prompt_aware_muons_at_origin(tiny_study):
    _, result = tiny_study
    rows = {row["variant"]: row for row in result.tables["prompt_spike"]}
    assert sorted(rows) == ["plain", "prompt-aware", "prompt-aware + quantile"]
    assert rows["prompt-aware + quantile"]["transform"] == "quantile"
    real_fraction = rows["prompt-aware"]["prompt_fraction_real"]["mean"]
    generated_count = next(record["n_generated"] for record in result.runs if record["model"] == "prompt-aware vanilla")
    tolerance = 5 * math.sqrt(real_fraction * (1 - real_fraction) / generated_count)  # 5 binomial standard deviations
    for variant in ("prompt-aware", "prompt-aware + quantile"):  # the spike survives the quantile transform
        assert rows[variant]["prompt_fraction_generated"]["mean"] == pytest.approx(real_fraction, abs=tolerance)
    assert rows["plain"]["prompt_fraction_generated"]["mean"] < 0.01  # a continuous generator misses the point


def test_study_results_read_back(tiny_study):
    out, result = tiny_study
    reloaded = load_study(out)
    assert reloaded.tables == json.loads(json.dumps(result.to_dict()))["tables"]
    assert reloaded.settings["iterations"] == 50
    assert reloaded.environment["cpu_count"] >= 1
    assert len(reloaded.environment["load_start"]) == 3
    markdown = (out / "report.md").read_text()
    for heading in ("## Table 1", "## Figure 4", "## Table 3", "## Feature-engineering trials", "## The prompt spike",
                    "## Fidelity beyond one AUC"):
        assert heading in markdown
    assert "0.358" in markdown  # the study's vanilla x importance, beside ours
    assert reloaded.best["reaches_target"] == (reloaded.best["auc"] <= 0.60)
    assert reloaded.full_mode_estimate_minutes > 0
    assert list(reloaded.frame("table3_time_convergence")["model"]) == ["vanilla", "wgan-gp"]


def test_study_command_line(tiny_sample, tmp_path, capsys):
    data = write_muons(tiny_sample, tmp_path / "muons.parquet")
    out = tmp_path / "report"
    status = main(["study", "--out", str(out), "--quick", "--seeds", "1", "--models", "vanilla", "--transforms",
                   "--prompt-models", "--iterations", "25", "--eval-size", "200", "--monitor-size", "100",
                   "--eval-every", "25", "--data", str(data)])
    assert status == 0
    assert str(out / "report.md") in capsys.readouterr().out
    result = load_study(out)
    assert result.settings["seeds"] == [1]
    assert result.settings["iterations"] == 25
    assert result.environment["command"].startswith("muon-gan study --out")
    assert result.tables["feature_engineering"] == []
    assert result.tables["prompt_spike"] == []
    assert [row["model"] for row in result.tables["figure4_ablation"]] == ["vanilla"]
    assert _finite(result.runs[0]["auc"])
    assert _finite(result.runs[0]["without_xy"]["auc"])
    assert main(["study", "--out", str(out), "--quick", "--seeds", "1", "--models", "vanilla", "--transforms",
                 "--prompt-models", "--iterations", "25", "--data", str(data)]) == 2  # report exists, no --force
    assert "already contains a study report" in capsys.readouterr().err


def test_study_rejects_bad_options(tmp_path, capsys):
    with pytest.raises(InvalidInputError, match="models"):
        run_study(tmp_path / "a", models=("gan",))
    with pytest.raises(InvalidInputError, match="fourier"):
        run_study(tmp_path / "b", transforms=("fourier",))
    with pytest.raises(InvalidInputError, match="seeds"):
        run_study(tmp_path / "c", seeds=(0, 0))
    with pytest.raises(InvalidInputError, match="prompt_models"):
        run_study(tmp_path / "d", prompt_models=("guided",))
    assert main(["study", "--out", str(tmp_path / "e"), "--quick", "--full"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["study", "--quick"]) == 2  # --out is required


def test_spread_over_seeds():
    assert spread([0.8, 0.9, 1.0])["mean"] == pytest.approx(0.9)
    assert spread([0.8, 0.9, 1.0])["std"] == pytest.approx(0.1)
    assert spread([None, 0.7]) == {"mean": 0.7, "std": None, "n": 1, "values": [None, 0.7]}
