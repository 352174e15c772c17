"""Execute notebooks 02-04 for another catalog model, rank and targets: a lecturer's own variant.

Papermill replaces the values in each notebook's ``parameters`` cell and writes an executed
copy to ``build/runs/<model>-r<rank>[-<targets>]/``; the notebooks in ``notebooks/`` are not changed.

Usage (or ``make run MODEL=... RANK=... TARGETS=...``):
    python assets/run_variant.py --model Qwen/Qwen2.5-0.5B-Instruct --rank 8 --targets q_proj,v_proj
"""

from __future__ import annotations

import argparse
from pathlib import Path

import helpers

ROOT = Path(__file__).resolve().parent.parent
PARAMETERISED = ["02_per_module_counts.ipynb", "03_rank_and_targets.ipynb", "04_peft_in_practice.ipynb"]
DEFAULT_TARGET_NAMES = {"q_proj", "k_proj", "v_proj", "o_proj"}  # what the notebooks' own defaults use


def check_model(model: str) -> None:
    if model not in helpers.catalog():
        raise ValueError(f"{model!r} is not in the offline catalog. Choose one of: {', '.join(helpers.catalog())}.")


def choose_targets(model: str, targets: list[str] | None) -> list[str] | None:
    """The targets to pass, checked against the model's layers; None keeps the notebooks' defaults.

    Without targets, a model that lacks q/k/v/o (fused projections) gets its attention projections.
    """
    table = helpers.linear_layer_table(helpers.build_skeleton(model))
    if targets:
        helpers.select_targets(table, targets)  # raises a ValueError that lists the model's layers
        return targets
    if DEFAULT_TARGET_NAMES <= set(table["tag"]):
        return None
    return helpers.attention_targets(table)


def output_folder(model: str, rank: int, targets: list[str] | None, root: Path = ROOT) -> Path:
    """build/runs/<model>-r<rank>[-<targets>]: one folder per variant, so that none overwrites another."""
    name = f"{model.split('/')[-1]}-r{rank}"
    if targets is not None:
        name += "-" + "-".join(targets)
    return root / "build" / "runs" / name


def run_variant(model: str, rank: int, targets: list[str] | None = None, output_root: Path = ROOT) -> list[Path]:
    """Execute the parameterised notebooks for ``model``; return the paths of the executed copies."""
    import papermill

    check_model(model)
    helpers.check_rank(rank)
    targets = choose_targets(model, targets)
    parameters = {"MODEL": model, "RANK": rank}
    if targets is not None:
        parameters["TARGETS"] = targets
    folder = output_folder(model, rank, targets, output_root)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in PARAMETERISED:
        output = folder / name
        print(f"executing {name} with {parameters} ...")
        papermill.execute_notebook(
            str(ROOT / "notebooks" / name), str(output), parameters=parameters, cwd=str(ROOT / "notebooks"), progress_bar=False
        )
        written.append(output)
    return written


def parse_targets(text: str | None) -> list[str] | None:
    """"q_proj,v_proj" -> ["q_proj", "v_proj"]; empty -> None."""
    if not text:
        return None
    return [name.strip() for name in text.split(",") if name.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a catalog model, e.g. Qwen/Qwen2.5-0.5B-Instruct")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--targets", default="", help="comma-separated module names, e.g. q_proj,v_proj")
    arguments = parser.parse_args()
    for path in run_variant(arguments.model, arguments.rank, parse_targets(arguments.targets)):
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
