"""Workarounds of library behaviour, each for the version named, and when to remove it.

``WORKAROUNDS`` lists every one in the course (some live elsewhere, named there); a test fails
when the version pinned in requirements.txt moves past the version a workaround was written for,
so that each is checked again (still needed? still working?) rather than left to rot.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings

from pathlib import Path

from torch import nn

WORKAROUNDS = {
    # name: (package, version it was written for, the dotted name of the code, when to remove it)
    "gradient-checkpointing warning": ("peft", "0.21.2", "plumbing.workarounds.quiet_transformers",
                                       "when PEFT stops calling transformers' renamed is_gradient_checkpointing"),
    "GGUF progress bar": ("transformers", "5.23.0", "plumbing.workarounds.no_conversion_progress_bar",
                          "when transformers' GGUF loader honours disable_progress_bar()"),
    "GGUF parsed once": ("transformers", "5.23.0", "plumbing.workarounds.gguf_parsed_once",
                         "when transformers reads a GGUF file once per load and builds gguf's tensor-name map once"),
    "GGUF read from memory": ("gguf", "0.19.0", "plumbing.workarounds.gguf_read_into_memory",
                              "when gguf's GGUFReader parses its metadata without indexing a memory map value by value"),
    "GGUF padding token": ("transformers", "5.15.0", "plumbing.workarounds.fill_missing_pad_token",
                           "when Colab's transformers (5.15 in ../shared/colab) reads tokenizer.ggml.padding_token_id, as 5.23 does"),
    "meta-device initialisation": ("torch", "2.13.0+cpu", "plumbing.workarounds.linear_initialisation_skipped",
                                   "when nn.Linear skips reset_parameters on the meta device (a speed-up only)"),
    "PEFT's own pattern warnings": ("peft", "0.21.2", "plumbing.workarounds.peft_added_pattern_warnings_silenced",
                                    "when PEFT stops warning about rank_pattern keys its MoE conversion added itself"),
    "profiler output": ("torch", "2.13.0+cpu", "plumbing.workarounds.c_output_silenced",
                        "when torch.profiler stops logging from C++ to the process's stdout/stderr"),
    "profiler events": ("torch", "2.13.0+cpu", "helpers.peak_memory_by_phase",
                        "when torch.profiler offers its raw memory events (profiler.kineto_results) publicly"),
    "PEFT's private conversion": ("peft", "0.21.2", "plumbing.peft_agreement.peft_rewrite_of_targets",
                                  "when PEFT makes convert_peft_config_for_transformers public, or drops it"),
    "PEFT's Mamba refusal": ("peft", "0.21.2", "plumbing.peft_agreement.PEFT_REFUSED_MODEL_TYPES",
                             "when PEFT changes _check_lora_target_modules_mamba"),
    "DeepSpeed's accelerator warning": ("deepspeed", "0.19.8", "plumbing.workarounds.deepspeed_imported_quietly",
                                        "when DeepSpeed stops warning at import that it fell back to the CPU"),
    "bitsandbytes' Hub kernel": ("bitsandbytes", "0.50.2", "plumbing.workarounds.bitsandbytes_hub_kernel_warning_off",
                                 "when bitsandbytes stops looking for a Hub kernel at import, or says so at debug level"),
}


def quiet_transformers() -> None:
    """Turn off transformers' progress bars and its chattiest log messages (transformers 5.23, peft 0.21.2)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    # tqdm's "IProgress not found" and similar notebook-only warnings.
    warnings.filterwarnings("ignore", message=".*IProgress.*")
    # PEFT 0.21.2 calls a transformers method that transformers 5 renamed (see WORKAROUNDS).
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def bitsandbytes_hub_kernel_warning_off() -> None:
    """Turn down the logger through which bitsandbytes 0.50.2 warns that a Hub kernel is missing.

    On CPUs with AVX512-BF16 its CPU backend (``bitsandbytes/backends/cpu/ops.py``) tries
    ``kernels.get_kernel("kernels-community/...")`` at import and warns when the ``kernels`` package, which
    downloads code from the Hub, is missing; offline, the course never installs it, and bitsandbytes uses its
    own CPU code. ``import peft`` imports bitsandbytes, so this runs on import (``import helpers``), before peft.
    """
    import logging

    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


bitsandbytes_hub_kernel_warning_off()


def deepspeed_imported_quietly():
    """``import deepspeed`` (0.19.8) without its timestamped "Setting accelerator to CPU" warning: its own
    ``DS_ACCELERATOR=cpu`` names the CPU up front (the course uses only its estimators, which compute on numbers)."""
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed

    return deepspeed


@contextlib.contextmanager
def no_conversion_progress_bar():
    """Hide the progress bar transformers draws while it de-quantises GGUF tensors (we print one line instead)."""
    from transformers import modeling_gguf_pytorch_utils as gguf_loading

    if not hasattr(gguf_loading, "tqdm"):
        yield
        return
    original = gguf_loading.tqdm
    gguf_loading.tqdm = lambda items, *args, **kwargs: items
    try:
        yield
    finally:
        gguf_loading.tqdm = original


@contextlib.contextmanager
def gguf_parsed_once():
    """Parse each GGUF file once, and build gguf's tensor-name map once, while the block runs.

    transformers 5.23 (with gguf 0.19.0) parses the whole file three times when it loads one
    model (tokenizer, config, weights: each pass walks the 49,152-token vocabulary field by field)
    and rebuilds the tensor-name map for each of the model's 397 modules. The reader only reads
    (a memory map) and the map is only looked up, so sharing them changes no value.
    """
    import functools

    import gguf

    original_reader, original_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers = {}

    def shared_reader(path, *args, **kwargs):
        key = (str(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = original_reader(path, *args, **kwargs)
        return readers[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = shared_reader, functools.cache(original_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = original_reader, original_map


@contextlib.contextmanager
def gguf_read_into_memory():
    """Let gguf's reader parse an in-memory copy of a file instead of a memory map, while the block runs.

    gguf 0.19.0's ``GGUFReader`` reads every metadata value by indexing an ``np.memmap``, whose
    Python-level bookkeeping is most of the parse: 6.4 s against 2.0 s from memory for SmolLM2's file
    (measured on 2 cores), with the same fields and tensors. The copy (the file's 98 MB) is read-only,
    as the map is, and is freed with the readers made in the block.
    """
    import types

    import gguf.gguf_reader as reader_module
    import numpy

    class NumpyReadingIntoMemory(types.SimpleNamespace):  # numpy's names, with memmap replaced
        def __getattr__(self, name):  # names numpy loads lazily
            return getattr(numpy, name)

    def read_into_memory(path, mode="r"):
        contents = numpy.fromfile(path, dtype=numpy.uint8)
        contents.flags.writeable = False
        return contents

    reader_module.np = NumpyReadingIntoMemory(**{**vars(numpy), "memmap": read_into_memory})
    try:
        yield
    finally:
        reader_module.np = numpy


def fill_missing_pad_token(tokenizer, gguf_path: Path) -> None:
    """Give the tokenizer the GGUF file's padding token when transformers did not read it.

    transformers 5.23 reads it; Colab's 5.15 leaves ``pad_token`` empty, and notebook 05 pads a batch.
    """
    if tokenizer.pad_token_id is None:
        padding_id = gguf_padding_token_id(gguf_path)
        if padding_id is not None:
            tokenizer.pad_token = tokenizer.convert_ids_to_tokens(padding_id)


def gguf_padding_token_id(gguf_path: Path) -> int | None:
    """The padding token id the GGUF file's metadata declares (``tokenizer.ggml.padding_token_id``)."""
    import gguf

    field = gguf.GGUFReader(str(gguf_path)).fields.get("tokenizer.ggml.padding_token_id")
    return None if field is None else int(field.parts[field.data[0]][0])


@contextlib.contextmanager
def linear_initialisation_skipped():
    """Skip ``nn.Linear``'s random initialisation while a model or PEFT's A and B are built on the meta device.

    Meta tensors hold no values, so that initialisation computes nothing; skipping the calls saves
    a third of the time of building a skeleton and a sixth of PEFT's time per adapted layer. Only used on meta.
    """
    original = nn.Linear.reset_parameters
    nn.Linear.reset_parameters = lambda self: None
    try:
        yield
    finally:
        nn.Linear.reset_parameters = original


@contextlib.contextmanager
def peft_added_pattern_warnings_silenced(lora_config, dropped: list[str] | None = None):
    """Drop PEFT's warning that a ``rank_pattern``/``alpha_pattern`` key matched nothing, when PEFT added the key itself.

    PEFT's conversion for mixture-of-experts models adds ``.*\\.gate_up_proj`` patterns to the config,
    applies them to the expert tensors, then warns that they "did not match any targeted module and
    were ignored" (notebook 07 shows the rank was applied). Warnings about your own keys are kept;
    the dropped ones are appended to ``dropped`` when a list is given.
    """
    import ast

    own_keys = set(getattr(lora_config, "rank_pattern", None) or {}) | set(getattr(lora_config, "alpha_pattern", None) or {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        text = str(warning.message)
        if "_pattern keys did not match any targeted module" in text and "[" in text:
            keys = ast.literal_eval(text[text.index("["):text.rindex("]") + 1])
            if not own_keys & set(keys):
                if dropped is not None:
                    dropped.append(text)
                continue
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


@contextlib.contextmanager
def c_output_silenced():
    """Discard what is written to the stdout and stderr file descriptors in the block: PyTorch's profiler logs there
    from C++, which Jupyter would show as output (Jupyter's ``print`` is unaffected; a plain script's is silenced too)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = []
    try:
        saved = [os.dup(1), os.dup(2)]
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        flush_c_buffers()  # what C++ buffered inside the block goes to /dev/null, not to the next cell
        for descriptor, original in zip((1, 2), saved):
            os.dup2(original, descriptor)
            os.close(original)


def flush_c_buffers() -> None:
    """Flush the C library's stdio buffers (where available), so buffered C output lands now."""
    import ctypes

    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # no C library to ask (e.g. some Windows builds)
        pass
