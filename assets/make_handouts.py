"""Print the executed notebooks as A4 workshop handouts: HTML first, then PDF.

Run: python assets/make_handouts.py [notebooks...]
     (default: every notebooks/[0-9][0-9]_*.ipynb)

For each notebook this writes, under build/handouts/:
  <stem>.html  the notebook as one self-contained page (images inside the file,
               no CDN needed), styled for print: long lines wrap, figures and
               tables stay whole where they fit on a page;
  <stem>.pdf   that page printed to A4 by headless Chromium (Debian's package
               `chromium`, which `make handouts` installs).

The notebooks are rendered as they were committed, outputs included: nothing is
executed here.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter
from nbconvert.preprocessors import Preprocessor, TagRemovePreprocessor

from stamp_course import series_notebooks  # a sibling script (Python puts a script's folder on sys.path)

REPO = Path(__file__).resolve().parent.parent
OUTPUT_DIR = REPO / "build" / "handouts"
CHROMIUM_TIMEOUT_SECONDS = 180

WIDGET_MIME_TYPE = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = (
    '<p class="widget-note">[Interactive calculator: open the notebook in '
    "JupyterLab to use it. The line above is its answer for the starting values.]</p>"
)

# Added after nbconvert's own styles, so these rules win where both apply.
PRINT_CSS = """
@page {
  size: A4;
  margin: 16mm 14mm 16mm 14mm;
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

/* Remote images (the "Open in Colab" badge) cannot load offline or on paper. */
img[src^="http://"],
img[src^="https://"] {
  display: none;
}

/* The placeholder shown instead of an interactive widget. */
.widget-note {
  color: #555;
  font-style: italic;
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

  /* Smaller text, so a printed page holds a useful amount. */
  :root {
    --jp-content-font-size1: 10.5pt;
    --jp-code-font-size: 8.5pt;
    --jp-ui-font-size1: 10pt;
  }

  /* Keep figures and tables whole, and headings with what follows them.
     Code and text may break across pages (keeping them whole leaves half-empty
     pages), but not leaving one or two lines alone at a page's top or bottom. */
  .jp-RenderedImage,
  .jp-OutputArea-output img,
  .jp-RenderedHTMLCommon table {
    break-inside: avoid;
  }
  h1, h2, h3, h4 {
    break-after: avoid;
  }
  pre, p, li {
    orphans: 3;
    widows: 3;
  }
  /* A code cell's output starts on the page where its code ends... */
  .jp-Cell-outputWrapper {
    break-before: avoid;
  }
  /* ...and the widget's placeholder stays with the answer printed above it. */
  .jp-OutputArea-child:has(.widget-note) {
    break-before: avoid;
  }
  .jp-OutputArea-output img {
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


def make_html_exporter() -> HTMLExporter:
    """nbconvert's JupyterLab-style HTML exporter, set up for a page that stands alone offline."""
    exporter = HTMLExporter(template_name="lab")
    exporter.embed_images = True  # images referenced from markdown go into the file too
    exporter.mathjax_url = ""  # the notebooks have no LaTeX: load no MathJax from a CDN
    exporter.require_js_url = ""  # no widget or JavaScript output needs require.js
    exporter.register_preprocessor(WidgetPlaceholderPreprocessor(), enabled=True)
    # The Colab setup cell does nothing outside Colab: no place on paper.
    exporter.register_preprocessor(TagRemovePreprocessor(remove_cell_tags={"colab-setup"}), enabled=True)
    return exporter


def add_print_css(html: str) -> str:
    """The page with PRINT_CSS added at the end of its <head>."""
    style = f'<style type="text/css">{PRINT_CSS}</style>\n'
    return html.replace("</head>", style + "</head>", 1)


def notebook_to_html(notebook: Path, output_dir: Path) -> Path:
    """Render one executed notebook to <output_dir>/<stem>.html and return that path."""
    exporter = make_html_exporter()
    body, _resources = exporter.from_filename(str(notebook))
    html_path = output_dir / f"{notebook.stem}.html"
    html_path.write_text(add_print_css(body), encoding="utf-8")
    return html_path


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


# Also used by tests/test_jupyterlab.py. No sandbox (we may run as root, in a container),
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


def make_handout(notebook: Path, output_dir: Path = OUTPUT_DIR) -> Path:
    """Render one notebook to HTML and PDF in output_dir; return the PDF's path."""
    output_dir.mkdir(parents=True, exist_ok=True)
    html_path = notebook_to_html(notebook, output_dir)
    return html_to_pdf(html_path, output_dir / f"{notebook.stem}.pdf")


def build_each(description: str, build_one, argv: list[str] | None = None) -> None:
    """Command line shared with make_slides.py: build_one(notebook, output_dir) for each notebook given, or all."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to render (default: all numbered ones)")
    parser.add_argument("--output-dir", type=Path, default=None, help="where to write (default: under build/)")
    args = parser.parse_args(argv)

    notebooks = args.notebooks or series_notebooks()
    for notebook in notebooks:
        started = time.perf_counter()
        written = build_one(notebook) if args.output_dir is None else build_one(notebook, args.output_dir)
        print(f"{written}  ({time.perf_counter() - started:.1f} s)")


def main(argv: list[str] | None = None) -> None:
    """Command line: make the handouts of the given notebooks, or of all of them."""
    build_each("Render executed notebooks as printable A4 handouts (HTML and PDF).", make_handout, argv)


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as error:
        sys.exit(f"make_handouts: {error}")
