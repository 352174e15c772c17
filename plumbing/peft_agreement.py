"""Guards that keep helpers.lora_count equal to PEFT's own count: where a count over table rows would not be
what PEFT trains, refuse with the reason.

The two PEFT internals used here are isolated in this module, with the version they were read
from (plumbing.workarounds.WORKAROUNDS lists them): the model types and modules PEFT's
``_check_lora_target_modules_mamba`` refuses, and its transformers-5 conversion of MoE targets.
"""

from __future__ import annotations

import pandas as pd
from torch import nn

from plumbing.module_tree import weight_shape

# PEFT 0.21.2 refuses LoRA on these modules of these model types (peft/tuners/tuners_utils.py,
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



def check_peft_can_build(model: nn.Module, tags: set[str]) -> None:
    """Raise a ValueError if PEFT refuses LoRA on some of these tags for this model type (its Mamba layers)."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    refused = sorted(PEFT_REFUSED_TAGS & tags)
    if model_type in PEFT_REFUSED_MODEL_TYPES and refused:
        raise ValueError(
            f"PEFT refuses LoRA on {', '.join(refused)} in {model_type} models (they are incompatible with "
            "its Mamba layers), so this count would describe an adapter that cannot be built. Leave them out."
        )
