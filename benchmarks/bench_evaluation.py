"""Time one XGBoost fidelity test on 100,000 real + 100,000 generated muons, generating the 100,000 included.

Usage: python benchmarks/bench_evaluation.py [--size 100000] [--repeats 3] [--json PATH]

The generator is freshly initialised (untrained). Its muons are easy to tell from real ones, so XGBoost's trees
stop splitting early and the fit is faster than it will be in training. The target line therefore times the
generation of 100,000 muons followed by the classifier test on two real samples, which separate no better than
muons from a well-trained generator. Target: at most 2 s on 2 cores.
"""

from __future__ import annotations

import argparse
import statistics

import _common

TARGET_SECONDS = 2.0


def measure(size: int, repeats: int) -> dict:
    "Time generation plus one classifier test, against an untrained generator and in the real-versus-real case."
    import numpy as np

    from muon_gan_nb.data import FEATURES
    from muon_gan_nb.evaluation import _classifier_settings, _fit_classifier, evaluate_fidelity

    run = _common.untrained_run()
    real_pool = _common.repeated_sample(2 if 2 * size > 200_000 else 1)
    real = real_pool.sample(size, seed=1)
    reference = real_pool.sample(size, seed=2)

    def test(generated, **xgb_options) -> None:
        report = evaluate_fidelity(real, generated, n=size, seed=0, floor=False, bootstrap=0, distances=False,
                                   **xgb_options)
        assert 0.0 <= report.auc <= 1.0

    def generate_and_test(seed: int, versus_real: bool, **xgb_options) -> dict:
        # Untrained muons separate from real ones after a few splits, so the trees stop early. Muons from a
        # well-trained generator are as hard to separate as a second real sample, which makes that the target case.
        with _common.stopwatch() as timing:
            generated = run.generate(size, seed=seed)
            test(reference if versus_real else generated, **xgb_options)
        return timing

    cold = generate_and_test(0, versus_real=False)  # includes tracing the generator's graph
    untrained = [generate_and_test(seed, versus_real=False) for seed in range(1, repeats + 1)]
    realistic = [generate_and_test(seed, versus_real=True) for seed in range(1, repeats + 1)]
    # XGBoost's OpenMP threads can stall against TensorFlow's thread pools in the same process; one thread avoids it.
    one_thread = [generate_and_test(seed, versus_real=True, n_jobs=1) for seed in range(1, repeats + 1)]

    with _common.stopwatch() as generation:
        run.generate(size, seed=99)

    # The boosted-tree fit alone, on half of two real samples, as evaluate_fidelity fits it.
    params, rounds = _classifier_settings(0, {})
    half = size // 2
    features = np.concatenate([real.features[:half], reference.features[:half]])
    labels = np.r_[np.zeros(half), np.ones(half)].astype(np.float32)
    with _common.stopwatch() as fit_alone:
        _fit_classifier(features, labels, params, rounds, list(FEATURES))

    median = statistics.median(entry["seconds"] for entry in realistic)
    return {"size": size, "repeats": repeats, "cold": cold, "untrained": untrained, "realistic": realistic,
            "median_seconds": median,
            "median_cpu_seconds": statistics.median(entry["cpu_seconds"] for entry in realistic),
            "untrained_median_seconds": statistics.median(entry["seconds"] for entry in untrained),
            "one_thread": one_thread,
            "one_thread_median_seconds": statistics.median(entry["seconds"] for entry in one_thread),
            "generation_seconds": generation["seconds"], "hist_fit_seconds": fit_alone["seconds"],
            "classifier": {**params, "n_estimators": rounds}, "target_seconds": TARGET_SECONDS,
            "verdict": _common.verdict(median <= TARGET_SECONDS)}


def table(result: dict) -> str:
    size = f"{result['size']:,} + {result['size']:,}"
    rows = [
        [f"generate {result['size']:,}, then XGBoost AUC on {size}, classes as hard to separate as two real "
         f"samples (median of {result['repeats']})", f"{result['median_seconds']:.2f} s "
         f"({result['median_cpu_seconds']:.2f} s CPU)", f"≤ {TARGET_SECONDS:g} s", result["verdict"]],
        [f"same with XGBoost on one thread (n_jobs=1; median of {result['repeats']})",
         f"{result['one_thread_median_seconds']:.2f} s", f"≤ {TARGET_SECONDS:g} s",
         _common.verdict(result["one_thread_median_seconds"] <= TARGET_SECONDS)],
        [f"same against the untrained generator's muons (easy to separate; median of {result['repeats']})",
         f"{result['untrained_median_seconds']:.2f} s", "", ""],
        ["same, first call (traces the generator's graph)", f"{result['cold']['seconds']:.2f} s", "", ""],
        [f"generation of {result['size']:,} alone", f"{result['generation_seconds']:.2f} s", "", ""],
        [f"hist fit alone ({result['size']:,} real muons in two halves, {result['classifier']['n_estimators']} "
         f"trees of depth {result['classifier']['max_depth']})", f"{result['hist_fit_seconds']:.2f} s", "", ""],
    ]
    return _common.markdown_table(["evaluation", "time", "target", "verdict"], rows)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000, help="muons of each class (default 100000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions of each case, after a first call that traces the graph")
    parser.add_argument("--json", default=None, help="write the result as JSON to this file")
    args = parser.parse_args(argv)
    _common.quiet_logging()
    result = {"benchmark": "evaluation", "machine": _common.machine(), "date": _common.now(),
              **measure(args.size, args.repeats)}
    return _common.finish(result, table, args.json)


if __name__ == "__main__":
    main()
