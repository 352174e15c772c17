"""Pause Python's cyclic garbage collector while a model skeleton is built or wrapped by PEFT (notebooks 02-07).

Building a meta-device model creates tens of thousands of modules, parameters and dicts. Each
batch of new objects triggers a collection, and the oldest generation's collections walk every
object the kernel holds (all of torch, transformers and peft): measured on the course's catalog
(CPython 3.11), a third of PEFT's time and half of a skeleton's. The objects built here are kept,
not garbage, so pausing loses nothing; automatic collections resume after the block.
"""

from __future__ import annotations

import contextlib
import gc


@contextlib.contextmanager
def collector_paused():
    """Within the block no automatic collection runs; the collector is switched back on after it, as it was."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
