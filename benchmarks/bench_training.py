"""Time training end to end and bare steps, ours (muon_gan_nb.training.train) beside the study-style reference loop.

Usage: python benchmarks/bench_training.py [--iterations 10000] [--models vanilla wgan-gp guided]
                                           [--bare-iterations 2000] [--json PATH]

Every measurement runs in a fresh Python process, one after the other. Ours runs with the library's TensorFlow
thread pools (one thread per operation, one operation per core at once; `muon_gan_nb.models.configure_cpu_threads`),
the reference with TensorFlow's defaults, as the study's scripts ran. With --variants, two more processes show
what the thread setting alone does: ours with TensorFlow's defaults, and the reference with the library's setting.

End to end: N iterations at the default architecture and batch 100, with the study's evaluation cadence. That is
an XGBoost test on 100,000 real + 100,000 generated muons every 250 iterations and, for guided training, an
importance refresh every 50. Ours is
`train(...)` with its run folder, checkpoints and final evaluation; the reference is `reference_loop.py`. With
--iterations below 10,000 both times are scaled linearly to 10,000, and the table states it. Training data: the
bundled 200,000-muon sample repeated 3 times, so that its 20 % held-out part has the 100,000 real muons an
evaluation needs. Bare steps: iterations per second without any evaluation, after a warm-up call.
Targets: vanilla end to end at least 4x faster than its reference; guided at least 10x faster than its reference
and at most 1.3x our vanilla; bare steps at least 1.5x the per-step reference.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import _common
from muon_gan_nb.models import THREAD_VARIABLES  # the environment variables TensorFlow reads when it starts

STUDY_ITERATIONS = 10_000
MODELS = ("vanilla", "wgan-gp", "guided")
TARGETS = {"vanilla_end_to_end_speedup": 4.0, "guided_end_to_end_speedup": 10.0,
           "guided_over_vanilla_time": 1.3, "bare_step_speedup": 1.5}
THREAD_LABELS = {"library": "1 per operation, 1 operation per core", "tensorflow": "TensorFlow's defaults"}
BARE_REPEATS = 3  # timed runs of the bare step in one process; their median is reported


def prepare_data(copies: int = 3, seed: int = 0) -> dict:
    "The training sample and what both loops need from it, split and scaled as `train` does it."
    from muon_gan_nb.preprocessing import MuonScaler

    sample = _common.repeated_sample(copies)
    train_part, heldout = sample.split(0.2, seed)
    scaler = MuonScaler().fit(train_part.features)
    return {"sample": sample, "train_scaled": scaler.transform(train_part.features),
            "heldout_physical": heldout.features, "scaler": scaler}


def ours_end_to_end(model: str, data: dict, iterations: int, eval_every: int, eval_size: int, refresh_every: int,
                    folder: Path) -> dict:
    "Wall time of muon_gan_nb.training.train for `iterations`, run folder and final evaluation included."
    from muon_gan_nb.training import train

    refresh = {"refresh_every": refresh_every} if model == "guided" else {}
    with _common.stopwatch() as timing:
        run = train(model, data=data["sample"], out=folder / f"run-{model}", iterations=iterations, batch_size=100,
                    eval_every=eval_every, eval_size=eval_size, progress=False, force=True, **refresh)
    metrics = run.metrics
    evaluations = metrics.get("evaluations", [])
    return {**timing, "iterations": iterations, "evaluations": len(evaluations),
            "evaluated_muons": evaluations[-1].get("n_real") if evaluations else None,
            "importance_refreshes": len(metrics.get("importance_refreshes", [])),
            "evaluation_seconds": sum(entry.get("seconds") or 0.0 for entry in evaluations),
            "refresh_seconds": sum(entry.get("seconds") or 0.0 for entry in metrics.get("importance_refreshes", [])),
            "steps_per_execution": run.options.get("steps_per_execution")}


def reference_end_to_end(model: str, data: dict, iterations: int, eval_every: int, eval_size: int,
                         refresh_every: int) -> dict:
    "Wall time of the study-style loop for `iterations`, construction and graph tracing included."
    from reference_loop import ReferenceTrainer

    with _common.stopwatch() as timing:
        trainer = ReferenceTrainer(model, data["train_scaled"], data["heldout_physical"], data["scaler"],
                                   eval_size=eval_size)
        trainer.train(iterations, eval_every, refresh_every)
    return {**timing, "iterations": iterations, "evaluations": len(trainer.evaluations),
            "importance_refreshes": len(trainer.refreshes)}


def _timed_repeats(run, iterations: int, repeats: int) -> dict:
    "Time `run()` (which makes `iterations` iterations) `repeats` times; the median run gives the rate."
    runs = []
    for _ in range(repeats):
        with _common.stopwatch() as timing:
            run()
        runs.append(timing)
    median = statistics.median(run["seconds"] for run in runs)
    return {"seconds": median, "cpu_seconds": statistics.median(run["cpu_seconds"] for run in runs),
            "runs_seconds": [run["seconds"] for run in runs], "iterations": iterations,
            "iterations_per_second": iterations / median}


def ours_bare(model: str, data: dict, iterations: int, steps_per_execution: int = 25, jit_compile="auto",
              repeats: int = BARE_REPEATS) -> dict:
    "Iterations per second of MuonGAN.fit_drawn (as `train` calls it), no callbacks, after a warm-up call."
    from muon_gan_nb.models import make_gan
    from muon_gan_nb.batches import batch_drawer

    gan = make_gan(model, seed=0)
    gan.compile(steps_per_execution=steps_per_execution, jit_compile=jit_compile)
    rows = 100 * int(getattr(gan, "real_batches_per_step", 1))
    draw = batch_drawer(data["train_scaled"], rows, seed=0)
    gan.fit_drawn(draw, steps_per_epoch=2 * steps_per_execution, epochs=1, verbose=0)  # trace
    iterations = max(steps_per_execution, iterations // steps_per_execution * steps_per_execution)
    timing = _timed_repeats(lambda: gan.fit_drawn(draw, steps_per_epoch=iterations, epochs=1, verbose=0),
                            iterations, repeats)
    return {**timing, "steps_per_execution": steps_per_execution, "jit_compile": str(jit_compile)}


def reference_bare(model: str, data: dict, iterations: int, repeats: int = BARE_REPEATS) -> dict:
    "Iterations per second of the per-step reference loop without evaluation, after a few warm-up steps."
    from reference_loop import ReferenceTrainer

    trainer = ReferenceTrainer(model, data["train_scaled"], data["heldout_physical"], data["scaler"])
    for _ in range(5):
        trainer.step()

    def run():
        for _ in range(iterations):
            trainer.step()
    return _timed_repeats(run, iterations, repeats)


MEASUREMENTS = {"ours_end_to_end": ours_end_to_end, "reference_end_to_end": reference_end_to_end,
                "ours_bare": ours_bare, "reference_bare": reference_bare}


def thread_environment(threads: str) -> dict:
    "Environment of a measuring process: 'library' leaves the pools to muon_gan_nb, 'tensorflow' keeps TF's defaults."
    environment = {name: value for name, value in os.environ.items() if name not in THREAD_VARIABLES}
    if threads == "tensorflow":
        environment.update({name: "0" for name in THREAD_VARIABLES})  # 0: TensorFlow chooses
    elif threads != "library":
        raise ValueError(f"threads must be 'library' or 'tensorflow', got {threads!r}")
    return environment


def measure(kind: str, threads: str, **options) -> dict:
    "Run one measurement (a key of MEASUREMENTS) in a fresh Python process with the given thread pools."
    with tempfile.TemporaryDirectory(prefix="bench-training-") as folder:
        output = Path(folder) / "result.json"
        request = {"kind": kind, "options": options, "folder": folder}
        child = subprocess.run([sys.executable, __file__, "--measure", json.dumps(request), "--json", str(output)],
                               env=thread_environment(threads), text=True, capture_output=True)
        if child.returncode != 0:
            raise RuntimeError(f"measuring {kind} {options} failed:\n{child.stderr[-3000:]}")
        return {**json.loads(output.read_text()), "threads": threads}


def _measure_here(request: dict) -> dict:
    "Inside the child: prepare the data, take the measurement, and note the thread pools TensorFlow ran with."
    import tensorflow as tf

    _common.quiet_logging()
    options = dict(request["options"])
    if request["kind"] == "ours_end_to_end":
        options["folder"] = Path(request["folder"])
    result = MEASUREMENTS[request["kind"]](data=prepare_data(), **options)
    # 0 means TensorFlow's default: one thread per core in each pool.
    return {**result, "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads()}


def _per_study_run(entry: dict) -> float:
    "Seconds for the study's 10,000 iterations, scaled linearly from the measured run."
    return entry["seconds"] * STUDY_ITERATIONS / entry["iterations"]


def summarise(result: dict) -> dict:
    "Ratios and PASS/MISS for each target that the measured models allow."
    end_to_end, bare, checks = result["end_to_end"], result["bare"], []
    for model, entry in end_to_end.items():
        entry["speedup"] = entry["reference"]["seconds"] / entry["ours"]["seconds"]
    if "vanilla" in end_to_end:
        speedup = end_to_end["vanilla"]["speedup"]
        checks.append(["vanilla end to end, reference / ours", f"{speedup:.2f}x",
                       f"≥ {TARGETS['vanilla_end_to_end_speedup']:g}x",
                       _common.verdict(speedup >= TARGETS["vanilla_end_to_end_speedup"])])
    if "guided" in end_to_end:
        speedup = end_to_end["guided"]["speedup"]
        checks.append(["guided end to end, reference / ours", f"{speedup:.2f}x",
                       f"≥ {TARGETS['guided_end_to_end_speedup']:g}x",
                       _common.verdict(speedup >= TARGETS["guided_end_to_end_speedup"])])
        if "vanilla" in end_to_end:
            guided, vanilla = end_to_end["guided"]["ours"], end_to_end["vanilla"]["ours"]
            target = f"≤ {TARGETS['guided_over_vanilla_time']:g}x"
            # Fixed costs weigh more in a short run, so only runs of the same length are compared.
            if guided["iterations"] == vanilla["iterations"]:
                ratio = _per_study_run(guided) / _per_study_run(vanilla)
                checks.append(["guided time / vanilla time, ours", f"{ratio:.2f}x", target,
                               _common.verdict(ratio <= TARGETS["guided_over_vanilla_time"])])
            else:
                checks.append(["guided time / vanilla time, ours", "not measured: the two runs differ in length",
                               target, ""])
    for model, entry in bare.items():
        entry["speedup"] = entry["ours"]["iterations_per_second"] / entry["reference"]["iterations_per_second"]
        target = f"≥ {TARGETS['bare_step_speedup']:g}x" if model == "vanilla" else "(none set)"
        verdict = _common.verdict(entry["speedup"] >= TARGETS["bare_step_speedup"]) if model == "vanilla" else ""
        checks.append([f"{model} bare steps, ours / reference", f"{entry['speedup']:.2f}x", target, verdict])
    return {"checks": checks}


def table(result: dict) -> str:
    scaled = any(entry["ours"]["iterations"] != STUDY_ITERATIONS for entry in result["end_to_end"].values())
    rows = []
    for model, entry in result["end_to_end"].items():
        ours, reference = entry["ours"], entry["reference"]
        run = f"{ours['iterations']:,}" + (" (scaled)" if ours["iterations"] != STUDY_ITERATIONS else "")
        rows.append([model, run, f"{_per_study_run(ours):.0f}", f"{_per_study_run(reference):.0f}",
                     f"{entry['speedup']:.2f}x", f"{reference['cpu_seconds'] / ours['cpu_seconds']:.2f}x",
                     f"{ours['evaluations']} / {reference['evaluations']}",
                     f"{ours['importance_refreshes']} / {reference['importance_refreshes']}"])
    end_to_end = _common.markdown_table(
        ["model", "iterations run", "ours, s per 10,000 it.", "reference, s per 10,000 it.", "speedup",
         "speedup in CPU time", "evaluations ours / ref.", "refreshes ours / ref."], rows)

    bare_rows = []
    for model, entry in result["bare"].items():
        ours, reference = entry["ours"], entry["reference"]
        cpu_speedup = (reference["cpu_seconds"] / reference["iterations"]) / (ours["cpu_seconds"] / ours["iterations"])
        bare_rows.append([model, f"{1000 / ours['iterations_per_second']:.2f}",
                          f"{1000 / reference['iterations_per_second']:.2f}", f"{entry['speedup']:.2f}x",
                          f"{cpu_speedup:.2f}x", f"{ours['iterations']:,} / {reference['iterations']:,}"])
    bare = _common.markdown_table(["model", "ours, ms per iteration", "reference, ms per iteration", "speedup",
                                   "speedup in CPU time", "iterations per timed run, ours / ref."], bare_rows)
    breakdown = [f"{model} {entry['ours']['evaluation_seconds']:.0f} s in evaluations, "
                 f"{entry['ours']['refresh_seconds']:.0f} s in refreshes"
                 for model, entry in result["end_to_end"].items() if "evaluation_seconds" in entry["ours"]]
    if breakdown:
        end_to_end += ("\n\nOf our measured (unscaled) times: " + "; ".join(breakdown) + ". The evaluation seconds "
                       "are the classifier's. Except in the final evaluation it runs in a worker thread while "
                       "training goes on, so most of that time overlaps the steps.")
    variants = ""
    if result.get("variants"):
        variant_rows = [[entry.get("loop", "ours"), entry["model"], entry.get("steps_per_execution", "1 (per call)"),
                         entry.get("jit_compile", ""), THREAD_LABELS[entry.get("threads", "library")],
                         f"{1000 / entry['iterations_per_second']:.2f}"] for entry in result["variants"]]
        variants = ("\n\nOther execution options, each in its own process (the rows above: ours with 25 steps per "
                    "call, no XLA and the library's threads; the reference with TensorFlow's threads):\n\n"
                    + _common.markdown_table(["loop", "model", "steps_per_execution", "jit_compile",
                                              "TensorFlow threads", "ms per iteration"], variant_rows))

    checks = _common.markdown_table(["check", "measured", "target", "verdict"], result["summary"]["checks"])
    note = ("Runs shorter than 10,000 iterations are scaled linearly. Fixed costs (graph tracing, our final "
            "evaluation with bootstrap and floor, the plots, model saving) are scaled with them, so such runs "
            "overstate both sides, ours more. " if scaled else "")
    note += ("Speedups and verdicts use wall time. The CPU-time column divides the CPU seconds of all threads, "
             "which depend less on other work sharing the cores.")
    return "\n\n".join(part for part in [end_to_end, note, bare + variants, checks] if part)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=STUDY_ITERATIONS,
                        help="training iterations end to end (default 10000; fewer are scaled to 10000)")
    parser.add_argument("--full", nargs="*", default=[], choices=MODELS,
                        help="models timed for the full 10,000 iterations end to end instead of --iterations")
    parser.add_argument("--bare-iterations", type=int, default=2000, help="iterations timed for the bare step rate")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS, help="models to time")
    parser.add_argument("--eval-every", type=int, default=250, help="iterations between evaluations (default 250)")
    parser.add_argument("--eval-size", type=int, default=100_000, help="muons of each class per evaluation")
    parser.add_argument("--refresh-every", type=int, default=50, help="guided: iterations between importance refreshes")
    parser.add_argument("--variants", action="store_true",
                        help="also time our bare vanilla step with other steps_per_execution and jit_compile values")
    parser.add_argument("--skip-end-to-end", action="store_true", help="time only the bare steps")
    parser.add_argument("--json", default=None, help="write the result as JSON to this file")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # one measurement, run by `measure`
    args = parser.parse_args(argv)

    if args.measure:
        _common.write_result(_measure_here(json.loads(args.measure)), args.json)
        return {}

    _common.quiet_logging()
    result = {"benchmark": "training", "machine": _common.machine(), "date": _common.now(),
              "iterations": args.iterations, "full_models": args.full, "eval_every": args.eval_every,
              "eval_size": args.eval_size, "refresh_every": args.refresh_every, "end_to_end": {}, "bare": {},
              "variants": []}

    for model in args.models:
        # A WGAN-GP iteration makes 5 critic updates, so it times a fifth of the iterations.
        iterations = args.bare_iterations // 5 if model == "wgan-gp" else args.bare_iterations
        result["bare"][model] = {"ours": measure("ours_bare", "library", model=model, iterations=iterations),
                                 "reference": measure("reference_bare", "tensorflow", model=model,
                                                      iterations=iterations)}
    if args.variants:
        for steps, jit, threads in ((1, "auto", "library"), (100, "auto", "library"), (25, True, "library"),
                                    (25, "auto", "tensorflow")):
            result["variants"].append({"loop": "ours", "model": "vanilla", **measure(
                "ours_bare", threads, model="vanilla", iterations=args.bare_iterations, steps_per_execution=steps,
                jit_compile=jit)})
        result["variants"].append({"loop": "reference", "model": "vanilla", **measure(
            "reference_bare", "library", model="vanilla", iterations=args.bare_iterations)})

    if not args.skip_end_to_end:
        for model in args.models:
            iterations = STUDY_ITERATIONS if model in args.full else args.iterations
            settings = {"model": model, "iterations": iterations, "eval_every": args.eval_every,
                        "eval_size": args.eval_size, "refresh_every": args.refresh_every}
            result["end_to_end"][model] = {"ours": measure("ours_end_to_end", "library", **settings),
                                           "reference": measure("reference_end_to_end", "tensorflow", **settings)}

    result["summary"] = summarise(result)
    return _common.finish(result, table, args.json)


if __name__ == "__main__":
    main()
