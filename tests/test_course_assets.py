"""The diagram and the interactive calculator used by the notebooks."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import ipywidgets

import helpers

ROOT = Path(__file__).resolve().parent.parent

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


CALCULATOR_SCRIPT = """
import IPython.display, ipywidgets, helpers
shown = []
IPython.display.display = shown.append  # what the notebook would draw
helpers.lora_calculator()
model_box, rank_box, targets_box, answer = shown[0].children
model_box.value = "google/gemma-2b-it"  # the targets follow the model: all its linear layers
rank_box.value = 8
expected = helpers.lora_count(helpers.build_skeleton("google/gemma-2b-it"), list(targets_box.value), 8)
assert f"{expected:,} trainable" in answer.value, answer.value
print(ipywidgets.__version__, answer.value)
"""


def test_calculator_works_with_colabs_ipywidgets_7(tmp_path):
    """Colab ships ipywidgets 7.7.1 (its runtime list of 2026-08-19); the course pins 8.x locally."""
    packages = tmp_path / "ipywidgets7"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--target", str(packages),
         "ipywidgets==7.7.1", "ipython_genutils==0.2.0", "widgetsnbextension==3.6.10"],
        check=True, capture_output=True, timeout=300,
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(packages), str(ROOT)])}
    result = subprocess.run([sys.executable, "-c", CALCULATOR_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1].startswith("7.7.1 google/gemma-2b-it, r=8")
