"""Benchmark the series: run each notebook headless, report wall time and peak memory.

Usage: python tests/bench.py notebooks/01_architecture.ipynb [...]   (or `make bench`)

Each notebook runs in a fresh process (kernel start included). Beside the
notebooks we measure, in the same run, an import-only kernel (a notebook whose
one cell is the setup the counting notebooks 03 and 07 share and nothing else: the retina figure
format, matplotlib's pyplot, pandas, torch, transformers, helpers and peft), the bare import in
plain Python and the time to load the offline model. The targets:

- every notebook: wall time <= 90 s and peak memory <= 3 GB (the largest process, or all its processes
  together, sampled every 0.1 s as proportional set size, which counts shared libraries once); the whole series: <= 5 min;
- a counting-only notebook (one that never calls helpers.load_model, so it loads no weights):
  wall time <= 2 x the import-only kernel.

For each notebook the three slowest cells are listed, so that a slow notebook says where its time goes.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RUN_TIMES = Path(__file__).resolve().parent.parent / "assets" / "run_times.json"
SERIES_SECONDS = 300.0  # the brief: the whole series <= 5 min
NOTEBOOK_SECONDS = 90.0
PEAK_LIMIT_MB = 3 * 1024
REPEATS = 3

EXECUTE_ONE = """
import json, resource, sys, threading, time
from datetime import datetime
import nbformat
import psutil
from nbclient import NotebookClient

tree_peak, running = [0], [True]
def watch_tree():  # the kernel and the processes it starts (notebook 10's ranks), summed: PSS counts shared pages once
    while running[0]:
        tree = psutil.Process().children(recursive=True)
        if len(tree) > 1:  # the kernel alone is measured exactly by ru_maxrss; reading PSS costs CPU, so only then
            total = 0
            for process in tree:
                try:
                    total += process.memory_full_info().pss
                except psutil.Error:
                    pass
            tree_peak[0] = max(tree_peak[0], total)
        time.sleep(0.1)
watcher = threading.Thread(target=watch_tree, daemon=True)
watcher.start()
path = sys.argv[1]
notebook = nbformat.read(path, as_version=4)
start = time.perf_counter()
NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
seconds = time.perf_counter() - start
running[0] = False
watcher.join()
children = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, tree_peak[0] // 1024)
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cells = []
for number, cell in enumerate(notebook.cells):
    timing = cell.get("metadata", {}).get("execution", {})
    if "iopub.execute_input" in timing and "shell.execute_reply" in timing:
        began, ended = (datetime.fromisoformat(timing[key].replace("Z", "+00:00")) for key in ("iopub.execute_input", "shell.execute_reply"))
        cells.append([(ended - began).total_seconds(), number, cell.source.splitlines()[0][:50] if cell.source else ""])
print(json.dumps({"seconds": seconds, "peak_mb": max(children, own) / 1024, "slowest_cells": sorted(cells, reverse=True)[:3]}))
"""

IMPORT_ONLY_NOTEBOOK = {
    "cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
               "source": '%config InlineBackend.figure_format = "retina"\n'
                         "import matplotlib.pyplot as plt\nimport pandas as pd\nimport torch, transformers\nimport helpers\nimport peft"}],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


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


def import_only_kernel_seconds(notebook_folder: Path) -> float:
    """Median wall time of a notebook that only imports what the counting notebooks import (IMPORT_ONLY_NOTEBOOK)."""
    path = notebook_folder / ".bench-import-only.ipynb"
    path.write_text(json.dumps(IMPORT_ONLY_NOTEBOOK))
    try:
        return statistics.median(run_notebook(path)["seconds"] for _ in range(REPEATS))
    finally:
        path.unlink()


def loads_the_model(path: Path) -> bool:
    """True when a notebook loads the real weights (helpers.load_model, or notebook 10's sharded_step.fresh_model
    in its own process and its ranks); otherwise it only counts."""
    text = path.read_text()
    return "helpers.load_model(" in text or "sharded_step.fresh_model(" in text


def main(paths: list[str]) -> int:
    paths = [Path(p) for p in paths]
    bare_import = median_seconds("import torch, transformers, helpers, peft")
    import_kernel = import_only_kernel_seconds(paths[0].parent)
    model_load, warm_load = model_load_seconds()
    print(f"bare import torch, transformers, helpers, peft: {bare_import:6.2f} s (median of {REPEATS}, plain Python)")
    print(f"import-only kernel (+ pyplot, helpers):           {import_kernel:6.2f} s (median of {REPEATS}, a notebook)")
    print(f"helpers.load_model(), first call:                 {model_load:6.2f} s (its lazy imports included)")
    print(f"helpers.load_model(), imports warm:               {warm_load:6.2f} s")
    slowest_name, slowest = max(skeleton_seconds().items(), key=lambda item: item[1])
    print(f"slowest meta-device skeleton:                     {slowest:6.2f} s ({slowest_name})")
    print()
    print(f"{'notebook':34s} {'seconds':>8s} {'budget s':>8s} {'peak MB':>8s}  verdict")
    failures = 0
    total = 0.0
    seconds_by_notebook = {}
    slow_cells = {}
    for path in paths:
        run = run_notebook(path)
        total += run["seconds"]
        seconds_by_notebook[path.name] = round(run["seconds"], 1)
        slow_cells[path.name] = run["slowest_cells"]
        budget = NOTEBOOK_SECONDS if loads_the_model(path) else min(NOTEBOOK_SECONDS, 2 * import_kernel)
        verdicts = []
        if run["seconds"] > budget:
            verdicts.append("over time budget")
        if run["peak_mb"] > PEAK_LIMIT_MB:
            verdicts.append("over 3 GB")
        failures += bool(verdicts)
        kind = "loads model" if loads_the_model(path) else "counting, 2 x import-only kernel"
        print(f"{path.name:34s} {run['seconds']:8.2f} {budget:8.2f} {run['peak_mb']:8.0f}  {', '.join(verdicts) or 'ok'} ({kind})")
    series_ok = total <= SERIES_SECONDS
    failures += not series_ok
    print(f"{'whole series':34s} {total:8.2f} {SERIES_SECONDS:8.2f} {'':8s}  {'ok' if series_ok else 'over 5 min'}")
    print()
    print("three slowest cells of each notebook (seconds, cell number, first line):")
    for name, cells in slow_cells.items():
        print(f"  {name}: " + "; ".join(f"{seconds:.1f} s [{number}] {first!r}" for seconds, number, first in cells))
    write_run_times(seconds_by_notebook)
    return 1 if failures else 0


def write_run_times(seconds_by_notebook: dict[str, float]) -> None:
    """Keep the measured times for the README's table of notebooks (`make course` writes it)."""
    record = {"measured by": "make bench", "cpu cores": os.cpu_count(), "seconds": seconds_by_notebook}
    RUN_TIMES.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
