"""The notebooks as documents: structure, committed outputs, no leaks, no untraced numbers.

nbval (run by `make test`) re-executes every notebook and compares each output;
these tests check what nbval does not.
"""

import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
LEAK = re.compile(r"/tmp/|/root/|/home/|/Users/|hf_[A-Za-z0-9]{20,}")
BIG_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+|\d{4,}")
# "Hu et al., 2021", "PEFT issue #3711" or "lines 4016–4052" (of a source file) is a reference, not a count
CITATION = re.compile(r"[A-ZÀ-Þ][A-Za-zÀ-ÿ-]+(?: et al\.)?,? \(?(?:19|20)\d{2}|(?:issue|PR) #\d+|lines? \d+(?:–\d+)?")  # names with accents too


def read(path: Path):
    return nbformat.read(path, as_version=4)


def output_text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        for mime, data in output.get("data", {}).items():
            if mime.startswith("text/"):
                parts.append(data if isinstance(data, str) else "".join(data))
    return "".join(parts)


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.name)
def notebook(request):
    return request.param, read(request.param)


def test_series_is_numbered_from_01():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(1, len(NOTEBOOKS) + 1)]
    assert len(NOTEBOOKS) >= 2


def test_each_notebook_has_the_course_structure(notebook):
    path, nb = notebook
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith(f"# {path.name[:2]} ·")
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for heading in ["**What you will learn**", "**Prerequisites**", "## Check yourself", "## Summary"]:
        assert heading in markdown, f"{path.name} lacks {heading}"
    assert "helpers.check_answer(" in "\n".join(c.source for c in nb.cells if c.cell_type == "code")


def test_outputs_come_from_one_top_to_bottom_run(notebook):
    path, nb = notebook
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code_cells] == list(range(1, len(code_cells) + 1)), path.name
    for cell in code_cells:
        assert not any(o.output_type == "error" for o in cell.outputs), cell.source[:60]
        assert not any(o.get("name") == "stderr" for o in cell.outputs), f"stderr in {path.name}: {cell.source[:60]}"


def test_no_dead_or_empty_cells(notebook):
    _, nb = notebook
    for cell in nb.cells:
        assert cell.source.strip(), "empty cell"


def test_outputs_hold_no_machine_path_user_or_token(notebook):
    path, nb = notebook
    for cell in nb.cells:
        text = output_text(cell)
        assert not LEAK.search(text), f"{path.name}: {LEAK.search(text).group()} in output of {cell.source[:60]!r}"


def test_only_variable_outputs_are_exempt_from_nbval(notebook):
    """Exemptions are nbval's cell tags, never comments a reader sees; and only for outputs that depend on the machine."""
    path, nb = notebook
    for cell in nb.cells:
        assert "NBVAL" not in cell.source, f"{path.name}: use a cell tag (nbval-ignore-output), not a comment: {cell.source[:60]!r}"
        tags = cell.metadata.get("tags", [])
        assert not {"nbval-skip", "nbval-check-output"} & set(tags), f"{path.name}: nbval-skip/check-output is not used in this series"
        if "nbval-ignore-output" in tags:
            assert "hf_token()" in cell.source, f"{path.name}: only the Hub cell may ignore its output"


def test_numbers_in_prose_were_computed_by_the_notebook(notebook):
    """A number of four digits or more typed in the prose must appear in one of the notebook's outputs."""
    path, nb = notebook
    outputs = "".join(output_text(c) for c in nb.cells).replace(",", "")
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for number in BIG_NUMBER.findall(CITATION.sub("", cell.source)):
            assert number.replace(",", "") in outputs, f"{path.name}: {number} is typed in prose but no output computes it"


def test_token_never_reaches_an_output(tmp_path):
    """Run notebook 01 with a (fake) HF_TOKEN set and check no output contains it."""
    fake_token = "hf_" + "T0kenThatMustNeverBePrinted" * 2
    path = NOTEBOOK_DIR / "01_architecture.ipynb"
    nb = read(path)
    env = {**os.environ, "HF_TOKEN": fake_token, "HF_HUB_OFFLINE": "1"}
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    client.execute(env=env)
    hub_cell = next(c for c in nb.cells if "hf_token()" in c.source)
    assert "HF_TOKEN found" in output_text(hub_cell)
    for cell in nb.cells:
        assert fake_token not in output_text(cell)
        assert fake_token[:12] not in output_text(cell)


# "Hu et al., 2021", "Hu et al. (2021)", "(Dettmers, 2023)": a cited work, by its first author and year
CITED_WORK = re.compile(r"\b([A-ZÀ-Þ][a-zß-ÿ]+(?:-[A-Z][a-z]+)?)(?: et al\.)?,? \(?((?:19|20)\d{2})\b")
MONTHS = {"January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"}


def cited_works(text: str) -> set[tuple[str, str]]:
    return {(author, year) for author, year in CITED_WORK.findall(text) if author not in MONTHS}


def test_cited_work_pattern_finds_the_usual_forms():
    found = cited_works("as Hu et al., 2021 show; (Dettmers et al. (2023)); Kaplan et al. (2020) §2.1; in December 2023; "
                        "PEFT 0.21; OLoRA (Büyükakyüz 2024)")
    assert found == {("Hu", "2021"), ("Dettmers", "2023"), ("Kaplan", "2020"), ("Büyükakyüz", "2024")}


def test_every_work_a_notebook_cites_is_in_the_readme_credits():
    readme = (NOTEBOOK_DIR.parent / "README.md").read_text()
    credits = readme[readme.index("## Credits"):]
    credit_lines = credits.splitlines()
    missing = []
    for path in NOTEBOOKS:
        for cell in read(path).cells:
            for author, year in cited_works(cell.source):
                if not any(author in line and f"({year})" in line for line in credit_lines):
                    missing.append(f"{path.name}: {author} {year}")
    assert not missing, "cited in a notebook but not in the README's credits: " + ", ".join(sorted(set(missing)))


FONT_SIZE = re.compile(r'plt\.rcParams\["font\.size"\] = (\d+)')
MATPLOTLIB_DEFAULT_PT = 10
SLIDE_FIGURE_PX = 1280 - 2 * 48  # a figure spans the slide's content box (tools/slides.css: 48 px side padding)
DIAGRAM_SCRIPT = NOTEBOOK_DIR.parent / "tools" / "make_lora_diagram.py"
SMALLEST_SLIDE_TEXT_PX = 19  # tables and captions on a slide (tools/slides.css); prose is 24 px


def test_figure_text_on_a_slide_is_no_smaller_than_a_tables_text(notebook):
    """A figure drawn w inches wide at p points is shown 1184 px wide on a slide, so its text is
    p × 100/72 px (matplotlib's 100 dpi; retina doubles pixels, not CSS size) × 1184/(100·w)."""
    path, nb = notebook
    code = "".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    sizes = FONT_SIZE.findall(code)
    drawn_here = int(sizes[0]) if sizes else MATPLOTLIB_DEFAULT_PT
    small = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            width = output.get("metadata", {}).get("image/png", {}).get("width")
            if not width or "image/png" not in output.get("data", {}):
                continue
            points = drawn_here
            if "lora_diagram.png" in cell.source:  # drawn by its own script, each text with its own size
                points = min(map(int, re.findall(r"fontsize=(\d+)", DIAGRAM_SCRIPT.read_text())))
            text_px = points * 100 / 72 * SLIDE_FIGURE_PX / width
            if text_px < SMALLEST_SLIDE_TEXT_PX:
                small.append(f"cell {index}: {width / 100:.1f} in wide at {points} pt -> {text_px:.1f} px")
    assert not small, f"{path.name}: figure text smaller than {SMALLEST_SLIDE_TEXT_PX} px on a slide: {small}"
