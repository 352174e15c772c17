"""Bad arguments to the counting and checking helpers get one clear ValueError that names the fix (configs: test_config_faults.py)."""

import numpy as np
import pytest

import helpers
from plumbing import answers, conversion, peft_on_meta, workarounds


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


def test_load_model_other_than_default_offline(no_network):
    with pytest.raises(ValueError, match="not available offline"):
        helpers.load_model("meta-llama/Llama-3.2-1B-Instruct")


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


# --- configs with absurd or missing shapes: one ValueError that names the field, in seconds --------


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

    peft_on_meta.PEFT_COUNTS.clear()
    first = helpers.count_with_peft("HuggingFaceTB/SmolLM2-135M-Instruct", LoraConfig(r=4, target_modules=["q_proj"]))
    assert len(peft_on_meta.PEFT_COUNTS) == 1
    again = helpers.count_with_peft("HuggingFaceTB/SmolLM2-135M-Instruct", LoraConfig(r=4, target_modules=["q_proj"]))
    other = helpers.count_with_peft("HuggingFaceTB/SmolLM2-135M-Instruct", LoraConfig(r=8, target_modules=["q_proj"]))
    assert again == first and len(peft_on_meta.PEFT_COUNTS) == 2
    assert other[0] == 2 * first[0] == 2 * 30 * 4 * (576 + 576)  # 30 layers of q_proj 576 × 576, by hand


def test_many_peft_counts_side_by_side_equal_one_at_a_time_and_are_remembered():
    from peft import LoraConfig

    peft_on_meta.PEFT_COUNTS.clear()
    smol = "HuggingFaceTB/SmolLM2-135M-Instruct"
    questions = [(smol, LoraConfig(r=rank, target_modules=["q_proj", "v_proj"])) for rank in (1, 2, 3)]
    answers = helpers.counts_with_peft(questions)
    # by hand: 30 layers, q_proj 576 -> 576 and v_proj 576 -> 192 (3 key/value heads of 64)
    assert [trainable for trainable, _ in answers] == [30 * rank * ((576 + 576) + (576 + 192)) for rank in (1, 2, 3)]
    assert len(peft_on_meta.PEFT_COUNTS) == 3, "the parent remembers what the workers computed"
    reordered = LoraConfig(r=2, target_modules=["v_proj", "q_proj"])  # the same set of targets, another order
    assert helpers.count_with_peft(smol, reordered) == answers[1] and len(peft_on_meta.PEFT_COUNTS) == 3


def test_initialisation_is_restored_after_counting():
    from torch import nn

    original = nn.Linear.reset_parameters
    with workarounds.linear_initialisation_skipped():
        assert nn.Linear.reset_parameters is not original
    assert nn.Linear.reset_parameters is original


def test_a_wrong_answer_is_one_short_message_with_a_diagnosis():
    def message(answer, expected, **options) -> str:
        with pytest.raises(answers.NotYet) as caught:
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


def test_count_with_peft_works_for_another_peft_method_ia3():
    from peft import IA3Config

    config = IA3Config(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"])
    trainable, everything = helpers.count_with_peft("HuggingFaceTB/SmolLM2-135M-Instruct", config)
    # by hand: IA3 learns one scale per output of k_proj and v_proj (192 each) and per input of down_proj (1536), 30 layers
    assert trainable == 30 * (192 + 192 + 1536)
    assert everything == 134_515_008 + trainable


@pytest.mark.parametrize("arguments, status", [(["--help"], 0), (["-h"], 0), (["--chek-package"], 2), (["extra", "words"], 2)])
def test_helpers_command_line_refuses_unknown_arguments_before_any_work(arguments, status, monkeypatch, capsys):
    monkeypatch.setattr(conversion, "provision_model", lambda: pytest.fail("the conversion must not start"))
    monkeypatch.setattr(conversion, "find_gguf_file", lambda **kwargs: pytest.fail("nothing must be checked"))
    assert conversion.main(arguments) == status
    assert "usage: python helpers.py [--check-package]" in capsys.readouterr().err


def test_import_helpers_imports_no_transformers_peft_or_hub():
    """Colab's setup cell imports helpers before it upgrades these packages (see helpers' docstring)."""
    import subprocess
    import sys

    code = "import sys, helpers; print(sorted(m for m in ('transformers', 'peft', 'huggingface_hub') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("call, message", [
    (lambda sk, tab: helpers.lora_count("HuggingFaceTB/SmolLM2-135M-Instruct", ["q_proj"], 8),
     "lora_count expects a model .*not str 'HuggingFaceTB.*helpers.build_skeleton"),
    (lambda sk, tab: helpers.lora_count(None, ["q_proj"], 8), "lora_count expects a model .*not NoneType"),
    (lambda sk, tab: helpers.linear_layer_table("x"), "linear_layer_table expects a model"),
    (lambda sk, tab: helpers.active_parameters({}), "active_parameters expects a model .*not dict"),
    (lambda sk, tab: helpers.count_with_peft("HuggingFaceTB/SmolLM2-135M-Instruct", {"r": 8}),
     "count_with_peft expects a PEFT config .*LoraConfig\\(\\*\\*that_dict\\)"),
    (lambda sk, tab: helpers.what_peft_adapts("HuggingFaceTB/SmolLM2-135M-Instruct", None), "what_peft_adapts expects a PEFT config"),
    (lambda sk, tab: helpers.select_targets(None, ["q_proj"]), "select_targets expects the table of helpers.linear_layer_table"),
    (lambda sk, tab: helpers.select_targets(sk, ["q_proj"]), "select_targets expects the table"),
    (lambda sk, tab: helpers.lora_trainables((4096, 4096), 8), "a list of \\(m, n\\) pairs; for one matrix write \\[\\(4096, 4096\\)\\]"),
    (lambda sk, tab: helpers.lora_trainables([("4096", "4096")], 8), "each shape must be a pair of whole numbers"),
    (lambda sk, tab: helpers.lora_count(sk, ["q_proj"], __import__("torch").tensor(True)), "LoRA rank must be a positive whole number"),
], ids=["name-for-model", "none-for-model", "name-for-table-model", "dict-for-model", "dict-for-config", "none-for-config",
        "none-for-table", "model-for-table", "one-pair", "text-shapes", "bool-tensor-rank"])
def test_an_argument_of_the_wrong_kind_gets_one_message_that_names_the_fix(call, message):
    skeleton = helpers.build_skeleton("HuggingFaceTB/SmolLM2-135M-Instruct")
    with pytest.raises(ValueError, match=message):
        call(skeleton, helpers.linear_layer_table(skeleton))
