"""Run every benchmark, each in its own process, and write benchmarks/results/latest.md and latest.json.

Usage: python benchmarks/run_all.py [--sizes standard|quick|gpu] [--only training generation ...] [--results FOLDER]

--sizes standard (the default) gives the figures recorded in the docs page (training: vanilla and guided for the
study's full 10,000 iterations, WGAN-GP for 2,500 scaled to 10,000) and writes latest.md and latest.json. --sizes
quick runs tiny sizes to check that the scripts work. Its numbers mean nothing, so it writes quick.md and quick.json
to a temporary folder unless --results is given. --sizes gpu is what benchmarks/gpu.sh runs on a CUDA machine
(training and generation, about 5 minutes); it writes gpu.md and gpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common

STANDARD = {
    "training": ["--iterations", "2500", "--full", "vanilla", "guided", "--bare-iterations", "2000", "--variants"],
    "generation": [],
    "evaluation": [],
    "memory": [],
}
QUICK = {
    "training": ["--iterations", "100", "--bare-iterations", "100", "--eval-every", "50", "--eval-size", "5000",
                 "--refresh-every", "25"],
    "generation": ["--muons", "100000", "--chunk-size", "50000", "--memory-chunk-size", "20000",
                   "--memory-multiple", "5"],
    "evaluation": ["--size", "20000", "--repeats", "1"],
    "memory": ["--muons", "200000", "--files", "5", "--iterations", "50", "--eval-every", "25"],
}
GPU = {
    "training": ["--iterations", "500", "--bare-iterations", "2000"],
    "generation": ["--muons", "5000000", "--chunk-size", "1000000", "--memory-chunk-size", "500000",
                   "--memory-multiple", "10"],
}
SIZES = {"standard": STANDARD, "quick": QUICK, "gpu": GPU}
TITLES = {"training": "Training", "generation": "Generation", "evaluation": "Evaluation", "memory": "Memory"}
BUSY_LOAD = 1.0  # a one-minute load average above this means other work shared the cores
SETTLE_SECONDS = 90  # maximum wait for the load of the previous benchmark to decay before the next one starts


def wait_for_settled_load(limit: float = SETTLE_SECONDS, poll: float = 5.0) -> float:
    "Wait until the one-minute load average is at most BUSY_LOAD, or `limit` seconds; returns the seconds waited."
    # The one-minute average decays over about a minute, so right after a benchmark it still counts that
    # benchmark's own threads. Waiting lets the next start value tell other work apart from our own.
    waited = 0.0
    while os.getloadavg()[0] > BUSY_LOAD and waited < limit:
        time.sleep(poll)
        waited += poll
    return waited


def run_benchmark(name: str, arguments: list[str], folder: Path) -> dict:
    "Run benchmarks/bench_NAME.py with `arguments` in a child process and return its JSON result."
    script = _common.BENCHMARKS / f"bench_{name}.py"
    output = folder / f"{name}.json"
    command = [sys.executable, str(script), *arguments, "--json", str(output)]
    waited = wait_for_settled_load()
    print(f"running: {shlex.join(command[1:])} (after waiting {waited:.0f} s for the load to settle)", flush=True)
    child = subprocess.run(command, text=True, capture_output=True)
    if child.returncode != 0:
        print(child.stderr[-5000:], file=sys.stderr)
        return {"benchmark": name, "error": f"exit status {child.returncode}", "stderr_tail": child.stderr[-3000:],
                "command": shlex.join(["python", f"benchmarks/bench_{name}.py", *arguments])}
    print(child.stdout, flush=True)
    result = json.loads(output.read_text())
    result["command"] = shlex.join(["python", f"benchmarks/bench_{name}.py", *arguments])
    return result


def markdown(report: dict) -> str:
    "The results page: command, date, hardware, versions, load, then one section per benchmark."
    machine = report["machine"]
    loads = [machine["load_average"][0], *(result["machine"]["load_average"][0]
                                           for result in report["results"].values() if "machine" in result)]
    lines = [
        "# Benchmark results",
        "",
        f"- Command: `{report['command']}`",
        f"- Date (UTC): {report['date']}",
        f"- CPU: {machine['cpu']}, {machine['cores']} usable core(s); GPU: {', '.join(machine['gpus']) or 'none'}",
        f"- Platform: {machine['platform']}",
        "- Versions: " + ", ".join(f"{name} {version}" for name, version in machine["versions"].items()),
        f"- One-minute load averages at the start of the command and of each benchmark: "
        f"{', '.join(f'{load:.2f}' for load in loads)}",
        "",
    ]
    if max(loads) > BUSY_LOAD:
        lines += [f"> **Load.** A one-minute load average above {BUSY_LOAD:g} was seen at the start of the command "
                  "or of a benchmark. That average decays over about a minute, so it can still count the threads of "
                  f"the benchmark before. It can also mean that other work shared the {machine['cores']} core(s), "
                  "and the times are then noisy and too slow. Ratios between runs made minutes apart are uncertain; "
                  "rerun on a quiet machine before quoting them.", ""]
    if report.get("updated"):
        updated = report["updated"]
        lines += [f"> **Partly rerun.** The last command reran {', '.join(updated['rerun'])}; other sections come from "
                  "earlier runs. Each section gives its own date and load average.", ""]
    if report["sizes"] == "quick":
        lines += ["> **Quick run.** Tiny sizes that only check the scripts work; these numbers mean nothing.", ""]
    for name in sorted(report["results"], key=list(TITLES).index):
        result = report["results"][name]
        lines += [f"## {TITLES[name]}", "", f"`{result['command']}`", ""]
        if "machine" in result:
            lines += [f"Run {result['date']}, one-minute load average {result['machine']['load_average'][0]:.2f} at "
                      f"the start and {result['load_average_end'][0]:.2f} at the end.", ""]
        if "error" in result:
            lines += [f"Failed ({result['error']}):", "", "```", result["stderr_tail"], "```", ""]
        else:
            lines += [result["table"], ""]
    return "\n".join(lines) + "\n"


def render_tables(report: dict) -> dict:
    "Rebuild each benchmark's table from its stored measurements with the current table layout."
    import importlib
    for name, result in report["results"].items():
        if "error" not in result:
            result["table"] = importlib.import_module(f"bench_{name}").table(result)
    return report


def write_report(report: dict, results: Path, stem: str):
    "Write the report as RESULTS/STEM.json and the Markdown page as RESULTS/STEM.md."
    report["load_average_end"] = _common.load_average()
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (results / f"{stem}.md").write_text(markdown(report))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", choices=list(SIZES), default="standard",
                        help="standard: the recorded figures; quick: tiny, only to check the scripts; gpu: for gpu.sh")
    parser.add_argument("--only", nargs="+", choices=list(STANDARD), default=None,
                        help="benchmarks to run (default all that the sizes define)")
    parser.add_argument("--results", default=None,
                        help="folder for the results files (default benchmarks/results; a temporary folder with --sizes quick)")
    parser.add_argument("--update", action="store_true",
                        help="keep the other benchmarks' results in STEM.json and replace only those run now")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite STEM.md from the STEM.json already in the results folder, running nothing")
    args = parser.parse_args(argv)

    sizes = SIZES[args.sizes]
    names = args.only or list(sizes)
    unknown = [name for name in names if name not in sizes]
    if unknown:
        parser.error(f"--sizes {args.sizes} defines no sizes for {', '.join(unknown)}; choose from {', '.join(sizes)}")
    report = {"command": shlex.join(["python", "benchmarks/run_all.py", *(argv if argv is not None else sys.argv[1:])]),
              "date": _common.now(), "machine": _common.machine(), "sizes": args.sizes, "results": {}}

    quick_folder = Path(tempfile.gettempdir()) / "muon_gan_nb-benchmarks-quick"
    if args.results:
        results = Path(args.results)
    elif args.sizes == "quick":
        results = quick_folder
    else:
        results = _common.RESULTS
    stem = {"standard": "latest", "quick": "quick", "gpu": "gpu"}[args.sizes]
    if args.render_only:
        report = render_tables(json.loads((results / f"{stem}.json").read_text()))
        (results / f"{stem}.md").write_text(markdown(report))
        print(f"rewrote {results / f'{stem}.md'} from {results / f'{stem}.json'}")
        return report
    if args.update and (results / f"{stem}.json").is_file():
        previous = json.loads((results / f"{stem}.json").read_text())
        report["results"] = {name: result for name, result in previous["results"].items() if name not in names}
        report["updated"] = {"previous_command": previous["command"], "previous_date": previous["date"],
                             "rerun": names}
    with tempfile.TemporaryDirectory(prefix="benchmarks-") as folder:
        for name in names:
            report["results"][name] = run_benchmark(name, sizes[name], Path(folder))
            # Written after each benchmark, so a run stopped by a time limit keeps what it measured.
            write_report(report, results, stem)
    print(f"wrote {results / f'{stem}.md'} and {results / f'{stem}.json'}")
    return report


if __name__ == "__main__":
    main()
