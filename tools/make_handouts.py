"""Print the executed notebooks for a workshop: lecture handouts, exercise sheets, solutions.

Run: python tools/make_handouts.py [notebooks...] [--output-dir DIR]
     (default: every notebooks/[0-9][0-9]_*.ipynb, into build/handouts/)

For each notebook this writes, under build/handouts/:
  <stem>.html            the lecture handout: the notebook as one self-contained page (images
                         inside the file, no CDN needed), styled for A4. Each exercise stays
                         where it is, with its code skeleton; the worked solutions (the lines
                         marked `# solution`) and what the check cells printed ("✓ Correct: ...")
                         are in an appendix at the end, one entry per exercise;
  <stem>.pdf             that page printed to A4 by headless Chromium (Debian's package
                         `chromium`, which `make handouts` installs);
  <stem>.exercises.pdf   the exercise sheet (and its .html): each question, a "What you need"
                         box (the sections, variables and functions it refers to, with the
                         handout page that shows them), the code skeleton with a blank for the
                         answer, and a ruled space to write; no solution, no check;
and, for all the notebooks given:
  solutions.pdf          every exercise's question, worked solution and checked answer, per
                         notebook (and solutions.html).

Cell tags the handouts obey (JupyterLab: right sidebar, "Cell Tags"):
  colab-setup    the cell is left out;
  plumbing       the cell's code is not printed, its output is;
  exercise-data  the cell (its output, or its markdown) is reprinted on the exercise sheet (first; after the exercises where that leaves no hole).

Page layout, for every PDF: figures and tables are never split; headings, and lead-in lines (a
paragraph ending with ":"), stay on the page of what follows them; long code and long printouts
may break between lines (never leaving fewer than three lines on a page), so that no page but the
last is a quarter blank (tools/page_space.py measures it). Figures print at the size they were
drawn (the PNG's own dpi), never wider than the page: a figure rendered at 200 dpi prints at 200 dpi
or more. The exercise sheet is printed twice: the second time, each page's blank bottom is shared
out as more ruled lines to the writing spaces on that page.

The notebooks are rendered as they were committed, outputs included: nothing is executed here.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

import nbformat
import pypdf
from nbconvert import HTMLExporter
from nbconvert.preprocessors import Preprocessor, TagRemovePreprocessor
from PIL import Image

import page_space  # sibling modules (Python puts a script's folder on sys.path)
from handout_exercises import (
    COLAB_TAG,
    OUTPUT_ONLY_TAG,
    PLUMBING_TAG,
    find_exercises,
    lecture_notebook,
    notebook_title,
    sheet_notebook,
    solutions_notebook,
    tagged,
    working_label,
)
from stamp_course import series_notebooks

REPO = Path(__file__).resolve().parent.parent
OUTPUT_DIR = REPO / "build" / "handouts"
CHROMIUM_TIMEOUT_SECONDS = 180
SOLUTIONS_STEM = "solutions"
SOLUTIONS_TITLE = "LoRA by the Numbers · worked solutions"

# The writing space under each question of an exercise sheet: ruled lines RULE_MM apart.
RULE_MM = 8.0
RULE_PITCH_MM = RULE_MM + 0.3  # with the line's own width
EXERCISE_GAP_MM = 6.0  # below each exercise
SAFETY_MM = 2.0
SHEET_LINES = 4  # the first printing; the second adds lines where a page has room
MIN_SHEET_LINES = 2  # an exercise that would fill a hole above it is tried with this many first
MAX_SHEET_LINES = 18

LOOSE_TAG = "handout-loose"  # put on the cells after a hole (see make_handout)
LOOSENING_ROUNDS = 2
SHORT_CODE_LINES = 5  # with 3 lines at least on either side of a break, a shorter cell could only break badly
SHORT_CODE_TAG = "handout-short-code"

WIDGET_MIME_TYPE = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = (
    '<p class="widget-note">[Interactive calculator: open the notebook in '
    "JupyterLab to use it. The line above is its answer for the starting values.]</p>"
)

# Added after nbconvert's own styles, so these rules win where both apply.
# __FOOTER__ is replaced by the document's title (printed at the foot of every page).
PRINT_CSS = """
@page {
  size: A4;
  margin: 16mm 14mm 16mm 14mm;
  @bottom-left {
    content: "__FOOTER__";
    font: 7.5pt sans-serif;
    color: #555;
  }
  @bottom-right {
    content: "page " counter(page) " of " counter(pages);
    font: 7.5pt sans-serif;
    color: #555;
  }
}

/* Long code lines and outputs wrap, between words, instead of running off the page. */
.jp-InputArea-editor pre,
.jp-OutputArea-output pre {
  white-space: pre-wrap;
  word-break: normal;
  overflow-wrap: break-word;
}
.jp-InputArea,
.jp-InputArea-editor,
.jp-OutputArea-output {
  overflow: visible;
}

/* Remote images cannot load offline or on paper; the "Open in Colab" badge is no use on paper. */
img[src^="http://"],
img[src^="https://"],
a[href^="https://colab.research.google.com/"] img {
  display: none;
}

/* The placeholder shown instead of an interactive widget. */
.widget-note {
  color: #555;
  font-style: italic;
}

/* Cells whose code is not printed (tag `plumbing`, and the appendix's check outputs). */
.jp-mod-noInput .jp-Cell-inputWrapper {
  display: none;
}

/* The appendix: each worked solution under its exercise's heading; the checked answer in bold. */
.celltag_handout-check-output .jp-OutputArea-output pre {
  font-weight: bold;
}
.celltag_handout-solution-question {
  font-size: 95%;
  break-after: avoid;
}
.celltag_handout-check-output {
  break-before: avoid;
}

/* Lecture handout: the pointer to an exercise's worked solution, and the question kept with its skeleton. */
.solution-pointer {
  font-size: 85%;
  font-style: italic;
  color: #444;
  break-before: avoid;
}
.celltag_handout-question {
  break-after: avoid;
}

/* Exercise sheet: one block per exercise, never split; its code skeleton; a boxed, ruled space to write. */
.celltag_handout-exercise {
  break-inside: avoid;
  margin: 0 0 __GAP_MM__mm 0;
}
.celltag_handout-exercise .highlight pre {
  background: var(--jp-cell-editor-background);
  border: 1px solid var(--jp-cell-editor-border-color);
  padding: 1.5mm 2mm;
  font-size: 8.5pt;
}
.needs {
  border: 1px solid #777;
  border-left-width: 3px;
  padding: 1.5mm 3mm;
  margin: 2mm 0;
  font-size: 9pt;
}
.needs-title {
  font-weight: bold;
}
.needs ul {
  margin: 0.5mm 0 0 0;
  padding-left: 5mm;
}
.answer-space {
  border: 1px solid #444;
  padding: 0 3mm 2mm 3mm;
  margin-top: 2mm;
}
.working-label {
  font-size: 7.5pt;
  color: #555;
  padding-top: 1mm;
}
.rule {
  height: __RULE_MM__mm;
  border-bottom: 1px solid #aaa;
}

@media print {
  body {
    margin: 0;
    padding: 0;
  }
  .jp-Notebook {
    padding: 0;
  }

  /* Execution counts ("In [3]:") mean nothing on paper; give their width to the code. */
  :root {
    --jp-cell-prompt-width: 0px;
  }
  .jp-InputPrompt,
  .jp-OutputPrompt {
    display: none;
  }
  /* Plain blocks, not flex rows, table cells or scroll boxes (the prompts are gone): a browser
     never breaks a scroll box across pages, so nbconvert's markdown and output areas
     and printouts (overflow: auto) would move whole to the next page, leaving a hole; nor is a
     scroll bar any use on paper. */
  .jp-InputArea,
  .jp-InputArea-editor,
  .jp-OutputArea-child,
  .jp-OutputArea-output,
  .jp-MarkdownOutput,
  .jp-MarkdownOutput.jp-RenderedHTMLCommon {
    display: block;
    width: auto;
  }
  .jp-Notebook,
  .jp-Notebook * {
    overflow: visible !important;
  }

  /* Smaller text, so a printed page holds a useful amount. */
  :root {
    --jp-content-font-size1: 10.5pt;
    --jp-code-font-size: 8.5pt;
    --jp-ui-font-size1: 10pt;
  }

  /* Keep figures and tables whole, and headings and lead-in lines with what follows them.
     Code and printouts may break across pages (nbconvert keeps each output whole, which leaves
     half-empty pages before a long printout), but never leaving one or two lines alone at a
     page's top or bottom. */
  .jp-OutputArea-child {
    break-inside: auto;
  }
  .jp-RenderedImage,
  .jp-OutputArea-output img,
  .jp-RenderedHTMLCommon table {
    break-inside: avoid;
  }
  h1, h2, h3, h4,
  p.lead-in {
    break-after: avoid;
  }
  h1, h2, h3, h4 {
    break-inside: avoid;
  }
  pre, p, li {
    orphans: 3;
    widows: 3;
  }
  .celltag_handout-short-code .jp-Cell-inputWrapper {
    break-inside: avoid;
  }
  /* A code cell's output starts on the page where its code ends... */
  .jp-Cell-outputWrapper {
    break-before: avoid;
  }
  /* ...except a table or figure under long code: it may start the next page, like a figure in a
     book. Otherwise the code would break before its last lines to go with it, and a browser
     stretches the grey box of code broken across pages to the foot of the page: an empty box. */
  .jp-CodeCell:not(.celltag_handout-short-code) > .jp-Cell-outputWrapper:has(table, img) {
    break-before: auto;
  }
  /* Cells after a hole (make_handout loosens them): their code may break, their output start a page. */
  .jp-CodeCell.celltag_handout-loose > .jp-Cell-outputWrapper {
    break-before: auto;
  }
  .jp-CodeCell.celltag_handout-loose.celltag_handout-short-code .jp-Cell-inputWrapper {
    break-inside: auto;
  }
  /* In the appendix, a loosened worked solution may leave its question at the foot of a page. */
  .celltag_handout-loose.celltag_handout-solution-question {
    break-after: auto;
  }
  .celltag_handout-loose.celltag_handout-check-output {
    break-before: auto;
  }
  /* ...a table or figure stays with what the same cell printed just before it (its title, say)... */
  .jp-OutputArea-child + .jp-OutputArea-child:has(table),
  .jp-OutputArea-child + .jp-OutputArea-child:has(img) {
    break-before: avoid;
  }
  /* ...and the widget's placeholder stays with the answer printed above it. */
  .jp-OutputArea-child:has(.widget-note) {
    break-before: avoid;
  }
  /* Figures at their own size (set from the PNG's dpi), never wider than the page. */
  .jp-OutputArea-output img,
  .jp-RenderedMarkdown img {
    max-width: 100%;
    height: auto;
  }

  /* Wide pandas tables: smaller type, and let cells wrap instead of overflowing. */
  .jp-RenderedHTMLCommon table {
    font-size: 8pt;
    table-layout: auto;
    max-width: 100%;
  }
  .jp-RenderedHTMLCommon td,
  .jp-RenderedHTMLCommon th {
    padding: 2px 5px;
  }
}
"""

# A handout whose last page holds less than LAST_PAGE_MIN_USE of a page is printed again with
# this spacing (prose lines 1.45 apart instead of 1.6, less space around cells), once; the
# tighter print is kept if it saves that page.
LAST_PAGE_MIN_USE = 0.25
TIGHT_CSS = """
@media print {
  :root {
    --jp-content-line-height: 1.45;
    --jp-code-line-height: 1.25;
    --jp-cell-padding: 3px;
  }
  .jp-RenderedHTMLCommon p,
  .jp-RenderedHTMLCommon ul {
    margin-bottom: 0.6em;
  }
}
"""


class WidgetPlaceholderPreprocessor(Preprocessor):
    """Replace interactive widget outputs by a short note.

    A widget needs a running kernel and JavaScript from a CDN; on paper, or in a
    page opened offline, it would show nothing or "Loading widget...". The text a
    cell printed next to its widget is kept. The notebook's saved widget state is
    dropped too, so the page does not try to fetch the widget renderer.
    """

    def preprocess(self, nb: nbformat.NotebookNode, resources: dict) -> tuple[nbformat.NotebookNode, dict]:
        """Drop the saved widget state, then treat each cell."""
        nb.metadata.pop("widgets", None)
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell: nbformat.NotebookNode, resources: dict, index: int) -> tuple[nbformat.NotebookNode, dict]:
        """Swap each widget output of a code cell for the placeholder note."""
        if cell.cell_type != "code":
            return cell, resources
        cell.outputs = [self.without_widget(output) for output in cell.outputs]
        return cell, resources

    @staticmethod
    def without_widget(output: nbformat.NotebookNode) -> nbformat.NotebookNode:
        """The output itself, or the placeholder note if it shows a widget."""
        if WIDGET_MIME_TYPE not in output.get("data", {}):
            return output
        return nbformat.v4.new_output("display_data", data={"text/html": WIDGET_NOTE})


class ShortCodePreprocessor(Preprocessor):
    """Tag each short code cell (SHORT_CODE_LINES lines or fewer) so that the style sheet keeps its code whole.

    A two-line cell split across two pages is hard to read; a long one may break (between lines,
    never leaving fewer than three on a page), or the page before it would be left half empty.
    """

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and 0 < len(cell.source.strip().split("\n")) <= SHORT_CODE_LINES:
            cell.metadata["tags"] = [*cell.metadata.get("tags", []), SHORT_CODE_TAG]
        return cell, resources


def make_html_exporter() -> HTMLExporter:
    """nbconvert's JupyterLab-style HTML exporter, set up for a page that stands alone offline."""
    exporter = HTMLExporter(template_name="lab")
    exporter.embed_images = True  # images referenced from markdown go into the file too
    exporter.mathjax_url = ""  # the notebooks have no LaTeX: load no MathJax from a CDN
    exporter.require_js_url = ""  # no widget or JavaScript output needs require.js
    exporter.register_preprocessor(WidgetPlaceholderPreprocessor(), enabled=True)
    exporter.register_preprocessor(ShortCodePreprocessor(), enabled=True)
    # The Colab setup cell does nothing outside Colab: no place on paper. Plumbing prints its output only.
    exporter.register_preprocessor(
        TagRemovePreprocessor(remove_cell_tags={COLAB_TAG}, remove_input_tags={PLUMBING_TAG, OUTPUT_ONLY_TAG}),
        enabled=True,
    )
    return exporter


# ---------------------------------------------------------------------------
# HTML: the page, and what the style sheet cannot do by itself
# ---------------------------------------------------------------------------

LEAD_IN = re.compile(r"<p>((?:(?!</?p[ >]).)*?:)\s*</p>", re.DOTALL)
EMBEDDED_PNG = re.compile(r'<img\b([^>]*?)\bsrc="data:image/png;base64,([^"]+)"([^>]*)>')
SIZE_ATTRIBUTE = re.compile(r'\s(?:width|height)="[^"]*"')
CSS_PIXELS_PER_INCH = 96


def mark_lead_ins(html: str) -> str:
    """Give class "lead-in" to each paragraph that ends with ":": the style sheet keeps it with what follows."""
    return LEAD_IN.sub(r'<p class="lead-in">\1</p>', html)


def png_size_inches(data: bytes) -> float | None:
    """The width a PNG was drawn at, in inches: its pixels ÷ the dpi it records (matplotlib writes it)."""
    try:
        image = Image.open(io.BytesIO(data))
    except OSError:
        return None
    dpi = image.info.get("dpi", (CSS_PIXELS_PER_INCH,))[0] or CSS_PIXELS_PER_INCH
    return image.width / float(dpi)


def size_figures(html: str) -> str:
    """Each embedded PNG sized to the width it was drawn at (the style sheet caps it at the page's width).

    A browser lays an image out at 96 pixels to the inch unless told otherwise, so its printed size
    would follow its pixel count (or the width nbconvert copies from a retina figure's metadata),
    not the size it was drawn at. At its own size, pixels ÷ its recorded dpi, a figure prints at
    its own dpi, or more where the page's width shrinks it.
    """

    def resize(match: re.Match) -> str:
        before, data, after = match.groups()
        inches = png_size_inches(base64.b64decode(data))
        if inches is None:
            return match.group(0)
        before, after = SIZE_ATTRIBUTE.sub("", before), SIZE_ATTRIBUTE.sub("", after)
        return f'<img{before}src="data:image/png;base64,{data}" style="width: {inches:.3f}in"{after}>'

    return EMBEDDED_PNG.sub(resize, html)


def css_string(text: str) -> str:
    """text inside a CSS string literal."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def add_print_css(html: str, footer: str = "", tight: bool = False) -> str:
    """The page with PRINT_CSS (and TIGHT_CSS, if tight) added at the end of its <head>.

    footer: printed at the foot of every page.
    """
    css = (
        PRINT_CSS.replace("__FOOTER__", css_string(footer))
        .replace("__RULE_MM__", f"{RULE_MM:g}")
        .replace("__GAP_MM__", f"{EXERCISE_GAP_MM:g}")
    )
    style = f'<style type="text/css">{css}{TIGHT_CSS if tight else ""}</style>\n'
    return html.replace("</head>", style + "</head>", 1)


def render_html(nb: nbformat.NotebookNode, source: Path, html_path: Path, footer: str, tight: bool = False) -> Path:
    """nb (made from the notebook at source, whose folder resolves its images) as a print-ready page."""
    resources = {"metadata": {"name": html_path.stem, "path": str(source.parent)}}
    body, _resources = make_html_exporter().from_notebook_node(nb, resources=resources)
    html_path.write_text(add_print_css(size_figures(mark_lead_ins(body)), footer, tight), encoding="utf-8")
    return html_path


def notebook_to_html(notebook: Path, output_dir: Path, tight: bool = False) -> Path:
    """The lecture handout of one executed notebook, as <output_dir>/<stem>.html; returns its path."""
    nb = nbformat.read(notebook, as_version=4)
    title = notebook_title(nb) or notebook.stem
    return render_html(lecture_notebook(nb), notebook, output_dir / f"{notebook.stem}.html", title, tight)


def print_without_a_lonely_last_page(render, pdf_path: Path) -> Path:
    """Print the page that render(tight) writes; if its last page is nearly empty, try tighter spacing once.

    render(tight: bool) writes the HTML and returns its path. The tighter print is kept only if
    it saves a page and leaves no page but the last a quarter blank; otherwise the first is.
    """
    html_path = render(False)
    html_to_pdf(html_path, pdf_path)
    loose = page_space.blank_fractions(pdf_path)
    if len(loose) < 2 or loose[-1] <= 1 - LAST_PAGE_MIN_USE:
        return pdf_path
    with tempfile.TemporaryDirectory(prefix="handout-") as folder:
        kept_pdf, kept_html = Path(folder) / "loose.pdf", Path(folder) / "loose.html"
        shutil.copy(pdf_path, kept_pdf)
        shutil.copy(html_path, kept_html)
        render(True)
        html_to_pdf(html_path, pdf_path)
        tight = page_space.blank_fractions(pdf_path)
        if len(tight) >= len(loose) or any(fraction >= page_space.MAX_BLANK for fraction in tight[:-1]):
            shutil.copy(kept_pdf, pdf_path)
            shutil.copy(kept_html, html_path)
    return pdf_path


def find_chromium() -> str:
    """The path of Debian's Chromium, or a RuntimeError that says how to get it."""
    chromium = shutil.which("chromium")
    if chromium is None:
        raise RuntimeError(
            "Chromium was not found (no `chromium` on PATH). It prints the handouts to PDF. "
            "`make handouts` and `make test` install it: the Debian package `chromium` "
            "(sudo apt-get install chromium)."
        )
    return chromium


# Also used by tests/test_jupyterlab.py and tests/test_slides.py. No sandbox (we may run as root, in a container),
# and none of Chromium's own traffic (updates, sync, field trials) on a network that may be closed.
CHROMIUM_QUIET_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_print_command(chromium: str, html_path: Path, pdf_path: Path, profile_dir: Path) -> list[str]:
    """The command line that prints one page to PDF, quietly and without network chatter."""
    return [
        chromium,
        "--headless",
        *CHROMIUM_QUIET_FLAGS,
        f"--user-data-dir={profile_dir}",  # a fresh profile: no state shared between runs
        "--no-pdf-header-footer",  # no date, file path or page numbers printed by Chromium
        f"--print-to-pdf={pdf_path}",
        html_path.resolve().as_uri(),
    ]


def html_to_pdf(html_path: Path, pdf_path: Path) -> Path:
    """Print html_path to pdf_path with headless Chromium; fail loudly if no PDF came out."""
    chromium = find_chromium()
    pdf_path.unlink(missing_ok=True)  # so an old PDF cannot pass for a new one
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile_dir:
        command = chromium_print_command(chromium, html_path, pdf_path, Path(profile_dir))
        try:
            finished = subprocess.run(command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"Chromium took more than {CHROMIUM_TIMEOUT_SECONDS} s to print {html_path}.") from None
    if not pdf_path.exists() or pdf_path.stat().st_size == 0:
        raise RuntimeError(
            f"Chromium wrote no PDF for {html_path} (exit code {finished.returncode}).\n"
            f"Its messages:\n{finished.stderr[-3000:]}"
        )
    return pdf_path


# ---------------------------------------------------------------------------
# Finding things in a printed PDF
# ---------------------------------------------------------------------------


def squeezed(text: str) -> str:
    """text without any whitespace, in Unicode's compatibility form: how it is searched in a PDF's text.

    Text extraction breaks lines where the page wrapped them and may split or join words;
    without whitespace, a line of code is found wherever it was printed.
    """
    return "".join(unicodedata.normalize("NFKC", text).split())


A4_POINTS = (595, 842)
FOOTER_POINTS = 46  # the bottom margin (16 mm), where the footer is printed


def page_texts(pdf_path: Path) -> list[str]:
    """The squeezed text of every page above its footer, in printing order.

    Read by poppler's pdftotext (pypdf is 30 times slower); -raw keeps the order in which the
    page was printed, which is the page's order, a table row by row.
    """
    width, height = A4_POINTS
    crop = ["-r", "72", "-x", "0", "-y", "0", "-W", str(width), "-H", str(height - FOOTER_POINTS)]
    command = [page_space.find_poppler("pdftotext"), "-raw", *crop, "-enc", "UTF-8", str(pdf_path), "-"]
    text = subprocess.run(command, check=True, capture_output=True, text=True, encoding="utf-8").stdout
    return [squeezed(page) for page in text.split("\f")[: len(pypdf.PdfReader(pdf_path).pages)]]


def plain_markdown(text: str) -> str:
    """Markdown as printed: no backticks, bold or italic stars, HTML tags or link targets
    (underscores stay: they are in the code names far more often than they mark emphasis)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    return html.unescape(re.sub(r"[`*]", "", text))


class PageFinder:
    """Which page of a printed lecture handout shows a given cell of its notebook."""

    def __init__(self, nb: nbformat.NotebookNode, pdf_path: Path):
        self.nb = nb
        self.pages = page_texts(pdf_path)

    def page_of_text(self, text: str, first_page: int = 0) -> int | None:
        """The first page, from first_page on, whose text holds text (squeezed); 0-based."""
        needle = squeezed(text)
        if len(needle) < 6:
            return None
        for number in range(first_page, len(self.pages)):
            if needle in self.pages[number]:
                return number
        return None

    def heading_page(self, cell_index: int) -> int | None:
        """The page of the last heading at or before the cell."""
        for index in range(cell_index, -1, -1):
            cell = self.nb.cells[index]
            if cell.cell_type == "markdown":
                headings = [line.lstrip("#").strip() for line in cell.source.splitlines() if line.startswith("#")]
                if headings:
                    return self.page_of_text(plain_markdown(headings[-1]))
        return None

    def page_of_cell(self, cell_index: int) -> int | None:
        """The page where the cell is printed: its first long line of code (or heading), searched from its section's page."""
        cell = self.nb.cells[cell_index]
        section_page = self.heading_page(cell_index)
        if cell.cell_type == "code" and PLUMBING_TAG not in cell.metadata.get("tags", []):
            lines = [line for line in cell.source.split("\n") if len(squeezed(line)) >= 12 and not line.lstrip().startswith("#")]
            if lines:
                found = self.page_of_text(lines[0], section_page or 0)
                if found is not None:
                    return found
        return section_page

    def locate(self, cell_index: int) -> str:
        """ "p. 4", or "" if the cell was not found."""
        page = self.page_of_cell(cell_index)
        return "" if page is None else f"p. {page + 1}"


def working_pages(pdf_path: Path) -> dict[int, int]:
    """{exercise number: 0-based page} of each writing space on a printed exercise sheet."""
    label = re.compile(re.escape(squeezed(working_label(0))).replace("0", r"(\d+)"))
    found = {}
    for page, text in enumerate(page_texts(pdf_path)):
        for number in label.findall(text):
            found.setdefault(int(number), page)
    return found


# ---------------------------------------------------------------------------
# The three kinds of document
# ---------------------------------------------------------------------------


def printed_text(cell: nbformat.NotebookNode) -> str:
    """What a cell prints, squeezed: its markdown as text, or its code and its text outputs."""
    if cell.cell_type == "markdown":
        return squeezed(plain_markdown(cell.source))
    parts = [cell.source]
    for output in cell.get("outputs", []):
        data = output.get("data", {})
        if "text/html" in data:  # a table: its cells' text
            parts.append(html.unescape(re.sub(r"<[^>]+>", " ", data["text/html"])))
        else:
            parts.append(output.get("text", "") or data.get("text/plain", ""))
    return squeezed("".join(parts))


def cell_at_top(nb: nbformat.NotebookNode, page_text: str) -> int | None:
    """The index of the cell of nb whose print starts the page (its first words found in it), or None."""
    needle = page_text[:30]
    if len(needle) < 10:
        return None
    for index, cell in enumerate(nb.cells):
        text = printed_text(cell)
        if needle in text or (len(text) >= 10 and page_text.startswith(text)):  # a short cell (a heading) opens the page
            return index
    return None


def cells_after_holes(nb: nbformat.NotebookNode, pdf_path: Path) -> set[int]:
    """The cells that open a page after a page at least a quarter blank (but the last): with the
    next two, the chain of blocks kept together that did not fit there."""
    fractions = page_space.blank_fractions(pdf_path)
    texts = page_texts(pdf_path)
    found: set[int] = set()
    for page, fraction in enumerate(fractions[:-1]):
        if fraction >= page_space.MAX_BLANK:
            index = cell_at_top(nb, texts[page + 1])
            if index is not None:
                found |= {index, index + 1, index + 2}
    return found


def loosened(nb: nbformat.NotebookNode, cells: set[int]) -> nbformat.NotebookNode:
    """A copy of nb whose given cells are tagged LOOSE_TAG: their short code may break, and their
    output start the next page (the style sheet's rules for holes)."""
    copy = nbformat.from_dict(nb)
    for index in cells:
        if index < len(copy.cells):
            tagged(copy.cells[index], LOOSE_TAG)
    return copy


def worst_hole(pdf_path: Path) -> float:
    """The blank fraction of the blankest page but the last."""
    return max(page_space.blank_fractions(pdf_path)[:-1], default=0.0)


def make_handout(notebook: Path, output_dir: Path = OUTPUT_DIR) -> Path:
    """The lecture handout of one notebook, HTML and PDF, in output_dir; returns the PDF's path.

    If a page but the last is left a quarter blank (a chain of blocks kept together did not fit
    at its foot), the cells opening the next page are loosened and the handout printed again,
    up to LOOSENING_ROUNDS times, keeping the print whose worst page is least blank.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(notebook, as_version=4)
    lecture = lecture_notebook(nb)
    title = notebook_title(nb) or notebook.stem
    html_path, pdf_path = output_dir / f"{notebook.stem}.html", output_dir / f"{notebook.stem}.pdf"
    loose: set[int] = set()

    def render(tight: bool) -> Path:
        return render_html(loosened(lecture, loose), notebook, html_path, title, tight)

    print_without_a_lonely_last_page(render, pdf_path)
    for _round in range(LOOSENING_ROUNDS):
        worst = worst_hole(pdf_path)
        more = cells_after_holes(lecture, pdf_path) - loose if worst >= page_space.MAX_BLANK else set()
        if not more:
            break
        with tempfile.TemporaryDirectory(prefix="handout-") as folder:
            kept = [shutil.copy(path, Path(folder) / path.name) for path in (html_path, pdf_path)]
            loose |= more
            print_without_a_lonely_last_page(render, pdf_path)
            if worst_hole(pdf_path) >= worst:  # no better: keep the print before
                for copy, path in zip(kept, (html_path, pdf_path)):
                    shutil.copy(copy, path)
                break
    return pdf_path


def sheet_path(notebook: Path, output_dir: Path) -> Path:
    return output_dir / f"{notebook.stem}.exercises.pdf"


def extra_lines(spaces: dict[int, int], pdf_path: Path, lines: dict[int, int]) -> dict[int, int]:
    """More ruled lines for the writing spaces of each page, filling the blank at its foot.

    spaces: {exercise number: page} of the printed sheet. The gap below an exercise and a
    little more are kept free, so that no exercise is pushed to the next page.
    """
    images = page_space.render_pages(pdf_path)
    grown = dict(lines)
    for page, image in enumerate(images):
        on_page = sorted(number for number, found in spaces.items() if found == page)
        if not on_page:
            continue
        free_mm = page_space.bottom_blank_mm(image) - EXERCISE_GAP_MM - SAFETY_MM
        spare = max(0, int(free_mm // RULE_PITCH_MM))
        for position, number in enumerate(on_page):
            share = spare // len(on_page) + (1 if position < spare % len(on_page) else 0)
            grown[number] = min(MAX_SHEET_LINES, lines[number] + share)
    return grown


def fewer_lines_after_holes(spaces: dict[int, int], pdf_path: Path, lines: dict[int, int]) -> dict[int, int]:
    """The exercise opening a page after a page at least a quarter blank, with MIN_SHEET_LINES:
    it may then fit in the hole (extra_lines gives the lines back where there is room)."""
    fewer = dict(lines)
    for page, fraction in enumerate(page_space.blank_fractions(pdf_path)[:-1]):
        opening = sorted(number for number, found in spaces.items() if found == page + 1)
        if fraction >= page_space.MAX_BLANK and opening:
            fewer[opening[0]] = MIN_SHEET_LINES
    return fewer


def make_exercise_sheet(notebook: Path, output_dir: Path = OUTPUT_DIR, lecture_pdf: Path | None = None) -> Path | None:
    """The exercise sheet of one notebook, HTML and PDF; returns the PDF's path (None: no exercises).

    lecture_pdf, the notebook's printed handout, gives the page numbers in the "What you need" boxes.
    """
    nb = nbformat.read(notebook, as_version=4)
    exercises = find_exercises(nb)
    if not exercises:
        return None
    output_dir.mkdir(parents=True, exist_ok=True)
    if lecture_pdf is None or not lecture_pdf.exists():
        lecture_pdf = make_handout(notebook, output_dir)
    finder = PageFinder(lecture_notebook(nb), lecture_pdf)
    # The lecture notebook has lost the check cells: locate a cell of nb by its position there.
    positions = lecture_positions(nb)

    def locate(cell_index: int) -> str:
        position = positions.get(cell_index)
        return "" if position is None else finder.locate(position)

    title = notebook_title(nb) or notebook.stem
    html_path = output_dir / f"{notebook.stem}.exercises.html"
    pdf_path = sheet_path(notebook, output_dir)
    lines = {exercise.number: SHEET_LINES for exercise in exercises}

    data_at_end = False

    def print_sheet(lines: dict[int, int]) -> int:
        sheet = sheet_notebook(nb, locate, lines, SHEET_LINES, data_at_end)
        render_html(sheet, notebook, html_path, footer=f"{title} · exercises")
        html_to_pdf(html_path, pdf_path)
        return len(pypdf.PdfReader(pdf_path).pages)

    def print_and_fill(lines: dict[int, int]) -> dict[int, int]:
        """Print with these lines, then with more where a page has room; the lines printed last."""
        pages = print_sheet(lines)
        spaces = working_pages(pdf_path)
        grown = extra_lines(spaces, pdf_path, lines)
        if grown == lines:
            return lines
        if print_sheet(grown) != pages or working_pages(pdf_path) != spaces:
            print_sheet(lines)  # an exercise moved to another page after all: keep the first layout
            return lines
        return grown

    filled = print_and_fill(lines)
    worst = worst_hole(pdf_path)
    if worst >= page_space.MAX_BLANK:
        # An exercise that opens a page after a hole may fit there with fewer lines to begin with.
        shrunk = fewer_lines_after_holes(working_pages(pdf_path), pdf_path, lines)
        if shrunk != lines:
            print_and_fill(shrunk)
            if worst_hole(pdf_path) < worst:
                return pdf_path
        # Still a hole: the data after the exercises, if that is better (else the first layout).
        data_at_end = True
        print_and_fill(lines)
        if worst_hole(pdf_path) >= worst:
            data_at_end = False
            print_sheet(filled)
    return pdf_path


def lecture_positions(nb: nbformat.NotebookNode) -> dict[int, int]:
    """{index of a cell in nb: its index in lecture_notebook(nb)}, for the cells the lecture keeps in place."""
    lecture = lecture_notebook(nb)
    kept = [cell.get("id") for cell in lecture.cells]
    positions = {}
    for index, cell in enumerate(nb.cells):
        if cell.get("id") in kept:
            positions[index] = kept.index(cell.get("id"))
    return positions


def make_solutions(notebooks: list[Path], output_dir: Path = OUTPUT_DIR) -> Path:
    """One PDF (and HTML) of every exercise's worked solution and checked answer, for all the notebooks."""
    output_dir.mkdir(parents=True, exist_ok=True)
    nbs = [nbformat.read(notebook, as_version=4) for notebook in notebooks]
    solutions = solutions_notebook(nbs, SOLUTIONS_TITLE)
    html_path = output_dir / f"{SOLUTIONS_STEM}.html"

    def render(tight: bool) -> Path:
        return render_html(solutions, notebooks[0], html_path, SOLUTIONS_TITLE, tight)

    return print_without_a_lonely_last_page(render, output_dir / f"{SOLUTIONS_STEM}.pdf")


def make_handouts(notebook: Path, output_dir: Path = OUTPUT_DIR) -> Path:
    """The lecture handout and the exercise sheet of one notebook; returns the handout's PDF (and prints the sheet's)."""
    lecture_pdf = make_handout(notebook, output_dir)
    sheet_pdf = make_exercise_sheet(notebook, output_dir, lecture_pdf)
    if sheet_pdf is not None:
        print(sheet_pdf)
    return lecture_pdf


def build_each(description: str, build_one, argv: list[str] | None = None, after_all=None) -> None:
    """Command line shared with make_slides.py: build_one(notebook, output_dir) for each notebook given, or all.

    after_all(notebooks, output_dir), if given, runs once at the end (output_dir None: the default).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to render (default: all numbered ones)")
    parser.add_argument("--output-dir", type=Path, default=None, help="where to write (default: under build/)")
    args = parser.parse_args(argv)

    notebooks = args.notebooks or series_notebooks()
    for notebook in notebooks:
        started = time.perf_counter()
        written = build_one(notebook) if args.output_dir is None else build_one(notebook, args.output_dir)
        print(f"{written}  ({time.perf_counter() - started:.1f} s)")
    if after_all is not None:
        started = time.perf_counter()
        written = after_all(notebooks, args.output_dir)
        print(f"{written}  ({time.perf_counter() - started:.1f} s)")


def main(argv: list[str] | None = None) -> None:
    """Command line: the handouts and exercise sheets of the given notebooks (or all), and their solutions."""
    build_each(
        "Print executed notebooks as A4 lecture handouts and exercise sheets (HTML and PDF), and their solutions.",
        make_handouts,
        argv,
        after_all=lambda notebooks, output_dir: make_solutions(notebooks, output_dir or OUTPUT_DIR),
    )


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as error:
        sys.exit(f"make_handouts: {error}")
