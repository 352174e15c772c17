"""Turn the executed notebooks into reveal.js slide decks that work offline.

Run: python assets/make_slides.py [notebooks...]
     (default: every notebooks/[0-9][0-9]_*.ipynb)

Writes build/slides/<stem>.slides.html. Open it straight from disk in a browser:
reveal.js, require.js and jQuery come from build/npm/node_modules/, which this
script fills with `npm install` the first time (pinned versions, below).

Which cell starts a slide is read from each cell's metadata.slideshow.slide_type
(JupyterLab: right sidebar, "Slide Type"):
  "slide"     a new slide (left/right arrows),
  "subslide"  a new slide below the current one (up/down arrows),
  "-"         continues the current slide,
  "skip"      left out (the Colab setup cell).
assets/stamp_course.py sets them in every notebook (`make course`).

Long text outputs are cut to their first lines, so that a slide fits the
projector; the full output is in the notebook and in the handout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
from nbconvert import SlidesExporter
from nbconvert.preprocessors import CoalesceStreamsPreprocessor, Preprocessor
from traitlets import Integer

# The sibling script in assets/ (Python puts a script's own folder on sys.path).
from make_handouts import WidgetPlaceholderPreprocessor, build_each

REPO = Path(__file__).resolve().parent.parent
OUTPUT_DIR = REPO / "build" / "slides"
NPM_PREFIX = REPO / "build" / "npm"
NODE_MODULES = NPM_PREFIX / "node_modules"

# nbconvert 7's reveal template is written for reveal.js 4 (it defaults to
# reveal.js 4.0.2 on a CDN and loads dist/reveal.js, dist/theme/<theme>.css and
# plugin/notes/notes.js). 4.6.1 is the last 4.x release, with the same layout.
# The template also needs require.js (to load reveal.js) and jQuery (for scrolling).
JS_LIBRARIES = {
    "reveal.js": "4.6.1",
    "requirejs": "2.3.8",
    "jquery": "3.7.1",
}

# Added after nbconvert's own styles.
SLIDES_CSS = """
/* Remote images (the "Open in Colab" badge) cannot load offline. */
img[src^="http://"],
img[src^="https://"] {
  display: none;
}
/* Long code lines wrap, between words, instead of disappearing past the slide's edge. */
.reveal pre,
.jp-InputArea-editor pre,
.jp-OutputArea-output pre {
  white-space: pre-wrap;
  word-break: normal;
  overflow-wrap: break-word;
}
/* The theme's titles are too big for the notebooks' long titles. */
.reveal h1 {
  font-size: 2em;
}
/* A slide taller than the screen scrolls, the first one shown included
   (the template's own reveal_scroll only acts after a slide change). */
.reveal .slides > section > section {
  max-height: 100%;
  overflow-y: auto;
}
.widget-note {
  color: #555;
  font-style: italic;
}
"""


class ShortenLongOutputsPreprocessor(Preprocessor):
    """Cut long text outputs to their first lines, so that they fit on a slide.

    A stream output (print) or a plain-text result longer than max_lines keeps
    its first keep_lines lines and a last line saying how many were left out.
    Figures, HTML tables and other rich outputs are left as they are.
    """

    max_lines = Integer(15, help="Outputs with more lines than this are shortened.").tag(config=True)
    keep_lines = Integer(12, help="How many lines a shortened output keeps.").tag(config=True)

    def preprocess_cell(self, cell: nbformat.NotebookNode, resources: dict, index: int) -> tuple[nbformat.NotebookNode, dict]:
        """Shorten every long text output of a code cell."""
        if cell.cell_type == "code":
            for output in cell.outputs:
                self.shorten_output(output)
        return cell, resources

    def shorten_output(self, output: nbformat.NotebookNode) -> None:
        """Shorten one output in place, if it is long text."""
        if output.output_type == "stream":
            output.text = self.shorten(output.text)
        elif shows_plain_text_only(output):
            output.data["text/plain"] = self.shorten(output.data["text/plain"])

    def shorten(self, text: str) -> str:
        """The text itself if short enough, else its first lines and a note."""
        lines = text.splitlines()
        if len(lines) <= self.max_lines:
            return text
        left_out = len(lines) - self.keep_lines
        kept = lines[: self.keep_lines]
        return "\n".join(kept) + f"\n… {left_out} more lines: see the notebook\n"


def shows_plain_text_only(output: nbformat.NotebookNode) -> bool:
    """True for a result or display whose only form is plain text (no HTML, no image)."""
    if output.output_type not in ("execute_result", "display_data"):
        return False
    return set(output.get("data", {})) == {"text/plain"}


def installed_version(package: str, node_modules: Path = NODE_MODULES) -> str | None:
    """The version of an npm package under node_modules, or None if it is not there."""
    package_json = node_modules / package / "package.json"
    if not package_json.exists():
        return None
    return json.loads(package_json.read_text(encoding="utf-8"))["version"]


def install_js_libraries(npm_prefix: Path = NPM_PREFIX) -> Path:
    """Install reveal.js, require.js and jQuery (JS_LIBRARIES) under npm_prefix, unless there already.

    Returns the node_modules folder. All three are installed in one `npm install`:
    npm removes packages it was not asked for, so they are never installed one by one.
    """
    node_modules = npm_prefix / "node_modules"
    wanted = [f"{name}@{version}" for name, version in JS_LIBRARIES.items()]
    missing = [name for name, version in JS_LIBRARIES.items() if installed_version(name, node_modules) != version]
    if not missing:
        return node_modules
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            "npm was not found: the slides need it once, to install reveal.js (Debian packages `nodejs` and `npm`)."
        )
    npm_prefix.mkdir(parents=True, exist_ok=True)
    print(f"{', '.join(missing)} missing: installing {', '.join(wanted)} into {node_modules}")
    command = [npm, "install", "--prefix", str(npm_prefix), "--save-exact", "--no-audit", "--no-fund", *wanted]
    subprocess.run(command, check=True)
    return node_modules


def relative_url(target: Path, deck_dir: Path) -> str:
    """The URL of target as seen from a page in deck_dir, e.g. ../npm/node_modules/reveal.js."""
    relative = os.path.relpath(target.resolve(), deck_dir.resolve())
    return Path(relative).as_posix()


def make_slides_exporter(deck_dir: Path, node_modules: Path = NODE_MODULES) -> SlidesExporter:
    """nbconvert's reveal.js exporter, loading every script from node_modules instead of a CDN."""
    exporter = SlidesExporter()
    exporter.reveal_url_prefix = relative_url(node_modules / "reveal.js", deck_dir)
    exporter.require_js_url = relative_url(node_modules / "requirejs" / "require.js", deck_dir)
    exporter.jquery_url = relative_url(node_modules / "jquery" / "dist" / "jquery.min.js", deck_dir)
    exporter.mathjax_url = ""  # the notebooks have no LaTeX
    exporter.mermaid_js_url = ""  # nor Mermaid diagrams; the template would fetch it from a CDN
    exporter.reveal_scroll = True  # a slide taller than the screen scrolls
    exporter.embed_images = True
    exporter.register_preprocessor(CoalesceStreamsPreprocessor, enabled=True)  # one output per print loop
    exporter.register_preprocessor(WidgetPlaceholderPreprocessor(), enabled=True)
    exporter.register_preprocessor(ShortenLongOutputsPreprocessor(), enabled=True)
    return exporter


def add_slides_css(html: str) -> str:
    """The deck with SLIDES_CSS added at the end of its <head>."""
    style = f'<style type="text/css">{SLIDES_CSS}</style>\n'
    return html.replace("</head>", style + "</head>", 1)


def notebook_to_slides(notebook: Path, output_dir: Path = OUTPUT_DIR) -> Path:
    """Render one notebook to <output_dir>/<stem>.slides.html and return that path."""
    output_dir.mkdir(parents=True, exist_ok=True)
    node_modules = install_js_libraries()
    nb = nbformat.read(notebook, as_version=4)
    exporter = make_slides_exporter(output_dir, node_modules)
    resources = {"metadata": {"name": notebook.stem, "path": str(notebook.parent)}}
    body, _resources = exporter.from_notebook_node(nb, resources=resources)
    deck = output_dir / f"{notebook.stem}.slides.html"
    deck.write_text(add_slides_css(body), encoding="utf-8")
    return deck


def main(argv: list[str] | None = None) -> None:
    """Command line: make the decks of the given notebooks, or of all of them."""
    build_each("Render executed notebooks as offline reveal.js slide decks.", notebook_to_slides, argv)


if __name__ == "__main__":
    try:
        main()
    except (RuntimeError, subprocess.CalledProcessError) as error:
        sys.exit(f"make_slides: {error}")
