"""Turn the executed notebooks into reveal.js lecture decks for a 1280 x 720 projector.

Run: python tools/make_slides.py [notebooks...] [--output-dir DIR]
     (default: every notebooks/[0-9][0-9]_*.ipynb, into build/slides/)

Writes one folder per notebook, which works on its own (copy it to a USB stick and open
index.html from there, offline):

  build/slides/<stem>/index.html       the deck (the notebook's committed outputs; nothing is executed)
  build/slides/<stem>/lib/reveal.js/   reveal.js (from npm, pinned, installed once into build/npm/)
  build/slides/<stem>/lib/fonts/       the fonts it uses (no web fonts are fetched)
  build/slides/<stem>/lib/slides.css, slide_fitting.js   this course's look and fitting
  build/slides/index.html              a list of the decks

How a notebook becomes slides (tools/slide_plan.py has the rules): every `#`/`##` heading
starts a slide, every `###` heading and exercise a slide below it, as the slide types that
tools/stamp_course.py writes say; a section taller than the screen continues on further
slides below, each headed by the section's title. On the projector, Space, PageDown and the
right arrow (what a presenter remote sends) go through every slide and every click in order.
Code cells tagged `plumbing` show only their output; an exercise shows its question first and
its worked solution and check on the next click. In the browser, tools/slide_fitting.js
scales down whatever still does not fit (a wide table, a long line of code, a tall slide),
so that nothing is ever cut.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
from jinja2 import DictLoader
from nbconvert import SlidesExporter
from nbconvert.preprocessors import CoalesceStreamsPreprocessor

# Sibling modules in tools/ (Python puts a script's own folder on sys.path).
from make_handouts import WidgetPlaceholderPreprocessor, build_each
from slide_plan import plan_slides

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
OUTPUT_DIR = REPO / "build" / "slides"
NPM_PREFIX = REPO / "build" / "npm"
NODE_MODULES = NPM_PREFIX / "node_modules"

# reveal.js 4.6.1 is the last 4.x release. It is loaded as a plain script: no require.js, no jQuery.
JS_LIBRARIES = {
    "reveal.js": "4.6.1",
}

# What each deck's lib/ holds: (source, destination inside lib/). Sources under node_modules
# come from npm; the monospace font from the system, when it has it (Debian: fonts-dejavu-core).
REVEAL_FILES = [
    "dist/reveal.js",
    "dist/reveal.css",
    "plugin/notes/notes.js",
    "LICENSE",
]
SOURCE_SANS = "dist/theme/fonts/source-sans-pro"
SOURCE_SANS_FILES = [
    "source-sans-pro-regular.woff",
    "source-sans-pro-italic.woff",
    "source-sans-pro-semibold.woff",
    "source-sans-pro-semibolditalic.woff",
]
MONO_FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
MONO_FONT_FILES = ["DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf"]
MONO_FONT_LICENSE = Path("/usr/share/doc/fonts-dejavu-core/copyright")
COURSE_FILES = ["slides.css", "slide_fitting.js"]

# reveal.js settings for a projector and a presenter remote.
REVEAL_CONFIG = {
    "width": 1280,
    "height": 720,
    "margin": 0,
    "minScale": 0.1,
    "maxScale": 3.0,
    "center": False,
    "hash": True,
    "navigationMode": "linear",  # Space, PageDown and the arrows go through every slide below, in order
    "slideNumber": "c/t",
    "showSlideNumber": "all",
    "transition": "none",
    "backgroundTransition": "none",
    "controls": True,
    "controlsTutorial": False,
    "progress": True,
    "viewDistance": 1000,  # every slide laid out, so that slide_fitting.js can measure it (it then sets 3)
    "mobileViewDistance": 1000,
    "preloadIframes": False,
}

# The page around nbconvert's cells: reveal.js's own template, without its CDN, require.js,
# jQuery, MathJax, Mermaid or web fonts; every file it loads is in the deck's lib/.
DECK_TEMPLATE = """
{%- extends 'reveal/base.html.j2' -%}
{%- block header -%}
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8" />
<meta name="viewport" content="width=device-width, initial-scale=1.0" />
<title>{{ resources.deck.title | escape_html }}</title>
<link rel="icon" href="data:," />
<link rel="stylesheet" href="lib/reveal.js/dist/reveal.css" />
{{ resources.include_css("static/index.css") }}
{{ resources.include_css("static/theme-light.css") }}
{% for css in resources.inlining.css -%}
<style type="text/css">
{{ css }}
</style>
{% endfor %}
<link rel="stylesheet" href="lib/slides.css" />
</head>
{%- endblock header -%}

{#- Pygments' highlighted code, without nbconvert's HTML sanitizer (it escapes the code itself; the sanitizer took a fifth of the build). -#}
{%- block input -%}
<div class="jp-CodeMirrorEditor jp-Editor jp-InputArea-editor" data-type="inline">
<div class="cm-editor cm-s-jupyter">
{{ cell.source | highlight_code(metadata=cell.metadata) }}
</div>
</div>
{%- endblock input -%}

{%- block body_header -%}
<body class="jp-Notebook" data-jp-theme-light="true" data-jp-theme-name="JupyterLab Light">
<div class="reveal">
<div class="slides">
{%- endblock body_header -%}

{%- block body_footer -%}
</div>
</div>
<script src="lib/reveal.js/dist/reveal.js"></script>
<script src="lib/reveal.js/plugin/notes/notes.js"></script>
<script src="lib/slide_fitting.js"></script>
<script>
SlideFitting.prepare();
Reveal.initialize(Object.assign({{ resources.deck.reveal_config }}, { plugins: [RevealNotes] }))
  .then(SlideFitting.fitWhenReady);
</script>
</body>
{%- endblock body_footer -%}

{%- block footer -%}
</html>
{%- endblock footer -%}
"""


def installed_version(package: str, node_modules: Path = NODE_MODULES) -> str | None:
    """The version of an npm package under node_modules, or None if it is not there."""
    package_json = node_modules / package / "package.json"
    if not package_json.exists():
        return None
    return json.loads(package_json.read_text(encoding="utf-8"))["version"]


def install_js_libraries(npm_prefix: Path = NPM_PREFIX) -> Path:
    """Install reveal.js (JS_LIBRARIES) under npm_prefix, unless there already; return node_modules.

    All packages are installed in one `npm install`: npm removes packages it was not asked for.
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


def copy_if_changed(source: Path, destination: Path) -> None:
    if destination.exists() and destination.stat().st_size == source.stat().st_size and destination.read_bytes() == source.read_bytes():
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, destination)


def write_lib(lib: Path, node_modules: Path = NODE_MODULES) -> None:
    """Fill a deck's lib/ folder with everything the deck loads."""
    reveal = node_modules / "reveal.js"
    for name in REVEAL_FILES:
        copy_if_changed(reveal / name, lib / "reveal.js" / name)
    for name in SOURCE_SANS_FILES:
        copy_if_changed(reveal / SOURCE_SANS / name, lib / "fonts" / name)
    copy_if_changed(reveal / SOURCE_SANS / "LICENSE", lib / "fonts" / "LICENSE-source-sans-pro")
    for name in MONO_FONT_FILES:  # else slides.css falls back to the system's monospace font
        if (MONO_FONT_DIR / name).exists():
            copy_if_changed(MONO_FONT_DIR / name, lib / "fonts" / name)
    if MONO_FONT_LICENSE.exists() and (lib / "fonts" / MONO_FONT_FILES[0]).exists():
        copy_if_changed(MONO_FONT_LICENSE, lib / "fonts" / "LICENSE-dejavu")
    for name in COURSE_FILES:
        copy_if_changed(TOOLS / name, lib / name)


def make_slides_exporter() -> SlidesExporter:
    """nbconvert's reveal.js exporter with this course's page around the cells."""
    exporter = SlidesExporter(extra_loaders=[DictLoader({"lecture_deck.html.j2": DECK_TEMPLATE})])
    exporter.template_file = "lecture_deck.html.j2"
    exporter.exclude_input_prompt = True  # "In [3]:" means nothing on a slide; its width goes to the code
    exporter.exclude_output_prompt = True
    exporter.embed_images = True
    exporter.register_preprocessor(CoalesceStreamsPreprocessor, enabled=True)  # one output per print loop
    exporter.register_preprocessor(WidgetPlaceholderPreprocessor(), enabled=True)
    return exporter


def deck_title(nb: nbformat.NotebookNode, fallback: str) -> str:
    """"01 · Inside a language model: print it, count it", from the notebook's first heading."""
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("# "):
            return cell.source.split("\n")[0][2:].strip()
    return fallback


def notebook_to_slides(notebook: Path, output_dir: Path = OUTPUT_DIR) -> Path:
    """Render one notebook to <output_dir>/<stem>/index.html (with its lib/) and return that path."""
    node_modules = install_js_libraries()
    deck_dir = output_dir / notebook.stem
    deck_dir.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(notebook, as_version=4)
    planned, _summary = plan_slides(nb)
    title = deck_title(nb, notebook.stem)
    resources = {
        "metadata": {"name": notebook.stem, "path": str(notebook.parent)},
        "deck": {"title": title, "reveal_config": json.dumps(REVEAL_CONFIG)},
    }
    body, _resources = make_slides_exporter().from_notebook_node(planned, resources=resources)
    write_lib(deck_dir / "lib", node_modules)
    deck = deck_dir / "index.html"
    deck.write_text(body, encoding="utf-8")
    old_deck = output_dir / f"{notebook.stem}.slides.html"  # the single-file decks of earlier versions
    old_deck.unlink(missing_ok=True)
    write_index(output_dir)
    return deck


def write_index(output_dir: Path) -> Path:
    """build/slides/index.html: a link to every deck in output_dir."""
    links = []
    for deck in sorted(output_dir.glob("*/index.html")):
        title = re.search(r"<title>(.*?)</title>", deck.read_text(encoding="utf-8")[:4000])
        links.append(f'<li><a href="{deck.parent.name}/index.html">{title.group(1) if title else deck.parent.name}</a></li>')
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>LoRA by the Numbers: slides</title>'
        '<link rel="icon" href="data:,"></head>\n<body style="font-family: sans-serif; font-size: 20px; margin: 2em">\n'
        "<h1>LoRA by the Numbers: slides</h1>\n<ul>\n" + "\n".join(links) + "\n</ul>\n"
        "<p>Space or PageDown: next; F: full screen; S: speaker view; Esc: overview. "
        "Each deck's folder works on its own, offline.</p>\n</body></html>\n"
    )
    index = output_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def main(argv: list[str] | None = None) -> None:
    """Command line: make the decks of the given notebooks, or of all of them."""
    build_each("Render executed notebooks as offline reveal.js lecture decks (1280 x 720).", notebook_to_slides, argv)


if __name__ == "__main__":
    try:
        main()
    except (RuntimeError, subprocess.CalledProcessError) as error:
        sys.exit(f"make_slides: {error}")
