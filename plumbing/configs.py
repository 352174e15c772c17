"""Model configs: the shipped catalog, reading a ``config.json`` with one clear message per fault, and the
weightless skeleton (``helpers.build_skeleton``, notebooks 01-08).

A count that depends on a value the config does not give is refused, never computed from
transformers' defaults (``plumbing.config_defaults`` finds such fields); so is a size no real model has.
"""

from __future__ import annotations

import json
import warnings
import weakref
from pathlib import Path

import torch
from torch import nn

from plumbing.collector import collector_paused
from plumbing.config_defaults import check_no_size_left_to_defaults
from plumbing.config_parts import language_model_alone, language_model_config, multi_token_prediction_note, \
    tower_left_out_note, unused_expert_slices_note
from plumbing.hub import hf_token, hub_is_reachable
from plumbing.model_cache import REPO_DIR
from plumbing.workarounds import linear_initialisation_skipped, quiet_transformers

CATALOG_DIR = REPO_DIR / "assets" / "configs"
NESTED_CONFIGS = ("text_config",)
"""Where multimodal configs (Gemma 3, Llama 4...) keep the language model's settings: checked like the top level."""
MAX_DEPTH = 20  # deeper JSON than any real config: a file that nests more is refused before Python's recursion limit
# Upper bounds that admit the largest published models (Llama-3.1-405B: 126 layers, hidden 16,384,
# MLP 53,248, 128 heads; vocabularies up to ~262k; contexts up to 10M tokens) with a wide margin,
# and refuse typos such as 1000000 layers. Each spelling a family uses (MPT and DBRX: d_model, n_layers, n_heads).
SHAPE_LIMITS = {
    "hidden_size": 131_072, "n_embd": 131_072, "d_model": 131_072,
    "intermediate_size": 1_048_576, "n_inner": 1_048_576, "ffn_hidden_size": 1_048_576, "moe_intermediate_size": 1_048_576,
    "num_hidden_layers": 1_024, "n_layer": 1_024, "num_layers": 1_024, "n_layers": 1_024,
    "num_attention_heads": 4_096, "n_head": 4_096, "n_heads": 4_096, "num_key_value_heads": 4_096, "num_kv_heads": 4_096,
    "head_dim": 16_384, "vocab_size": 4_194_304,
    "num_local_experts": 4_096, "num_experts": 4_096, "n_routed_experts": 4_096, "num_experts_per_tok": 4_096,
    "max_position_embeddings": 16_777_216, "n_positions": 16_777_216,
}
FIELDS_GIVEN: dict[int, frozenset[str]] = {}
"""id(config) -> the fields its file gave (nested configs too), for questions such as top-k that defaults must not answer."""


def catalog() -> list[str]:
    """Hub ids of the models whose exact ``config.json`` ships in ``assets/configs``."""
    folders = sorted(p.parent.name for p in CATALOG_DIR.glob("*/config.json"))
    return [folder.replace("--", "/", 1) for folder in folders]


def catalog_config_path(model_id: str) -> Path:
    """Where the shipped config of a catalog model lives."""
    return CATALOG_DIR / model_id.replace("/", "--", 1) / "config.json"


def check_shape_values(settings: dict, where: str) -> None:
    """Raise a ValueError naming the field if a shape-deciding value is not a plausible whole number
    (a list, such as gemma3n's per-layer ``intermediate_size``, element by element)."""
    for field, limit in SHAPE_LIMITS.items():
        value = settings.get(field)
        for item in value if isinstance(value, list) and value else [value]:
            if item is not None and (isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= limit):
                raise ValueError(
                    f"{where}: {field} = {value!r} is not plausible: it must be a whole number from 1 to {limit:,}. "
                    "Fix that field (copy it from the model's config.json on the Hub)."
                )


def no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    """``json.loads`` hook: a key given twice is an error, not "the last one wins"."""
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"the key {repeated[0]!r} appears twice")
    return dict(pairs)


def depth(value, level: int = 0) -> int:
    """How deeply dicts and lists nest in ``value`` (stops counting past MAX_DEPTH)."""
    if level > MAX_DEPTH or not isinstance(value, (dict, list)):
        return level
    items = value.values() if isinstance(value, dict) else value
    return max((depth(item, level + 1) for item in items), default=level + 1)


def read_settings(path: Path) -> dict:
    """The JSON object in ``path`` (UTF-8, or UTF-16/32 with or without a byte-order mark), with clear errors."""
    name = path.name
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ValueError(f"{name} cannot be read ({error.strerror}). Check its permissions, or copy it again.") from None
    try:
        text = raw.decode(json.detect_encoding(raw)).removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise ValueError(f"{name} is not a text file (is it a model's weights?). Give the path of a config.json.") from None
    try:
        settings = json.loads(text, object_pairs_hook=no_duplicate_keys)
    except json.JSONDecodeError as error:
        raise ValueError(f"{name} is not valid JSON ({error.msg} at line {error.lineno}). "
                         "Fix the file, or copy it again from the model's page on the Hub.") from None
    except RecursionError:
        raise ValueError(f"{name} nests deeper than any model config. Use the model's original config.json.") from None
    except ValueError as error:  # from no_duplicate_keys
        raise ValueError(f"{name}: {error}; say it once, with the value the model uses.") from None
    if depth(settings) > MAX_DEPTH:
        raise ValueError(f"{name} nests deeper than any model config. Use the model's original config.json.")
    return settings


def read_config_file(path: Path):
    """Read a ``config.json`` into a transformers config, with one clear error per fault."""
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    name = Path(path).name
    settings = read_settings(Path(path))
    if not isinstance(settings, dict) or "model_type" not in settings:
        raise ValueError(f"{name} has no 'model_type' field, so the architecture is unknown. "
                         "Add it (e.g. \"model_type\": \"llama\") or use the model's original config.json.")
    model_type = settings.pop("model_type")
    if isinstance(model_type, str) and model_type not in CONFIG_MAPPING and isinstance(settings.get("auto_map"), dict):
        raise ValueError(
            f"{name} has model_type {model_type!r} with an auto_map: the model is defined by Python code on its Hub "
            "page (trust_remote_code), which the course never runs. If its architecture is one transformers knows "
            "under another name (Kimi-K2's is deepseek_v3), count a copy of the config with that model_type."
        )
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise ValueError(f"{name} has model_type {model_type!r}, which this transformers version "
                         "does not know. Check the spelling (one name, in quotes), or upgrade transformers.")
    nested = {key: settings[key] for key in NESTED_CONFIGS if isinstance(settings.get(key), dict)}
    check_shape_values(settings, name)
    for key, section in nested.items():
        check_shape_values(section, f"{name} ({key})")
    check_no_size_left_to_defaults(model_type, settings, name, build_on_meta)
    try:
        config = AutoConfig.for_model(model_type, **settings)
    except Exception as error:  # transformers validates configs with its own exception types
        message = str(error).strip().splitlines()[-1].strip()
        raise ValueError(f"{name}: transformers refuses this config: {message} Fix the file.") from None
    remember_fields_given(config, settings, nested)
    return config


def remember_fields_given(config, settings: dict, nested: dict[str, dict]) -> None:
    """Record which fields the file gave (see FIELDS_GIVEN), for the config and its nested configs."""
    for part, given in [(config, settings), *((getattr(config, key, None), section) for key, section in nested.items())]:
        if part is not None:
            FIELDS_GIVEN[id(part)] = frozenset(given)
            weakref.finalize(part, FIELDS_GIVEN.pop, id(part), None)


def load_config(source):
    """A transformers config from a catalog name, a ``config.json`` path, a config object or a hub id."""
    from transformers import AutoConfig, PretrainedConfig

    if isinstance(source, PretrainedConfig):
        return source
    if isinstance(source, Path) or (isinstance(source, str) and source.endswith(".json")):
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


def build_on_meta(config) -> nn.Module:
    """``AutoModelForCausalLM.from_config`` on the meta device, without initialising values that do not exist."""
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    with torch.device("meta"), linear_initialisation_skipped(), collector_paused():
        return AutoModelForCausalLM.from_config(config)


def build_skeleton(source, language_model_only: bool = False) -> nn.Module:
    """Build a model on PyTorch's ``meta`` device: every shape exact, no weights. Catalog names and config
    files need no network; any other hub id fetches only its ``config.json``. ``language_model_only``: a multimodal
    config's language model alone (its ``text_config``). Warns about layers the config declares but transformers
    does not build (multi-token prediction), or builds but never uses (plumbing.config_parts).
    """
    config = load_config(source)
    if language_model_only:
        config = language_model_alone(config)
    check_shape_values(config.to_dict(), f"the config of {getattr(config, 'model_type', 'this model')}")
    try:
        model = build_on_meta(config)
    except (ValueError, ZeroDivisionError, TypeError, AssertionError, KeyError) as error:
        what = f"unknown value {error}" if isinstance(error, KeyError) else str(error)  # e.g. a rope_scaling type
        raise ValueError(
            f"transformers cannot build a model from this config ({type(error).__name__}: {what}). "
            "Check its fields against the model's original config.json."
        ) from None
    for original, built in [(config, model.config), (getattr(config, "text_config", None), getattr(model.config, "text_config", None))]:
        if original is not None and built is not None and built is not original and id(original) in FIELDS_GIVEN:
            FIELDS_GIVEN[id(built)] = FIELDS_GIVEN[id(original)]  # from_config may copy the config
            weakref.finalize(built, FIELDS_GIVEN.pop, id(built), None)
    for note in [multi_token_prediction_note(config, model, FIELDS_GIVEN.get(id(language_model_config(config)))),
                 unused_expert_slices_note(model), tower_left_out_note(config, model)]:
        if note:
            warnings.warn(note, stacklevel=2)
    return model


TOP_K_FIELDS = ("num_experts_per_tok", "top_k_experts", "moe_topk")
"""Where config classes keep the router's top-k (transformers 5.23): most say num_experts_per_tok, or alias it in
their attribute_map (moe_k, num_experts_per_token); Gemma 4 says top_k_experts and Aria moe_topk."""


def experts_per_token(model: nn.Module) -> int:
    """How many routed experts each token uses (top-k), read from the model's config (helpers.active_parameters);
    never a default: a config file that leaves it out is refused (FIELDS_GIVEN knows)."""
    config = getattr(model, "config", None)
    config = getattr(config, "text_config", None) or config  # multimodal configs keep it in their text part
    if getattr(config, "zero_expert_num", None):
        raise ValueError(
            f"{config.model_type}'s router also picks zero-computation experts ({config.zero_expert_num}), so the number "
            "of real experts a token uses varies: there is no single active count (LongCat-Flash's report gives a range)."
        )
    given = FIELDS_GIVEN.get(id(config))
    attribute_map = getattr(config, "attribute_map", None) or {}
    for field in TOP_K_FIELDS:
        top_k = getattr(config, field, None)
        aliases = {field, *(alias for alias, target in attribute_map.items() if target == field)}
        if given is not None and not aliases & given:
            top_k = None  # transformers' default, not the model's
        if isinstance(top_k, int) and not isinstance(top_k, bool) and top_k > 0:
            return top_k
    raise ValueError(
        f"This model's config has no usable {' or '.join(TOP_K_FIELDS)} (the top-k of its router), so the active "
        "parameters cannot be counted exactly. Set it in the config (e.g. 2 for Mixtral, 8 for Qwen3-30B-A3B)."
    )
