"""Find the shape fields a config leaves to transformers' defaults (plumbing.configs.read_config_file, notebooks 01-08).

A transformers config class gives every field a default: ``LlamaConfig`` builds a 11008-wide MLP
if ``intermediate_size`` is missing, whatever model the file meant. So no hand list of "required"
fields: each numeric field the file does not give is changed in turn on a one-layer copy of the
config, and if the parameter count moves, the count depends on a value the file never stated.
A field is "given" under its own name or any alias in the class's ``attribute_map`` (GPT-2's
``n_embd``, MPT's ``d_model``). Fields of the base ``PretrainedConfig`` (bookkeeping) are skipped.

Convention: on/off switches (booleans such as ``tie_word_embeddings`` or ``mlp_bias``) may be left
out: the published config.json files of GPT-2, Gemma, Falcon and SmolLM2 omit them and mean the
class's default. Sizes may not. Written for transformers 5's dataclass configs (5.0 to 5.23 at
least); a config class that is not a dataclass is not checked here.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

REQUIRED_SHAPES = [("hidden_size", "n_embd", "d_model"), ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
                   ("vocab_size",)]
"""For a config class that is not a dataclass (older transformers): these at least must be given."""
SIZES_CHECKED: dict[str, list[tuple[str, int]]] = {}
"""The sizes each config (as canonical JSON) left to defaults, found once per process."""

LAYER_FIELDS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")


def given_names(settings: dict, attribute_map: dict) -> set[str]:
    """The fields a settings dict gives, under their own names and their aliases."""
    names = set(settings)
    names |= {attribute_map[key] for key in settings if key in attribute_map}
    names |= {alias for alias, field in attribute_map.items() if field in settings}
    return names


def one_layer(settings: dict) -> dict:
    """The settings with a single layer (per-layer lists such as ``layer_types`` cut to match): cheap to build."""
    small = {key: one_layer(value) if isinstance(value, dict) else value for key, value in settings.items()}
    for field in LAYER_FIELDS:
        if isinstance(small.get(field), int) and small[field] > 1:
            layers, small[field] = small[field], 1
            for key, value in settings.items():
                if isinstance(value, list) and len(value) == layers:
                    small[key] = value[:1]
    return small


def sizes_left_to_defaults(config_class, settings: dict, count: Callable[[dict], int]) -> list[tuple[str, int]]:
    """``[(field, default), ...]`` for each whole-number field the settings omit and the count depends on.

    ``count(settings)`` must build the model from such settings (on the meta device) and return its
    parameter count. A changed field that makes the build fail counts as one the count depends on.
    """
    if not dataclasses.is_dataclass(config_class):
        return []
    base = next((cls for cls in config_class.__mro__[1:] if cls.__name__.lower() == "pretrainedconfig"), None)
    base_fields = {field.name for field in dataclasses.fields(base)} if base and dataclasses.is_dataclass(base) else set()
    given = given_names(settings, getattr(config_class, "attribute_map", {}) or {})
    small = one_layer(settings)
    reference = count(small)
    depends = []
    for field in dataclasses.fields(config_class):
        default = field.default
        if field.name in given or field.name in base_fields or isinstance(default, bool) or not isinstance(default, int):
            continue
        try:
            moved = count({**small, field.name: 2 * default if default else 1}) != reference
        except Exception:  # noqa: BLE001 - any refusal by transformers means the shapes depend on the field
            moved = True
        if moved:
            depends.append((field.name, default))
    return depends


def nested_sizes_left_to_defaults(config_class, settings: dict, count: Callable[[dict], int]) -> list[tuple[str, int]]:
    """As :func:`sizes_left_to_defaults`, inside each nested config the settings give (Gemma 3's ``text_config``)."""
    found = []
    for key, sub_class in (getattr(config_class, "sub_configs", None) or {}).items():
        if isinstance(settings.get(key), dict) and dataclasses.is_dataclass(sub_class):
            def count_nested(changed: dict, key=key) -> int:
                return count({**settings, key: changed})
            found += [(f"{key}.{field}", default) for field, default in sizes_left_to_defaults(sub_class, settings[key], count_nested)]
    return found


def check_no_size_left_to_defaults(model_type: str, settings: dict, where: str, build: Callable) -> None:
    """Raise a ValueError naming a whole-number field the config omits although the count depends on it.

    ``build(config)`` builds the model on the meta device. Found by changing each omitted field on a
    one-layer copy, not from a hand list; each config is examined once per process.
    """
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    config_class = CONFIG_MAPPING[model_type]
    if not dataclasses.is_dataclass(config_class):
        for spellings in REQUIRED_SHAPES:
            sections = [settings, *(value for value in settings.values() if isinstance(value, dict))]
            if not any(name in section for section in sections for name in spellings):
                raise ValueError(f"{where} does not say {' / '.join(spellings)}, so transformers would build a "
                                 "default-sized model that is not the one you mean. Use the model's complete config.json.")
        return

    def count(changed: dict) -> int:
        return sum(p.numel() for p in build(AutoConfig.for_model(model_type, **changed)).parameters())

    key = json.dumps([model_type, settings], sort_keys=True, default=str)
    if key not in SIZES_CHECKED:
        try:
            SIZES_CHECKED[key] = sizes_left_to_defaults(config_class, settings, count) + \
                nested_sizes_left_to_defaults(config_class, settings, count)
        except Exception:  # noqa: BLE001 - the config itself cannot be built: read_config_file says why
            SIZES_CHECKED[key] = []
    if SIZES_CHECKED[key]:
        (field, default), others = SIZES_CHECKED[key][0], [name for name, _ in SIZES_CHECKED[key][1:]]
        raise ValueError(
            f"{where} does not give {field}, and the parameter count depends on it: transformers would use its "
            f"default {default:,}, a size from some other model, not the one this file describes"
            + (f" (also missing: {', '.join(others)})" if others else "")
            + ". Add the field, copied from the model's config.json."
        )
