"""Benchmark the series: run each notebook headless, report wall time and peak memory.

Usage: python tests/bench.py notebooks/01_architecture.ipynb [...]   (or `make bench`)

Each notebook runs in a fresh process (kernel start included). Beside the
notebooks we measure, in the same run, the bare `import torch, transformers,
peft` and the time to load the offline model, because the targets are
written in those units:

- notebooks 01-02 (they load the real model): wall time <= 2 x bare import + model load;
- notebooks 03-04 (counting needs no weights): wall time <= 2 x bare import;
- every notebook: peak memory <= 3 GB; the whole series: <= 180 s.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RUN_TIMES = Path(__file__).resolve().parent.parent / "assets" / "run_times.json"
SERIES_SECONDS = 180.0
PEAK_LIMIT_MB = 3 * 1024
REPEATS = 3

EXECUTE_ONE = """
import json, resource, sys, time
import nbformat
from nbclient import NotebookClient
path = sys.argv[1]
notebook = nbformat.read(path, as_version=4)
start = time.perf_counter()
NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
seconds = time.perf_counter() - start
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_mb": max(children, own) / 1024}))
"""


def python_output(code: str, *args: str) -> list[str]:
    """Lines printed by a fresh ``python -c code args...``."""
    result = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True)
    return result.stdout.strip().splitlines()


def timed_python(code: str) -> float:
    """Wall seconds of a fresh ``python -c code``."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def median_seconds(code: str) -> float:
    return statistics.median(timed_python(code) for _ in range(REPEATS))


LOAD_MODEL_TWICE = """
import time, helpers
for _ in range(2):
    start = time.perf_counter()
    helpers.load_model()
    print(time.perf_counter() - start)
"""


def model_load_seconds() -> tuple[float, float]:
    """Seconds of `helpers.load_model()` in a fresh process: first call (lazy imports included), second call."""
    first, second = [], []
    for _ in range(REPEATS):
        lines = python_output(LOAD_MODEL_TWICE)
        first.append(float(lines[-2]))
        second.append(float(lines[-1]))
    return statistics.median(first), statistics.median(second)


BUILD_SKELETONS = """
import time, helpers
helpers.build_skeleton(helpers.DEFAULT_MODEL)  # warm-up: first use imports the model code
for name in helpers.catalog():
    start = time.perf_counter()
    helpers.build_skeleton(name)
    print(name, time.perf_counter() - start)
"""


def skeleton_seconds() -> dict[str, float]:
    """Seconds to build each catalog model on the meta device (after a warm-up build)."""
    timings = {}
    for line in python_output(BUILD_SKELETONS):
        name, seconds = line.rsplit(" ", 1)
        timings[name] = float(seconds)
    return timings


def run_notebook(path: Path) -> dict:
    """Execute one notebook in a fresh process; return its seconds and peak memory (MB)."""
    return json.loads(python_output(EXECUTE_ONE, str(path), str(path.parent))[-1])


def main(paths: list[str]) -> int:
    bare_import = median_seconds("import torch, transformers, peft")
    model_load, warm_load = model_load_seconds()
    budgets = {"01": 2 * bare_import + model_load, "02": 2 * bare_import + model_load,
               "03": 2 * bare_import, "04": 2 * bare_import}
    print(f"bare import torch, transformers, peft:  {bare_import:6.2f} s (median of {REPEATS})")
    print(f"helpers.load_model(), first call:       {model_load:6.2f} s (its lazy imports included)")
    print(f"helpers.load_model(), imports warm:     {warm_load:6.2f} s")
    slowest_name, slowest = max(skeleton_seconds().items(), key=lambda item: item[1])
    print(f"slowest meta-device skeleton:           {slowest:6.2f} s ({slowest_name})")
    print()
    print(f"{'notebook':34s} {'seconds':>8s} {'budget s':>8s} {'peak MB':>8s}  verdict")
    failures = 0
    total = 0.0
    seconds_by_notebook = {}
    for path in map(Path, paths):
        run = run_notebook(path)
        total += run["seconds"]
        seconds_by_notebook[path.name] = round(run["seconds"], 1)
        budget = budgets.get(path.name[:2], float("inf"))  # 05-06: only the series total applies
        verdicts = []
        if run["seconds"] > budget:
            verdicts.append("over time budget")
        if run["peak_mb"] > PEAK_LIMIT_MB:
            verdicts.append("over 3 GB")
        failures += bool(verdicts)
        shown_budget = f"{budget:8.2f}" if budget != float("inf") else f"{'-':>8s}"
        print(f"{path.name:34s} {run['seconds']:8.2f} {shown_budget} {run['peak_mb']:8.0f}  {', '.join(verdicts) or 'ok'}")
    series_ok = total <= SERIES_SECONDS
    failures += not series_ok
    print(f"{'whole series':34s} {total:8.2f} {SERIES_SECONDS:8.2f} {'':8s}  {'ok' if series_ok else 'over 180 s'}")
    write_run_times(seconds_by_notebook)
    return 1 if failures else 0


def write_run_times(seconds_by_notebook: dict[str, float]) -> None:
    """Keep the measured times for the README's table of notebooks (`make course` writes it)."""
    record = {"measured by": "make bench", "cpu cores": os.cpu_count(), "seconds": seconds_by_notebook}
    RUN_TIMES.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
