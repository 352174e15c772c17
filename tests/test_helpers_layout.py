"""The shape of the code itself: helpers.py small and in series order, plumbing/ one concern per short module,
every library workaround tied to the version it was written for."""

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HELPERS = ROOT / "helpers.py"
PLUMBING = sorted((ROOT / "plumbing").glob("*.py"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MAX_HELPERS_LINES = 600
MAX_PLUMBING_LINES = 250
USED_IN = re.compile(r"Used in notebooks? ([0-9, ]+)\.\s*$")


def notebook_code(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")


def notebooks_using(name: str) -> list[str]:
    """The two-digit numbers of the notebooks whose code calls helpers.<name>."""
    pattern = re.compile(rf"\bhelpers\.{name}\b")
    return [path.name[:2] for path in NOTEBOOKS if pattern.search(notebook_code(path))]


def public_functions() -> list[ast.FunctionDef]:
    tree = ast.parse(HELPERS.read_text())
    return [node for node in tree.body if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")]


def test_helpers_is_small():
    lines = len(HELPERS.read_text().splitlines())
    assert lines <= MAX_HELPERS_LINES, f"helpers.py has {lines} lines (at most {MAX_HELPERS_LINES}): move plumbing out"


def test_every_public_helper_says_truly_which_notebooks_use_it():
    wrong = []
    for function in public_functions():
        match = USED_IN.search(ast.get_docstring(function) or "")
        said = [number.strip() for number in match.group(1).split(",")] if match else None
        used = notebooks_using(function.name)
        if not used:  # only called by another helper (load_model's reading_explained): it must not claim a notebook
            if said:
                wrong.append(f"{function.name}: says {said}, no notebook calls it")
        elif said != used:
            wrong.append(f"{function.name}: says {said}, used in {used}")
    assert not wrong, wrong


def test_helpers_come_in_series_order():
    """Each section's functions are first used in that section's notebook, and sections follow the series."""
    first_use = []
    for function in public_functions():
        used = notebooks_using(function.name)
        if used:
            first_use.append((function.name, min(used)))
    numbers = [number for _, number in first_use]
    out_of_order = [f"{name} (first in {number})" for (name, number), before in zip(first_use[1:], numbers) if number < before]
    assert not out_of_order, f"a helper first used earlier in the series comes after a later one: {out_of_order}"


@pytest.mark.parametrize("path", PLUMBING, ids=lambda p: p.name)
def test_plumbing_modules_are_short_and_never_import_helpers(path):
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_PLUMBING_LINES, f"{path.name}: more than {MAX_PLUMBING_LINES} lines"
    imported = {alias.name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom) and node.module}
    assert "helpers" not in imported, f"{path.name} imports helpers: plumbing must not depend on the lessons' module"
    assert ast.get_docstring(ast.parse(source)), f"{path.name}: say in a docstring what the module is for"


def pinned_versions() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("#")[0].strip().split("==")
            pins[name.lower()] = version
    return pins


def colab_versions() -> dict[str, str]:
    packages = json.loads((ROOT / "assets" / "colab_runtime.json").read_text())["packages"]
    return {name.lower(): version for name, version in packages.items()}


def test_every_workaround_is_for_the_version_pinned_now():
    """Fails when requirements.txt (or, for a Colab-only workaround, Colab's runtime) moves past the version a
    workaround was written for: check it is still needed, then update its version in plumbing/workarounds.py."""
    from plumbing.workarounds import WORKAROUNDS

    pins, colab = pinned_versions(), colab_versions()
    stale = []
    for name, (package, version, where, remove_when) in WORKAROUNDS.items():
        current = colab.get(package) if "Colab" in remove_when else pins.get(package)
        if current != version:
            stale.append(f"{name} ({where}): written for {package} {version}, now {current}; remove {remove_when}")
    assert not stale, stale


def test_every_workaround_names_code_that_exists():
    """Each WORKAROUNDS entry names a function or constant that exists, so the list cannot drift from the code."""
    import importlib

    from plumbing.workarounds import WORKAROUNDS

    for name, (_package, _version, where, _remove) in WORKAROUNDS.items():
        module, _, attribute = where.rpartition(".")
        assert hasattr(importlib.import_module(module), attribute), f"{name}: {where} does not exist"
