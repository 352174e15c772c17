"""plumbing/configs.py: a config.json that is damaged, odd or incomplete gets one message naming the field or the fix,
and a count never rests on a value the file does not give (issue 20)."""

import json
from pathlib import Path

import pytest

import helpers
from conftest import TINY_LLAMA, write_config_json
from plumbing import configs


def test_a_utf16_config_reads_as_its_utf8_twin(tmp_path):
    """Windows editors may save UTF-16 with a byte-order mark: the same model, not "not a text file"."""
    utf8 = helpers.build_skeleton(write_config_json(tmp_path / "a", TINY_LLAMA))
    path = tmp_path / "b" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(TINY_LLAMA), encoding="utf-16")
    utf16 = helpers.build_skeleton(path)
    assert sum(p.numel() for p in utf16.parameters()) == sum(p.numel() for p in utf8.parameters())


@pytest.mark.parametrize("text, message", [
    ('{"model_type": "llama", "hidden_size": 64, "hidden_size": 32}', "the key 'hidden_size' appears twice"),
    ('{"model_type": ["llama"], "hidden_size": 64}', r"model_type \['llama'\], which this transformers version does not know"),
    ('{"model_type": "llama", "x": ' + "[" * 5000 + "]" * 5000 + "}", "nests deeper than any model config"),
    ('{"model_type": "llama", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "nests deeper than any model config"),
], ids=["duplicate-key", "model-type-list", "deep", "deeper-than-python-recursion"])
def test_odd_json_gets_one_message(tmp_path, text, message):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        helpers.build_skeleton(path)


def test_an_unreadable_config_says_so(tmp_path, monkeypatch):
    path = write_config_json(tmp_path, TINY_LLAMA)
    real_read = Path.read_bytes

    def denied(self):
        if self.name == "config.json":
            raise PermissionError(13, "Permission denied")
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", denied)  # as root, chmod 000 would not stop the test's own reads
    with pytest.raises(ValueError, match="config.json cannot be read \\(Permission denied\\)"):
        helpers.build_skeleton(path)


def test_an_unknown_rope_type_is_named_not_a_key_error(tmp_path):
    settings = {**TINY_LLAMA, "rope_parameters": {"rope_type": "banana", "rope_theta": 10_000.0}}
    with pytest.raises(ValueError, match="transformers cannot build a model from this config.*'banana'"):
        helpers.build_skeleton(write_config_json(tmp_path, settings))


@pytest.mark.parametrize("field", ["max_position_embeddings", "n_positions"])
def test_positions_are_bounded(tmp_path, field):
    model_type = "gpt2" if field == "n_positions" else "llama"
    settings = {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": 100, "n_inner": 128} \
        if model_type == "gpt2" else dict(TINY_LLAMA)
    settings[field] = 10**12  # GPT-2's position table would be 64 trillion parameters
    with pytest.raises(ValueError, match=f"{field} = 1000000000000 is not plausible"):
        helpers.build_skeleton(write_config_json(tmp_path, settings))


def test_mpt_and_dbrx_spellings_are_the_models_own(tmp_path):
    """MPT says d_model, n_heads, n_layers: given, not missing. By hand: the embedding 100 × 64 (tied), per block
    two norms 2 × 64, Wqkv 64 × 192, out_proj 64 × 64, up 64 × 256, down 256 × 64 (no biases); a final norm 64."""
    mpt = {"model_type": "mpt", "d_model": 64, "n_heads": 4, "n_layers": 2, "vocab_size": 100, "expansion_ratio": 4,
           "max_seq_len": 32}
    skeleton = helpers.build_skeleton(write_config_json(tmp_path, mpt))
    per_block = 2 * 64 + 64 * 192 + 64 * 64 + 64 * 256 + 256 * 64
    assert sum(p.numel() for p in skeleton.parameters()) == 100 * 64 + 2 * per_block + 64


# --- nested configs (Gemma 3 and other multimodal models keep the language model in text_config) ----------

TEXT = {"hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 100, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 16, "intermediate_size": 96}
VISION = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64, "image_size": 28,
          "patch_size": 14}


def gemma3(**text_fields) -> dict:
    text = {key: value for key, value in {**TEXT, **text_fields}.items() if value is not None}
    return {"model_type": "gemma3", "text_config": text, "vision_config": VISION, "mm_tokens_per_image": 4}


@pytest.mark.parametrize("fields, message", [
    ({"num_hidden_layers": 1_000_000}, r"\(text_config\): num_hidden_layers = 1000000 is not plausible"),
    ({"vocab_size": -5}, r"\(text_config\): vocab_size = -5 is not plausible"),
    ({"intermediate_size": None}, "does not give text_config.intermediate_size, and the parameter count depends on it"),
], ids=["million-layers", "negative-vocab", "missing-mlp-width"])
def test_a_nested_text_config_is_checked_like_the_top_level(tmp_path, monkeypatch, fields, message):
    with pytest.raises(ValueError, match=message):
        helpers.build_skeleton(write_config_json(tmp_path, gemma3(**fields)))


def test_gemma3n_style_per_layer_lists_are_checked_element_by_element(tmp_path):
    settings = {**TINY_LLAMA, "intermediate_size": [96, 96]}
    from plumbing.configs import check_shape_values

    check_shape_values(settings, "config.json")  # the real model's format: accepted
    with pytest.raises(ValueError, match=r"intermediate_size = \[96, -1\] is not plausible"):
        check_shape_values({**settings, "intermediate_size": [96, -1]}, "config.json")


# --- a count that needs a value the config does not give is refused ---------------------------------------

MIXTRAL = {**TINY_LLAMA, "model_type": "mixtral", "num_local_experts": 4}


def test_active_parameters_need_the_top_k_the_config_gives(tmp_path):
    """transformers would fill in num_experts_per_tok = 2; the active count must not rest on that."""
    skeleton = helpers.build_skeleton(write_config_json(tmp_path, MIXTRAL))  # no num_experts_per_tok
    with pytest.raises(ValueError, match="no usable num_experts_per_tok"):
        helpers.active_parameters(skeleton)


def test_active_parameters_with_the_top_k_given_equal_a_hand_count(tmp_path):
    """By hand, per layer: experts hold 3 · 64 · 96 parameters each, so k = 2 of E = 4 leave 2 · 3 · 64 · 96 unused."""
    skeleton = helpers.build_skeleton(write_config_json(tmp_path, {**MIXTRAL, "num_experts_per_tok": 2}))
    total = sum(p.numel() for p in skeleton.parameters())
    unused_per_layer = (4 - 2) * 3 * 64 * 96
    assert helpers.active_parameters(skeleton) == total - TINY_LLAMA["num_hidden_layers"] * unused_per_layer


# --- moved from test_errors.py: reading, bounds and defaults -------------------------------------------


def test_unknown_model_offline_lists_the_catalog_and_the_way_out(no_network):
    with pytest.raises(ValueError) as error:
        helpers.build_skeleton("someone/not-a-model")
    message = str(error.value)
    assert "not in the offline catalog" in message
    assert "meta-llama/Llama-3.2-1B-Instruct" in message
    assert "internet" in message


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"model_type": "llama", "hidden_size": 2048,', "not valid JSON"),  # cut short
        ("[1, 2, 3]", "no 'model_type' field"),  # JSON, but not an object
        (json.dumps({"model_type": "llamma", "hidden_size": 64}), "'llamma'.*Check the spelling"),
    ],
    ids=["truncated", "list", "misspelt-model-type"],
)
def test_malformed_config_file(tmp_path, text, message):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        helpers.build_skeleton(path)


def test_config_without_model_type(tmp_path):
    settings = json.loads(configs.catalog_config_path("meta-llama/Llama-3.2-1B-Instruct").read_text())
    del settings["model_type"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(settings))
    with pytest.raises(ValueError, match="no 'model_type' field.*Add it"):
        helpers.build_skeleton(str(path))


def test_missing_config_file(tmp_path):
    with pytest.raises(ValueError, match="No config file"):
        helpers.build_skeleton(tmp_path / "nowhere" / "config.json")


def test_wrong_source_type():
    with pytest.raises(ValueError, match="config.json path"):
        helpers.build_skeleton(42)


def test_hub_model_that_cannot_be_fetched(monkeypatch):
    """Online, a wrong or gated id still ends in one ValueError that says what to check."""
    import transformers

    def refused(*args, **kwargs):
        raise OSError("401 Client Error")  # what the Hub answers for a gated model without a token

    monkeypatch.setattr(helpers, "hub_is_reachable", lambda timeout=2.0: True)  # where load_model looks it up
    monkeypatch.setattr(configs, "hub_is_reachable", lambda timeout=2.0: True)  # where load_config looks it up
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", refused)
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", refused)
    with pytest.raises(ValueError, match="Could not load 'meta-llama/Llama-3.2-1B-Instruct' \\(OSError\\).*HF_TOKEN"):
        helpers.load_model("meta-llama/Llama-3.2-1B-Instruct")
    with pytest.raises(ValueError, match="Could not fetch the config .*HF_TOKEN"):
        helpers.build_skeleton("meta-llama/Llama-3.2-1B-Instruct-typo")


def write_config(tmp_path, **fields) -> str:
    return str(write_config_json(tmp_path, {**TINY_LLAMA, **fields}))


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"num_hidden_layers": 1_000_000}, "num_hidden_layers = 1000000 is not plausible.*1 to 1,024"),
        ({"num_attention_heads": 0}, "num_attention_heads = 0 is not plausible"),
        ({"hidden_size": -1}, "hidden_size = -1 is not plausible"),
        ({"vocab_size": -5}, "vocab_size = -5 is not plausible"),
        ({"vocab_size": 1e30}, "vocab_size = 1e\\+30 is not plausible"),
        ({"hidden_size": "big"}, "hidden_size = 'big' is not plausible"),
        ({"num_attention_heads": 5}, "transformers refuses this config.*not a multiple"),
    ],
    ids=["million-layers", "zero-heads", "negative-hidden", "negative-vocab", "1e30", "text", "heads-not-dividing"],
)
def test_absurd_config_values_name_the_field(tmp_path, fields, message, monkeypatch):
    from transformers import AutoModelForCausalLM

    def refuse(*args, **kwargs):
        pytest.fail("a model was built from an absurd config before it was refused")

    monkeypatch.setattr(AutoModelForCausalLM, "from_config", refuse)  # refused before any model is built
    with pytest.raises(ValueError, match=message):
        helpers.build_skeleton(write_config(tmp_path, **fields))


def write_settings(tmp_path, settings: dict) -> str:
    return str(write_config_json(tmp_path, settings))


SMALL_LLAMA = TINY_LLAMA


@pytest.mark.parametrize("drop, add, field, default", [
    ("intermediate_size", {}, "intermediate_size", "11,008"),
    ("intermediate_size", {"intermediate_sise": 96}, "intermediate_size", "11,008"),  # misspelt: not given
    ("num_attention_heads", {}, "num_attention_heads", "32"),  # 16 heads of 4: k, v widths depend on it
])
def test_a_size_left_to_transformers_defaults_is_refused_by_name(tmp_path, drop, add, field, default):
    settings = {key: value for key, value in SMALL_LLAMA.items() if key != drop} | add
    with pytest.raises(ValueError, match=f"does not give {field}, and the parameter count depends on it.*default {default}"):
        helpers.build_skeleton(write_settings(tmp_path, settings))


def test_a_mixture_of_experts_without_its_expert_count_is_refused(tmp_path):
    mixtral = {**SMALL_LLAMA, "model_type": "mixtral", "num_experts_per_tok": 2}  # num_local_experts missing
    with pytest.raises(ValueError, match="does not give num_local_experts.*default 8"):
        helpers.build_skeleton(write_settings(tmp_path, mixtral))


def test_sizes_given_under_the_models_own_spelling_are_accepted(tmp_path):
    gpt2 = {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": 100, "n_positions": 32, "n_inner": 128}
    skeleton = helpers.build_skeleton(write_settings(tmp_path, gpt2))
    # by hand: embeddings (100 + 32)·64; per layer 2 norms 2·2·64, c_attn 64·192 + 192, c_proj 64·64 + 64, MLP 64·128 + 128 + 128·64 + 64; final norm
    per_layer = 2 * 2 * 64 + (64 * 192 + 192) + (64 * 64 + 64) + (64 * 128 + 128) + (128 * 64 + 64)
    assert sum(p.numel() for p in skeleton.parameters()) == (100 + 32) * 64 + 2 * per_layer + 2 * 64


def test_an_on_off_switch_left_out_means_the_class_default_by_convention(tmp_path):
    """Published configs (GPT-2, Gemma, Falcon, SmolLM2) omit switches such as tie_word_embeddings: accepted."""
    skeleton = helpers.build_skeleton(write_settings(tmp_path, SMALL_LLAMA))  # tie_word_embeddings, mlp_bias not given
    assert skeleton.config.tie_word_embeddings is False and skeleton.config.mlp_bias is False


def test_config_with_only_a_model_type_is_refused(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="does not give vocab_size, and the parameter count depends on it.*"
                                         "also missing: hidden_size, intermediate_size, num_hidden_layers"):
        helpers.build_skeleton(str(path))


def test_binary_file_is_not_a_config(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match="not a text file"):
        helpers.build_skeleton(str(path))


def test_largest_real_models_still_pass_the_bounds(tmp_path):
    """Llama-3.1-405B's shapes (its config.json: 126 layers, hidden 16,384, MLP 53,248, 128 heads, 8 KV heads)."""
    path = write_config(tmp_path, num_hidden_layers=126, hidden_size=16_384, intermediate_size=53_248,
                        num_attention_heads=128, num_key_value_heads=8, vocab_size=128_256)
    skeleton = helpers.build_skeleton(path)
    d, layers, ff, kv = 16_384, 126, 53_248, 8 * 128
    per_layer = 2 * d * d + 2 * d * kv + 3 * d * ff + 2 * d  # q, o; k, v; gate, up, down; two norms
    assert sum(p.numel() for p in skeleton.parameters()) == 2 * 128_256 * d + layers * per_layer + d  # untied head


def test_a_custom_code_model_says_it_needs_its_own_code_not_a_spelling_fix(tmp_path):
    """Kimi-K2 and InternLM2.5 ship their modeling code on the Hub (auto_map, trust_remote_code); issue 21."""
    settings = {**TINY_LLAMA, "model_type": "kimi_k2",
                "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV3Config",
                             "AutoModelForCausalLM": "modeling_deepseek.DeepseekV3ForCausalLM"}}
    with pytest.raises(ValueError, match="defined by Python code on its Hub page .*trust_remote_code.*deepseek_v3"):
        helpers.build_skeleton(write_config_json(tmp_path, settings))
