"""Bad input gets one clear ValueError that names the fix, and nothing else breaks."""

import json
import time

import numpy as np
import pytest

import helpers


@pytest.fixture(scope="module")
def llama():
    return helpers.build_skeleton("meta-llama/Llama-3.2-1B-Instruct")


@pytest.mark.parametrize("rank", [0, -4, 2.5, "8", None, True])
def test_rank_must_be_a_positive_whole_number(rank):
    with pytest.raises(ValueError, match="positive whole number"):
        helpers.lora_trainables([(4, 4)], rank)


def test_rank_is_checked_before_counting(llama):
    with pytest.raises(ValueError, match="positive whole number"):
        helpers.lora_count(llama, ["q_proj"], 0)


def test_unknown_target_lists_the_modules_the_model_has(llama):
    with pytest.raises(ValueError) as error:
        helpers.lora_count(llama, ["q_proj", "query"], 8)
    message = str(error.value)
    assert "'query'" in message
    for tag in ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]:
        assert tag in message


def test_fused_model_names_its_own_modules():
    phi3 = helpers.build_skeleton("microsoft/Phi-3-mini-4k-instruct")
    with pytest.raises(ValueError, match="qkv_proj") as error:
        helpers.lora_count(phi3, ["q_proj"], 8)
    assert "gate_up_proj" in str(error.value)


def test_empty_target_list_is_refused(llama):
    with pytest.raises(ValueError, match="No target modules given.*q_proj"):
        helpers.select_targets(helpers.linear_layer_table(llama), [])


def test_unknown_model_offline_lists_the_catalog_and_the_way_out(no_network):
    with pytest.raises(ValueError) as error:
        helpers.build_skeleton("someone/not-a-model")
    message = str(error.value)
    assert "not in the offline catalog" in message
    assert "meta-llama/Llama-3.2-1B-Instruct" in message
    assert "internet" in message


def test_load_model_other_than_default_offline(no_network):
    with pytest.raises(ValueError, match="not available offline"):
        helpers.load_model("meta-llama/Llama-3.2-1B-Instruct")


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
    settings = json.loads(helpers.catalog_config_path("meta-llama/Llama-3.2-1B-Instruct").read_text())
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


def test_check_answer_gives_the_hint():
    with pytest.raises(AssertionError, match="Hint: think again"):
        helpers.check_answer(3, 4, hint="think again")
    with pytest.raises(AssertionError, match="No answer yet"):
        helpers.check_answer(None, 4, hint="think again")


def test_check_answer_ticks_a_right_answer(capsys):
    helpers.check_answer(1_235_814_400, 1_235_814_400, hint="unused")
    assert capsys.readouterr().out == "✓ Correct: 1,235,814,400\n"


def test_a_bad_call_leaves_the_helpers_working(llama):
    with pytest.raises(ValueError):
        helpers.lora_count(llama, ["nope"], 8)
    assert helpers.lora_count(llama, ["q_proj"], 8) == 16 * 8 * (2048 + 2048)


def test_hub_model_that_cannot_be_fetched(monkeypatch):
    """Online, a wrong or gated id still ends in one ValueError that says what to check."""
    import transformers

    def refused(*args, **kwargs):
        raise OSError("401 Client Error")  # what the Hub answers for a gated model without a token

    monkeypatch.setattr(helpers, "hub_is_reachable", lambda timeout=2.0: True)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", refused)
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", refused)
    with pytest.raises(ValueError, match="HF_TOKEN"):
        helpers.load_model("meta-llama/Llama-3.2-1B-Instruct")
    with pytest.raises(ValueError, match="HF_TOKEN"):
        helpers.build_skeleton("meta-llama/Llama-3.2-1B-Instruct-typo")


# --- configs with absurd or missing shapes: one ValueError that names the field, in seconds --------


def write_config(tmp_path, **fields) -> str:
    settings = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 100,
                "num_attention_heads": 4, "intermediate_size": 128}
    settings.update(fields)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(settings))
    return str(path)


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
def test_absurd_config_values_name_the_field(tmp_path, fields, message):
    started = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        helpers.build_skeleton(write_config(tmp_path, **fields))
    assert time.perf_counter() - started < 5


def test_config_with_only_a_model_type_is_refused(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="does not say hidden_size.*default-sized model"):
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


# --- API edges ------------------------------------------------------------------------------


def test_integer_like_ranks_are_accepted():
    import numpy as np
    import torch

    assert helpers.lora_trainables([(4, 4)], np.int64(8)) == helpers.lora_trainables([(4, 4)], torch.tensor(8)) == 64


def test_absurd_rank_is_refused():
    with pytest.raises(ValueError, match="absurd"):
        helpers.lora_trainables([(4, 4)], 10_000_000)


def test_targets_none_is_a_clear_error(llama):
    with pytest.raises(ValueError, match="No target modules given.*q_proj"):
        helpers.lora_count(llama, None, 8)


def test_targets_that_are_not_a_list(llama):
    with pytest.raises(ValueError, match="list of module names"):
        helpers.lora_count(llama, 42, 8)


def test_check_answer_compares_arrays_series_and_tensors(capsys):
    import numpy as np
    import pandas as pd
    import torch

    helpers.check_answer(np.array([1, 2]), torch.tensor([1, 2]), hint="-")
    helpers.check_answer(pd.Series([3, 4]), [3, 4], hint="-")
    with pytest.raises(AssertionError, match="Not quite"):
        helpers.check_answer(np.array([1, 2]), np.array([1, 3]), hint="-")
    with pytest.raises(AssertionError, match="Not quite"):
        helpers.check_answer(np.array([1, 2]), np.array([1, 2, 3]), hint="-")


def test_peft_counts_are_reused_only_for_the_same_catalog_model_and_config():
    from peft import LoraConfig

    helpers.PEFT_COUNTS.clear()
    first = helpers.count_with_peft("HuggingFaceTB/SmolLM2-135M-Instruct", LoraConfig(r=4, target_modules=["q_proj"]))
    assert len(helpers.PEFT_COUNTS) == 1
    again = helpers.count_with_peft("HuggingFaceTB/SmolLM2-135M-Instruct", LoraConfig(r=4, target_modules=["q_proj"]))
    other = helpers.count_with_peft("HuggingFaceTB/SmolLM2-135M-Instruct", LoraConfig(r=8, target_modules=["q_proj"]))
    assert again == first and len(helpers.PEFT_COUNTS) == 2
    assert other[0] == 2 * first[0] == 2 * 30 * 4 * (576 + 576)  # 30 layers of q_proj 576 × 576, by hand


def test_many_peft_counts_side_by_side_equal_one_at_a_time_and_are_remembered():
    from peft import LoraConfig

    helpers.PEFT_COUNTS.clear()
    smol = "HuggingFaceTB/SmolLM2-135M-Instruct"
    questions = [(smol, LoraConfig(r=rank, target_modules=["q_proj", "v_proj"])) for rank in (1, 2, 3)]
    answers = helpers.counts_with_peft(questions)
    # by hand: 30 layers, q_proj 576 -> 576 and v_proj 576 -> 192 (3 key/value heads of 64)
    assert [trainable for trainable, _ in answers] == [30 * rank * ((576 + 576) + (576 + 192)) for rank in (1, 2, 3)]
    assert len(helpers.PEFT_COUNTS) == 3, "the parent remembers what the workers computed"
    reordered = LoraConfig(r=2, target_modules=["v_proj", "q_proj"])  # the same set of targets, another order
    assert helpers.count_with_peft(smol, reordered) == answers[1] and len(helpers.PEFT_COUNTS) == 3


def test_initialisation_is_restored_after_counting():
    from torch import nn

    original = nn.Linear.reset_parameters
    with helpers.linear_initialisation_skipped():
        assert nn.Linear.reset_parameters is not original
    assert nn.Linear.reset_parameters is original


def test_a_wrong_answer_is_one_short_message_with_a_diagnosis():
    def message(answer, expected, **options) -> str:
        with pytest.raises(helpers.NotYet) as caught:
            helpers.check_answer(answer, expected, hint="the hint", **options)
        lines = caught.value._render_traceback_()  # what JupyterLab and Colab show instead of a traceback
        assert len(lines) == 1 and "the hint" in lines[0]
        return str(caught.value)

    assert "you have 1,234,567 (too high)" in message(1_234_567, 1_000)
    assert "(too low)" in message(np.int64(7), 1_000)
    assert "whole number is expected" in message(2.5, 4)
    assert "twice the expected value" in message(8, 4) and "half the expected value" in message(2, 4)
    assert "that is r·m·n" in message(6, 5, mistakes={6: "that is r·m·n"})
    assert "a number is expected, not str" in message("12", 12)
    assert "True or False is expected" in message(1, True)
    assert "(" not in message(False, True)  # a wrong guess between two options gets no diagnosis that gives it away
