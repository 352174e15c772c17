"""Arguments of the wrong kind get one ValueError that says what was expected (the counting helpers of notebooks 02-08).

Without these checks, ``lora_count("meta-llama/...", ...)`` fails deep inside with
``AttributeError: 'str' object has no attribute 'named_parameters'``, which names neither the
function nor the fix. Nothing here imports torch's models, transformers or peft: kinds are told
by what they can do (a model has ``named_parameters``, a PEFT config ``peft_type``).
"""

from __future__ import annotations

import operator


def described(value) -> str:
    """``str 'meta-llama/Llama-3.2-1B'``, ``NoneType``, ``dict {...}``: short, for a message."""
    text = repr(value)
    return type(value).__name__ + (f" {text[:40]}{'…' if len(text) > 40 else ''}" if value is not None else "")


def expect_model(model, function: str) -> None:
    """A model (a torch ``nn.Module``), not a model's name or anything else."""
    if not (hasattr(model, "named_parameters") and hasattr(model, "named_modules")):
        hint = " Build it first: helpers.build_skeleton(name)." if isinstance(model, str) else ""
        raise ValueError(f"{function} expects a model (a torch nn.Module), not {described(model)}.{hint}")


def expect_table(table, function: str) -> None:
    """A table from ``linear_layer_table`` (a pandas DataFrame with its columns)."""
    if not all(hasattr(table, name) for name in ("columns", "loc")) or not {"tag", "m", "n"} <= set(table.columns):
        raise ValueError(f"{function} expects the table of helpers.linear_layer_table(model), not {described(table)}.")


def expect_peft_config(config, function: str) -> None:
    """A PEFT config object such as ``LoraConfig(...)``, not a dict of its arguments."""
    if not (hasattr(config, "peft_type") and hasattr(config, "to_dict")):
        hint = " Write LoraConfig(**that_dict)." if isinstance(config, dict) else ""
        raise ValueError(f"{function} expects a PEFT config such as LoraConfig(r=8, ...), not {described(config)}.{hint}")


def expect_shape_pairs(dims, function: str) -> list[tuple[int, int]]:
    """A list of ``(m, n)`` pairs of whole numbers; one pair on its own is refused with the fix."""
    if isinstance(dims, tuple) and len(dims) == 2 and all(isinstance(value, int) for value in dims):
        raise ValueError(f"{function} expects a list of (m, n) pairs; for one matrix write [{dims!r}].")
    pairs = []
    for pair in dims:
        try:
            m, n = pair
            if isinstance(m, bool) or isinstance(n, bool):
                raise TypeError
            pairs.append((operator.index(m), operator.index(n)))
        except (TypeError, ValueError):
            raise ValueError(f"{function}: each shape must be a pair of whole numbers (m, n), not {described(pair)}.") from None
    return pairs


MAX_RANK = 65_536
"""Larger than any layer dimension of the models the series discusses: a higher rank is a typo."""


def check_rank(rank) -> int:
    """Return ``rank`` as an int if it is a whole number from 1 to MAX_RANK, else raise a clear ValueError.

    Integer types of numpy and torch are accepted (``operator.index``); floats, strings and booleans are not.
    """
    if isinstance(rank, bool) or str(getattr(rank, "dtype", "")) in ("torch.bool", "bool"):  # torch.tensor(True) too
        raise ValueError(f"LoRA rank must be a positive whole number such as 8 or 16, not {rank!r}.")
    try:
        value = operator.index(rank)
    except TypeError:
        raise ValueError(f"LoRA rank must be a positive whole number such as 8 or 16, not {rank!r}.") from None
    if value <= 0:
        raise ValueError(f"LoRA rank must be a positive whole number such as 8 or 16, not {value}.")
    if value > MAX_RANK:
        raise ValueError(
            f"LoRA rank {value:,} is absurd: B·A can never have a rank above the smaller side of its matrix, "
            f"and no layer in these models is wider than {MAX_RANK:,}. Usual ranks are 4 to 64."
        )
    return value
