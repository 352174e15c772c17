"""plumbing/answers.py: the exercises' self-checks, a tick or one short message with a diagnosis and the hint."""

import numpy as np
import pytest

import helpers
from plumbing import answers


def test_check_answer_gives_the_hint():
    with pytest.raises(AssertionError, match="Hint: think again"):
        helpers.check_answer(3, 4, hint="think again")
    with pytest.raises(AssertionError, match="No answer yet"):
        helpers.check_answer(None, 4, hint="think again")


def test_check_answer_ticks_a_right_answer(capsys):
    helpers.check_answer(1_235_814_400, 1_235_814_400, hint="unused")
    assert capsys.readouterr().out == "✓ Correct: 1,235,814,400\n"


def test_check_answer_compares_arrays_series_and_tensors(capsys):
    import numpy as np
    import pandas as pd
    import torch

    helpers.check_answer(np.array([1, 2]), torch.tensor([1, 2]), hint="-")
    helpers.check_answer(pd.Series([3, 4]), [3, 4], hint="-")
    with pytest.raises(AssertionError, match="Not quite"):
        helpers.check_answer(np.array([1, 2]), np.array([1, 3]), hint="-")
    with pytest.raises(AssertionError, match="Not quite"):
        helpers.check_answer(np.array([1, 2]), np.array([1, 2, 3]), hint="-")


def test_a_wrong_answer_is_one_short_message_with_a_diagnosis():
    def message(answer, expected, **options) -> str:
        with pytest.raises(answers.NotYet) as caught:
            helpers.check_answer(answer, expected, hint="the hint", **options)
        lines = caught.value._render_traceback_()  # what JupyterLab and Colab show instead of a traceback
        assert len(lines) == 1 and "the hint" in lines[0]
        return str(caught.value)

    assert "you have 1,234,567 (too high)" in message(1_234_567, 1_000)
    assert "(too low)" in message(np.int64(7), 1_000)
    assert "whole number is expected" in message(2.5, 4)
    assert "twice the expected value" in message(8, 4) and "half the expected value" in message(2, 4)
    assert "that is r·m·n" in message(6, 5, mistakes={6: "that is r·m·n"})
    assert "a number is expected, not str" in message("12", 12)
    assert "True or False is expected" in message(1, True)
    assert "(" not in message(False, True)  # a wrong guess between two options gets no diagnosis that gives it away
