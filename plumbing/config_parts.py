"""Where a skeleton and its config part ways (plumbing.configs.build_skeleton): the language model alone of a
multimodal config; and, each said in one line with its size, what the config declares but the skeleton lacks
(multi-token-prediction layers, a vision or audio tower) or what the skeleton holds but never uses (expert slices).
"""

from __future__ import annotations

from torch import nn

MTP_FIELDS = ("num_nextn_predict_layers", "num_mtp_layers")
"""Where configs declare multi-token-prediction layers (DeepSeek-V3, GLM-4.5, Bailing; transformers 5.23 aliases one to the other)."""


def language_model_config(config):
    """The text part of a multimodal config (``text_config``), or the config itself when it has none."""
    return getattr(config, "text_config", None) or config


def language_model_alone(config):
    """The config of a multimodal model's language model, refused if transformers cannot build it alone."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    text = language_model_config(config)
    if text is not config and text.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ValueError(
            f"transformers has no causal LM for {config.model_type}'s language model alone ({text.model_type}). "
            "Count it within the whole model, choosing the targets by full name or a regular expression."
        )
    return text


def tower_left_out_note(config, model: nn.Module) -> str | None:
    """One line when the config describes a vision or audio tower that the built model does not have (transformers
    5.23 builds Llama 4 for causal LM as Llama4ForCausalLM, the language model alone), else None."""
    from plumbing.model_parts import tower_of

    built = {tower_of(name) for name, _ in model.named_parameters()}
    for field, tower in [("vision_config", "vision tower"), ("audio_config", "audio tower")]:
        if getattr(config, field, None) is not None and tower not in built:
            return (f"This config also describes a {tower} ({field}), which {type(model).__name__} does not have: "
                    "the totals count the language model alone.")
    return None


def unused_expert_slices_note(model: nn.Module) -> str | None:
    """One line when an expert stack's 3-D weights disagree on the number of experts (LongCat-Flash in
    transformers 5.23 allocates ``gate_up_proj`` for its zero-computation experts too, which never use it)."""
    for name, module in model.named_modules():
        stacks = {p_name: p for p_name, p in module.named_parameters(recurse=False) if p.dim() == 3}
        counts = {p.shape[0] for p in stacks.values()}
        if "experts" in type(module).__name__.lower() and len(counts) > 1:
            fewest = min(counts)
            unused = sum(p.numel() // p.shape[0] * (p.shape[0] - fewest) for p in stacks.values())
            return (f"{name} holds weights for {' and '.join(f'{p.shape[0]} ({n})' for n, p in stacks.items())} experts: "
                    f"slices beyond the first {fewest} are never used (zero-computation experts). The totals include "
                    f"{unused:,} such parameters in this stack alone, which a checkpoint need not have.")
    return None


def declared_mtp_layers(config, given: frozenset | None) -> int:
    """How many multi-token-prediction layers the config declares: 0 if none, or if only transformers' default says
    so (``given``: the fields its file gave; for a config made in code, a value equal to the class default)."""
    config = language_model_config(config)
    attribute_map = getattr(config, "attribute_map", None) or {}
    for field in MTP_FIELDS:
        aliases = {field, *(alias for alias, target in attribute_map.items() if target == field)}
        value = getattr(config, field, None)
        default = next((getattr(type(config), alias) for alias in aliases if hasattr(type(config), alias)), None)
        declared = aliases & given if given is not None else value != default
        if isinstance(value, int) and not isinstance(value, bool) and value > 0 and declared:
            return value
    return 0


def multi_token_prediction_note(config, model: nn.Module, given: frozenset | None) -> str | None:
    """One line saying that the skeleton leaves out the config's multi-token-prediction layers, and their size.

    The size assumes DeepSeek-V3's design (its report, arXiv:2412.19437, §2.2): each MTP module is one
    decoder layer (here: like the model's last), two RMSNorms and a d × 2d projection, and it shares the
    embeddings and the LM head with the main model.
    """
    count = declared_mtp_layers(config, given)
    if not count or any("mtp" in name or "nextn" in name for name, _ in model.named_modules()):
        return None
    stacks = [m for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and name.endswith("layers") and len(m)]
    if not stacks:
        return None
    d = language_model_config(config).hidden_size
    per_module = sum(p.numel() for p in stacks[0][-1].parameters()) + 2 * d * d + 2 * d
    return (
        f"The config declares {count} multi-token-prediction layer(s), which transformers does not build: the "
        f"counts leave them out. Built like DeepSeek-V3's (a decoder layer like the last one, a d × 2d projection "
        f"and two norms; the embeddings and the head shared), they hold {count * per_module:,} parameters."
    )
