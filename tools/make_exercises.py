"""Write the student copies of the series into notebooks/exercises/.

Each copy keeps the prose and every code cell, including the check cells, and drops:
- every output (the student runs the notebook);
- the worked solutions: a line ``answer_1 = ...  # solution`` becomes ``answer_1 = None``
  (``prediction_4 = ...`` likewise: a "predict, then run" exercise), and other lines marked
  ``# solution`` (intermediate steps) are removed.

A test regenerates the copies and fails when the committed ones differ (run ``make exercises``).

Usage: python tools/make_exercises.py
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

from stamp_course import series_notebooks  # a sibling script (Python puts a script's folder on sys.path)

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
EXERCISE_DIR = NOTEBOOK_DIR / "exercises"

SOLUTION_MARK = "# solution"
ANSWER_LINE = re.compile(r"^(\s*)(answer_\d+) = .*# solution.*$")
PREDICTION_LINE = re.compile(r"^(\s*)(prediction_\d+) = .*# solution.*$")
BLANK_ANSWER = r"\1\2 = None  # your answer: an expression, not a typed number"
BLANK_PREDICTION = r"\1\2 = None  # your prediction: a number, written down before you run the next cell"
TEACHER_INSTRUCTIONS = (
    "Each answer cell holds a worked solution (the lines marked `# solution`). To practise, "
    "set the answer to `None` and run the check cell to see its hint, then write your own "
    "expression (not a typed number) and run the check again."
)
STUDENT_INSTRUCTIONS = (
    "Replace each `None` with your own expression (not a typed number) and run the check cell "
    "below it: it answers ✓ or gives you a hint. In a \"predict, then run\" exercise, write down "
    "your prediction first, then run the experiment that checks it. The worked solutions are in the full notebook "
    "of the same name in `notebooks/` (in Colab: open it from its badge in the README)."
)


def blank_solutions(source: str) -> str:
    """The code without its worked solution: answers set to None, intermediate steps removed."""
    kept = []
    for line in source.split("\n"):
        if SOLUTION_MARK not in line:
            kept.append(line)
        elif ANSWER_LINE.match(line):
            kept.append(ANSWER_LINE.sub(BLANK_ANSWER, line))
        elif PREDICTION_LINE.match(line):
            kept.append(PREDICTION_LINE.sub(BLANK_PREDICTION, line))
    return "\n".join(kept)


def for_exercise_folder(source: str) -> str:
    """Paths and links that point one folder further up, because the copy lives in exercises/."""
    source = source.replace("../assets/", "../../assets/")
    source = source.replace('"../helpers.py"', '"../../helpers.py"').replace('os.path.abspath("..")', 'os.path.abspath("../..")')
    return source.replace('lora-by-the-numbers/notebooks")', 'lora-by-the-numbers/notebooks/exercises")')


def student_copy(notebook, name: str):
    """The exercise version of an executed notebook (the notebook itself is not changed)."""
    copy = nbformat.from_dict(notebook)  # a deep copy
    if TEACHER_INSTRUCTIONS not in "".join(cell.source for cell in copy.cells):
        raise ValueError("The 'Check yourself' instructions changed: update TEACHER_INSTRUCTIONS in this script.")
    for cell in copy.cells:
        cell.source = for_exercise_folder(cell.source)
        if cell.cell_type == "markdown":
            cell.source = cell.source.replace(TEACHER_INSTRUCTIONS, STUDENT_INSTRUCTIONS)
        else:
            cell.source = blank_solutions(cell.source)
            cell.outputs = []
            cell.execution_count = None
    copy.cells[0].source = copy.cells[0].source.replace(f"/notebooks/{name})", f"/notebooks/exercises/{name})")  # Colab badge
    return copy


def exercise_path(notebook_path: Path) -> Path:
    return EXERCISE_DIR / notebook_path.name


def main() -> None:
    EXERCISE_DIR.mkdir(exist_ok=True)
    for path in series_notebooks():
        copy = student_copy(nbformat.read(path, as_version=4), path.name)
        target = exercise_path(path)
        text = nbformat.writes(copy) + "\n"
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
            print(f"wrote {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
