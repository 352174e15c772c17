"""Every causal-LM architecture transformers ships, on a tiny config: counted exactly, or refused loudly.

tests/architecture_sweep.py does the counting in worker processes (two at a time, one per core);
this test reads their verdicts. A summary goes to build/architecture_sweep.json.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

ROOT = Path(__file__).resolve().parent.parent
SWEEP = ROOT / "tests" / "architecture_sweep.py"
WORKERS = 2
SECONDS = 300  # for a whole worker; each model also has its own time limit inside the sweep


def run_workers(model_types: list[str]) -> dict[str, dict]:
    """Verdicts for every model type; a type whose worker died is recorded as a crash, the rest rerun."""
    results: dict[str, dict] = {}
    remaining = list(model_types)
    while remaining:
        shares = [remaining[i::WORKERS] for i in range(WORKERS)]
        workers = [
            subprocess.Popen([sys.executable, str(SWEEP), *share], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            for share in shares if share
        ]
        for worker, share in zip(workers, shares):
            output, _ = worker.communicate(timeout=SECONDS)
            for line in output.splitlines():
                result = json.loads(line)
                results[result["type"]] = result
            unfinished = [t for t in share if t not in results]
            if unfinished:  # the worker died on unfinished[0]: record it, rerun the others
                results[unfinished[0]] = {"type": unfinished[0], "verdict": "wrong", "detail": f"worker died (exit {worker.returncode})"}
        remaining = [t for t in remaining if t not in results]
    return results


def test_every_causal_lm_architecture_is_exact_or_loud():
    model_types = sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES) + list(architecture_sweep.VARIANTS)
    results = run_workers(model_types)
    summary = collections.Counter(r["verdict"] for r in results.values())
    (ROOT / "build").mkdir(exist_ok=True)
    (ROOT / "build" / "architecture_sweep.json").write_text(json.dumps({"summary": summary, "results": results}, indent=1))

    assert set(results) == set(model_types)
    wrong = {t: r["detail"] for t, r in results.items() if r["verdict"] == "wrong"}
    assert not wrong, f"silently wrong or crashed: {wrong}"
    skipped = {t: r["detail"] for t, r in results.items() if r["verdict"] == "skipped"}
    assert all(detail.startswith("transformers cannot build it") for detail in skipped.values())
    assert len(skipped) <= 0.1 * len(model_types), f"too many architectures skipped: {skipped}"
    assert summary["exact"] >= 0.5 * len(model_types)
    for result in results.values():
        shares = result.get("shares", {})
        assert shares.get("norms", 0) <= 5, (result["type"], shares)
        assert shares.get("other", 0) <= 5, (result["type"], shares)


# --- the pieces the sweep relies on, each on a small case with an independent expectation ---------

import warnings  # noqa: E402

import pytest  # noqa: E402
from torch import nn  # noqa: E402

import architecture_sweep  # noqa: E402
import helpers  # noqa: E402
from plumbing import model_parts, module_tree  # noqa: E402


def tiny(model_type: str):
    return architecture_sweep.build(model_type)[1]


@pytest.mark.parametrize("model_type", ["roberta-prelayernorm", "olmo2", "gpt2"])
def test_norms_are_the_parameters_of_norm_modules(model_type):
    model = tiny(model_type)
    family = model_parts.family_prefix(model)  # RobertaPreLayerNorm... : the family name is not a norm
    by_class = sum(p.numel() for m in model.modules() if "norm" in type(m).__name__.removeprefix(family).lower()
                   for p in m.parameters(recurse=False))
    parts = helpers.parameters_by_part(model)
    assert int(parts.loc["norms", "params"]) == by_class


def test_mixture_of_experts_tensors_are_rows_not_skipped():
    model = tiny("mixtral")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is left out, so nothing to warn about
        table = helpers.linear_layer_table(model)
    experts = {name: p for name, p in model.named_parameters() if ".experts." in name}
    assert experts and all(p.dim() == 3 for p in experts.values())
    rows = table.set_index("name").loc[list(experts)]
    assert list(rows["params"]) == [p.numel() for p in experts.values()]  # E·m·n = the tensor's size
    assert list(rows["experts"]) == [p.shape[0] for p in experts.values()]


def test_other_3d_parameters_are_not_experts():
    """XLNet's relative attention keeps q, k, v, o as 3-D parameters: not experts, so not rows."""
    model = tiny("xlnet")
    with pytest.warns(UserWarning, match="not nn.Linear or Conv1D layers, expert tensors or router matrices.*rel_attn"):
        table = helpers.linear_layer_table(model)
    assert (table["experts"] == 1).all()
    assert not module_tree.is_mixture_of_experts(model)


def test_peft_rewrite_of_moe_targets_is_counted_as_peft_adapts_and_what_it_leaves_out_is_said():
    """PEFT 0.21.2 turns gate_proj/up_proj/down_proj on DeepSeek-V2 into its expert tensors (gate_up_proj at
    rank 2r, as gate and up each had rank r): by hand from the sweep's tiny config, per MoE layer
    E·(2r·(2·moe_intermediate + hidden) + r·(hidden + moe_intermediate)), and no shared expert."""
    model = tiny("deepseek_v2")
    config, r = model.config, 4
    assert config.first_k_dense_replace == 0 and config.n_shared_experts == 2  # both layers are MoE layers
    E, hidden, moe = config.n_routed_experts, config.hidden_size, config.moe_intermediate_size
    by_hand = config.num_hidden_layers * E * (2 * r * (2 * moe + hidden) + r * (hidden + moe))
    with pytest.warns(UserWarning, match=r"rewrites these targets on deepseek_v2.*leaves out 6 of the layers named "
                                         r"\(gate_proj, up_proj, down_proj: 6 in the shared experts\)"):
        assert helpers.lora_count(model, ["gate_proj", "up_proj", "down_proj"], r) == by_hand


def test_attention_targets_never_proposes_a_target_the_count_refuses():
    """Nemotron-H's Mamba mixers are attention-like, but PEFT refuses LoRA on their out_proj."""
    model = tiny("nemotron_h")
    with pytest.warns(UserWarning, match="Left out out_proj: PEFT refuses LoRA on it in nemotron_h"):
        targets = helpers.attention_targets(helpers.linear_layer_table(model))
    assert "out_proj" not in targets and {"q_proj", "k_proj", "v_proj", "o_proj"} <= set(targets)
    helpers.lora_count(model, targets, 4)  # no ValueError


def attention_sizes(text_config) -> list[tuple[int, int, int]]:
    """(q outputs, k or v outputs, head_dim) of each layer, from Gemma 4's per-layer view of its config."""
    return [(text_config.num_attention_heads * layer.head_dim, layer.num_key_value_heads * layer.head_dim, layer.head_dim)
            for layer in text_config.per_layer_config]


def gemma4_with_experts():
    variant = architecture_sweep.VARIANTS["gemma4+moe"]
    return architecture_sweep.build(*variant)


def test_experts_in_the_decoder_layer_leave_attention_its_part():
    """Gemma 4 keeps its router and experts in the decoder layer, beside attention and a dense MLP."""
    config, model = gemma4_with_experts()
    parts = helpers.parts_of_parameters(model)
    text = config.text_config
    layer = "model.language_model.layers.0"
    assert parts[f"{layer}.self_attn.q_proj.weight"] == "attention"
    assert parts[f"{layer}.mlp.gate_proj.weight"] == "MLP"
    assert parts[f"{layer}.router.proj.weight"] == "router"
    assert parts[f"{layer}.experts.gate_up_proj"] == "routed experts"
    assert "shared experts" not in set(parts.values())
    assert parts["model.vision_tower.encoder.layers.0.self_attn.q_proj.linear.weight"] == "vision tower"
    # attention by hand, layer by layer (Gemma 4's full-attention layers have a larger head_dim): q and o are
    # heads·head_dim × hidden, k and v kv_heads·head_dim × hidden (no bias); q_norm and k_norm count as norms
    by_part = helpers.parameters_by_part(model)["params"]
    assert by_part["attention"] == sum(2 * q * text.hidden_size + 2 * kv * text.hidden_size for q, kv, _ in attention_sizes(text))
    # active: all but the routed experts' (E - k) / E, k from Gemma 4's own field name, top_k_experts
    experts = sum(p.numel() for n, p in model.named_parameters() if parts[n] == "routed experts")
    E, k = text.num_experts, text.top_k_experts
    assert helpers.active_parameters(model) == sum(p.numel() for p in model.parameters()) - experts * (E - k) // E


def test_a_multimodal_model_counts_its_language_model_alone_in_one_call():
    config, model = gemma4_with_experts()
    with pytest.raises(ValueError, match=r"q_proj \(likewise k_proj, v_proj, o_proj\).*vision tower.*language_model_only=True"):
        helpers.attention_targets(helpers.linear_layer_table(model))
    language_model = helpers.build_skeleton(config, language_model_only=True)
    parts = helpers.parameters_by_part(model)["params"]
    outside_language_model = parts["vision tower"]
    assert sum(p.numel() for p in language_model.parameters()) == parts.sum() - outside_language_model
    text, r = config.text_config, 16
    d = text.hidden_size
    by_hand = sum(r * ((q + d) + 2 * (kv + d) + (d + q)) for q, kv, _ in attention_sizes(text))  # q, k, v, o: r·(m + n)
    targets = helpers.attention_targets(helpers.linear_layer_table(language_model))
    assert helpers.lora_count(language_model, targets, r) == by_hand


def test_targets_peft_refuses_on_mamba_are_refused():
    with pytest.raises(ValueError, match="PEFT refuses LoRA on out_proj in mamba"):
        helpers.lora_count(tiny("mamba"), ["out_proj"], 4)


class NameClash(nn.Module):
    """A linear layer and a convolution that share the name "proj"."""

    def __init__(self):
        super().__init__()
        self.mlp = nn.Module()
        self.mlp.proj = nn.Linear(8, 8)
        self.vision = nn.Module()
        self.vision.proj = nn.Conv2d(3, 8, 3)


def test_a_tag_that_also_names_another_module_is_refused():
    with pytest.raises(ValueError, match="'proj' also belongs to vision.proj, a Conv2d"):
        helpers.lora_count(NameClash(), ["proj"], 2)


def test_no_attention_found_lists_the_linear_layers():
    table = helpers.linear_layer_table(NameClash())
    with pytest.raises(ValueError, match="No attention projection was found.*proj"):
        helpers.attention_targets(table)


def test_multi_token_prediction_layers_are_said_only_when_the_config_declares_them():
    """transformers 5.23 builds no MTP layer; DeepSeek-V3's class default (1) is not the model's own declaration."""
    from transformers import AutoConfig

    toy = AutoConfig.for_model("deepseek_v3", hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
                               num_attention_heads=4, num_key_value_heads=4, num_hidden_layers=2, vocab_size=512,
                               n_routed_experts=4, num_experts_per_tok=2, first_k_dense_replace=1, n_group=1, topk_group=1,
                               q_lora_rank=32, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = helpers.build_skeleton(toy)
    toy.num_nextn_predict_layers = 2
    last_layer = sum(p.numel() for p in model.model.layers[-1].parameters())
    by_hand = 2 * (last_layer + 2 * 64 * 64 + 2 * 64)  # per module: a layer, the d × 2d projection, two norms
    with pytest.warns(UserWarning, match=f"declares 2 multi-token-prediction layer.*hold {by_hand:,} parameters"):
        helpers.build_skeleton(toy)


def test_a_total_says_when_it_leaves_out_a_tower_the_config_describes():
    """transformers 5.23 builds a Llama 4 config for causal LM as Llama4ForCausalLM: no vision tower."""
    config, _ = architecture_sweep.build("llama4")
    assert config.vision_config is not None
    with pytest.warns(UserWarning, match=r"describes a vision tower \(vision_config\), which Llama4ForCausalLM does not have"):
        model = helpers.build_skeleton(config)
    assert "vision tower" not in set(helpers.parts_of_parameters(model).values())
