"""plumbing/peft_on_meta.py: PEFT's own counts on meta skeletons, memoised once per process, for any PEFT method."""

import helpers
from plumbing import peft_on_meta, workarounds


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


def test_count_with_peft_works_for_another_peft_method_ia3():
    from peft import IA3Config

    config = IA3Config(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"])
    trainable, everything = helpers.count_with_peft("HuggingFaceTB/SmolLM2-135M-Instruct", config)
    # by hand: IA3 learns one scale per output of k_proj and v_proj (192 each) and per input of down_proj (1536), 30 layers
    assert trainable == 30 * (192 + 192 + 1536)
    assert everything == 134_515_008 + trainable
