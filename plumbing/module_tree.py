"""Reading a model's module tree: linear-like layers, 3-D expert stacks, mixture-of-experts blocks and routers.

Rules, not lists of class names: written against transformers 5 (5.0 to 5.23), where experts are
stored as one (E, out, in) parameter per stack. Used by helpers.linear_layer_table and its neighbours.
"""

from __future__ import annotations

import torch
from torch import nn


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


def owns_attention(block: nn.Module) -> bool:
    """True for a block with an attention module inside: a decoder layer, not a mixture-of-experts block."""
    return any(word in type(m).__name__.lower() for m in block.modules() for word in ("attention", "attn"))


def moe_roles(model: nn.Module) -> dict[str, str]:
    """Role of every parameter inside a mixture-of-experts block: "routed experts", "router" or "shared experts".

    The router is the block's child whose weight has one row per expert (E rows), ``nn.Linear``
    (Llama 4's) or a raw matrix (Mixtral's ``gate.weight``); everything else in the block that is not
    a routed expert stack (a shared expert, the shared expert's own gate) is a shared expert.
    Where the experts and the router sit directly in the decoder layer (Gemma 4), the block also
    holds attention, norms and a dense MLP: there only children named "shared" are shared experts,
    and the rest keep the part the module tree gives them.
    """
    roles = {}
    for block_name, block, experts in mixture_of_experts_blocks(model):
        in_decoder_layer = owns_attention(block)
        for child_name, child in block.named_children():
            if is_routed_expert_stack(child):
                role = "routed experts"
            elif is_router(child, experts):
                role = "router"
            elif not in_decoder_layer or "shared" in f"{child_name} {type(child).__name__}".lower():
                role = "shared experts"
            else:
                continue
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
