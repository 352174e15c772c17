"""Real published configs the course does not ship (tests/configs/SOURCES.md), counted and checked by hand.

DeepSeek-V3 and Kimi-K2 share one architecture (multi-head latent attention, a few dense layers first, then
mixture-of-experts layers with one shared expert). Every expected number below is derived from the config's
dimensions in this file, and compared with what the vendors publish (rounded).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

import helpers

CONFIGS = Path(__file__).parent / "configs"
DEEPSEEK_V3 = CONFIGS / "deepseek-ai--DeepSeek-V3.json"
KIMI_K2 = CONFIGS / "moonshotai--Kimi-K2-Instruct.json"


def settings(path: Path) -> dict:
    return json.loads(path.read_text())


def attention_shapes(c: dict) -> list[tuple[int, int]]:
    """(out, in) of MLA's five projections: q down to q_lora_rank and up to heads·(nope + rope);
    kv down to kv_lora_rank + rope, up to heads·(nope + v); o from heads·v back to hidden."""
    d, heads = c["hidden_size"], c["num_attention_heads"]
    q_head = c["qk_nope_head_dim"] + c["qk_rope_head_dim"]
    return [(c["q_lora_rank"], d), (heads * q_head, c["q_lora_rank"]),
            (c["kv_lora_rank"] + c["qk_rope_head_dim"], d), (heads * (c["qk_nope_head_dim"] + c["v_head_dim"]), c["kv_lora_rank"]),
            (d, heads * c["v_head_dim"])]


def by_hand(c: dict) -> dict[str, int]:
    d, experts, moe = c["hidden_size"], c["n_routed_experts"], c["moe_intermediate_size"]
    attention = sum(m * n for m, n in attention_shapes(c)) + c["q_lora_rank"] + c["kv_lora_rank"]  # + its two norms
    dense_layer = attention + 3 * d * c["intermediate_size"] + 2 * d  # gate, up, down; two norms
    routed = experts * 3 * d * moe
    # the router's matrix (its score-correction bias is a buffer in transformers 5.23, not a parameter)
    moe_layer = attention + routed + c["n_shared_experts"] * 3 * d * moe + experts * d + 2 * d
    dense, sparse = c["first_k_dense_replace"], c["num_hidden_layers"] - c["first_k_dense_replace"]
    total = 2 * c["vocab_size"] * d + d + dense * dense_layer + sparse * moe_layer  # untied embeddings and head, final norm
    top_k = c["num_experts_per_tok"]
    return {"total": total, "active": total - sparse * routed * (experts - top_k) // experts, "moe layer": moe_layer,
            "sparse layers": sparse, "dense layers": dense}


def c_vocab_times_hidden(path: Path) -> int:
    return settings(path)["vocab_size"] * settings(path)["hidden_size"]


@pytest.fixture(scope="module")
def deepseek_v3():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = helpers.build_skeleton(DEEPSEEK_V3)
    return model, [str(w.message) for w in caught]


def test_deepseek_v3_total_and_active_equal_the_hand_count(deepseek_v3):
    model, _ = deepseek_v3
    expected = by_hand(settings(DEEPSEEK_V3))
    assert sum(p.numel() for p in model.parameters()) == expected["total"] == 671_026_404_352
    assert helpers.active_parameters(model) == expected["active"]
    # the report's "671B total, 37B activated": 37.55B counting both embeddings; 36.63B without the input
    # embedding (a table lookup), which rounds to the published figure
    assert round(expected["total"] / 1e9) == 671
    without_lookup = helpers.active_parameters(model, count_input_embeddings=False)
    assert without_lookup == expected["active"] - c_vocab_times_hidden(DEEPSEEK_V3) and round(without_lookup / 1e9) == 37


def test_deepseek_v3_says_its_multi_token_prediction_layer_is_left_out(deepseek_v3):
    """The MTP module (DeepSeek-V3 report §2.2): one decoder layer, a 2d → d projection, two norms."""
    _, notes = deepseek_v3
    c = settings(DEEPSEEK_V3)
    d = c["hidden_size"]
    mtp = by_hand(c)["moe layer"] + 2 * d * d + 2 * d
    assert any("declares 1 multi-token-prediction layer(s)" in n and f"hold {mtp:,} parameters" in n for n in notes), notes


def test_deepseek_v3_attention_lora_equals_r_times_m_plus_n(deepseek_v3):
    model, _ = deepseek_v3
    c, r = settings(DEEPSEEK_V3), 16
    targets = helpers.attention_targets(helpers.linear_layer_table(model))
    assert targets == ["q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"]
    assert helpers.lora_count(model, targets, r) == c["num_hidden_layers"] * sum(r * (m + n) for m, n in attention_shapes(c))


def test_deepseek_v3_mlp_lora_is_what_peft_rewrites_it_to(deepseek_v3):
    """PEFT 0.21.2 turns gate_proj, up_proj, down_proj into the routed experts' tensors (gate_up_proj at rank 2r):
    none of the dense layers' or the shared experts' MLP layers are adapted."""
    model, _ = deepseek_v3
    c, r = settings(DEEPSEEK_V3), 16
    expected = by_hand(c)
    d, moe = c["hidden_size"], c["moe_intermediate_size"]
    per_layer = c["n_routed_experts"] * (2 * r * (2 * moe + d) + r * (d + moe))
    left_out = f"{3 * expected['dense layers']} in the MLP, {3 * expected['sparse layers']} in the shared experts"
    with pytest.warns(UserWarning, match=f"leaves out {3 * c['num_hidden_layers']} of the layers named .*{left_out}"):
        assert helpers.lora_count(model, ["gate_proj", "up_proj", "down_proj"], r) == expected["sparse layers"] * per_layer


def test_kimi_k2_needs_its_hub_code_and_counts_as_deepseek_v3(tmp_path):
    with pytest.raises(ValueError, match="trust_remote_code.*Kimi-K2's is deepseek_v3"):
        helpers.build_skeleton(KIMI_K2)
    c = settings(KIMI_K2)
    copy = tmp_path / "config.json"
    copy.write_text(json.dumps({**{k: v for k, v in c.items() if k != "auto_map"}, "model_type": "deepseek_v3"}))
    model = helpers.build_skeleton(copy)
    expected = by_hand(c)
    assert sum(p.numel() for p in model.parameters()) == expected["total"]
    assert helpers.active_parameters(model) == expected["active"]
    assert round(expected["total"] / 1e12, 2) == 1.03 and round(expected["active"] / 1e9) == 33  # "1T total, 32B activated"
