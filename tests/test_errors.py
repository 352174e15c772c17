"""Bad arguments to the counting helpers get one clear ValueError that names the fix; `python helpers.py` and the import rule (configs: test_config_faults.py)."""

import pytest

import helpers
from plumbing import conversion


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
