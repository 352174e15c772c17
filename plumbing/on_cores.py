"""Run independent jobs side by side, one per CPU core (notebooks 03 and 07 ask PEFT about many models).

A job here is pure Python on meta tensors (PEFT wrapping a skeleton): one core each. Workers are
*forked*, so each starts with everything the notebook has already imported and costs milliseconds;
a fresh interpreter would pay the seven-second import of torch, transformers and peft again.
Forking is safe only on Linux (macOS may crash a forked process that uses system frameworks), so
elsewhere, and on one core, the jobs run one after another with the same results.

A forked worker shares the kernel's output channel, so it must not print: its warnings are
recorded and issued again, in order, by the calling process.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import warnings
from collections.abc import Callable, Sequence


def cores_to_use(jobs: int) -> int:
    """How many worker processes for ``jobs`` jobs: 1 (no workers) unless forking is safe and helps."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if sys.platform != "linux" or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(usable, jobs))


def _run_recording_warnings(function: Callable, arguments: tuple):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = function(*arguments)
    return result, [(str(w.message), w.category, w.filename, w.lineno) for w in caught]


def side_by_side(function: Callable, argument_tuples: Sequence[tuple]) -> list:
    """``[function(*arguments) for arguments in argument_tuples]``, the jobs spread over the cores.

    ``function`` must be importable by name (a module-level function, not a lambda) and its
    results picklable. An exception in a job is raised here, as it would be in the serial loop.
    """
    argument_tuples = list(argument_tuples)
    workers = cores_to_use(len(argument_tuples))
    if workers == 1:
        return [function(*arguments) for arguments in argument_tuples]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        answers = pool.starmap(_run_recording_warnings, [(function, arguments) for arguments in argument_tuples], chunksize=1)
    for _, caught in answers:
        for message, category, filename, lineno in caught:
            warnings.warn_explicit(message, category, filename, lineno)
    return [result for result, _ in answers]
