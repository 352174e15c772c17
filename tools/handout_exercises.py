"""The exercises of a notebook, found and rearranged for paper (used by make_handouts.py).

How the notebooks mark their exercises (the same rules as make_exercises.py):
- an exercise starts at a markdown cell containing ``**Exercise N`` (the first one shares its
  cell with the "Check yourself" heading and instructions);
- the code cells after it, up to the next markdown cell, belong to it;
- an *answer cell* holds lines marked ``# solution`` (the worked solution);
- a *check cell* calls ``helpers.check_answer(`` and prints "✓ Correct: ..." or a hint.

From these, this module builds the notebooks that make_handouts.py prints:
- lecture_notebook: the notebook with each answer cell cut to its skeleton (solution lines
  removed, ``answer_1 = ...`` turned into a blank), no check cell, and the worked solutions in
  an appendix at the end;
- sheet_notebook: the questions only, each with a "What you need" box (the sections the question
  names, and the notebook's variables and functions its code reads, with where the lecture
  handout shows each), the code skeleton and a ruled space to write;
- solutions_notebook: every exercise of the series with its worked solution and checked answer.
Nothing is executed: the outputs are the committed ones.
"""

from __future__ import annotations

import ast
import builtins
import functools
import html
import re
from dataclasses import dataclass, field

import nbformat

from make_exercises import SOLUTION_MARK, TEACHER_INSTRUCTIONS  # a sibling script

CHECK_CALL = "check_answer("
EXERCISE_LABEL = re.compile(r"\*\*(Exercise (\d+)[^*]*?)\.?\*\*")
ANSWER_LINE = re.compile(r"^(\s*)((?:answer|prediction)_\d+) = .*# solution.*$")
BLANK = "_" * 24
PAPER_INSTRUCTIONS = (
    "On paper: work each exercise from the numbers in this handout, and write an expression "
    "before its value. The worked solutions, with the value the notebook's check confirms, "
    "are in the appendix at the end."
)
APPENDIX_ID = "appendix-solutions"
APPENDIX_TITLE = "Appendix: worked solutions"

# Tags on notebook cells that the handouts obey (JupyterLab: right sidebar, "Cell Tags").
COLAB_TAG = "colab-setup"  # left out of every handout
PLUMBING_TAG = "plumbing"  # its code is not printed; its output is
EXERCISE_DATA_TAG = "exercise-data"  # also reprinted (output, or markdown) on the exercise sheet
# Tags this module puts on its own cells, for make_handouts.py's style sheet.
OUTPUT_ONLY_TAG = "handout-output-only"  # the code is not printed (as PLUMBING_TAG)
APPENDIX_TAG = "handout-appendix"
QUESTION_TAG = "handout-question"  # an exercise's question in the lecture handout: kept with its skeleton
SHEET_EXERCISE_TAG = "handout-exercise"  # one exercise of the sheet: never split across pages


@dataclass
class Exercise:
    """One exercise: its question and the code cells that answer and check it."""

    number: int
    label: str  # "Exercise 4 (predict, then run)"
    markdown_index: int
    question: str  # the markdown from "**Exercise N" to the end of its cell
    code_indices: list[int] = field(default_factory=list)
    answer_indices: list[int] = field(default_factory=list)
    check_indices: list[int] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return f"solution-{self.number}"

    @property
    def question_body(self) -> str:
        """The question without its bold label: the appendix puts the label in a heading."""
        return EXERCISE_LABEL.sub("", self.question, count=1).strip()


def find_exercises(nb: nbformat.NotebookNode) -> list[Exercise]:
    """The exercises of nb, in order."""
    exercises: list[Exercise] = []
    current: Exercise | None = None
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            current = None
            match = EXERCISE_LABEL.search(cell.source)
            if match:
                current = Exercise(
                    number=int(match.group(2)),
                    label=match.group(1).strip(),
                    markdown_index=index,
                    question=cell.source[match.start() :].strip(),
                )
                exercises.append(current)
        elif cell.cell_type == "code" and current is not None:
            current.code_indices.append(index)
            if CHECK_CALL in cell.source:
                current.check_indices.append(index)
            elif SOLUTION_MARK in cell.source:
                current.answer_indices.append(index)
    return exercises


def solution_lines(source: str) -> list[str]:
    """The lines of source marked as worked solution."""
    return [line for line in source.split("\n") if SOLUTION_MARK in line]


def skeleton(source: str) -> str:
    """The code without its worked solution: each answer line becomes a blank, other solution lines go."""
    kept = []
    for line in source.split("\n"):
        if SOLUTION_MARK not in line:
            kept.append(line)
        elif ANSWER_LINE.match(line):
            kept.append(ANSWER_LINE.sub(rf"\1\2 = {BLANK}", line))
    return "\n".join(kept).strip("\n")


def tagged(cell: nbformat.NotebookNode, *tags: str) -> nbformat.NotebookNode:
    cell.metadata["tags"] = [*cell.metadata.get("tags", []), *tags]
    return cell


def has_tag(cell: nbformat.NotebookNode, tag: str) -> bool:
    return tag in cell.metadata.get("tags", [])


def output_only_cell(outputs: list, *tags: str) -> nbformat.NotebookNode:
    """A code cell that prints only the given outputs (its empty code is not shown)."""
    cell = nbformat.v4.new_code_cell("", outputs=[nbformat.from_dict(o) for o in outputs])
    return tagged(cell, OUTPUT_ONLY_TAG, *tags)


def notebook_title(nb: nbformat.NotebookNode) -> str:
    """The text of the notebook's first level-1 heading ("01 · Inside a language model: ...")."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return ""


def solution_cells(nb: nbformat.NotebookNode, exercise: Exercise, heading_level: int) -> list[nbformat.NotebookNode]:
    """An exercise's worked solution: a heading, the question, the full code, and what the check printed."""
    heading = f'<h{heading_level} id="{exercise.anchor}">{html.escape(exercise.label)}</h{heading_level}>'
    cells = [tagged(nbformat.v4.new_markdown_cell(f"{heading}\n\n{exercise.question_body}"), APPENDIX_TAG, "handout-solution-question")]
    for index in exercise.code_indices:
        original = nb.cells[index]
        if index in exercise.check_indices:
            if original.outputs:
                cells.append(output_only_cell(original.outputs, APPENDIX_TAG, "handout-check-output"))
        else:
            cell = nbformat.v4.new_code_cell(original.source, outputs=[nbformat.from_dict(o) for o in original.outputs])
            cells.append(tagged(cell, APPENDIX_TAG))
    return cells


def lecture_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The handout's notebook: questions in place, worked solutions and checked answers in an appendix.

    In place, each answer cell is cut to its skeleton and loses its outputs, and each check cell
    goes ("✓ Correct: 180,078,912" under the question gives the answer away, and a check means
    nothing on paper). The appendix shows the committed cells, solution lines and outputs included.
    """
    lecture = nbformat.from_dict(nb)  # a deep copy; nb itself is left as it is
    exercises = find_exercises(nb)
    if not exercises:
        return lecture
    dropped: set[int] = set()
    for exercise in exercises:
        question_cell = lecture.cells[exercise.markdown_index]
        question_cell.source = question_cell.source.replace(TEACHER_INSTRUCTIONS, PAPER_INSTRUCTIONS)
        question_cell.source += (
            f'\n\n<p class="solution-pointer">Worked solution: <a href="#{exercise.anchor}">appendix, '
            f"{html.escape(exercise.label)}</a>.</p>"
        )
        tagged(question_cell, QUESTION_TAG)
        for index in exercise.code_indices:
            cell = lecture.cells[index]
            cell.source = skeleton(cell.source)
            cell.outputs = []  # an experiment's output answers a "predict, then run" exercise
            if index in exercise.check_indices or not cell.source.strip():
                dropped.add(index)
    heading = f'<h2 id="{APPENDIX_ID}">{APPENDIX_TITLE}</h2>'
    appendix = [tagged(nbformat.v4.new_markdown_cell(heading), APPENDIX_TAG)]
    for exercise in exercises:
        appendix += solution_cells(nb, exercise, heading_level=3)
    lecture.cells = [cell for index, cell in enumerate(lecture.cells) if index not in dropped] + appendix
    return lecture


# ---------------------------------------------------------------------------
# What an exercise needs: the sections it names, and the notebook's variables its code reads
# ---------------------------------------------------------------------------

SECTION_HEADING = re.compile(r"^## (\d+)\. (.+)$", re.MULTILINE)
SECTION_REFERENCE = re.compile(r"\bsections? (\d+(?:(?:, | and | or )\d+)*)", re.IGNORECASE)
NOTEBOOK_REFERENCE = re.compile(r"\bnotebook (\d\d)\b", re.IGNORECASE)


@dataclass
class Need:
    """Something an exercise refers to: where the handout shows it, and what to look for there."""

    cell_index: int  # the cell that shows it: a section's heading, or the code that defines a name
    what: str  # HTML: "§5 Counting a model you have not downloaded", or "<code>llama_table</code>"
    exercise: int | None = None  # the earlier exercise that defines it, if one does


def inline_html(markdown: str) -> str:
    """A heading's markdown as HTML, as far as headings use it: `code` spans, the rest escaped."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(markdown, quote=False))


def sections(nb: nbformat.NotebookNode) -> dict[int, tuple[int, str]]:
    """{section number: (index of its heading cell, its title)} of the numbered "## N. Title" headings."""
    found = {}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            for match in SECTION_HEADING.finditer(cell.source):
                found.setdefault(int(match.group(1)), (index, match.group(2).strip()))
    return found


def python_of(source: str) -> ast.Module | None:
    """The cell's code as a Python syntax tree (IPython magics made plain calls), or None."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        source = TransformerManager().transform_cell(source)
    except ImportError:  # no IPython: lines starting with % or ! would not parse; drop them
        source = "\n".join(line for line in source.split("\n") if not line.lstrip().startswith(("%", "!")))
    try:
        return ast.parse(source)
    except SyntaxError:
        return None


@functools.lru_cache(maxsize=4096)
def names_in(source: str) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(names the code reads, names it binds, names it binds by import)."""
    read, bound, imported = set(), set(), set()
    tree = python_of(source)
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                imported.add((alias.asname or alias.name).split(".")[0])
    return frozenset(read), frozenset(bound | imported), frozenset(imported)


def exercise_of_cell(exercises: list[Exercise]) -> dict[int, Exercise]:
    return {index: exercise for exercise in exercises for index in exercise.code_indices}


def exercise_needs(nb: nbformat.NotebookNode, exercise: Exercise, exercises: list[Exercise]) -> list[Need]:
    """What exercise refers to, in the order of the notebook: sections it names, and the
    notebook's variables and functions that its code (the worked solution included) reads."""
    needs: list[Need] = []
    numbered = sections(nb)
    for match in SECTION_REFERENCE.finditer(exercise.question):
        for number in map(int, re.findall(r"\d+", match.group(1))):
            if number in numbered:
                heading_index, title = numbered[number]
                need = Need(heading_index, f"§{number} {inline_html(title)}")
                if need not in needs:  # "sections 5 and 8 ... section 8's lines"
                    needs.append(need)

    imported: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type == "code":
            imported |= names_in(cell.source)[2]
    read, bound = set(), set()
    for index in exercise.code_indices:
        if index not in exercise.check_indices:
            cell_read, cell_bound, _ = names_in(nb.cells[index].source)
            read |= cell_read
            bound |= cell_bound
    wanted = sorted(read - bound - imported - set(dir(builtins)))

    in_exercise = exercise_of_cell(exercises)
    for name in wanted:
        for index in range(exercise.markdown_index - 1, -1, -1):
            cell = nb.cells[index]
            if cell.cell_type != "code" or has_tag(cell, COLAB_TAG) or name not in names_in(cell.source)[1]:
                continue
            tree = python_of(cell.source)
            function = tree is not None and any(
                isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name for node in ast.walk(tree)
            )
            label = f"<code>{html.escape(name)}{'()' if function else ''}</code>"
            earlier = in_exercise.get(index)
            needs.append(Need(index, label, exercise=earlier.number if earlier else None))
            break
    return sorted(needs, key=lambda need: need.cell_index)


def notebook_references(exercise: Exercise) -> list[str]:
    """The other notebooks of the series the question names ("02")."""
    return list(dict.fromkeys(NOTEBOOK_REFERENCE.findall(exercise.question)))


def section_of(nb: nbformat.NotebookNode, cell_index: int) -> tuple[int, str] | None:
    """(number, title) of the numbered section that holds the cell, if any."""
    current = None
    for number, (index, title) in sorted(sections(nb).items(), key=lambda item: item[1][0]):
        if index <= cell_index:
            current = (number, title)
    return current


# ---------------------------------------------------------------------------
# The exercise sheet and the solutions
# ---------------------------------------------------------------------------

SHEET_INSTRUCTIONS = (
    "Work on paper: an expression first, then its value. Under each question, the pages of the "
    "lecture handout that show what you need, and the code the notebook expects, with a blank for your answer."
)


def working_label(number: int) -> str:
    """The small label at the top of an exercise's writing space (make_handouts.py finds it in the PDF)."""
    return f"Your working, exercise {number}"


def answer_space(number: int, lines: int) -> str:
    rules = '<div class="rule"></div>' * lines
    return f'<div class="answer-space"><div class="working-label">{working_label(number)}</div>{rules}</div>'


def sheet_notebook(
    nb: nbformat.NotebookNode,
    locate,
    lines: dict[int, int],
    default_lines: int,
    data_at_end: bool = False,
) -> nbformat.NotebookNode:
    """The exercise sheet of nb: each question, what it needs, its code skeleton and a ruled space.

    locate(cell_index) gives where the lecture handout shows a cell ("p. 4"), or "" if unknown;
    lines[exercise number] is the number of ruled lines under that question (default_lines if absent);
    the data the exercises read comes first, or after them if data_at_end.
    """
    exercises = find_exercises(nb)
    sheet = nbformat.v4.new_notebook(metadata=nbformat.from_dict(nb.metadata))
    sheet.metadata.pop("widgets", None)
    title = notebook_title(nb)
    sheet.cells.append(
        nbformat.v4.new_markdown_cell(f"# {title}\n\n**Exercise sheet.** {SHEET_INSTRUCTIONS}")
    )
    blocks = [
        tagged(nbformat.v4.new_markdown_cell(
            exercise_block(nb, exercise, exercises, locate, lines.get(exercise.number, default_lines))
        ), SHEET_EXERCISE_TAG)
        for exercise in exercises
    ]
    data = data_cells(nb)
    sheet.cells += [*blocks, *data] if data_at_end else [*data, *blocks]
    return sheet


def data_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """The sheet's "Data for these exercises": each exercise-data cell of nb (its output, or its
    markdown), under the section it comes from."""
    data = [(index, cell) for index, cell in enumerate(nb.cells) if has_tag(cell, EXERCISE_DATA_TAG)]
    if not data:
        return []
    cells = [nbformat.v4.new_markdown_cell("## Data for these exercises")]
    for index, cell in data:
        section = section_of(nb, index)
        if section:  # where the table comes from, as its caption
            cells.append(nbformat.v4.new_markdown_cell(f"*From §{section[0]} {section[1]}:*"))
        if cell.cell_type == "markdown":
            cells.append(nbformat.v4.new_markdown_cell(cell.source))
        elif cell.outputs:
            cells.append(output_only_cell(cell.outputs))
    return cells


def needs_box(nb: nbformat.NotebookNode, exercise: Exercise, exercises: list[Exercise], locate) -> str:
    """The "What you need" box: each thing the exercise refers to, with the handout page that shows it."""
    grouped: dict[str, list[str]] = {}
    for need in exercise_needs(nb, exercise, exercises):
        if need.exercise is not None:
            where = f"exercise {need.exercise}"
        else:
            section = section_of(nb, need.cell_index)
            page = locate(need.cell_index)
            where = ", ".join(part for part in (page, f"§{section[0]}" if section and not need.what.startswith("§") else "") if part)
        grouped.setdefault(where, []).append(need.what)
    items = [f"{', '.join(whats)}{': ' + where if where else ''}" for where, whats in grouped.items()]
    items += [f"the handout of notebook {number}" for number in notebook_references(exercise)]
    if not items:
        return ""
    listed = "".join(f"<li>{item}</li>" for item in items)
    return f'<div class="needs"><span class="needs-title">What you need (lecture handout)</span><ul>{listed}</ul></div>'


def exercise_block(nb, exercise: Exercise, exercises: list[Exercise], locate, lines: int) -> str:
    """One exercise of the sheet, as markdown with one-line HTML blocks (the cell's tag keeps it on one page)."""
    code = "\n\n".join(
        skeleton(nb.cells[index].source)
        for index in exercise.code_indices
        if index not in exercise.check_indices and skeleton(nb.cells[index].source).strip()
    )
    parts = [exercise.question, ""]
    box = needs_box(nb, exercise, exercises, locate)
    if box:
        parts += [box, ""]
    if code:
        parts += ["```python", code, "```", ""]
    parts += [answer_space(exercise.number, lines)]
    return "\n".join(parts)


def solutions_notebook(notebooks: list[nbformat.NotebookNode], title: str) -> nbformat.NotebookNode:
    """Every exercise of the series: question, worked solution code and the check's answer, per notebook."""
    solutions = nbformat.v4.new_notebook()
    solutions.cells.append(
        nbformat.v4.new_markdown_cell(
            f"# {title}\n\nEvery exercise of the series, with its worked solution (the lines marked "
            "`# solution`) and the answer the notebook's check cell confirmed (\"✓ Correct\")."
        )
    )
    for nb in notebooks:
        exercises = find_exercises(nb)
        if not exercises:
            continue
        solutions.cells.append(nbformat.v4.new_markdown_cell(f"## {notebook_title(nb)}"))
        for exercise in exercises:
            solutions.cells += solution_cells(nb, exercise, heading_level=3)
    return solutions
