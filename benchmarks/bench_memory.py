"""Measure the peak resident memory of training streamed from a 10^7-muon sample split over many .npy files.

Usage: python benchmarks/bench_memory.py [--muons 10000000] [--files 50] [--iterations 300] [--json PATH]

The SPLIT_*.npy files are made in a temporary folder by resampling the bundled sample with replacement (SHiP's
8 float32 columns). A child process trains the vanilla GAN on them with `train(..., stream=True)`, evaluations
included; the parent reads the child's peak RSS with resource.getrusage(RUSAGE_CHILDREN). A second child that only
imports the library and builds the GAN shows how much of the peak is the fixed cost of TensorFlow.
Target: at most 2 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import _common

TARGET_BYTES = 2 * 10**9


def make_split_files(folder: Path, muons: int, files: int, seed: int = 0) -> dict:
    "Write `files` SPLIT_*.npy files holding `muons` muons in all, resampled from the bundled sample."
    import numpy as np

    from muon_gan_nb.data import load_default_sample

    ship_rows = load_default_sample().to_ship_array()
    rng = np.random.default_rng(seed)
    sizes = [muons // files + (index < muons % files) for index in range(files)]
    for index, size in enumerate(sizes):
        np.save(folder / f"SPLIT_{index:04d}.npy", ship_rows[rng.integers(0, len(ship_rows), size)])
    total_bytes = sum(path.stat().st_size for path in folder.glob("SPLIT_*.npy"))
    return {"muons": muons, "files": files, "bytes_on_disk": total_bytes}


def _training_child(pattern: str, out: str, iterations: int, eval_every: int):
    "Run inside the child: stream-train the vanilla GAN and print what it did as JSON."
    from muon_gan_nb.training import train
    _common.quiet_logging()
    run = train("vanilla", data=pattern, out=out, iterations=iterations, eval_every=eval_every, stream=True,
                progress=False)
    print(json.dumps({"iterations": run.metrics.get("iterations_trained"), "n_train": run.options.get("n_train"),
                      "evaluations": len(run.metrics.get("evaluations", [])),
                      "peak_rss_bytes_self": _common.peak_rss_bytes()}))


def _baseline_child():
    "Run inside the child: import the library and build the GAN, nothing else; print the peak RSS as JSON."
    import muon_gan_nb.training  # noqa: F401  imports TensorFlow, Keras and XGBoost as training does
    from muon_gan_nb.models import make_gan
    make_gan("vanilla", seed=0).compile()
    print(json.dumps({"peak_rss_bytes_self": _common.peak_rss_bytes()}))


def _run_child(arguments: list[str]) -> dict:
    child = subprocess.run([sys.executable, __file__, *arguments], capture_output=True, text=True, timeout=3600)
    if child.returncode != 0:
        raise RuntimeError(f"child {arguments} failed with exit status {child.returncode}:\n{child.stderr[-3000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def measure(muons: int, files: int, iterations: int, eval_every: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as folder:
        folder = Path(folder)
        data = make_split_files(folder, muons, files)
        with _common.stopwatch() as timing:
            training = _run_child(["--training-child", str(folder / "SPLIT_*.npy"), str(folder / "run"),
                                   str(iterations), str(eval_every)])
        # The training child is this process's first waited-for child, so this is its peak alone.
        training["peak_rss_bytes"] = _common.peak_rss_bytes(resource.RUSAGE_CHILDREN)
        training.update(timing)
    baseline = _run_child(["--baseline-child"])
    return {"data": data, "training": training, "baseline": baseline, "target_bytes": TARGET_BYTES,
            "verdict": _common.verdict(training["peak_rss_bytes"] <= TARGET_BYTES)}


def table(result: dict) -> str:
    data, training, baseline = result["data"], result["training"], result["baseline"]
    rows = [[f"stream-train vanilla, {training['iterations']} iterations, {training['evaluations']} evaluations, on "
             f"{data['muons']:,} muons in {data['files']} .npy files ({data['bytes_on_disk'] / 2**20:.0f} MiB)",
             f"{training['peak_rss_bytes'] / 2**20:.0f} MiB", f"≤ {TARGET_BYTES / 2**20:.0f} MiB (2 GB)",
             result["verdict"]],
            ["import the library and build the GAN only", f"{baseline['peak_rss_bytes_self'] / 2**20:.0f} MiB", "", ""]]
    return _common.markdown_table(["process", "peak RSS", "target", "verdict"], rows)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--muons", type=int, default=10_000_000, help="muons over all SPLIT files (default 1e7)")
    parser.add_argument("--files", type=int, default=50, help="number of SPLIT files (default 50)")
    parser.add_argument("--iterations", type=int, default=300, help="training iterations (default 300)")
    parser.add_argument("--eval-every", type=int, default=100, help="iterations between evaluations (default 100)")
    parser.add_argument("--json", default=None, help="write the result as JSON to this file")
    parser.add_argument("--training-child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--baseline-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.training_child:
        pattern, out, iterations, eval_every = args.training_child
        _training_child(pattern, out, int(iterations), int(eval_every))
        return {}
    if args.baseline_child:
        _baseline_child()
        return {}
    result = {"benchmark": "memory", "machine": _common.machine(), "date": _common.now(),
              **measure(args.muons, args.files, args.iterations, args.eval_every)}
    return _common.finish(result, table, args.json)


if __name__ == "__main__":
    main()
