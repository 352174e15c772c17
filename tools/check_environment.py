"""Is .venv whole? Every package requirements.txt pins must be installed at its version and importable (make setup).

Run: python tools/check_environment.py [--repair]   (exit 0: whole; --repair reinstalls what is broken with pip)
A package removed by hand (``pip uninstall pandas``) or damaged (its files deleted) would otherwise fail later
with a raw ModuleNotFoundError in the middle of provisioning.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements.txt"
IMPORTED_AS = {"python-dotenv": "dotenv", "huggingface-hub": "huggingface_hub"}
MUST_IMPORT = ["pandas", "platformdirs", "python-dotenv", "filelock", "huggingface-hub"]  # quick to import
MUST_BE_FOUND = ["torch", "transformers", "peft", "gguf"]  # seconds to import: their folders are looked for instead
FIX = "If it still fails: rm -rf .venv && make setup"


def pins() -> dict[str, str]:
    found = {}
    for line in REQUIREMENTS.read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("#")[0].strip().split("==")
            found[name.lower().replace("_", "-")] = version
    return found


def broken() -> list[str]:
    """``name==version`` for each pinned package that is missing, at another version, or (the key ones) not importable."""
    wanted, bad = pins(), []
    for name, version in wanted.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            bad.append(f"{name}=={version}")
    for name in MUST_IMPORT + MUST_BE_FOUND:
        module = IMPORTED_AS.get(name, name)
        try:
            if name in MUST_IMPORT:
                importlib.import_module(module)
            elif importlib.util.find_spec(module) is None:
                raise ImportError(module)
        except Exception:  # noqa: BLE001 - any failure to import means the package is damaged
            if name in wanted and f"{name}=={wanted[name]}" not in bad:
                bad.append(f"{name}=={wanted[name]}")
    return bad


def main(arguments: list[str]) -> int:
    bad = broken()
    if not bad:
        return 0
    print(f"The virtual environment is damaged: {', '.join(bad)} missing, changed or not importable.", file=sys.stderr)
    if "--repair" not in arguments:
        return 1
    print("Reinstalling them...", file=sys.stderr)
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--force-reinstall", "--no-deps", *bad]
    if subprocess.run(command).returncode != 0:
        print(f"Could not reinstall them. {FIX}", file=sys.stderr)
        return 1
    importlib.invalidate_caches()
    still = broken()
    if still:
        print(f"Still damaged: {', '.join(still)}. {FIX}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
