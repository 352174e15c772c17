"""helpers.py against independent sources, on every model in the catalog.

Independent sources used here:
- shapes and totals derived by hand from each config's fields, written out below;
- PEFT's own count of trainable LoRA parameters on the same skeleton;
- counts measured and written down in the design guide (shared/GUIDE.md §4).
"""

import pandas as pd
import pytest
import torch
from peft import LoraConfig, get_peft_model

import helpers
from plumbing import configs, module_tree


def total_parameters(model) -> int:
    """Every distinct parameter of the model (a tied weight once)."""
    return sum(p.numel() for p in model.parameters())

CATALOG = helpers.catalog()
# The mixtures of experts have their own hand derivations in tests/test_moe.py; the tests here are for dense models.
MOE_CATALOG = ["mistralai/Mixtral-8x7B-Instruct-v0.1", "Qwen/Qwen3-30B-A3B", "openai/gpt-oss-20b"]
DENSE_CATALOG = [model_id for model_id in CATALOG if model_id not in MOE_CATALOG]

# Measured in the design guide (§4), independently of this repository's code.
GUIDE_TOTALS = {
    "meta-llama/Llama-3.2-1B-Instruct": 1_235_814_400,
    "google/gemma-2b-it": 2_506_172_416,
    "HuggingFaceTB/SmolLM2-135M-Instruct": 134_515_008,
}


def head_dim(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def expected_shape(model_type: str, config, name: str) -> tuple[int, int]:
    """(out, in) of the linear layer called ``name``, derived by hand from the config."""
    tag = name.rsplit(".", 1)[-1]
    if model_type == "gpt2":
        d = config.n_embd
        inner = config.n_inner or 4 * d
        shapes = {"c_attn": (3 * d, d), "c_fc": (inner, d)}
        if tag == "c_proj":
            return (d, inner) if ".mlp." in name else (d, d)
        return shapes[tag]
    if model_type == "falcon":
        d = config.hidden_size
        hd = d // config.num_attention_heads
        kv_heads = 1 if config.multi_query else config.num_attention_heads
        shapes = {
            "query_key_value": (d + 2 * kv_heads * hd, d),
            "dense": (d, d),
            "dense_h_to_4h": (4 * d, d),
            "dense_4h_to_h": (d, 4 * d),
        }
        return shapes[tag]
    d, ff = config.hidden_size, config.intermediate_size
    q = config.num_attention_heads * head_dim(config)
    kv = config.num_key_value_heads * head_dim(config)
    shapes = {
        "q_proj": (q, d),
        "k_proj": (kv, d),
        "v_proj": (kv, d),
        "qkv_proj": (q + 2 * kv, d),
        "o_proj": (d, q),
        "gate_proj": (ff, d),
        "up_proj": (ff, d),
        "gate_up_proj": (2 * ff, d),
        "down_proj": (d, ff),
    }
    return shapes[tag]


def total_by_hand(model_type: str, config) -> int:
    """Every parameter of the model, added up from the config by hand."""
    V = config.vocab_size
    if model_type == "gpt2":
        d, L, inner = config.n_embd, config.n_layer, config.n_inner or 4 * config.n_embd
        per_layer = 2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d + (inner * d + inner) + (d * inner + d)
        return V * d + config.n_positions * d + L * per_layer + 2 * d  # tied head
    if model_type == "falcon":
        d, L = config.hidden_size, config.num_hidden_layers
        hd = d // config.num_attention_heads
        per_layer = 2 * d + (d + 2 * hd) * d + d * d + 2 * (4 * d * d)  # one layernorm, parallel attention
        return V * d + L * per_layer + 2 * d  # tied head, final layernorm
    d, L, ff = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    q = config.num_attention_heads * head_dim(config)
    kv = config.num_key_value_heads * head_dim(config)
    attention = d * q + 2 * d * kv + q * d
    if model_type == "qwen2":
        attention += q + 2 * kv  # Qwen2 has biases on q, k and v
    per_layer = attention + 3 * d * ff + 2 * d
    head = 0 if config.tie_word_embeddings else V * d
    return V * d + L * per_layer + d + head


@pytest.fixture(params=DENSE_CATALOG)
def model_id(request) -> str:
    return request.param


def test_catalog_has_the_models_the_series_needs():
    for needed in [
        "meta-llama/Llama-3.2-1B-Instruct",
        "google/gemma-2b-it",
        "Qwen/Qwen2.5-0.5B-Instruct",
        "meta-llama/Llama-3.1-8B-Instruct",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
    ]:
        assert needed in CATALOG
    assert helpers.DEFAULT_MODEL in CATALOG


def test_the_mixtures_of_experts_in_the_catalog_are_the_ones_test_moe_derives():
    moe = [model_id for model_id in CATALOG if module_tree.is_mixture_of_experts(helpers.build_skeleton(model_id))]
    assert sorted(moe) == sorted(MOE_CATALOG)


def test_skeleton_is_on_meta_device_and_totals_match_hand_count(model_id):
    skeleton = helpers.build_skeleton(model_id)
    assert all(p.device == torch.device("meta") for p in skeleton.parameters())
    model_type = skeleton.config.model_type
    assert total_parameters(skeleton) == total_by_hand(model_type, skeleton.config)
    if model_id in GUIDE_TOTALS:
        assert total_parameters(skeleton) == GUIDE_TOTALS[model_id]


def test_every_linear_shape_matches_the_config(model_id):
    skeleton = helpers.build_skeleton(model_id)
    table = helpers.linear_layer_table(skeleton)
    assert len(table) > 0
    for row in table.itertuples():
        assert (row.m, row.n) == expected_shape(skeleton.config.model_type, skeleton.config, row.name), row.name
        assert row.params == row.m * row.n
        assert row.tag == row.name.rsplit(".", 1)[-1]


def peft_config(model_id: str, rank: int, targets: list[str]) -> LoraConfig:
    """PEFT's LoraConfig; GPT-2's Conv1D weights are stored transposed (fan_in_fan_out)."""
    return LoraConfig(r=rank, target_modules=targets, fan_in_fan_out="gpt2" in model_id)


def test_lora_count_equals_peft_for_all_linear_layers(model_id):
    tags = sorted(set(helpers.linear_layer_table(helpers.build_skeleton(model_id))["tag"]))
    ours = helpers.lora_count(helpers.build_skeleton(model_id), tags, rank=16)
    peft_model = get_peft_model(helpers.build_skeleton(model_id), peft_config(model_id, 16, tags))
    peft_trainable, _ = peft_model.get_nb_trainable_parameters()
    assert ours == peft_trainable


def test_lora_count_equals_peft_for_one_target_at_rank_8(model_id):
    first_tag = helpers.linear_layer_table(helpers.build_skeleton(model_id))["tag"].iloc[0]
    ours = helpers.lora_count(helpers.build_skeleton(model_id), [first_tag], rank=8)
    peft_model = get_peft_model(helpers.build_skeleton(model_id), peft_config(model_id, 8, [first_tag]))
    assert ours == peft_model.get_nb_trainable_parameters()[0]


def test_guide_figures_for_llama_3_2_1b():
    """Per-tag totals and the q,k,v,o r=16 count measured in the guide (§4)."""
    table = helpers.linear_layer_table(helpers.build_skeleton("meta-llama/Llama-3.2-1B-Instruct"))
    per_tag = table.groupby("tag")["params"].sum()
    assert per_tag["q_proj"] == per_tag["o_proj"] == 67_108_864
    assert per_tag["k_proj"] == per_tag["v_proj"] == 16_777_216
    assert per_tag["gate_proj"] == per_tag["up_proj"] == per_tag["down_proj"] == 268_435_456
    rows = helpers.select_targets(table, ["q_proj", "k_proj", "v_proj", "o_proj"])
    assert helpers.lora_trainables(zip(rows["m"], rows["n"]), 16) == 3_407_872


def test_guide_figure_for_gemma_all_projections():
    skeleton = helpers.build_skeleton("google/gemma-2b-it")
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert helpers.lora_count(skeleton, targets, 16) == 19_611_648


def test_gpt2_conv1d_is_read_transposed():
    """GPT-2's Conv1D stores (in, out); the table must still say m = out, n = in."""
    from transformers import GPT2Config, GPT2LMHeadModel

    small = GPT2LMHeadModel(GPT2Config(n_embd=32, n_head=2, n_layer=1, vocab_size=50, n_positions=16))
    table = helpers.linear_layer_table(small).set_index("name")
    attn = small.transformer.h[0].attn.c_attn
    assert tuple(attn.weight.shape) == (32, 96)  # stored as (in, out)
    assert (table.loc["transformer.h.0.attn.c_attn", "m"], table.loc["transformer.h.0.attn.c_attn", "n"]) == (96, 32)
    assert (table.loc["transformer.h.0.mlp.c_proj", "m"], table.loc["transformer.h.0.mlp.c_proj", "n"]) == (32, 128)


def test_fused_projections_are_single_rows():
    table = helpers.linear_layer_table(helpers.build_skeleton("microsoft/Phi-3-mini-4k-instruct"))
    assert set(table["tag"]) == {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}
    qkv = table[table["tag"] == "qkv_proj"].iloc[0]
    assert (qkv["m"], qkv["n"]) == (3 * 3072, 3072)  # 32 heads of 96 for q, k and v each (no GQA)


def test_lm_head_only_when_asked():
    skeleton = helpers.build_skeleton("meta-llama/Llama-3.1-8B-Instruct")
    without = helpers.linear_layer_table(skeleton)
    with_head = helpers.linear_layer_table(skeleton, include_lm_head=True)
    assert "lm_head" not in set(without["name"])
    head = with_head[with_head["name"] == "lm_head"].iloc[0]
    assert (head["m"], head["n"]) == (128_256, 4096)
    assert len(with_head) == len(without) + 1


def test_skeleton_from_path_and_from_config_object():
    path = configs.catalog_config_path("google/gemma-2b-it")
    from_path = helpers.build_skeleton(path)
    from_string_path = helpers.build_skeleton(str(path))
    from_object = helpers.build_skeleton(from_path.config)
    counts = {total_parameters(m) for m in (from_path, from_string_path, from_object)}
    assert counts == {2_506_172_416}


def test_parameters_by_part_adds_up_and_names_the_parts():
    skeleton = helpers.build_skeleton("meta-llama/Llama-3.1-8B-Instruct")
    parts = helpers.parameters_by_part(skeleton)
    assert parts["params"].sum() == total_parameters(skeleton)
    config = skeleton.config
    assert parts.loc["embeddings", "params"] == config.vocab_size * config.hidden_size
    assert parts.loc["LM head", "params"] == config.vocab_size * config.hidden_size
    assert parts.loc["norms", "params"] == (2 * config.num_hidden_layers + 1) * config.hidden_size
    assert "other" not in parts.index


def test_plot_shares_draws_one_segment_per_part_and_model():
    shares = pd.DataFrame({"embeddings": [20.0, 6.5], "MLP": [80.0, 93.5]}, index=["small", "big"])
    fig = helpers.plot_shares(shares, "test")
    ax = fig.axes[0]
    widths = sorted(round(patch.get_width(), 1) for patch in ax.patches)
    assert widths == [6.5, 20.0, 80.0, 93.5]
    assert [t.get_text() for t in ax.texts] == ["20.0%", "6.5%", "80.0%", "93.5%"]


def test_count_with_peft_matches_a_direct_peft_call_and_a_hand_count():
    targets = ["q_proj", "v_proj"]
    trainable, everything = helpers.count_with_peft("google/gemma-2b-it", LoraConfig(r=8, target_modules=targets))
    direct = get_peft_model(helpers.build_skeleton("google/gemma-2b-it"), LoraConfig(r=8, target_modules=targets))
    assert (trainable, everything) == direct.get_nb_trainable_parameters()
    # by hand: 18 layers, q_proj 2048 -> 2048 and v_proj 2048 -> 256 (one key/value head of 256)
    assert trainable == 18 * 8 * ((2048 + 2048) + (256 + 2048))
    assert everything == 2_506_172_416 + trainable


def test_linear_bias_params_counts_qwen_qkv_biases_by_hand():
    qwen = helpers.build_skeleton("Qwen/Qwen2.5-0.5B-Instruct")
    c = qwen.config
    head_dim = c.hidden_size // c.num_attention_heads
    q_bias, kv_bias = c.num_attention_heads * head_dim, c.num_key_value_heads * head_dim
    assert helpers.linear_bias_params(qwen) == c.num_hidden_layers * (q_bias + 2 * kv_bias)
    assert helpers.linear_bias_params(qwen, ["q_proj", "v_proj"]) == c.num_hidden_layers * (q_bias + kv_bias)
    assert helpers.linear_bias_params(helpers.build_skeleton("meta-llama/Llama-3.2-1B-Instruct")) == 0


# shape_fields: one spelling of the shape-deciding config values, checked against what each family's
# config.json says (hand-read values) and against the layers the skeleton really has.
@pytest.mark.parametrize(
    "model, expected",
    [
        # GPT-2: n_embd 768, n_head 12, n_inner null -> 4 x 768, no head_dim -> 768 / 12
        ("openai-community/gpt2", {"hidden_size": 768, "intermediate_size": 3072, "num_key_value_heads": 12, "head_dim": 64}),
        # Falcon-7B: multi_query true -> one key/value head; no ffn_hidden_size -> 4 x 4544
        ("tiiuae/falcon-7b-instruct", {"hidden_size": 4544, "intermediate_size": 18176, "num_key_value_heads": 1, "head_dim": 64}),
        # Phi-3-mini: 32 heads of 3072 / 32 = 96, as many key/value heads
        ("microsoft/Phi-3-mini-4k-instruct", {"intermediate_size": 8192, "num_key_value_heads": 32, "head_dim": 96}),
        # Llama-3.2-1B: grouped-query attention, 8 key/value heads of 64
        ("meta-llama/Llama-3.2-1B-Instruct", {"hidden_size": 2048, "intermediate_size": 8192, "num_key_value_heads": 8, "head_dim": 64}),
    ],
)
def test_shape_fields_reads_each_family(model, expected):
    fields = helpers.shape_fields(helpers.load_config(model))
    for name, value in expected.items():
        assert fields[name] == value, name


@pytest.mark.parametrize("model", helpers.catalog())
def test_shape_fields_give_the_fused_or_separate_qkv_width(model):
    fields = helpers.shape_fields(helpers.load_config(model))
    q_out = fields["num_attention_heads"] * fields["head_dim"]
    kv_out = fields["num_key_value_heads"] * fields["head_dim"]
    table = helpers.linear_layer_table(helpers.build_skeleton(model))
    first_layer = table[table["name"].str.contains(r"\.0\.")]
    attention_in = first_layer[first_layer["part"] == "attention"]  # the part from the module tree
    qkv_width = int(attention_in["m"].sum() - fields["hidden_size"])  # all attention outputs but o's
    assert qkv_width == q_out + 2 * kv_out
    assert len(table) == fields["num_hidden_layers"] * len(first_layer)


@pytest.mark.parametrize(
    "model, expected",
    [
        ("meta-llama/Llama-3.2-1B-Instruct", ["q_proj", "k_proj", "v_proj", "o_proj"]),
        ("microsoft/Phi-3-mini-4k-instruct", ["o_proj", "qkv_proj"]),
        ("openai-community/gpt2", ["c_attn", "c_proj"]),
        ("tiiuae/falcon-7b-instruct", ["query_key_value", "dense"]),
    ],
)
def test_attention_targets(model, expected):
    table = helpers.linear_layer_table(helpers.build_skeleton(model))
    assert helpers.attention_targets(table) == expected


@pytest.mark.parametrize(
    "model, tag, expected",
    [
        # by hand from each config.json: Phi-3 32 heads x 96 for q, k and v each; GPT-2 3 x 768; Falcon 71 heads + 2 x 1 of 64
        ("microsoft/Phi-3-mini-4k-instruct", "qkv_proj", [(3 * 3072, 3072)]),
        ("microsoft/Phi-3-mini-4k-instruct", "gate_up_proj", [(2 * 8192, 3072)]),
        ("openai-community/gpt2", "c_attn", [(3 * 768, 768)]),
        ("openai-community/gpt2", "c_proj", [(768, 768), (768, 4 * 768)]),
        ("tiiuae/falcon-7b-instruct", "query_key_value", [(71 * 64 + 2 * 64, 4544)]),
        ("tiiuae/falcon-7b-instruct", "dense_4h_to_h", [(4544, 4 * 4544)]),
    ],
)
def test_fused_and_renamed_shapes_match_the_config_and_the_skeleton(model, tag, expected):
    shapes = helpers.fused_and_renamed_shapes(helpers.shape_fields(helpers.load_config(model)))
    assert shapes[tag] == expected
    table = helpers.linear_layer_table(helpers.build_skeleton(model))
    rows = table[table["tag"] == tag]
    assert set(zip(rows["m"], rows["n"])) == set(expected)
