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


def modules_sharing_a_tag(model: nn.Module, rows: pd.DataFrame) -> dict[str, str]:
    """For each tag of ``rows`` that also names a module outside them (a non-linear module, the LM head):
    that module, described, e.g. ``"model.vision_tower...q_proj, a Gemma4ClippableLinear, not a linear layer"``."""
    from plumbing.model_parts import tower_of

    tags, names, found = set(rows["tag"]), set(rows["name"]), {}
    for name, module in model.named_modules():
        tag = name.rsplit(".", 1)[-1]
        if tag not in tags or name in names or tag in found:
            continue
        tower = tower_of(f"{name}.weight")
        where = f" in the {tower}" if tower else ""
        what = "the LM head, which the table leaves out" if weight_shape(module) else f"a {type(module).__name__}{where}, not a linear layer"
        found[tag] = f"{name}, {what}"
    return found


def tags_peft_cannot_target(model: nn.Module, rows: pd.DataFrame) -> dict[str, str]:
    """Tags of ``rows`` that PEFT would refuse or stretch to other modules, each with the reason (helpers.attention_targets)."""
    reasons = {tag: f"it also names {what}" for tag, what in modules_sharing_a_tag(model, rows).items()}
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in PEFT_REFUSED_MODEL_TYPES:
        reasons.update({tag: f"PEFT refuses LoRA on it in {model_type} models" for tag in PEFT_REFUSED_TAGS & set(rows["tag"])})
    for tag in dict.fromkeys(rows.loc[rows["part"] == "attention", "tag"]):
        try:
            peft_rewrite_of_targets(model, [tag])
        except ValueError as error:  # e.g. an attention gate named gate_proj, which PEFT takes for the MLP's
            reasons[tag] = f"PEFT's conversion for transformers 5 refuses it ({error})"
    return reasons


LANGUAGE_MODEL_ALONE = "Count the language model alone, with helpers.build_skeleton(source, language_model_only=True)"


def tower_rows_note(rows: pd.DataFrame) -> str | None:
    """A warning for targets that also select layers of a vision or audio tower (PEFT adapts those too), else None."""
    towers = rows[rows["part"].str.endswith(" tower")]
    if not len(towers):
        return None
    return (f"{', '.join(dict.fromkeys(towers['tag']))} also select(s) {len(towers)} layer(s) of the "
            f"{' and '.join(dict.fromkeys(towers['part']))}, counted here as PEFT adapts them. {LANGUAGE_MODEL_ALONE}.")


def check_tags_name_only_table_rows(model: nn.Module, rows: pd.DataFrame) -> None:
    """Raise a ValueError if a tag also names a module that is not one of ``rows`` (a non-linear module, the LM head).

    PEFT matches ``target_modules`` by the end of each module's name, so such a module would be
    adapted too or refused, and a count over the rows alone would not be PEFT's.
    """
    for tag, what in modules_sharing_a_tag(model, rows).items():
        fix = f"{LANGUAGE_MODEL_ALONE}, or give" if " tower" in what else "Give"
        raise ValueError(
            f"The name {tag!r} also belongs to {what}: PEFT, matching target_modules by name, would adapt "
            f"it too or refuse it. {fix} full module names (or a regular expression) that reach only the layers you mean."
        )


def peft_rewrite_of_targets(model: nn.Module, targets: list[str]) -> dict[str, list[str]] | None:
    """What PEFT's transformers-5 conversion makes of ``target_modules=targets`` on this model, or None if it keeps them.

    PEFT (>= 0.20) converts ``target_modules`` on some mixture-of-experts models, e.g. to
    ``target_parameters`` on their 3-D expert tensors; PEFT's own conversion function says what it does.
    """
    if not targets:
        return None
    try:
        from peft import LoraConfig
        from peft.utils.transformers_weight_conversion import (
            convert_peft_config_for_transformers,
            get_model_conversion_mapping,
        )
    except ImportError:  # a PEFT without the conversion adapts exactly the named modules
        return None
    config = LoraConfig(target_modules=list(targets))
    convert_peft_config_for_transformers(config, model=model, conversions=get_model_conversion_mapping(model))
    kept, added = sorted(config.target_modules or []), list(config.target_parameters or [])
    if set(kept) == set(targets) and not added:
        return None
    return {"target_modules": kept, "target_parameters": added}


def describe_rewrite(model_type: str, rewrite: dict[str, list[str]], left_out: pd.DataFrame) -> str:
    """One line: what PEFT's rewrite adapts instead, and which of the named layers it leaves out, by part."""
    import peft

    parts = ", ".join(f"{count} in the {part}" for part, count in left_out["part"].value_counts(sort=False).items())
    leaves = (f" It leaves out {len(left_out)} of the layers named ({', '.join(dict.fromkeys(left_out['tag']))}: {parts})."
              if len(left_out) else "")
    return (f"PEFT {peft.__version__} rewrites these targets on {model_type} models (its conversion for transformers 5) "
            f"to target_modules {rewrite['target_modules']} and target_parameters {rewrite['target_parameters']}: "
            f"the count is what it then adapts.{leaves}")


def check_peft_can_build(model: nn.Module, tags: set[str]) -> None:
    """Raise a ValueError if PEFT refuses LoRA on some of these tags for this model type (its Mamba layers)."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    refused = sorted(PEFT_REFUSED_TAGS & tags)
    if model_type in PEFT_REFUSED_MODEL_TYPES and refused:
        raise ValueError(
            f"PEFT refuses LoRA on {', '.join(refused)} in {model_type} models (they are incompatible with "
            "its Mamba layers), so this count would describe an adapter that cannot be built. Leave them out."
        )
