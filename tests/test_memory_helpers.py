"""The memory-measuring helpers of notebook 06, checked on allocations whose size is known by hand."""

import os

import pytest
import torch

import helpers

FLOAT32 = 4  # bytes


def test_peak_memory_by_phase_sees_each_phase_peak():
    kept = {}

    def allocate_one_million() -> None:
        kept["a"] = torch.empty(1_000_000, dtype=torch.float32)

    def allocate_two_million_then_free() -> None:
        temporary = torch.empty(2_000_000, dtype=torch.float32)
        del temporary

    peaks = helpers.peak_memory_by_phase({"first": allocate_one_million, "second": allocate_two_million_then_free})
    assert peaks["first"] == 1_000_000 * FLOAT32
    assert peaks["second"] == (1_000_000 + 2_000_000) * FLOAT32  # the first tensor is still alive


def test_peak_memory_by_phase_restores_output_when_a_phase_fails(capfd):
    def fail() -> None:
        raise RuntimeError("phase failed")

    with pytest.raises(RuntimeError, match="phase failed"):
        helpers.peak_memory_by_phase({"fail": fail})
    os.write(2, b"still visible")
    assert "still visible" in capfd.readouterr().err


def test_c_output_silenced_discards_only_inside(capfd):
    with helpers.c_output_silenced():
        os.write(1, b"hidden-out")
        os.write(2, b"hidden-err")
    os.write(2, b"shown")
    captured = capfd.readouterr()
    assert "hidden" not in captured.out + captured.err and "shown" in captured.err


def test_saved_activations_counts_inputs_kept_for_backward_but_not_weights():
    layer = torch.nn.Linear(100, 50)
    x = torch.randn(8, 100)
    with helpers.saved_activations(layer) as kept:
        layer(x).relu().sum()
    # the linear layer keeps its input (8 x 100) for the weight's gradient; relu keeps its output (8 x 50)
    assert sorted(kept.values()) == [8 * 50 * FLOAT32, 8 * 100 * FLOAT32]


def test_saved_activations_leaves_no_graph_alive_when_backward_never_runs():
    """A pack hook that returned the tensor itself would tie exp's saved output to its own grad_fn (pytorch#189025)."""
    import gc
    import weakref

    x = torch.randn(1000, requires_grad=True)
    with helpers.saved_activations(torch.nn.Linear(1, 1)) as kept:
        y = x.exp()  # exp keeps its output for the backward pass
    assert list(kept.values()) == [1000 * FLOAT32]
    output = weakref.ref(y)
    del y
    gc.collect()
    assert output() is None, "the forward pass's graph and output are freed"


def test_saved_activations_keeps_the_gradients_right():
    x = torch.randn(1000, requires_grad=True)
    with helpers.saved_activations(torch.nn.Linear(1, 1)):
        y = x.exp()
    y.sum().backward()  # d/dx exp(x) = exp(x), read from the saved (detached) output
    assert torch.equal(x.grad, x.detach().exp())


def test_optimizer_state_bytes_after_one_adamw_step():
    layer = torch.nn.Linear(1000, 10)
    optimizer = torch.optim.AdamW(layer.parameters(), foreach=False)
    layer(torch.randn(4, 1000)).sum().backward()
    optimizer.step()
    # m and v in float32 for 1000 x 10 weights and 10 biases, and a float32 step counter per tensor
    assert helpers.optimizer_state_bytes(optimizer) == 2 * FLOAT32 * (1000 * 10 + 10) + 2 * FLOAT32


def test_a_phase_that_allocates_nothing_reports_what_is_still_allocated():
    kept = {}

    def allocate() -> None:
        kept["tensor"] = torch.empty(500_000, dtype=torch.float32)

    peaks = helpers.peak_memory_by_phase({"allocate": allocate, "nothing": lambda: None})
    assert peaks == {"allocate": 500_000 * FLOAT32, "nothing": 500_000 * FLOAT32}
