"""PEFT itself, asked on meta-device skeletons: its own counts, memoised once per process (notebooks 03-07).

A fresh skeleton per question, because ``get_peft_model`` changes the model it wraps.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable

import torch
from torch import nn

from plumbing.arguments import expect_peft_config
from plumbing.collector import collector_paused
from plumbing.configs import build_skeleton, catalog
from plumbing.on_cores import side_by_side
from plumbing.workarounds import linear_initialisation_skipped, peft_added_pattern_warnings_silenced, quiet_transformers

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


def adapters_by_weight(peft_model: nn.Module, layers: set[str]) -> tuple[dict[str, int], dict[str, int]]:
    """``(rank, trainable parameters)`` of each LoRA adapter PEFT made, keyed by the name of the weight it adapts:
    a layer's name (``model.layers.0.self_attn.q_proj``, one of ``layers``), or a parameter's for one PEFT's
    ParamWrapper adapts (``...experts.gate_up_proj``; ``...router.gate`` when that parameter is a layer's weight)."""
    from peft.tuners.lora import LoraLayer

    ranks, trainable = {}, {}
    for name, module in peft_model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        weight = name.removeprefix("base_model.model.").replace(".base_layer", "")
        if hasattr(module, "parameter_name") and not (module.parameter_name == "weight" and weight in layers):
            weight = f"{weight}.{module.parameter_name}"  # PEFT's ParamWrapper adapts one parameter of the module
        adapter = next(iter(module.r))
        ranks[weight] = module.r[adapter]
        trainable[weight] = sum(p.numel() for p in [*module.lora_A[adapter].parameters(), *module.lora_B[adapter].parameters()])
    return ranks, trainable


def count_with_peft(source, lora_config) -> tuple[int, int]:
    """PEFT's own ``(trainable, all)`` counts for ``lora_config`` on a fresh skeleton of ``source``.

    A fresh skeleton each time, because ``get_peft_model`` changes the model it wraps.
    "all" includes the adapters, as in PEFT's ``print_trainable_parameters``. For a catalog model,
    the same question asked twice in one process (same model, equal LoraConfig) is answered from
    the first time PEFT computed it.
    """
    expect_peft_config(lora_config, "count_with_peft")
    key = peft_count_key(source, lora_config)
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
        key = peft_count_key(source, lora_config)
        if key is not None:
            PEFT_COUNTS[key] = counts
    return answers


def peft_count_key(source, lora_config) -> tuple[str, str] | None:
    """(catalog name, the config as canonical JSON): equal configs give equal keys, whatever order their sets are in."""
    if not (isinstance(source, str) and source in catalog()):
        return None
    fields = {key: sorted(value) if isinstance(value, (set, frozenset)) else value for key, value in lora_config.to_dict().items()}
    return source, json.dumps(fields, sort_keys=True, default=str)
