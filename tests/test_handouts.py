"""The handout builder, tools/make_handouts.py (the slides have tests/test_slides.py).

The handout tests print, once for the module and into a temporary folder, the lecture handout
of every notebook with figures (the dpi test looks at every figure: 02, 03, 06, 07, 08 today),
and the exercise sheets and solutions of two of them (02: short; 03: tables, the calculator
widget, five exercises): about a minute of Chromium, two and a half on a busy 2-core machine
(`make handouts` prints all eight notebooks in two to four). They need Debian's Chromium and
poppler's pdftoppm and pdftotext (Debian's poppler-utils), which `make handouts` installs.
The slides test needs npm the first time, to install reveal.js under build/npm/.
"""

import functools
import html
import importlib
import re
import subprocess
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pypdf
import pytest

import helpers

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / "tools"
NOTEBOOKS = REPO / "notebooks"
HANDOUT_NOTEBOOK = NOTEBOOKS / "03_rank_and_targets.ipynb"
SLIDES_NOTEBOOK = NOTEBOOKS / "01_architecture.ipynb"
LLAMA = "meta-llama/Llama-3.2-1B-Instruct"
SHEET_STEMS = sorted(path.stem for path in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))  # every sheet: each has its own data and holes
MIN_DPI = 200
MAX_BLANK = 0.25
FOOTER_TOP_PT = 16 / 25.4 * 72  # the bottom margin (16 mm), where make_handouts prints the footer


# ---------------------------------------------------------------------------
# Handout
# ---------------------------------------------------------------------------


def import_tools(*names):
    """The scripts of assets/, imported as modules (assets/ first on sys.path)."""
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    return [importlib.import_module(name) for name in names]


RASTER = ("image/png", "image/jpeg")
LOCAL_RASTER_IMAGE = re.compile(r"!\[[^\]]*\]\((?!https?:|attachment:)[^)]+\.(?:png|jpe?g)\)", re.IGNORECASE)


def has_figures(notebook: Path) -> bool:
    """Whether the notebook shows a raster figure: a PNG or JPEG output, attachment or local image.

    (The Colab badge is an SVG, drawn as lines and text, and is not printed anyway.)
    """
    nb = nbformat.read(notebook, as_version=4)
    outputs = [output for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs]
    markdown = [cell for cell in nb.cells if cell.cell_type == "markdown"]
    return (
        any(mime in output.get("data", {}) for output in outputs for mime in RASTER)
        or any(LOCAL_RASTER_IMAGE.search(cell.source) for cell in markdown)
        or any(mime in attachment for cell in markdown for attachment in cell.get("attachments", {}).values() for mime in RASTER)
    )


@dataclass
class Printed:
    """What the module's fixture printed: lecture handouts, exercise sheets, solutions (PDF paths)."""

    lecture: dict[str, Path] = field(default_factory=dict)
    sheet: dict[str, Path] = field(default_factory=dict)
    solutions: Path | None = None

    def all_pdfs(self) -> list[Path]:
        return [*self.lecture.values(), *self.sheet.values(), self.solutions]


@pytest.fixture(scope="module")
def printed(tmp_path_factory) -> Printed:
    """Print the handouts under test, once for the module."""
    make_handouts, page_space = import_tools("make_handouts", "page_space")
    make_handouts.find_chromium()  # fails with how to install it, rather than skipping
    page_space.find_poppler("pdftoppm"), page_space.find_poppler("pdftotext")  # likewise
    output_dir = tmp_path_factory.mktemp("handouts")
    result = Printed()
    for stem in SHEET_STEMS:
        notebook = NOTEBOOKS / f"{stem}.ipynb"
        result.lecture[stem] = make_handouts.make_handout(notebook, output_dir)
        result.sheet[stem] = make_handouts.make_exercise_sheet(notebook, output_dir, result.lecture[stem])
    for notebook in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        if notebook.stem not in result.lecture and has_figures(notebook):
            result.lecture[notebook.stem] = make_handouts.make_handout(notebook, output_dir)
    result.solutions = make_handouts.make_solutions([NOTEBOOKS / f"{stem}.ipynb" for stem in SHEET_STEMS], output_dir)
    return result


def squeezed(text: str) -> str:
    """text without any whitespace (as make_handouts.squeezed): text extraction breaks lines where
    the page wrapped them, and may split or join words; without whitespace, "1,235,814,400" is
    found wherever it was."""
    return "".join(unicodedata.normalize("NFKC", text).split())


@functools.cache
def pdf_text_without_spaces(pdf_path: Path) -> str:
    """All the text of a PDF (read by pypdf), with every space and line break removed, and without
    the page footers, so that a line the page broke is found whole."""
    runs = []

    def visit(text, cm, tm, _font, _size):
        if tm[4] * cm[1] + tm[5] * cm[3] + cm[5] > FOOTER_TOP_PT:  # its height above the page's bottom
            runs.append(squeezed(text))

    for page in pypdf.PdfReader(pdf_path).pages:
        page.extract_text(visitor_text=visit)
    return "".join(runs)


WORD = re.compile(r'<word xMin="[^"]*" yMin="[^"]*" xMax="[^"]*" yMax="([^"]*)">(.*?)</word>')
PAGE = re.compile(r'<page width="[^"]*" height="([^"]*)">(.*?)</page>', re.DOTALL)


@functools.cache
def pdf_words(pdf_path: Path) -> list[list[tuple[str, float]]]:
    """The words of each page, in reading order, as (word, height of its foot above the page's
    bottom in points), footers left out. Read by poppler's pdftotext, 30 times faster than pypdf,
    in the order they were printed (-raw: a table row by row, not column by column)."""
    xhtml = subprocess.run(["pdftotext", "-raw", "-bbox", str(pdf_path), "-"], check=True, capture_output=True, text=True).stdout
    pages = []
    for page_height, body in PAGE.findall(xhtml):
        words = [(squeezed(html.unescape(word)), float(page_height) - float(foot)) for foot, word in WORD.findall(body)]
        pages.append([(word, height) for word, height in words if height > FOOTER_TOP_PT])
    return pages


def attention_shapes(config) -> dict[str, tuple[int, int]]:
    """(m, n) = (out features, in features) of each attention projection, from the config."""
    d = config.hidden_size
    q_out = config.num_attention_heads * config.head_dim  # Llama-3.2-1B: 32 heads of 64 = 2048
    kv_out = config.num_key_value_heads * config.head_dim  # 8 key/value heads of 64 = 512
    return {"q_proj": (q_out, d), "k_proj": (kv_out, d), "v_proj": (kv_out, d), "o_proj": (d, q_out)}


def lora_count_by_hand(config, rank: int, targets: list[str]) -> int:
    """r·(m + n) for each target projection, in every layer."""
    shapes = attention_shapes(config)
    per_layer = sum(m + n for m, n in (shapes[target] for target in targets))
    return config.num_hidden_layers * rank * per_layer


def test_handout_pdf_shows_the_counts_and_the_figures(printed):
    pdf_path = printed.lecture[HANDOUT_NOTEBOOK.stem]

    llama_config = helpers.load_config(LLAMA)
    base_total = sum(p.numel() for p in helpers.build_skeleton(LLAMA).parameters())
    lora_qkvo = lora_count_by_hand(llama_config, rank=16, targets=["q_proj", "k_proj", "v_proj", "o_proj"])
    lora_qv = lora_count_by_hand(llama_config, rank=16, targets=["q_proj", "v_proj"])
    assert lora_qkvo == 16 * 16 * ((2048 + 2048) + (512 + 2048) + (512 + 2048) + (2048 + 2048))  # the derivation, once
    text = pdf_text_without_spaces(pdf_path)
    assert f"{base_total:,}" in text
    assert f"{lora_qkvo:,}" in text

    # The calculator cell: its printed answer stays, the widget becomes a note, and no error shows.
    assert f"{lora_qv:,}trainable" in text
    assert "Interactivecalculator" in text
    assert "Loadingwidget" not in text
    assert "Traceback" not in text
    assert "googlecolab" not in text.lower().replace(".", ""), "the Colab setup cell has no place in a handout"

    reader = pypdf.PdfReader(pdf_path)
    assert len(reader.pages) > 1
    assert reader.pages[0].mediabox.width == pytest.approx(595, abs=1), "A4 is 595 points wide"
    assert sum(len(page.images) for page in reader.pages) >= 1, "the figures are missing"


def exercises_of(stem: str):
    """(exercises, solution lines, check outputs) of a notebook, as its cells hold them."""
    (handout_exercises,) = import_tools("handout_exercises")
    nb = nbformat.read(NOTEBOOKS / f"{stem}.ipynb", as_version=4)
    exercises = handout_exercises.find_exercises(nb)
    lines = [
        line
        for exercise in exercises
        for index in exercise.code_indices
        if index not in exercise.check_indices
        for line in handout_exercises.solution_lines(nb.cells[index].source)
    ]
    checks = [
        "".join(output.get("text", "") for output in nb.cells[index].outputs)
        for exercise in exercises
        for index in exercise.check_indices
    ]
    return exercises, lines, checks


def question_start(exercise) -> str:
    """The first words of an exercise's question, as printed (squeezed, without markdown's marks)."""
    (make_handouts,) = import_tools("make_handouts")
    return squeezed(make_handouts.plain_markdown(exercise.question_body))[:50]


def test_every_notebook_has_exercises_with_solutions_and_checks():
    """The marks the handouts rely on: if a notebook's exercises change shape, this says how."""
    for notebook in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        exercises, lines, checks = exercises_of(notebook.stem)
        assert exercises, f"{notebook.name}: no markdown cell with **Exercise N"
        assert [exercise.number for exercise in exercises] == list(range(1, len(exercises) + 1)), notebook.name
        for exercise in exercises:
            assert exercise.answer_indices, f"{notebook.name} {exercise.label}: no cell with a `# solution` line"
            assert exercise.check_indices, f"{notebook.name} {exercise.label}: no check_answer cell"
        assert all("✓" in check for check in checks), f"{notebook.name}: a check cell printed no ✓ (outputs stale?)"


def test_exercise_sheets_hold_no_solution_and_no_check(printed):
    for stem, sheet in printed.sheet.items():
        exercises, lines, _checks = exercises_of(stem)
        text = pdf_text_without_spaces(sheet)
        assert "✓" not in text, f"{sheet.name} shows a check's answer"
        assert "#solution" not in text and "check_answer" not in text, f"{sheet.name} shows solution or check code"
        for line in lines:
            assert squeezed(line) not in text, f"{sheet.name} shows the solution line {line!r}"
        for exercise in exercises:
            assert squeezed(exercise.label) in text, f"{sheet.name} lacks {exercise.label}"
            assert squeezed(f"Your working, exercise {exercise.number}") in text, f"{sheet.name}: no space to write"
        assert text.count("=________") >= len(exercises), f"{sheet.name}: the answer skeletons are missing"


def test_lecture_handout_keeps_solutions_for_its_appendix(printed):
    (handout_exercises,) = import_tools("handout_exercises")
    heading = squeezed(handout_exercises.APPENDIX_TITLE)
    for stem in SHEET_STEMS:
        pdf = printed.lecture[stem]
        exercises, lines, checks = exercises_of(stem)
        text = pdf_text_without_spaces(pdf)
        assert text.count(heading) == 1, f"{pdf.name}: one appendix heading expected"
        appendix = text.index(heading)
        for exercise in exercises:  # the question stays in place (and is repeated in the appendix)
            assert 0 <= text.find(question_start(exercise)) < appendix, f"{pdf.name}: {exercise.label} not in place"
        for line in lines:
            found = text.find(squeezed(line))
            assert found > appendix, f"{pdf.name}: solution line {line!r} " + ("missing" if found < 0 else "before the appendix")
        for check in checks:
            found = text.find(squeezed(check))
            assert found > appendix, f"{pdf.name}: {check.strip()!r} " + ("missing" if found < 0 else "before the appendix")
        assert text.find("✓Correct") > appendix and "check_answer" not in text


def test_solutions_pdf_has_every_exercise_answered(printed):
    text = pdf_text_without_spaces(printed.solutions)
    position = 0
    for stem in SHEET_STEMS:
        exercises, lines, checks = exercises_of(stem)
        for exercise in exercises:
            found = text.find(question_start(exercise), position)
            assert found >= position, f"solutions.pdf: {stem} {exercise.label} missing or out of order"
            position = found
        for expected in lines + checks:
            assert squeezed(expected) in text, f"solutions.pdf lacks {expected.strip()!r} ({stem})"


def test_no_page_but_the_last_is_a_quarter_blank(printed):
    (page_space,) = import_tools("page_space")
    holes = []
    for pdf in printed.all_pdfs():
        fractions = page_space.blank_fractions(pdf)
        holes += [f"{pdf.name} p. {page}: {fraction:.0%}" for page, fraction in enumerate(fractions[:-1], 1) if fraction >= MAX_BLANK]
    assert not holes, f"pages at least {MAX_BLANK:.0%} blank (measured by tools/page_space.py): {holes}"


def lead_ins(html_text: str) -> list[str]:
    """The squeezed text of each lead-in paragraph of a page: a <p> whose text ends with ":"."""
    found = re.findall(r"<p\b[^>]*>(.*?)</p>", html_text, re.DOTALL)
    texts = [squeezed(html.unescape(re.sub(r"<[^>]+>", "", paragraph))) for paragraph in found]
    return [text for text in texts if text.endswith(":")]


def test_lead_in_lines_stay_with_what_follows(printed):
    """A paragraph ending with ":" never ends a page: text or a figure follows it on its page."""
    (figure_dpi,) = import_tools("figure_dpi")
    checked, alone = 0, []
    for pdf in printed.lecture.values():
        leads = lead_ins(pdf.with_suffix(".html").read_text(encoding="utf-8"))
        pages = pdf_words(pdf)
        images = figure_dpi.printed_images(pdf)
        first_page = 0
        for lead in leads:
            tail = lead[-30:]
            for number in range(first_page, len(pages)):
                joined = "".join(text for text, _height in pages[number])
                end = joined.find(tail) + len(tail)
                if end < len(tail):
                    continue
                seen, height = 0, None
                for text, run_height in pages[number]:
                    seen += len(text)
                    if seen >= end:
                        height = run_height
                        break
                below = [text for text, run_height in pages[number] if FOOTER_TOP_PT < run_height < height - 2]
                below += [image for image in images if image.page == number + 1 and image.bottom_pt < height - 2]
                if not below and number < len(pages) - 1:
                    alone.append(f"{pdf.name} p. {number + 1}: …{tail}")
                checked += 1
                first_page = number
                break
    assert checked >= 20, f"only {checked} lead-in lines found in the handouts"
    assert not alone, f"lead-in lines left alone at the foot of a page: {alone}"


def row_on_page(cells: list[str], text: str) -> bool:
    """Whether the cells of a table row are printed, in order and close together, in a page's text."""
    for start in [match.start() for match in re.finditer(re.escape(cells[0]), text)]:
        position, end = start, start
        for cell in cells:
            position = text.find(cell, position)
            if position < 0:
                break
            end = position = position + len(cell)
        else:
            if end - start <= 2 * sum(map(len, cells)) + 40:  # a few header words may come between
                return True
    return False


def test_tables_are_never_split(printed):
    """Each table's first and last rows are printed on the same page."""

    def cells(row: str) -> list[str]:
        texts = [squeezed(html.unescape(re.sub(r"<[^>]+>", "", cell))) for cell in re.findall(r"<t[hd]\b.*?</t[hd]>", row, re.DOTALL)]
        longer = [text for text in texts if len(text) >= 2]  # an index "0" may be printed apart from its row
        return longer or [text for text in texts if text]

    checked, split = 0, []
    for pdf in printed.lecture.values():
        page_text = ["".join(word for word, _height in words) for words in pdf_words(pdf)]
        start = 0
        for table in re.findall(r"<table\b.*?</table>", pdf.with_suffix(".html").read_text(encoding="utf-8"), re.DOTALL):
            body = re.search(r"<tbody>(.*?)</tbody>", table, re.DOTALL)
            rows = [cells(row) for row in re.findall(r"<tr\b.*?</tr>", body.group(1) if body else table, re.DOTALL)]
            rows = [row for row in rows if row]
            if len(rows) < 2:
                continue
            pages = [number for number in range(start, len(page_text)) if row_on_page(rows[0], page_text[number])]
            assert pages, f"{pdf.name}: table row {rows[0]} not found"
            start = pages[0]
            checked += 1
            if not row_on_page(rows[-1], page_text[start]):
                split.append(f"{pdf.name} p. {start + 1}: {rows[0][:3]}")
    assert checked >= 10, f"only {checked} tables found in the handouts"
    assert not split, f"tables split across pages: {split}"


def test_plumbing_cells_print_their_output_but_not_their_code(tmp_path):
    """A code cell tagged `plumbing` (a temporary copy of notebook 01) prints only its output;
    one tagged `exercise-data` is reprinted on the exercise sheet."""
    make_handouts, handout_exercises = import_tools("make_handouts", "handout_exercises")
    nb = nbformat.read(SLIDES_NOTEBOOK, as_version=4)
    plumbing, data = [
        cell
        for cell in nb.cells
        if cell.cell_type == "code"
        and not cell.metadata.get("tags")
        and any(output.get("output_type") == "stream" and len(output.get("text", "")) > 10 for output in cell.outputs)
    ][:2]
    plumbing.metadata["tags"] = ["plumbing"]
    data.metadata["tags"] = ["exercise-data"]
    copy = tmp_path / SLIDES_NOTEBOOK.name
    nbformat.write(nb, copy)

    def page_text(path: Path) -> str:
        return squeezed(html.unescape(re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8"))))

    def first_line(cell) -> str:
        return next(line for line in cell.source.split("\n") if len(line.strip()) > 8)

    lecture = page_text(make_handouts.notebook_to_html(copy, tmp_path))
    assert squeezed(first_line(plumbing)) not in lecture, "the plumbing cell's code is printed"
    assert squeezed(plumbing.outputs[0]["text"]) in lecture, "the plumbing cell's output is missing"
    assert squeezed(first_line(data)) in lecture, "an untagged cell's code is missing"
    assert "googlecolab" not in lecture.lower().replace(".", ""), "the Colab setup cell has no place in a handout"

    sheet_nb = handout_exercises.sheet_notebook(nb, lambda index: "", {}, default_lines=5)
    sheet = page_text(make_handouts.render_html(sheet_nb, copy, tmp_path / "sheet.html", footer=""))
    assert squeezed(data.outputs[0]["text"]) in sheet, "the exercise-data cell is not on the sheet"
    assert squeezed(first_line(data)) not in sheet and "✓" not in sheet


def test_every_figure_prints_at_200_dpi_or_more(printed):
    """Pixels of each embedded image ÷ its printed width in inches, read from the PDF.

    Fails until the notebooks' figures are drawn at 200 dpi or more (matplotlib's figure dpi,
    or retina output): make_handouts prints a figure at the size it was drawn, so its print
    resolution is the dpi it was drawn at, or more where the page's width shrinks it.
    """
    (figure_dpi,) = import_tools("figure_dpi")
    low, count = [], 0
    for stem, pdf in sorted(printed.lecture.items()):
        images = figure_dpi.printed_images(pdf)
        if has_figures(NOTEBOOKS / f"{stem}.ipynb"):
            assert images, f"{pdf.name}: the notebook has figures, the PDF none"
        count += len(images)
        low += [
            f"{pdf.name} p. {image.page}: {image.pixel_width} px over {image.printed_width_in:.2f} in = {image.dpi:.0f} dpi"
            for image in images
            if image.dpi < MIN_DPI
        ]
    assert count, "no figure found in the handouts"
    assert not low, f"figures printed below {MIN_DPI} dpi: {low}"


# ---------------------------------------------------------------------------
# Slides
# ---------------------------------------------------------------------------
