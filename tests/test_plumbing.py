"""plumbing/: jobs side by side on the cores, and the paused garbage collector."""

import gc
import inspect
import os
import warnings

import pytest

from plumbing import on_cores
from plumbing.collector import collector_paused


def square_and_pid(number: int) -> tuple[int, int]:
    return number * number, os.getpid()


def warn_then_return(number: int) -> int:
    warnings.warn(f"job {number} warns", UserWarning)
    return number


def fail_on_three(number: int) -> int:
    if number == 3:
        raise ValueError("three is refused")
    return number


def test_side_by_side_gives_the_serial_results_in_order_from_other_processes():
    answers = on_cores.side_by_side(square_and_pid, [(n,) for n in range(6)])
    assert [square for square, _ in answers] == [0, 1, 4, 9, 16, 25]
    if on_cores.cores_to_use(6) > 1:  # two cores or more, on Linux: the work really left this process
        assert os.getpid() not in {pid for _, pid in answers}


def test_warnings_of_the_jobs_are_issued_again_here_in_order():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert on_cores.side_by_side(warn_then_return, [(1,), (2,)]) == [1, 2]
    assert [str(w.message) for w in caught] == ["job 1 warns", "job 2 warns"]


def test_an_error_in_a_job_is_raised_here():
    with pytest.raises(ValueError, match="three is refused"):
        on_cores.side_by_side(fail_on_three, [(n,) for n in range(5)])


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_other_systems_run_the_jobs_one_after_another(monkeypatch, platform):
    monkeypatch.setattr(on_cores.sys, "platform", platform)
    assert on_cores.cores_to_use(8) == 1
    answers = on_cores.side_by_side(square_and_pid, [(2,), (3,)])
    assert answers == [(4, os.getpid()), (9, os.getpid())]


def test_one_job_needs_no_worker():
    assert on_cores.cores_to_use(1) == 1


def test_collector_paused_inside_and_restored_after():
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled(), "a collector switched off before stays off"
    finally:
        gc.enable()


def test_collector_is_restored_after_an_error():
    with pytest.raises(RuntimeError):
        with collector_paused():
            raise RuntimeError("inside")
    assert gc.isenabled()


def test_importing_helpers_before_peft_silences_the_bitsandbytes_hub_kernel_warning():
    """bitsandbytes 0.50.2 warns at import on CPUs with AVX512-BF16 (peft imports it); helpers turns that logger down first."""
    import subprocess
    import sys
    from pathlib import Path

    import bitsandbytes
    from bitsandbytes.backends.cpu import ops
    from bitsandbytes.functional import has_avx512bf16

    message = "Failed to load CPU gemm_4bit_forward from kernels-community"
    assert bitsandbytes.__version__ == "0.50.2" and message in inspect.getsource(ops)  # the message the workaround hides
    repo = Path(__file__).resolve().parent.parent
    quiet, loud = (subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True)
                   for code in ("import helpers, peft", "import peft"))
    assert quiet.returncode == loud.returncode == 0
    assert message not in quiet.stderr
    assert (message in loud.stderr) == has_avx512bf16()  # where the CPU has it, the workaround is still needed
