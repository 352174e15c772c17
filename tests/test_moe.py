"""Mixtures of experts: totals, active parameters, expert rows and LoRA on experts, checked against
hand derivations from the configs and against PEFT."""

from __future__ import annotations

import warnings

import pytest
from peft import LoraConfig
from transformers import AutoConfig

import helpers
from plumbing import module_tree

MIXTRAL, QWEN3, GPT_OSS = "mistralai/Mixtral-8x7B-Instruct-v0.1", "Qwen/Qwen3-30B-A3B", "openai/gpt-oss-20b"
EXPERT_TENSORS = ["experts.gate_up_proj", "experts.down_proj"]


def hand_total_and_routed(model_id: str) -> tuple[int, int, int, int, int]:
    """(total, routed-expert parameters, E, k, vocab·d) written out from the config file's numbers."""
    c = helpers.load_config(model_id)
    d, L, V = c.hidden_size, c.num_hidden_layers, c.vocab_size
    if model_id == MIXTRAL:  # 32 heads of 128, 8 KV heads, 8 experts of ff 14336, no biases, untied
        attention = 4096 * 4096 * 2 + 4096 * 1024 * 2
        routed, router, extra_norms = 8 * 3 * 4096 * 14336, 8 * 4096, 0
    elif model_id == QWEN3:  # 32 heads of 128, 4 KV heads, 128 experts of ff 768, q/k norms of 128
        attention = 2048 * 4096 * 2 + 2048 * 512 * 2
        routed, router, extra_norms = 128 * 3 * 2048 * 768, 128 * 2048, 2 * 128
    else:  # gpt-oss-20b: 64 heads of 64, 8 KV heads, biases, sinks; 32 experts of ff 2880 with biases; router bias
        attention = 2880 * 4096 * 2 + 2880 * 512 * 2 + (4096 + 512 + 512 + 2880) + 64
        routed, router, extra_norms = 32 * (3 * 2880 * 2880 + 2 * 2880 + 2880), 32 * 2880 + 32, 0
    per_layer = attention + routed + router + 2 * d + extra_norms
    total = L * per_layer + d + 2 * V * d  # final norm; untied embedding and LM head
    experts = getattr(c, "num_local_experts", None) or c.num_experts
    return total, L * routed, experts, c.num_experts_per_tok, V * d


@pytest.mark.parametrize("model_id, published_total", [(MIXTRAL, 46_702_792_704), (QWEN3, 30_532_122_624), (GPT_OSS, 20_914_757_184)])
def test_moe_catalog_totals_equal_the_hand_derivation(model_id, published_total):
    skeleton = helpers.build_skeleton(model_id)
    total, *_ = hand_total_and_routed(model_id)
    assert sum(p.numel() for p in skeleton.parameters()) == total == published_total


@pytest.mark.parametrize("model_id", [MIXTRAL, QWEN3, GPT_OSS])
def test_active_parameters_are_total_minus_the_idle_experts(model_id):
    skeleton = helpers.build_skeleton(model_id)
    total, routed, experts, top_k, embedding = hand_total_and_routed(model_id)
    active = total - routed // experts * (experts - top_k)
    assert helpers.active_parameters(skeleton) == active
    assert helpers.active_parameters(skeleton, count_input_embeddings=False) == active - embedding
    assert helpers.active_parameters(skeleton, False, False) == active - 2 * embedding


def test_active_parameters_reproduce_the_published_figures():
    """Mistral: 12.9B with both embeddings; Qwen: 3.3B (consistent with both embeddings, cut off after one decimal); OpenAI: 3.61B without the input embedding."""
    mixtral, qwen, gpt_oss = (helpers.build_skeleton(m) for m in (MIXTRAL, QWEN3, GPT_OSS))
    assert round(helpers.active_parameters(mixtral) / 1e8) == 129
    assert int(helpers.active_parameters(qwen) / 1e8) == 33
    assert round(helpers.active_parameters(gpt_oss, count_input_embeddings=False) / 1e7) == 361


def test_a_dense_model_is_all_active():
    skeleton = helpers.build_skeleton("meta-llama/Llama-3.2-1B-Instruct")
    assert helpers.active_parameters(skeleton) == sum(p.numel() for p in skeleton.parameters())
    assert not module_tree.is_mixture_of_experts(skeleton)


def test_expert_tensors_are_rows_with_their_shapes():
    table = helpers.linear_layer_table(helpers.build_skeleton(MIXTRAL)).set_index("name")
    gate_up = table.loc["model.layers.0.mlp.experts.gate_up_proj"]
    assert (gate_up["tag"], gate_up["experts"], gate_up["m"], gate_up["n"]) == ("experts.gate_up_proj", 8, 2 * 14336, 4096)
    assert gate_up["params"] == 8 * 2 * 14336 * 4096 and gate_up["part"] == "routed experts"
    router = table.loc["model.layers.0.mlp.gate.weight"]
    assert (router["tag"], router["m"], router["n"], router["part"]) == ("gate.weight", 8, 4096, "router")


def test_transposed_experts_read_out_and_in_the_right_way_round():
    """gpt-oss stores (E, in, out) and says so (is_transposed): gate_up maps 2880 inputs to 2·2880 outputs."""
    table = helpers.linear_layer_table(helpers.build_skeleton(GPT_OSS)).set_index("name")
    gate_up = table.loc["model.layers.0.mlp.experts.gate_up_proj"]
    assert (gate_up["experts"], gate_up["m"], gate_up["n"]) == (32, 5760, 2880)


@pytest.mark.parametrize("model_id, expected", [(MIXTRAL, 209_715_200), (QWEN3, 629_145_600)])
def test_lora_on_every_routed_expert_at_rank_16(model_id, expected):
    c = helpers.load_config(model_id)
    d, E = c.hidden_size, getattr(c, "num_local_experts", None) or c.num_experts
    ff = getattr(c, "moe_intermediate_size", None) or c.intermediate_size
    by_hand = c.num_hidden_layers * 16 * E * ((2 * ff + d) + (d + ff))  # gate_up (2ff × d) and down (d × ff)
    ours = helpers.lora_count(helpers.build_skeleton(model_id), EXPERT_TENSORS, 16)
    peft_count, _ = helpers.count_with_peft(model_id, LoraConfig(r=16, target_parameters=EXPERT_TENSORS))
    assert ours == peft_count == by_hand == expected


@pytest.mark.parametrize("model_id", [MIXTRAL, QWEN3, GPT_OSS])
def test_every_row_counts_as_peft_with_modules_and_parameters(model_id):
    table = helpers.linear_layer_table(helpers.build_skeleton(model_id))
    tags = list(dict.fromkeys(table["tag"]))
    ours = helpers.lora_count(helpers.build_skeleton(model_id), tags, 8)
    assert ours == helpers.count_with_peft(model_id, LoraConfig(r=8, **helpers.peft_targets(tags)))[0]


TINY = dict(hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_attention_heads=4, num_hidden_layers=2,
            num_experts_per_tok=2, vocab_size=512)
TINY_FAMILIES = {
    "mixtral": dict(num_local_experts=4, num_key_value_heads=2),
    "qwen3_moe": dict(num_experts=4, num_key_value_heads=2, head_dim=16),
    "olmoe": dict(num_experts=4, num_key_value_heads=2),
    "deepseek_v3": dict(n_routed_experts=4, n_shared_experts=1, first_k_dense_replace=1, n_group=1, topk_group=1,
                        num_key_value_heads=4, q_lora_rank=32, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8),
    "gpt_oss": dict(num_local_experts=4, num_key_value_heads=2, head_dim=16),
    "llama4_text": dict(num_local_experts=4, num_key_value_heads=2, head_dim=16, intermediate_size_mlp=128),
}


def tiny(model_type: str):
    return AutoConfig.for_model(model_type, **TINY, **TINY_FAMILIES[model_type])


@pytest.mark.parametrize("model_type", list(TINY_FAMILIES))
def test_expert_and_attention_counts_equal_peft_on_tiny_moe_families(model_type):
    config = tiny(model_type)
    skeleton = helpers.build_skeleton(config)
    table = helpers.linear_layer_table(skeleton)
    experts = table[table["experts"] > 1]
    assert len(experts) == 2 * config.num_hidden_layers - getattr(config, "first_k_dense_replace", 0) * 2
    by_hand = int((4 * experts["experts"] * (experts["m"] + experts["n"])).sum())
    tags = list(dict.fromkeys(experts["tag"])) + helpers.attention_targets(table)
    ours = helpers.lora_count(skeleton, tags, 4)
    peft_count, _ = helpers.count_with_peft(config, LoraConfig(r=4, **helpers.peft_targets(tags)))
    attention = helpers.select_targets(table, helpers.attention_targets(table))
    assert ours == peft_count == by_hand + int((4 * (attention["m"] + attention["n"])).sum())


def test_shared_experts_and_router_have_their_own_parts():
    config = AutoConfig.for_model("qwen2_moe", **TINY, num_experts=4, num_key_value_heads=2, shared_expert_intermediate_size=64)
    parts = helpers.parts_of_parameters(helpers.build_skeleton(config))
    assert parts["model.layers.0.mlp.shared_expert.up_proj.weight"] == "shared experts"
    assert parts["model.layers.0.mlp.shared_expert_gate.weight"] == "shared experts"  # a gate with 1 row, not E
    assert parts["model.layers.0.mlp.gate.weight"] == "router"
    assert parts["model.layers.0.mlp.experts.down_proj"] == "routed experts"


def test_a_family_name_does_not_pass_for_a_part():
    """'GptOssMLP' contains 'ssm' (a state-space word): the family prefix is removed before matching."""
    parts = helpers.parts_of_parameters(helpers.build_skeleton(tiny("gpt_oss")))
    assert parts["model.layers.0.mlp.experts.gate_up_proj_bias"] == "routed experts"
    assert parts["model.layers.0.self_attn.q_proj.weight"] == "attention"


def test_what_peft_adapts_with_all_linear_on_mixtral():
    """PEFT's conversion: experts and router become target_parameters, gate_up_proj at twice the rank."""
    rows = helpers.what_peft_adapts(tiny("mixtral"), LoraConfig(r=4, target_modules="all-linear"))
    ranks = rows.groupby("tag")["peft rank"].unique().map(list).to_dict()
    assert ranks == {"q_proj": [4], "k_proj": [4], "v_proj": [4], "o_proj": [4], "gate.weight": [4],
                     "experts.gate_up_proj": [8], "experts.down_proj": [4]}
    assert (rows["peft trainable"] == rows["peft rank"] * rows["experts"] * (rows["m"] + rows["n"])).all()


def test_what_peft_adapts_leaves_gpt_oss_experts_out():
    rows = helpers.what_peft_adapts(tiny("gpt_oss"), LoraConfig(r=4, target_modules="all-linear"))
    assert set(rows.loc[rows["peft rank"] > 0, "part"]) == {"attention"}
    assert (rows.loc[rows["part"] == "routed experts", "peft rank"] == 0).all()


def test_what_peft_adapts_refuses_trainables_outside_the_table():
    with pytest.raises(ValueError, match="outside the adapted rows"):
        helpers.what_peft_adapts(tiny("mixtral"), LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=["lm_head"]))


def test_peft_targets_splits_modules_from_parameters():
    assert helpers.peft_targets(["q_proj", "experts.down_proj", "gate.weight", "q_proj"]) == {
        "target_modules": ["q_proj"], "target_parameters": ["experts.down_proj", "gate.weight"]}
    assert helpers.peft_targets(["q_proj"]) == {"target_modules": ["q_proj"], "target_parameters": None}


def test_missing_or_absurd_top_k_is_refused():
    skeleton = helpers.build_skeleton(tiny("mixtral"))
    skeleton.config = AutoConfig.for_model("llama")  # a config without num_experts_per_tok
    with pytest.raises(ValueError, match="num_experts_per_tok"):
        helpers.active_parameters(skeleton)
    config = tiny("mixtral")
    config.num_experts_per_tok = 5  # more than the 4 experts
    with pytest.raises(ValueError, match="more than the 4 experts"):
        helpers.active_parameters(helpers.build_skeleton(config))


def test_only_peft_added_pattern_warnings_are_silenced():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        helpers.count_with_peft(tiny("mixtral"), LoraConfig(r=4, target_modules="all-linear"))
        helpers.count_with_peft(tiny("mixtral"), LoraConfig(r=4, target_modules=["q_proj"], rank_pattern={"nowhere": 8}))
    messages = [str(w.message) for w in caught if "pattern keys did not match" in str(w.message)]
    assert messages and all("nowhere" in m for m in messages)


def test_counting_with_peft_leaves_the_callers_config_as_it_was():
    """PEFT's MoE conversion rewrites the LoraConfig it is given; helpers give it a copy."""
    config = LoraConfig(r=4, target_modules="all-linear")
    helpers.count_with_peft(tiny("mixtral"), config)
    helpers.what_peft_adapts(tiny("mixtral"), config)
    assert config.target_modules == "all-linear" and not config.target_parameters and not config.rank_pattern


def test_what_peft_adapts_keeps_the_pattern_peft_added_and_its_warning():
    rows = helpers.what_peft_adapts(tiny("mixtral"), LoraConfig(r=4, target_modules="all-linear"))
    assert rows.attrs["rank_pattern"] == {r".*\.gate_up_proj": 8}  # 2 × r, PEFT's own addition
    assert any("did not match any targeted module" in w for w in rows.attrs["peft warnings"])
