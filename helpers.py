"""What the *LoRA by the Numbers* notebooks use, in the order the series introduces it.

The lessons write the ideas out (the counts, the LoRA formula, the merge); this module holds the
few tools they share, a section per notebook. Each function ends its docstring with the
notebooks that use it (tests/test_helpers_layout.py keeps that true). What makes the course run
but is not taught (provisioning the offline model, Colab, the Hub, reading configs, PEFT
agreement checks, library workarounds, the exercise checks) lives in ``plumbing/``, one concern
per module; the few names notebooks call are re-exported below.

Run ``python helpers.py`` once to provision the offline model (``make lab`` and ``make test`` do it for you).

Rule: ``import helpers`` imports no transformers, peft or huggingface_hub at module level
(functions import them when called). Colab's setup cell imports helpers before it upgrades
those packages, so a module-level import would pin the old versions. tests/test_errors.py checks it.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable, Iterable

import pandas as pd
import torch
from torch import nn

from plumbing.arguments import check_rank, expect_model, expect_peft_config, expect_shape_pairs, expect_table
from plumbing.configs import experts_per_token
from plumbing.conversion import ensure_offline_model, main
from plumbing.hub import load_errors_explained
from plumbing.model_cache import offline_model_folder
from plumbing.model_parts import parts_of_parameters
from plumbing.module_tree import expert_tensors, mixture_of_experts_blocks, moe_roles, router_matrices, weight_shape, \
    weights_outside_the_table
from plumbing.peft_agreement import LANGUAGE_MODEL_ALONE, check_peft_can_build, check_tags_name_only_table_rows, \
    describe_rewrite, peft_rewrite_of_targets, tags_peft_cannot_target, tower_rows_note
from plumbing.peft_on_meta import adapters_by_weight, wrap_skeleton_with_peft
from plumbing.workarounds import c_output_silenced

# Re-exported for the notebooks, which call them as helpers.<name> (defined in the plumbing module named):
from plumbing.answers import check_answer  # noqa: E402 - notebooks 01-11 ("Check yourself")
from plumbing.colab import prepare_colab  # noqa: E402 - notebooks 01-11 (the Colab cell)
from plumbing.configs import build_skeleton, catalog, load_config  # noqa: E402 - 01-04, 06, 07, 09; 01-04, 06, 09; 02-04, 07, 09
from plumbing.conversion import find_gguf_file  # noqa: E402 - notebook 01
from plumbing.hub import hf_token, hub_is_reachable  # noqa: E402 - notebook 01 (and load_model)
from plumbing.model_cache import DEFAULT_MODEL  # noqa: E402 - notebooks 01-05, 08
from plumbing.on_cores import side_by_side  # noqa: E402 - notebooks 03, 07
from plumbing.peft_on_meta import count_with_peft, counts_with_peft  # noqa: E402 - notebooks 03-07; 03
from plumbing.workarounds import quiet_transformers  # noqa: E402 - notebooks 01-11


# ---------------------------------------------------------------------------
# Notebook 01 · the real model and its parts
# ---------------------------------------------------------------------------


def load_model(model_id: str = DEFAULT_MODEL) -> tuple[nn.Module, object]:
    """Return ``(model, tokenizer)`` in float32 on the CPU, in evaluation mode.

    The default model comes from the local cache (no network; ``plumbing.model_cache`` checks it
    first). Any other id is fetched from the Hugging Face Hub, which needs a network connection
    (and ``HF_TOKEN`` in ``.env`` for gated models such as Llama).

    Used in notebooks 01, 02, 04, 05, 06, 08, 09, 11.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    if model_id == DEFAULT_MODEL:
        ensure_offline_model()  # Colab only: converted on first use
        source, token = str(offline_model_folder()), None
    elif not hub_is_reachable():
        raise ValueError(
            f"{model_id!r} is not available offline: only {DEFAULT_MODEL!r} ships with the series. "
            "Connect to the internet (and put HF_TOKEN in .env for gated models) to load a hub model, "
            "or count it without weights with build_skeleton()."
        )
    else:
        source, token = model_id, hf_token()
    with load_errors_explained(model_id, source):
        tokenizer = AutoTokenizer.from_pretrained(source, token=token)
        model = AutoModelForCausalLM.from_pretrained(source, token=token, dtype=torch.float32)
    model.eval()
    return model, tokenizer


def chat(model: nn.Module, tokenizer, question: str, max_new_tokens: int = 40) -> str:
    """Ask one question with the chat template and return the greedy answer. Used in notebooks 01, 05."""
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


def parameters_by_part(model: nn.Module) -> pd.DataFrame:
    """Parameters per part of the model (embeddings, attention, MLP, norms, LM head, other), with shares.

    Used in notebooks 01, 02, 07.
    """
    parts = parts_of_parameters(model)
    rows = [{"part": parts[name], "params": p.numel()} for name, p in model.named_parameters()]
    table = pd.DataFrame(rows).groupby("part", sort=False)["params"].sum().to_frame()
    table["share %"] = (100 * table["params"] / table["params"].sum()).round(1)
    return table


def with_commas(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``table`` whose whole-number columns read 1,235,814,400 (easier on a projector).

    Used in notebooks 01, 02, 03, 04, 06, 07, 08, 09, 10, 11.
    """
    shown = table.copy()
    for column in shown.columns:
        if pd.api.types.is_integer_dtype(shown[column]):
            shown[column] = shown[column].map("{:,}".format)
    return shown


# ---------------------------------------------------------------------------
# Notebook 02 · every linear layer, and LoRA's r·(m + n)
# ---------------------------------------------------------------------------


def linear_modules(model: nn.Module, include_lm_head: bool = False):
    """Yield ``(name, module, (m, n))`` for every linear-like layer; the LM head only if asked.

    Used in notebook 02.
    """
    lm_head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for name, module in model.named_modules():
        shape = weight_shape(module)
        if shape is not None and (include_lm_head or module is not lm_head):
            yield name, module, shape


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

    Used in notebooks 02, 03, 04, 06, 07, 08, 09, 10, 11.
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
    table = table.iloc[position.argsort(kind="stable")].reset_index(drop=True)
    table.attrs["tags PEFT cannot target"] = tags_peft_cannot_target(model, table)  # read by attention_targets
    return table


def shape_fields(config) -> dict[str, int]:
    """The config values that fix every linear shape, under the names Llama's config uses.

    Families spell them differently: GPT-2 has ``n_inner`` (None means 4 x hidden) and no
    ``head_dim``; Falcon has ``ffn_hidden_size`` and ``multi_query`` (one key/value head);
    a missing ``head_dim`` is ``hidden_size / num_attention_heads``.

    Used in notebook 02.
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

    Used in notebook 02.
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
    (GPT-2's ``c_proj``) selects the MLP layers of that name too. A tag PEFT would refuse
    (Mamba's ``out_proj``) or stretch to a module that is not a row (a vision tower's wrapper of the
    same name) is left out; if that leaves none, a ValueError says why.

    Used in notebooks 02, 03, 07.
    """
    tags = list(dict.fromkeys(table.loc[table["part"] == "attention", "tag"]))
    if not tags:
        raise ValueError(
            "No attention projection was found among this model's linear layers: "
            f"{', '.join(dict.fromkeys(table['tag']))}. Choose the targets by name."
        )
    cannot = table.attrs.get("tags PEFT cannot target", {})
    usable = [tag for tag in tags if tag not in cannot]
    if usable != tags:
        warnings.warn("; ".join(f"Left out {tag}: {cannot[tag]}" for tag in tags if tag in cannot) + ".", stacklevel=2)
    if not usable:
        likewise = f" (likewise {', '.join(tags[1:])})" if len(tags) > 1 else ""
        fix = LANGUAGE_MODEL_ALONE if " tower" in cannot[tags[0]] else "Choose the targets by full name or a regular expression"
        raise ValueError(f"PEFT cannot adapt this model's attention projections by tag: {tags[0]}{likewise}: {cannot[tags[0]]}. {fix}.")
    return usable


def lora_trainables(dims: Iterable[tuple[int, int]], rank: int) -> int:
    """Σ rank·(m + n) over ``(m, n)`` weight shapes: the weights LoRA trains. Used in notebook 02."""
    dims = expect_shape_pairs(dims, "lora_trainables")
    rank = check_rank(rank)
    total = 0
    for m, n in dims:
        total += rank * (m + n)
    return total


def select_targets(table: pd.DataFrame, targets: Iterable[str]) -> pd.DataFrame:
    """Rows of a :func:`linear_layer_table` whose tag is one of ``targets``.

    Raises a ValueError listing the model's tags when a target is not among them.

    Used in notebooks 02, 03, 04, 07, 08.
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
        raise ValueError(f"Unknown target module(s) {unknown}. This model's linear layers are: {', '.join(available)}.")
    return table[table["tag"].isin(targets)]


def lora_count(model: nn.Module, targets: Iterable[str], rank: int) -> int:
    """LoRA's trainable parameters for ``targets`` at ``rank``, from the model's shapes: Σ rank·E·(m + n).

    E is 1 for an ordinary layer; for a 3-D expert tensor PEFT gives each of the E experts its own
    A (rank × n) and B (m × rank). Equal to PEFT with ``LoraConfig(r=rank, **peft_targets(targets))``.
    Where PEFT rewrites the targets first (its conversion for some mixture-of-experts models), the
    count is over the layers PEFT then adapts, at the rank it gives each (2·rank on a fused
    ``gate_up_proj``), read from PEFT on a fresh skeleton and checked against the same formula; a
    warning says what the rewrite leaves out. Tags that also select layers of a
    vision or audio tower are warned about too.

    Used in notebooks 02, 03, 07, 09, 10.
    """
    expect_model(model, "lora_count")
    rank = check_rank(rank)
    rows = select_targets(linear_layer_table(model), targets)
    check_tags_name_only_table_rows(model, rows)
    check_peft_can_build(model, set(rows["tag"]))
    if note := tower_rows_note(rows):
        warnings.warn(note, stacklevel=2)
    rows = rows.assign(rank=rank)
    rewrite = peft_rewrite_of_targets(model, sorted(tag for tag in set(rows["tag"]) if not is_parameter_tag(tag)))
    if rewrite:
        rows = rows_peft_adapts_after_its_rewrite(model, rows, rank, rewrite)
    total = 0
    for experts, m, n, r in zip(rows["experts"], rows["m"], rows["n"], rows["rank"]):
        total += int(experts) * lora_trainables([(int(m), int(n))], int(r))
    return total


def rows_peft_adapts_after_its_rewrite(model: nn.Module, rows: pd.DataFrame, rank: int, rewrite: dict) -> pd.DataFrame:
    """For :func:`lora_count`: the rows PEFT adapts after its rewrite, at its rank, checked against r·E·(m + n)."""
    from peft import LoraConfig

    with warnings.catch_warnings(action="ignore"):  # the skeleton's own notes were given when it was built
        adapted = what_peft_adapts(model.config, LoraConfig(r=rank, **peft_targets(list(dict.fromkeys(rows["tag"])))))
    kept = adapted[adapted["peft rank"] > 0].assign(rank=lambda rows: rows["peft rank"])
    by_formula = [int(e) * int(r) * (int(m) + int(n)) for e, m, n, r in zip(kept["experts"], kept["m"], kept["n"], kept["rank"])]
    if by_formula != list(kept["peft trainable"]):
        raise ValueError("PEFT's adapters after its rewrite are not r·E·(m + n) per layer: this count cannot be given exactly.")
    left_out = adapted[(adapted["peft rank"] == 0) & adapted["tag"].isin(set(rows["tag"]))]
    warnings.warn(describe_rewrite(model.config.model_type, rewrite, left_out), stacklevel=3)
    return kept


PART_COLORS = {"embeddings": "#4C72B0", "attention": "#DD8452", "MLP": "#55A868", "norms": "#8C8C8C", "LM head": "#7F1D1D"}

PART_HATCHES = {"embeddings": "", "attention": "//", "MLP": "", "norms": "..", "LM head": "xx"}  # tell the parts apart in greyscale


def plot_shares(shares: pd.DataFrame, title: str):
    """Stacked horizontal bars: one bar per row of ``shares`` (percentages per part), labelled.

    Used in notebook 02.
    """
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


# ---------------------------------------------------------------------------
# Notebook 03 · rank, targets, and PEFT's own count
# ---------------------------------------------------------------------------


def peft_targets(tags: Iterable[str]) -> dict[str, list[str]]:
    """The LoraConfig arguments for these table tags: module tags go to ``target_modules``, parameter tags
    (expert tensors, router matrices) to ``target_parameters``. Use as ``LoraConfig(r=8, **peft_targets(tags))``.

    Used in notebooks 03, 07.
    """
    tags = list(dict.fromkeys(tags))
    modules = [tag for tag in tags if not is_parameter_tag(tag)]
    parameters = [tag for tag in tags if is_parameter_tag(tag)]
    return {"target_modules": modules or None, "target_parameters": parameters or None}


def linear_bias_params(model: nn.Module, tags: Iterable[str] | None = None) -> int:
    """Bias parameters of the linear layers (only those whose tag is in ``tags``, if given); LM head excluded.

    Used in notebooks 03, 04.
    """
    total = 0
    for name, module, _shape in linear_modules(model):
        if module.bias is not None and (tags is None or name.rsplit(".", 1)[-1] in tags):
            total += module.bias.numel()
    return total


def lora_calculator(model_id: str = "meta-llama/Llama-3.2-1B-Instruct", rank: int = 16, targets=("q_proj", "v_proj")):
    """An interactive LoRA calculator (ipywidgets): pick a catalog model, a rank and targets.

    Prints the answer for the starting values first, so a printed or tested copy
    of the notebook still shows one; then shows the widgets (``plumbing.widgets``).

    Used in notebook 03.
    """
    from plumbing.widgets import calculator

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
    ranks = sorted(set([2**k for k in range(9)] + [check_rank(rank)]))  # powers of two, and the rank asked for
    calculator(catalog(), model_id, ranks, rank, tuple(targets), describe, tags_of)


# ---------------------------------------------------------------------------
# Notebook 06 · memory, measured
# ---------------------------------------------------------------------------

PHASE_PREFIX = "lora-by-the-numbers phase: "


def peak_memory_by_phase(phases: dict[str, Callable[[], object]]) -> dict[str, int]:
    """Run each phase in order under PyTorch's profiler and return, per phase, the peak bytes allocated
    on the CPU, counted from the level just before the first phase.

    Memory allocated before the first phase (the weights, say) is not included: add it yourself.
    The allocations come from the profiler's raw event list (``profiler.profiler.kineto_results``),
    the data PyTorch's own memory timeline is drawn from.

    Used in notebooks 06, 09.
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
    """Bytes of every tensor an optimizer keeps between steps (AdamW: m, v and a step counter per parameter tensor).

    Used in notebook 06.
    """
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

    Used in notebooks 06, 07, 09, 11.
    """
    parameter_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept: dict[int, int] = {}

    def remember(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameter_storages:
            kept[storage.data_ptr()] = storage.nbytes()
        return tensor.detach()  # same storage; the tensor itself could form a cycle gc never frees (pytorch#189025)

    with torch.autograd.graph.saved_tensors_hooks(remember, lambda tensor: tensor):
        yield kept


# ---------------------------------------------------------------------------
# Notebook 07 · mixtures of experts
# ---------------------------------------------------------------------------


def is_parameter_tag(tag: str) -> bool:
    """True for a tag that names a parameter (``experts.gate_up_proj``, ``gate.weight``), not a module (``q_proj``).

    Used in notebook 07.
    """
    return "." in tag


def active_parameters(model: nn.Module, count_input_embeddings: bool = True, count_output_embeddings: bool = True) -> int:
    """Parameters a token passes through: everything except the routed experts, plus top-k / E of those.

    Per expert stack of E experts, a token uses k of them: (k / E) of its parameters (exactly, since
    every stack holds E equal experts). Vendors differ on the embeddings, hence the two switches:
    Mistral (Mixtral) and Qwen count both; OpenAI (gpt-oss) counts the output embedding (the
    unembedding, a matrix multiplication) but not the input embedding (a table lookup). A tied
    matrix counts if either switch is on. A dense model's active parameters are all of them.

    Used in notebook 07.
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


def what_peft_adapts(source, lora_config) -> pd.DataFrame:
    """The rows of :func:`linear_layer_table` with what PEFT really did to each: ``peft rank`` (0 = left out)
    and ``peft trainable`` (the numbers in that row's A and B), for ``lora_config`` on a fresh skeleton.

    PEFT may rewrite a config before it applies it (its transformers-5 conversion of mixture-of-experts
    targets); this reads the adapted model, not the config. Rows PEFT adapted but the table does not
    have, or trainable parameters outside the adapters (``modules_to_save``...), would be lost: they raise
    a ValueError. PEFT's own ``get_nb_trainable_parameters`` is checked to equal the column's sum.
    ``table.attrs`` keeps the ``rank_pattern`` PEFT ended with and the pattern warnings it gave about it.

    Used in notebook 07.
    """
    expect_peft_config(lora_config, "what_peft_adapts")
    skeleton = build_skeleton(source)
    table = linear_layer_table(skeleton)  # read before PEFT changes the skeleton
    dropped: list[str] = []
    peft_model = wrap_skeleton_with_peft(skeleton, lora_config, dropped)
    ranks, trainable = adapters_by_weight(peft_model, set(table["name"]))
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
