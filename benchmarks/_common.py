"""Helpers shared by the benchmark scripts: machine description, timing, result files and the table layout."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from muon_gan_nb.data import usable_cores  # noqa: F401  also used by the benchmark scripts as _common.usable_cores

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the tables

BENCHMARKS = Path(__file__).resolve().parent
RESULTS = BENCHMARKS / "results"


def cpu_model() -> str:
    "The processor's model name from /proc/cpuinfo, or platform.processor() where that file is missing."
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_names() -> list[str]:
    "Names of the GPUs TensorFlow sees; empty on a CPU-only machine."
    import tensorflow as tf
    # Physical, not logical, devices: listing logical ones starts TensorFlow, which then keeps its default
    # thread pools instead of the library's (muon_gan_nb.models.configure_cpu_threads).
    return [device.name for device in tf.config.list_physical_devices("GPU")]


def package_versions() -> dict[str, str]:
    "Versions of Python and the packages whose speed the benchmarks measure."
    versions = {"python": sys.version.split()[0]}
    for name in ("numpy", "tensorflow", "keras", "xgboost", "uproot", "pyarrow", "muon_gan_nb"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "unknown")
        except ImportError:
            versions[name] = "not installed"
    return versions


def load_average() -> list[float]:
    "The one-, five- and fifteen-minute load averages, rounded to two decimals."
    return [round(value, 2) for value in os.getloadavg()]


def machine() -> dict:
    "What a reader needs to judge a timing: CPU, cores, load average, GPUs, platform and package versions."
    return {"cpu": cpu_model(), "cores": usable_cores(), "load_average": load_average(),
            "gpus": gpu_names(), "platform": platform.platform(), "versions": package_versions()}


def now() -> str:
    "The current time in UTC, ISO 8601, to the second."
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


@contextmanager
def stopwatch() -> Iterator[dict]:
    "Measure a `with` block: the yielded dict gets `seconds` (wall) and `cpu_seconds` (all threads) at its end."
    timing = {}
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        yield timing
    finally:
        timing["seconds"] = time.perf_counter() - started
        timing["cpu_seconds"] = time.process_time() - cpu_started


def peak_rss_bytes(who: int = resource.RUSAGE_SELF) -> int:
    "Peak resident set size of this process (or of its waited-for children) in bytes; Linux reports KiB."
    peak = resource.getrusage(who).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def markdown_table(header: list[str], rows: list[list]) -> str:
    "A GitHub-flavoured Markdown table."
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def finish(result: dict, table, path: str | Path | None) -> dict:
    "Record the end load average, print the benchmark's table and load, and write the JSON result."
    result["load_average_end"] = load_average()
    result["table"] = table(result)
    print(result["table"])
    print(f"load average at start {result['machine']['load_average']}, at end {result['load_average_end']}")
    write_result(result, path)
    return result


def write_result(result: dict, path: str | Path | None):
    "Write a benchmark's result as indented JSON to `path` (nothing when `path` is None)."
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


def quiet_logging():
    "Silence the library's INFO logs and TensorFlow's Python warnings, so the printed table stays readable."
    import logging
    logging.getLogger("muon_gan_nb").setLevel(logging.WARNING)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def untrained_run(model: str = "vanilla", seed: int = 0):
    "A TrainedRun around a freshly initialised GAN and a scaler fitted on the bundled sample, for speed tests."
    from muon_gan_nb.data import MUON_PDG, load_default_sample
    from muon_gan_nb.models import make_gan
    from muon_gan_nb.preprocessing import MuonScaler
    from muon_gan_nb.training import TrainedRun

    sample = load_default_sample()
    scaler = MuonScaler().fit(sample.features)
    options = {"model": model, "mu_plus_fraction": float((sample.pdg == -MUON_PDG).mean())}
    return TrainedRun(make_gan(model, seed=seed), scaler, options, {}, Path(f"untrained-{model}"))


def repeated_sample(copies: int):
    "The bundled sample repeated `copies` times, so that a 20 % held-out part reaches the study's 100,000 muons."
    from muon_gan_nb.data import MuonSample, load_default_sample
    sample = load_default_sample()
    repeated = MuonSample.concatenate([sample] * copies)
    repeated.source = f"bundled sample x{copies}"
    return repeated
