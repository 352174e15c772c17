"""Exercise self-checks (every notebook's "Check yourself"): a tick, or one short message with a diagnosis and the hint."""

from __future__ import annotations

import pandas as pd
import torch


def as_plain_value(value):
    """A numpy array for tensors, Series and arrays (so they compare as a whole), else the value itself."""
    import numpy as np

    if torch.is_tensor(value):
        return value.detach().cpu().numpy()
    if isinstance(value, (pd.Series, pd.DataFrame, np.ndarray, list, tuple)):
        return np.asarray(value)
    return value


def answers_match(answer, expected) -> bool:
    """Equal values; for arrays, tensors and Series: equal shapes and equal elements."""
    import numpy as np

    answer, expected = as_plain_value(answer), as_plain_value(expected)
    if isinstance(answer, np.ndarray) or isinstance(expected, np.ndarray):
        return np.shape(answer) == np.shape(expected) and bool(np.array_equal(answer, expected))
    if isinstance(answer, (bool, np.bool_)) != isinstance(expected, (bool, np.bool_)):
        return False  # True is not the count 1
    try:
        return bool(answer == expected)
    except (TypeError, ValueError):
        return False


class NotYet(AssertionError):
    """A missing or wrong exercise answer. JupyterLab and Colab (IPython) show only its message, no traceback."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[1;31m{self}\x1b[0m"]  # IPython prints these lines instead of the traceback


def as_number(value):
    """A Python number for NumPy and PyTorch scalars (so they print and compare as numbers), else the value itself."""
    import numbers

    value = as_plain_value(value)
    if getattr(value, "shape", None) == () and hasattr(value, "item"):
        value = value.item()
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else value


def shown(value) -> str:
    """A value as the exercise messages print it: whole numbers with thousands separators."""
    value = as_number(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:,.6g}" if isinstance(value, float) else repr(value)


def what_went_wrong(answer, expected, mistakes: dict | None = None) -> str:
    """A diagnosis of a wrong answer that does not give the expected value away ("" if there is none to give)."""
    for value, explanation in (mistakes or {}).items():
        if answers_match(answer, value):
            return explanation
    answer, expected = as_number(answer), as_number(expected)
    if isinstance(expected, bool):
        return "" if isinstance(answer, bool) else "True or False is expected"
    if not isinstance(expected, (int, float)):
        return ""
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        return f"a number is expected, not {type(answer).__name__}"
    if isinstance(expected, int) and isinstance(answer, float) and not answer.is_integer():
        return "a whole number is expected (a count): use // rather than /, or round where the question says so"
    if expected and answer == 2 * expected:
        return "twice the expected value: is something counted twice?"
    if answer and expected == 2 * answer:
        return "half the expected value: is a factor of 2 missing?"
    return "too high" if answer > expected else "too low"


def check_answer(answer, expected, hint: str, mistakes: dict | None = None) -> None:
    """Self-check for the exercises: a tick, or one short message with a diagnosis and the hint.

    ``mistakes`` maps answers that a typical slip gives (e.g. r·m·n instead of r·(m + n)) to
    an explanation of that slip. Used in every notebook's "Check yourself".
    """
    if answer is None:
        raise NotYet(f"No answer yet: replace None with your expression. Hint: {hint}")
    if not answers_match(answer, expected):
        diagnosis = what_went_wrong(answer, expected, mistakes)
        raise NotYet(f"Not quite: you have {shown(answer)}{f' ({diagnosis})' if diagnosis else ''}. Hint: {hint}")
    is_count = isinstance(expected, int) and not isinstance(expected, bool)
    print(f"✓ Correct: {f'{expected:,}' if is_count else repr(expected)}")
