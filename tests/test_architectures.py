"""Every causal-LM architecture transformers ships, on a tiny config: counted exactly, or refused loudly.

tests/architecture_sweep.py does the counting in worker processes (two at a time, one per core);
this test reads their verdicts. A summary goes to build/architecture_sweep.json.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

ROOT = Path(__file__).resolve().parent.parent
SWEEP = ROOT / "tests" / "architecture_sweep.py"
WORKERS = 2
SECONDS = 300  # for a whole worker; each model also has its own time limit inside the sweep


def run_workers(model_types: list[str]) -> dict[str, dict]:
    """Verdicts for every model type; a type whose worker died is recorded as a crash, the rest rerun."""
    results: dict[str, dict] = {}
    remaining = list(model_types)
    while remaining:
        shares = [remaining[i::WORKERS] for i in range(WORKERS)]
        workers = [
            subprocess.Popen([sys.executable, str(SWEEP), *share], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            for share in shares if share
        ]
        for worker, share in zip(workers, shares):
            output, _ = worker.communicate(timeout=SECONDS)
            for line in output.splitlines():
                result = json.loads(line)
                results[result["type"]] = result
            unfinished = [t for t in share if t not in results]
            if unfinished:  # the worker died on unfinished[0]: record it, rerun the others
                results[unfinished[0]] = {"type": unfinished[0], "verdict": "wrong", "detail": f"worker died (exit {worker.returncode})"}
        remaining = [t for t in remaining if t not in results]
    return results


def test_every_causal_lm_architecture_is_exact_or_loud():
    model_types = sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    results = run_workers(model_types)
    summary = collections.Counter(r["verdict"] for r in results.values())
    (ROOT / "build").mkdir(exist_ok=True)
    (ROOT / "build" / "architecture_sweep.json").write_text(json.dumps({"summary": summary, "results": results}, indent=1))

    assert set(results) == set(model_types)
    wrong = {t: r["detail"] for t, r in results.items() if r["verdict"] == "wrong"}
    assert not wrong, f"silently wrong or crashed: {wrong}"
    skipped = {t: r["detail"] for t, r in results.items() if r["verdict"] == "skipped"}
    assert all(detail.startswith("transformers cannot build it") for detail in skipped.values())
    assert len(skipped) <= 0.1 * len(model_types), f"too many architectures skipped: {skipped}"
    assert summary["exact"] >= 0.5 * len(model_types)
    for result in results.values():
        shares = result.get("shares", {})
        assert shares.get("norms", 0) <= 5, (result["type"], shares)
        assert shares.get("other", 0) <= 5, (result["type"], shares)


# --- the pieces the sweep relies on, each on a small case with an independent expectation ---------

import warnings  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import architecture_sweep  # noqa: E402
import helpers  # noqa: E402
from plumbing import model_parts, module_tree  # noqa: E402


def tiny(model_type: str):
    return architecture_sweep.build(model_type)[1]


@pytest.mark.parametrize("model_type", ["roberta-prelayernorm", "olmo2", "gpt2"])
def test_norms_are_the_parameters_of_norm_modules(model_type):
    model = tiny(model_type)
    family = model_parts.family_prefix(model)  # RobertaPreLayerNorm... : the family name is not a norm
    by_class = sum(p.numel() for m in model.modules() if "norm" in type(m).__name__.removeprefix(family).lower()
                   for p in m.parameters(recurse=False))
    parts = helpers.parameters_by_part(model)
    assert int(parts.loc["norms", "params"]) == by_class


def test_mixture_of_experts_tensors_are_rows_not_skipped():
    model = tiny("mixtral")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is left out, so nothing to warn about
        table = helpers.linear_layer_table(model)
    experts = {name: p for name, p in model.named_parameters() if ".experts." in name}
    assert experts and all(p.dim() == 3 for p in experts.values())
    rows = table.set_index("name").loc[list(experts)]
    assert list(rows["params"]) == [p.numel() for p in experts.values()]  # E·m·n = the tensor's size
    assert list(rows["experts"]) == [p.shape[0] for p in experts.values()]


def test_other_3d_parameters_are_not_experts():
    """XLNet's relative attention keeps q, k, v, o as 3-D parameters: not experts, so not rows."""
    model = tiny("xlnet")
    with pytest.warns(UserWarning, match="not nn.Linear or Conv1D layers, expert tensors or router matrices.*rel_attn"):
        table = helpers.linear_layer_table(model)
    assert (table["experts"] == 1).all()
    assert not module_tree.is_mixture_of_experts(model)


def test_peft_rewrite_of_moe_targets_is_refused_loudly():
    model = tiny("deepseek_v3")
    with pytest.raises(ValueError, match="rewrites these targets on deepseek_v3"):
        helpers.lora_count(model, ["gate_proj", "up_proj", "down_proj"], 4)


def test_targets_peft_refuses_on_mamba_are_refused():
    with pytest.raises(ValueError, match="PEFT refuses LoRA on out_proj in mamba"):
        helpers.lora_count(tiny("mamba"), ["out_proj"], 4)


class NameClash(nn.Module):
    """A linear layer and a convolution that share the name "proj"."""

    def __init__(self):
        super().__init__()
        self.mlp = nn.Module()
        self.mlp.proj = nn.Linear(8, 8)
        self.vision = nn.Module()
        self.vision.proj = nn.Conv2d(3, 8, 3)


def test_a_tag_that_also_names_another_module_is_refused():
    with pytest.raises(ValueError, match="'proj' also belongs to vision.proj, a Conv2d"):
        helpers.lora_count(NameClash(), ["proj"], 2)


def test_no_attention_found_lists_the_linear_layers():
    table = helpers.linear_layer_table(NameClash())
    with pytest.raises(ValueError, match="No attention projection was found.*proj"):
        helpers.attention_targets(table)
