"""Notebook 11, sections 5 and 8: which PEFT 0.21.2 methods run on a causal LM on this CPU, and whose count changes
with the base model's dtype, checked by running them."""

import importlib.util
import inspect
import warnings

import peft
import pytest
import torch
from peft import PEFT_TYPE_TO_CONFIG_MAPPING, PeftType, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

# A small random Llama (not a catalog model): hidden 128, 4 heads of 32, 2 key-value heads, so every method's
# default group size, rank or frequency count fits its layers (k_proj is 64 × 128).
SMALL = LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=128)
# The one number a causal LM cannot default, per method (notebook 11, sections 2 and 8).
ARGUMENTS = {"ADALORA": dict(total_step=10), "PROMPT_TUNING": dict(num_virtual_tokens=4), "P_TUNING": dict(num_virtual_tokens=4),
             "PREFIX_TUNING": dict(num_virtual_tokens=4), "MULTITASK_PROMPT_TUNING": dict(num_virtual_tokens=4, num_tasks=2),
             "ADAPTION_PROMPT": dict(adapter_len=4, adapter_layers=1), "CARTRIDGE": dict(num_virtual_tokens=4), "CPT": dict(cpt_token_ids=[1, 2, 3]),
             "TRAINABLE_TOKENS": dict(token_indices=[1, 2]), "VBLORA": dict(vector_length=64), "C3A": dict(block_size=64)}
NO_TARGETS = {"ADAPTION_PROMPT", "SHADOW", "TRAINABLE_TOKENS"}  # these choose what they wrap themselves
TASK_IDS = {"POLY", "MULTITASK_PROMPT_TUNING"}  # they route every batch by its task id
# The table of section 8: what does not run as is, and PEFT's own message.
DOES_NOT_FIT = {"ADAMSS": (ImportError, "scikit-learn"), "XLORA": (ValueError, "use_cache")}


def small_config(method: str):
    """The config of ``method`` for SMALL: its attention projections as targets where it takes targets, plus ARGUMENTS."""
    config_class = PEFT_TYPE_TO_CONFIG_MAPPING[method]
    arguments = dict(ARGUMENTS.get(method, {}))
    if "target_modules" in inspect.signature(config_class).parameters and method not in NO_TARGETS:
        arguments["target_modules"] = ["q_proj", "k_proj", "v_proj", "o_proj"]
    if "task_type" in inspect.signature(config_class).parameters:
        arguments["task_type"] = "CAUSAL_LM"
    return config_class(**arguments)


def test_peft_lists_45_methods():
    assert len(PeftType) == 45  # notebook 11, section 8 says so


@pytest.mark.parametrize("method", [method.value for method in PeftType])
def test_each_method_trains_on_the_cpu_or_is_in_the_table(method, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))  # BOFT's failed CUDA build leaves a folder there
    torch.manual_seed(0)
    ids = torch.randint(0, SMALL.vocab_size, (1, 8))
    extra = {"task_ids": torch.tensor([0])} if method in TASK_IDS else {}

    def train_one_step():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # BOFT's failed CUDA build, LN tuning's RMSNorm notice
            wrapped = get_peft_model(LlamaForCausalLM(SMALL), small_config(method))
        loss = wrapped(input_ids=ids, labels=ids, **extra).loss
        loss.backward()
        trained = [p for p in wrapped.parameters() if p.requires_grad]
        assert trained and any(p.grad is not None for p in trained), "nothing received a gradient"

    if method in DOES_NOT_FIT:
        error, words = DOES_NOT_FIT[method]
        with pytest.raises(error, match=words):
            train_one_step()
    else:
        train_one_step()


def test_xlora_without_trained_adapters_trains_nothing():
    # X-LoRA mixes LoRA adapters that are already trained; with none given it has nothing to train
    model = LlamaForCausalLM(LlamaConfig(**{**SMALL.to_dict(), "use_cache": False}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = get_peft_model(model, peft.XLoraConfig(task_type="CAUSAL_LM", hidden_size=SMALL.hidden_size))
    assert wrapped.get_nb_trainable_parameters()[0] == 0


def test_loftq_does_not_run_on_a_cpu():
    config = peft.LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights="loftq", loftq_config=peft.LoftQConfig(loftq_bits=4)) \
        if importlib.util.find_spec("scipy") else None
    if config is None:  # PEFT asks for scipy first (tuners/lora/config.py 1057)
        with pytest.raises(ImportError, match="scipy"):
            peft.LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights="loftq", loftq_config=peft.LoftQConfig(loftq_bits=4))
        return
    with pytest.raises((AssertionError, RuntimeError), match="CUDA"):  # utils/loftq_utils.py 70 moves the weight to "cuda"
        get_peft_model(LlamaForCausalLM(SMALL), config)


def test_adaption_prompt_refuses_a_qwen_model():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    qwen = Qwen2ForCausalLM(Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=128))
    with pytest.raises(ValueError, match="qwen2"):
        get_peft_model(qwen, peft.AdaptionPromptConfig(adapter_len=4, adapter_layers=1, task_type="CAUSAL_LM"))


@pytest.mark.parametrize("method", [method.value for method in PeftType if method.value not in DOES_NOT_FIT])
def test_only_adalora_counts_more_on_a_bfloat16_model(method, monkeypatch, tmp_path):
    # Notebook 11, section 5: PEFT 0.21.2 casts AdaLoRA's ranknum to the base dtype and stores it back in a
    # ParameterDict, which makes it a new, trainable Parameter: one more per adapted layer
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    counts = []
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            counts.append(get_peft_model(LlamaForCausalLM(SMALL).to(dtype), small_config(method)).get_nb_trainable_parameters()[0])
    assert counts[1] - counts[0] == (SMALL.num_hidden_layers * 4 if method == "ADALORA" else 0)  # q, k, v, o per layer
