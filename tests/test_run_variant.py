"""`make run`: notebooks 02-04 executed for another catalog model, rank and targets (papermill)."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import nbformat
import pytest

import helpers

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("run_variant", ROOT / "tools" / "run_variant.py")
run_variant = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_variant)


def outputs_text(notebook) -> str:
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def test_parameterised_notebooks_have_one_parameters_cell():
    for name in run_variant.PARAMETERISED:
        notebook = nbformat.read(ROOT / "notebooks" / name, as_version=4)
        cells = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(cells) == 1, name
        for setting in ["MODEL = ", "RANK = ", "TARGETS = "]:
            assert setting in cells[0].source, (name, setting)


def test_gpt2_variant_is_executed_and_counted(tmp_path):
    """GPT-2: fused c_attn, Conv1D weights, a c_proj in attention and in the MLP: the hardest catalog model."""
    written = run_variant.run_variant("openai-community/gpt2", 4, ["c_attn"], output_root=tmp_path)
    assert [p.name for p in written] == run_variant.PARAMETERISED
    assert all(p.parent == tmp_path / "build" / "runs" / "gpt2-r4-c_attn" for p in written)

    config = helpers.load_config("openai-community/gpt2")  # n_embd 768, 12 layers, c_attn maps d -> 3d
    d, layers = config.n_embd, config.n_layer
    c_attn_lora = layers * 4 * (3 * d + d)  # r·(m + n) per layer
    assert c_attn_lora == 147_456

    for path in written:
        notebook = nbformat.read(path, as_version=4)
        injected = [c for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert len(injected) == 1 and '"openai-community/gpt2"' in injected[0].source
        for cell in notebook.cells:
            assert not any(o.output_type == "error" for o in cell.get("outputs", [])), cell.source[:60]
    text_03 = outputs_text(nbformat.read(written[1], as_version=4))
    assert f"{c_attn_lora:,}" in text_03
    assert f"{2 * c_attn_lora:,}" in text_03  # the same targets at r = 2 x 4


def test_missing_targets_fall_back_to_the_attention_projections():
    assert run_variant.choose_targets("meta-llama/Llama-3.2-1B-Instruct", None) is None  # the notebooks' defaults fit
    assert run_variant.choose_targets("microsoft/Phi-3-mini-4k-instruct", None) == ["o_proj", "qkv_proj"]


@pytest.mark.parametrize(
    "model, rank, targets, message",
    [
        ("nobody/unknown-model", 8, None, "not in the offline catalog. Choose one of"),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", 8, None, "is a mixture of experts.*notebook 07.*Choose a dense model: .*Llama-3.2-1B"),
        ("openai-community/gpt2", 0, None, "positive whole number"),
        ("openai-community/gpt2", 8, ["q_proj"], "This model's linear layers are: c_attn, c_proj, c_fc"),
    ],
)
def test_bad_settings_fail_before_anything_runs(tmp_path, model, rank, targets, message):
    with pytest.raises(ValueError, match=message):
        run_variant.run_variant(model, rank, targets, output_root=tmp_path)
    assert not (tmp_path / "build").exists()


def test_targets_on_the_command_line():
    assert run_variant.parse_targets("q_proj, v_proj") == ["q_proj", "v_proj"]
    assert run_variant.parse_targets("") is None
    assert run_variant.parse_targets(",".join(["q_proj", "v_proj"] * 40)) == ["q_proj", "v_proj"]  # PEFT adapts each once


def test_a_run_folder_name_too_long_is_refused_before_anything_runs(tmp_path, monkeypatch):
    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("a notebook ran before the refusal"))
    with pytest.raises(ValueError, match="too long for the file system.*fewer targets"):
        run_variant.output_folder("Qwen/Qwen2.5-0.5B-Instruct", 8, [f"layer_{i}" for i in range(40)], tmp_path)


def test_a_killed_runs_half_executed_notebooks_are_removed_by_the_next_run(tmp_path, monkeypatch):
    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", lambda source, target, **kwargs: Path(target).write_text("{}"))
    runs = tmp_path / "build" / "runs"
    (runs / f"{run_variant.STAGING_PREFIX}killed").mkdir(parents=True)
    (runs / "my-own-folder").mkdir()
    run_variant.run_variant("openai-community/gpt2", 4, None, output_root=tmp_path)
    assert sorted(p.name for p in runs.iterdir()) == ["gpt2-r4-c_attn-c_proj", "my-own-folder"]


def test_rank_above_the_smallest_layer_side_is_refused(tmp_path):
    # SmolLM2's narrowest linear layers are k_proj and v_proj: 3 key/value heads x 64 = 192 outputs
    with pytest.raises(ValueError, match="larger than the smallest side .*\\(192\\).*from 1 to 192"):
        run_variant.run_variant(helpers.DEFAULT_MODEL, 193, None, output_root=tmp_path)
    assert not (tmp_path / "build").exists()


def test_a_failing_notebook_leaves_no_folder_and_fails(tmp_path, monkeypatch, capsys):
    import papermill

    def failing(*args, **kwargs):
        raise RuntimeError("a cell raised")

    monkeypatch.setattr(papermill, "execute_notebook", failing)
    monkeypatch.setattr(run_variant, "ROOT", tmp_path)  # where build/runs/ goes
    monkeypatch.setenv("LORA_RUN_MODEL", "openai-community/gpt2")
    monkeypatch.setenv("LORA_RUN_RANK", "4")
    monkeypatch.setenv("LORA_RUN_TARGETS", "")
    monkeypatch.setattr("sys.argv", ["run_variant.py", "--from-environment"])
    assert run_variant.main() == 1
    assert "nothing was written" in capsys.readouterr().err
    assert list((tmp_path / "build" / "runs").iterdir()) == []


@pytest.mark.parametrize("rank_text", ["", "eight", "8.5", "-3", "`touch x`"])
def test_rank_from_the_environment_must_be_a_whole_number(monkeypatch, rank_text):
    monkeypatch.setenv("LORA_RUN_MODEL", "openai-community/gpt2")
    monkeypatch.setenv("LORA_RUN_RANK", rank_text)
    with pytest.raises(ValueError, match="is not a whole number"):
        run_variant.settings_from_environment()


@pytest.mark.parametrize(
    "assignment",
    ['MODEL=x" ; touch {marker} ; echo "', "RANK=`touch {marker}`", "TARGETS=$(touch {marker})", "MODEL=$(shell touch {marker})"],
    ids=["quote-semicolon", "backticks", "dollar-parens", "make-shell"],
)
def test_make_run_never_executes_a_value(tmp_path, assignment):
    marker = tmp_path / "pwned"
    result = subprocess.run(["make", "-s", "run", assignment.format(marker=marker)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert not marker.exists(), "a value was executed as code"
    assert result.returncode != 0 and "make run:" in result.stderr  # refused with one clean message
    assert "Traceback" not in result.stderr
