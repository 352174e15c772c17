"""Execute notebooks 02-04 for another catalog model, rank and targets: a lecturer's own variant.

Papermill replaces the values in each notebook's ``parameters`` cell and writes an executed
copy to ``build/runs/<model>-r<rank>[-<targets>]/``; the notebooks in ``notebooks/`` are not changed.

Usage (or ``make run MODEL=... RANK=... TARGETS=...``, which passes the values through the
environment, never through a shell command line):
    python tools/run_variant.py --model Qwen/Qwen2.5-0.5B-Instruct --rank 8 --targets q_proj,v_proj
    LORA_RUN_MODEL=... LORA_RUN_RANK=8 LORA_RUN_TARGETS=q_proj,v_proj python tools/run_variant.py --from-environment

Bad settings stop with one message and exit code 2; a notebook that fails stops the run with exit
code 1. Each variant is written to a temporary folder first and renamed when complete, so
``build/runs/`` never holds a half-executed variant.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import helpers
from plumbing import arguments, module_tree

ROOT = Path(__file__).resolve().parent.parent
PARAMETERISED = ["02_per_module_counts.ipynb", "03_rank_and_targets.ipynb", "04_peft_in_practice.ipynb"]
DEFAULT_TARGET_NAMES = {"q_proj", "k_proj", "v_proj", "o_proj"}  # what the notebooks' own defaults use


def check_model(model: str) -> None:
    """A dense catalog model: notebooks 02-04 count dense layers; mixtures of experts have notebook 07."""
    if model not in helpers.catalog():
        raise ValueError(f"{model!r} is not in the offline catalog. Choose one of: {', '.join(helpers.catalog())}.")
    if module_tree.is_mixture_of_experts(helpers.build_skeleton(model)):
        dense = [name for name in helpers.catalog() if not module_tree.is_mixture_of_experts(helpers.build_skeleton(name))]
        raise ValueError(
            f"{model} is a mixture of experts; notebooks 02-04 are written for dense models, and notebook 07 counts this one. "
            f"Choose a dense model: {', '.join(dense)}."
        )


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


STAGING_PREFIX = ".run-staging-"
"""The half-executed runs of a killed `make run` start so; the next run removes them (only these)."""
NAME_MAX = 255  # bytes in one folder name (Linux)


def output_folder(model: str, rank: int, targets: list[str] | None, root: Path = ROOT) -> Path:
    """build/runs/<model>-r<rank>[-<targets>]: one folder per variant, so that none overwrites another.

    A name too long for the file system is refused before any notebook runs."""
    name = f"{model.split('/')[-1]}-r{rank}"
    if targets is not None:
        name += "-" + "-".join(targets)
    if len(os.fsencode(name)) > NAME_MAX - len(STAGING_PREFIX) - 8:
        raise ValueError(f"TARGETS makes the run's folder name {len(name)} characters long, too long for the file system. "
                         "Give fewer targets (each once), or leave TARGETS out.")
    return root / "build" / "runs" / name


def check_rank_fits(model: str, rank: int) -> None:
    """Refuse a rank above the smallest side of the model's linear layers: B·A could never reach it."""
    table = helpers.linear_layer_table(helpers.build_skeleton(model))
    smallest = int(min(table["m"].min(), table["n"].min()))
    if rank > smallest:
        raise ValueError(
            f"RANK={rank:,} is larger than the smallest side of {model}'s linear layers ({smallest:,}): "
            f"LoRA's update B·A can never have a rank above min(m, n). Choose a rank from 1 to {smallest:,}."
        )


def run_variant(model: str, rank: int, targets: list[str] | None = None, output_root: Path | None = None) -> list[Path]:
    """Execute the parameterised notebooks for ``model``; return the paths of the executed copies."""
    import papermill

    check_model(model)
    rank = arguments.check_rank(rank)
    check_rank_fits(model, rank)
    targets = choose_targets(model, targets)
    parameters = {"MODEL": model, "RANK": rank}
    if targets is not None:
        parameters["TARGETS"] = targets
    folder = output_folder(model, rank, targets, output_root or ROOT)
    folder.parent.mkdir(parents=True, exist_ok=True)
    for leftover in folder.parent.glob(f"{STAGING_PREFIX}*"):  # from a run that was killed outright
        shutil.rmtree(leftover, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder.parent))
    try:
        for name in PARAMETERISED:
            print(f"executing {name} with {parameters} ...", flush=True)
            papermill.execute_notebook(
                str(ROOT / "notebooks" / name), str(staging / name), parameters=parameters,
                cwd=str(ROOT / "notebooks"), progress_bar=True,
            )
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [folder / name for name in PARAMETERISED]


def settings_from_environment() -> tuple[str, int, list[str] | None]:
    """MODEL, RANK and TARGETS as `make run` passes them: environment variables, read as plain text."""
    model = os.environ.get("LORA_RUN_MODEL", "").strip()
    rank_text = os.environ.get("LORA_RUN_RANK", "").strip()
    if not model:
        raise ValueError("MODEL is empty. Example: make run MODEL=Qwen/Qwen2.5-0.5B-Instruct RANK=8")
    if not rank_text.isdigit():
        raise ValueError(f"RANK={rank_text!r} is not a whole number. Example: make run RANK=8")
    return model, int(rank_text), parse_targets(os.environ.get("LORA_RUN_TARGETS", ""))


def parse_targets(text: str | None) -> list[str] | None:
    """"q_proj,v_proj" -> ["q_proj", "v_proj"]; empty -> None. A name given twice counts once (PEFT adapts it once)."""
    if not text:
        return None
    return list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip())) or None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a catalog model, e.g. Qwen/Qwen2.5-0.5B-Instruct")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--targets", default="", help="comma-separated module names, e.g. q_proj,v_proj")
    parser.add_argument("--from-environment", action="store_true", help="read LORA_RUN_MODEL, _RANK, _TARGETS")
    arguments = parser.parse_args()
    try:
        if arguments.from_environment:
            model, rank, targets = settings_from_environment()
        elif arguments.model:
            model, rank, targets = arguments.model, arguments.rank, parse_targets(arguments.targets)
        else:
            raise ValueError("Give --model (or use make run MODEL=...).")
        written = run_variant(model, rank, targets)
    except ValueError as error:
        print(f"make run: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # a notebook failed: papermill says which cell
        print(f"make run: the run failed and nothing was written ({type(error).__name__}: {error})", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
