"""The diagram and the interactive calculator used by the notebooks."""

import importlib.util
from pathlib import Path

import ipywidgets

import helpers

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def test_committed_diagram_is_what_the_script_draws(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("make_lora_diagram", ASSETS / "make_lora_diagram.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setattr(script, "OUTPUT", tmp_path / "lora_diagram.png")
    script.main()
    fresh = (tmp_path / "lora_diagram.png").read_bytes()
    assert fresh == (ASSETS / "lora_diagram.png").read_bytes(), "run: python assets/make_lora_diagram.py"


def test_calculator_prints_a_static_answer_and_recomputes(capsys, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda widget: shown.append(widget))
    helpers.lora_calculator("meta-llama/Llama-3.2-1B-Instruct", rank=16, targets=("q_proj", "v_proj"))
    # q_proj 2048 -> 2048 and v_proj 2048 -> 512, 16 layers, r = 16
    expected = 16 * 16 * ((2048 + 2048) + (512 + 2048))
    assert f"{expected:,} trainable" in capsys.readouterr().out
    box = shown[0]
    model_box, rank_box, targets_box, answer = box.children
    assert isinstance(answer, ipywidgets.Label) and f"{expected:,} trainable" in answer.value
    rank_box.value = 8
    assert f"{expected // 2:,} trainable" in answer.value
    model_box.value = "microsoft/Phi-3-mini-4k-instruct"
    assert set(targets_box.options) == {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}
    assert "microsoft/Phi-3-mini-4k-instruct, r=8" in answer.value
    targets_box.value = ()
    assert answer.value == "choose at least one target"


def test_calculator_accepts_any_positive_rank(capsys, monkeypatch):
    monkeypatch.setattr("IPython.display.display", lambda widget: None)
    helpers.lora_calculator("meta-llama/Llama-3.2-1B-Instruct", rank=12, targets=("q_proj", "v_proj"))
    expected = 16 * 12 * ((2048 + 2048) + (512 + 2048))  # 16 layers, r = 12
    assert f"{expected:,} trainable" in capsys.readouterr().out


def test_check_answer_shows_counts_with_commas_and_booleans_as_words(capsys):
    helpers.check_answer(1234567, 1234567, hint="-")
    helpers.check_answer(True, True, hint="-")
    assert capsys.readouterr().out.splitlines() == ["✓ Correct: 1,234,567", "✓ Correct: True"]
