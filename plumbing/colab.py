"""Google Colab: the first cell of every notebook installs what Colab lacks, at the course's versions.

Colab's runtime (../shared/colab: Python 3.13, torch 2.11, transformers 5.15, peft 0.20) keeps its own torch.
"""

from __future__ import annotations

import subprocess
import sys
import time

from plumbing.model_cache import REPO_DIR

COLAB_PACKAGES = ["transformers", "peft", "accelerate", "gguf", "python-dotenv", "platformdirs", "huggingface_hub"]
"""What Colab lacks, or has at other versions; installed at the versions of requirements.txt. Never torch.
(filelock, which conversion needs, comes with Colab's huggingface_hub.)"""
COLAB_INSTALL_SECONDS = 15
"""Roughly how long pip takes in Colab for the packages it lacks (11.6 s in the Colab-like check, without byte-compiling)."""


def in_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "google.colab" in sys.modules


def pinned(names: list[str]) -> list[str]:
    """``name==version`` for each name, read from the repository's requirements.txt."""
    pins = {}
    for line in (REPO_DIR / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("#")[0].strip().split("==")
            pins[name.lower().replace("_", "-")] = f"{name}=={version}"
    unknown = [name for name in names if name.lower().replace("_", "-") not in pins]
    if unknown:
        raise ValueError(f"{', '.join(unknown)} is not pinned in requirements.txt: add it to requirements.in and run make requirements.")
    return [pins[name.lower().replace("_", "-")] for name in names]


def pip_install(requirements: list[str], what: str, seconds: int, *options: str) -> None:
    """Install with pip, keeping the runtime's own torch; one status line before and one after."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        keep_torch = [f"torch=={version('torch')}"]  # pip fails rather than replace the runtime's torch
    except PackageNotFoundError:
        keep_torch = []
    print(f"Installing {what} (about {seconds} s)...", flush=True)
    started = time.perf_counter()
    # --no-compile: pip would byte-compile every module it installs (transformers has thousands): 28.5 s against
    # 11.6 s in the Colab-like check; Python compiles the modules a notebook imports when it imports them (about 2 s).
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--disable-pip-version-check",
               *options, *requirements]
    subprocess.run(command + ([] if "--no-deps" in options else keep_torch), check=True)
    print(f"  done in {time.perf_counter() - started:.0f} s.", flush=True)


def prepare_colab(*extra_packages: str) -> None:
    """What the first cell of every notebook runs in Colab: the packages the course needs, at its versions,
    and ``extra_packages`` that only this notebook needs (``course.json``'s ``colab_extras``, e.g. bitsandbytes).

    The offline model is converted later, by the first :func:`load_model` call, so notebooks
    that only count skeletons are ready as soon as the packages are.
    """
    from importlib.metadata import PackageNotFoundError, version

    missing = []
    for requirement in pinned([*COLAB_PACKAGES, *extra_packages]):
        name, wanted = requirement.split("==")
        try:
            if version(name) != wanted:
                missing.append(requirement)
        except PackageNotFoundError:
            missing.append(requirement)
    if missing:
        pip_install(missing, ", ".join(missing), COLAB_INSTALL_SECONDS)
    from plumbing.conversion import CONVERSION_SECONDS  # here: conversion imports this module

    print("Course ready. Notebooks that load the real model convert it on first use "
          f"(about {CONVERSION_SECONDS} s, once per runtime).")
