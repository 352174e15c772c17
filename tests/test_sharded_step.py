"""sharded_step.py (notebook 10): what each rank holds, derived by hand from a tiny model's shapes; bad input and failures."""

import math
import tempfile
from pathlib import Path

import pytest
import torch

import sharded_step

# A tiny Llama with odd sizes, so that FSDP2 must pad: 2 layers, hidden 24, 3 heads of 8, 1 KV head, MLP 40, vocab 101 (tied).
D, F, HEADS, KV, HEAD_DIM, LAYERS, VOCAB, R = 24, 40, 3, 1, 8, 2, 101, sharded_step.LORA_RANK


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> str:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=D, intermediate_size=F, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                         num_key_value_heads=KV, head_dim=HEAD_DIM, vocab_size=VOCAB, tie_word_embeddings=True,
                         max_position_embeddings=64)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir):
    with sharded_step.launched(list(sharded_step.STRATEGIES), processes=2, timeout=240, model_dir=tiny_model_dir) as run:
        yield run.reports, {(s, r): run.shards(s, r) for s in sharded_step.STRATEGIES for r in (0, 1)}


def linear_shapes() -> list[tuple[int, int]]:
    """(out, in) of every linear weight of the tiny model, from its sizes (the LM head is the tied embedding)."""
    per_layer = [(HEADS * HEAD_DIM, D), (KV * HEAD_DIM, D), (KV * HEAD_DIM, D), (D, HEADS * HEAD_DIM), (F, D), (F, D), (D, F)]
    return per_layer * LAYERS


def other_shapes() -> list[tuple[int, ...]]:
    """The embedding and the RMSNorm weights (two per layer, one at the end)."""
    return [(VOCAB, D)] + [(D,)] * (2 * LAYERS + 1)


def lora_shapes() -> list[tuple[int, int]]:
    """A (r × in) and B (out × r) for every linear layer."""
    return [shape for out, inp in linear_shapes() for shape in ((R, inp), (out, R))]


def fsdp_elements(shape) -> int:
    """FSDP2 gives every rank ⌈rows / 2⌉ rows of a tensor (the last rank's padded)."""
    return math.ceil(shape[0] / 2) * math.prod(shape[1:])


def report(reports, strategy, rank):
    return next(r for r in reports if r["strategy"] == strategy and r["rank"] == rank)


def test_each_rank_holds_what_the_shapes_say(tiny_run):
    reports, _ = tiny_run
    base = linear_shapes() + other_shapes()
    lora = lora_shapes()
    full = sum(math.prod(s) for s in base)
    assert full == 2 * (D * HEADS * HEAD_DIM * 2 + D * KV * HEAD_DIM * 2 + 3 * D * F + 2 * D) + VOCAB * D + D  # by hand
    for rank in (0, 1):
        fsdp_full = report(reports, "fsdp-full", rank)
        assert fsdp_full["parameters"] == fsdp_full["gradients"] == 4 * sum(fsdp_elements(s) for s in base)
        assert fsdp_full["optimizer state"] == 0  # plain SGD
        fsdp_lora = report(reports, "fsdp-lora", rank)
        assert fsdp_lora["parameters"] == 4 * sum(fsdp_elements(s) for s in base + lora)
        assert fsdp_lora["gradients"] == 4 * sum(fsdp_elements(s) for s in lora)
        assert fsdp_lora["optimizer state"] == 8 * sum(fsdp_elements(s) for s in lora) + 4 * len(lora)  # m, v; step counters whole
        ddp_lora = report(reports, "ddp-lora", rank)
        assert ddp_lora["parameters"] == 4 * (full + sum(math.prod(s) for s in lora))
        assert ddp_lora["gradients"] == 4 * sum(math.prod(s) for s in lora)
        assert ddp_lora["optimizer state"] == 8 * sum(math.prod(s) for s in lora) + 4 * len(lora)
    # the padding is real: the embedding's 101 rows give both ranks 51 rows of storage
    assert fsdp_elements((VOCAB, D)) == 51 * D


def test_the_sharded_step_equals_one_process(tiny_run, tiny_model_dir):
    reports, shards = tiny_run
    ids = sharded_step.fixed_batch(VOCAB)
    for strategy in sharded_step.STRATEGIES:
        lora = strategy.endswith("lora")
        model = sharded_step.fresh_model(tiny_model_dir, lora)
        loss, _ = sharded_step.training_step(model, ids, lora)
        ranks_loss = (report(reports, strategy, 0)["loss"] + report(reports, strategy, 1)["loss"]) / 2
        assert abs(ranks_loss - loss) <= 1e-5 * loss
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            for rank in (0, 1):
                mine = shards[(strategy, rank)][name]
                expected = torch.chunk(p.detach(), 2)[rank] if strategy.startswith("fsdp") else p.detach()
                torch.testing.assert_close(mine, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("strategies, processes, message", [
    (["fsdp-lora"], 0, "processes must be a whole number from 1 to 2"),
    (["fsdp-lora"], 3, "more than 2 do not fit 3 GB"),
    (["fsdp-lora"], 2.0, "not 2.0"),
    (["fsdp-lora"], True, "not True"),
    (["zero-4"], 2, "Unknown strategy"),
    ([], 2, "Unknown strategy"),
])
def test_bad_launches_are_refused_before_anything_starts(strategies, processes, message):
    with pytest.raises(ValueError, match=message):
        with sharded_step.launched(strategies, processes):
            pass


def leftover_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("sharded-step-*"))


def test_a_failing_rank_stops_the_run_with_its_last_lines_and_leaves_nothing(tmp_path):
    import psutil

    before = leftover_folders()
    with pytest.raises(RuntimeError, match="(?s)Rank . of the sharded run failed.*(Error|error)"):
        with sharded_step.launched(["fsdp-lora"], 2, model_dir=str(tmp_path / "no-such-model")):
            pass
    assert leftover_folders() == before
    assert not psutil.Process().children(recursive=True)


def test_a_run_over_its_time_is_stopped_and_leaves_nothing(tiny_model_dir):
    import psutil

    before = leftover_folders()
    with pytest.raises(RuntimeError, match="took longer than 1 s and was stopped"):
        with sharded_step.launched(["fsdp-lora"], 2, timeout=1, model_dir=tiny_model_dir):
            pass
    assert leftover_folders() == before
    assert not psutil.Process().children(recursive=True)


def test_the_course_model_is_provisioned_before_the_ranks_start(monkeypatch):
    """In a fresh Colab runtime notebook 10 is the first to need the model: the launcher converts it, as load_model does."""
    import plumbing.conversion

    calls = []
    monkeypatch.setattr(plumbing.conversion, "ensure_offline_model", lambda: calls.append("ensured"))

    def no_ranks(*args, **kwargs):
        raise OSError(f"not started: the model was {'ensured' if calls else 'not ensured'} first")

    monkeypatch.setattr(sharded_step.subprocess, "Popen", no_ranks)
    with pytest.raises(OSError, match="the model was ensured first"):
        with sharded_step.launched(["fsdp-lora"], 2):
            pass
    assert calls == ["ensured"]
