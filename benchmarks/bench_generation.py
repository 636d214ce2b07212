"""Measure generation speed in muons/s, to memory and to .npy, .root and .parquet files, beside the CPU's FLOP bound.

Usage: python benchmarks/bench_generation.py [--muons 2000000] [--chunk-size 500000] [--json PATH]

The generator has the default architecture and freshly initialised (untrained) weights: the speed of a dense
network does not depend on its weight values. The FLOP bound divides the matrix-multiply rate measured on this
machine in the same run by the generator's FLOPs per muon, counted from its layer sizes.
Target: at least 4e5 muons/s in memory on 2 CPU cores, and file writing at no less than half that speed.
A second part runs generation to .npy in child processes for a small and a large number of muons with the same
chunk size and compares their peak resident memory, to show that memory follows the chunk, not the total.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import _common

TARGET_MUONS_PER_SECOND = 4e5
FILE_FORMATS = (".npy", ".root", ".parquet")


def generator_flops_per_muon(generator) -> dict:
    "Floating-point operations to generate one muon, counted per layer (a multiply-add is two)."
    import keras
    matmul, elementwise = 0, 0
    for layer in generator.layers:
        if isinstance(layer, keras.layers.Dense):
            inputs, outputs = int(layer.kernel.shape[0]), int(layer.kernel.shape[1])
            matmul += 2 * inputs * outputs
            elementwise += outputs  # bias
            if layer.activation is not keras.activations.linear:
                elementwise += outputs  # tanh on the output layer, counted as one operation
        elif isinstance(layer, keras.layers.BatchNormalization):
            elementwise += 2 * int(layer.gamma.shape[0])  # inference: one scale and one shift per unit
        elif isinstance(layer, keras.layers.LeakyReLU):
            elementwise += int(layer.output.shape[-1])
    return {"matmul": matmul, "elementwise": elementwise, "total": matmul + elementwise}


def matmul_gflops(size: int = 4096, repeats: int = 5) -> dict:
    "Best rate in GFLOP/s of a float32 (size x size) @ (size x size) product, with TensorFlow and NumPy."
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    left = rng.standard_normal((size, size), dtype=np.float32)
    right = rng.standard_normal((size, size), dtype=np.float32)
    flops = 2 * size ** 3
    rates = {}
    tf_left, tf_right = tf.constant(left), tf.constant(right)
    tf.matmul(tf_left, tf_right).numpy()  # warm up
    best = float("inf")
    for _ in range(repeats):
        with _common.stopwatch() as timing:
            tf.matmul(tf_left, tf_right).numpy()
        best = min(best, timing["seconds"])
    rates["tensorflow"] = flops / best / 1e9
    best = float("inf")
    for _ in range(repeats):
        with _common.stopwatch() as timing:
            left @ right
        best = min(best, timing["seconds"])
    rates["numpy"] = flops / best / 1e9
    rates["best"] = max(rates["tensorflow"], rates["numpy"])
    rates["size"] = size
    return rates


def speed(muons: int, chunk_size: int, folder: Path) -> dict:
    "Muons per second of the generator alone, of TrainedRun.generate and of generate_to_file per format."
    from muon_gan_nb.training import generate_to_file

    run = _common.untrained_run()
    gan = run.model
    results = {}

    gan.generate_scaled(10_000, seed=0)  # trace the graph before timing
    with _common.stopwatch() as timing:
        gan.generate_scaled(muons, seed=1)
    results["memory, scaled (MuonGAN.generate_scaled)"] = {**timing, "muons": muons}

    run.generate(10_000, seed=0)
    with _common.stopwatch() as timing:
        for start in range(0, muons, chunk_size):
            sample = run.generate_range(start, min(chunk_size, muons - start), seed=1)
            assert len(sample) == min(chunk_size, muons - start)
    results["memory, cm and GeV/c (TrainedRun.generate_range, chunked)"] = {**timing, "muons": muons}

    for suffix in FILE_FORMATS:
        path = folder / f"generated{suffix}"
        generate_to_file(run, 10_000, path, chunk_size=chunk_size, seed=0, progress=False)  # warm the writer
        with _common.stopwatch() as timing:
            generate_to_file(run, muons, path, chunk_size=chunk_size, seed=1, progress=False)
        results[f"file {suffix} (generate_to_file)"] = {**timing, "muons": muons, "bytes": path.stat().st_size}
        path.unlink()

    for entry in results.values():
        entry["muons_per_second"] = entry["muons"] / entry["seconds"]
    return results


def _memory_child(muons: int, chunk_size: int, path: str):
    "Run inside a child process: generate to an .npy file and print this process's peak RSS as JSON."
    from muon_gan_nb.training import generate_to_file
    _common.quiet_logging()
    run = _common.untrained_run()
    generate_to_file(run, muons, path, chunk_size=chunk_size, seed=0, progress=False)
    print(json.dumps({"muons": muons, "chunk_size": chunk_size, "peak_rss_bytes": _common.peak_rss_bytes(),
                      "file_bytes": Path(path).stat().st_size}))


def memory_scaling(chunk_size: int, multiple: int, folder: Path) -> dict:
    "Peak RSS of generating `chunk_size` muons and `multiple` times as many, each in its own child process."
    runs = []
    for muons in (chunk_size, multiple * chunk_size):
        path = folder / f"memory-{muons}.npy"
        child = subprocess.run([sys.executable, __file__, "--memory-child", str(muons), str(chunk_size), str(path)],
                               capture_output=True, text=True, timeout=1800, check=True)
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
        path.unlink()
    small, large = runs
    growth = large["peak_rss_bytes"] - small["peak_rss_bytes"]
    return {"chunk_size": chunk_size, "runs": runs, "growth_bytes": growth,
            "growth_per_extra_muon_bytes": growth / (large["muons"] - small["muons"])}


def table(result: dict) -> str:
    flops, rates = result["flops_per_muon"], result["matmul_gflops"]
    bound = result["flop_bound_muons_per_second"]
    memory_rate = result["speed"]["memory, cm and GeV/c (TrainedRun.generate_range, chunked)"]["muons_per_second"]
    rows = []
    for name, entry in result["speed"].items():
        rate = entry["muons_per_second"]
        if name.startswith("memory"):
            target, passed = f"≥ {TARGET_MUONS_PER_SECOND:.0e}", rate >= TARGET_MUONS_PER_SECOND
        else:
            target, passed = f"≥ {memory_rate / 2:.3g} (half of memory)", rate >= memory_rate / 2
        rows.append([name, f"{entry['muons']:,}", f"{entry['seconds']:.2f}", f"{rate:.3g}", f"{rate / bound:.0%}",
                     target, _common.verdict(passed)])
    speed_table = _common.markdown_table(
        ["generation", "muons", "seconds", "muons/s", "of FLOP bound", "target", "verdict"], rows)
    bound_line = (f"FLOP bound: {rates['best']:.1f} GFLOP/s (best of TensorFlow {rates['tensorflow']:.1f} and NumPy "
                  f"{rates['numpy']:.1f}, float32 {rates['size']}x{rates['size']} matmul, measured in this run) / "
                  f"{flops['total']:,} FLOPs per muon ({flops['matmul']:,} in matmuls) = {bound:.3g} muons/s. "
                  "Weights are untrained (speed does not depend on them).")
    memory = result["memory"]
    small, large = memory["runs"]
    memory_line = (f"Peak RSS generating to .npy with chunks of {memory['chunk_size']:,}: "
                   f"{small['muons']:,} muons {small['peak_rss_bytes'] / 2**20:.0f} MiB, "
                   f"{large['muons']:,} muons {large['peak_rss_bytes'] / 2**20:.0f} MiB "
                   f"(growth {memory['growth_bytes'] / 2**20:+.0f} MiB, "
                   f"{memory['growth_per_extra_muon_bytes']:.2g} bytes per extra muon). Extrapolated, not run: "
                   f"1e8 muons at that growth would add {memory['growth_per_extra_muon_bytes'] * 1e8 / 2**20:.0f} MiB.")
    return "\n\n".join([speed_table, bound_line, memory_line])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--muons", type=int, default=2_000_000, help="muons per timed measurement (default 2000000)")
    parser.add_argument("--chunk-size", type=int, default=500_000, help="muons generated and written at a time")
    parser.add_argument("--memory-chunk-size", type=int, default=100_000,
                        help="chunk size of the memory comparison (default 100000)")
    parser.add_argument("--memory-multiple", type=int, default=20,
                        help="the large memory run writes this many chunks, the small one a single chunk")
    parser.add_argument("--json", default=None, help="write the result as JSON to this file")
    parser.add_argument("--memory-child", nargs=3, metavar=("MUONS", "CHUNK", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        muons, chunk, path = args.memory_child
        _memory_child(int(muons), int(chunk), path)
        return {}
    _common.quiet_logging()
    result = {"benchmark": "generation", "machine": _common.machine(), "date": _common.now()}
    run = _common.untrained_run()
    result["flops_per_muon"] = generator_flops_per_muon(run.model.generator)
    result["matmul_gflops"] = matmul_gflops()
    result["flop_bound_muons_per_second"] = result["matmul_gflops"]["best"] * 1e9 / result["flops_per_muon"]["total"]
    with tempfile.TemporaryDirectory(prefix="bench-generation-") as folder:
        result["speed"] = speed(args.muons, args.chunk_size, Path(folder))
        result["memory"] = memory_scaling(args.memory_chunk_size, args.memory_multiple, Path(folder))
    return _common.finish(result, table, args.json)


if __name__ == "__main__":
    main()
