"""Which part of the model (embeddings, attention, MLP, norms, LM head, other) every parameter belongs to.

Read from the classes of the module tree, with the parameter's name as a fallback (helpers.parameters_by_part,
helpers.linear_layer_table).
"""

from __future__ import annotations

from torch import nn

from plumbing.module_tree import moe_roles


ATTENTION_WORDS = ("attention", "attn", "mixer", "recurrent", "ssm", "mamba", "lstm", "retention", "shortconv")
"""In a module's class name: attention, or the state-space / recurrent / convolution layer some models use in its place."""

MLP_WORDS = ("mlp", "feedforward", "feed_forward", "ffn", "expert", "moe", "intermediate", "fc1", "fc2", "c_fc",
             "dense_h_to_4h", "dense_4h_to_h")


MLP_CLASS_WORDS = (*MLP_WORDS, "output")  # BERT-style models call the MLP's second layer BertOutput

HEAD_CLASS_WORDS = ("predictionhead", "lmhead")  # BERT-style LM heads have a transform layer before the output

TOWER_WORDS = {"vision tower": ("vision", "visual", "image", "multi_modal_projector"), "audio tower": ("audio", "speech")}
"""In a module's name: the encoder of another modality (with its projector into the language model)."""


def tower_of(parameter_name: str) -> str | None:
    """"vision tower" or "audio tower" for a parameter of a multimodal model's other encoders, else None."""
    modules = parameter_name.lower().split(".")[:-1]
    for tower, words in TOWER_WORDS.items():
        if any(word in module for module in modules for word in words):
            return tower
    return None


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
    instead (Mamba, RecurrentGemma, LFM). A multimodal model's other encoders are parts of their own,
    "vision tower" and "audio tower" (:func:`tower_of`). "other" is what is none of these, e.g. BERT's
    pooler, Gemma 4's per-layer input gates. In a mixture of
    experts the MLP is split into "routed experts", "router" and "shared experts" (:func:`moe_roles`).
    """
    lm_head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    family = family_prefix(model)
    parts: dict[str, str] = {}

    def visit(module: nn.Module, prefix: str, ancestors: list[nn.Module]) -> None:
        for parameter_name, _parameter in module.named_parameters(recurse=False):
            name = prefix + parameter_name
            parts[name] = tower_of(name) or part_of_module(module, ancestors, lm_head, family) or part_of_model(name)
        for child_name, child in module.named_children():
            visit(child, f"{prefix}{child_name}.", [*ancestors, module])

    visit(model, "", [])
    parts.update(moe_roles(model))
    return parts
