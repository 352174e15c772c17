"""The lecture decks on a 1280 x 720 projector: tools/make_slides.py, in Debian's Chromium.

The decks of all notebooks are built into pytest's temp folder, then each deck's folder is
copied elsewhere and the build folder deleted, as a lecturer copies a deck to a USB stick.
Each copied deck is opened at 1280 x 720 and walked from the first slide to the last with
PageDown and Space, what a presenter remote sends, one click at a time. At every step the
test fails on

* a slide taller than the screen, or anything reaching past its right edge;
* a table, code block or output wider than its box (cut, or only visible by scrolling);
* an exercise's worked solution or check visible before its click;
* a click that does not move on, or a slide or click that the walk never reaches;
* any console error, failed request, or request that would need the network.

Other tests read the built HTML: every exercise has its click, the whole `print(model)` is
there, a `plumbing` tag hides a cell's input and keeps its output.

Building needs npm once (reveal.js into build/npm/, as `make slides` does); the walk needs
Debian's Chromium (`make test` installs it). Set LORA_SLIDES_SCREENSHOTS to a folder to get a
PNG of every slide, fully revealed.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import Browser

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import make_slides  # noqa: E402
from stamp_course import series_notebooks  # noqa: E402
from conftest import system_chromium  # noqa: E402

VIEWPORT = {"width": 1280, "height": 720}
NOTEBOOKS = series_notebooks()
PAGE_LOAD_TIMEOUT_MS = 30_000
BUILD_TIMEOUT_S = 300
MAX_STEPS = 400  # per deck; the longest has about 80 slides and clicks
SCREENSHOTS = os.environ.get("LORA_SLIDES_SCREENSHOTS")

# Measures the current slide at the current click; returns what is wrong, and where the walk is.
SLIDE_STATE_JS = """
(measure) => {
  const slide = Reveal.getCurrentSlide();
  const indices = Reveal.getIndices();
  const width = window.innerWidth, height = window.innerHeight;
  const problems = [];
  const describe = (el) => {
    const text = (el.textContent || el.getAttribute('alt') || '').trim().replace(/\\s+/g, ' ');
    return el.tagName.toLowerCase() + (el.className && typeof el.className === 'string' ? '.' + el.className.split(' ')[0] : '') + ' "' + text.slice(0, 60) + '"';
  };
  const body = slide.querySelector(':scope > .slide-body');
  if (!body) return {indices, problems: ['no .slide-body: slide_fitting.js did not run'], solutions: [], last: true};
  const box = body.getBoundingClientRect();
  if (measure && (box.top < -1 || box.bottom > height + 1)) {
    problems.push(`slide content from ${Math.round(box.top)} to ${Math.round(box.bottom)} px, the screen is ${height} px tall`);
  }
  // Layout is measured once per slide: a click only makes a fragment visible, in its own space.
  const blocks = measure ? body.querySelectorAll('.jp-Cell, .jp-Cell *:not(pre *):not(table *):not(svg *), pre, table, img') : [];
  for (const el of blocks) {
    const rect = el.getBoundingClientRect();
    if (rect.width === 0 && rect.height === 0) continue;
    if (rect.right > width + 1 || rect.left < -1 || rect.bottom > height + 1) {
      problems.push(`${describe(el)} reaches ${Math.round(rect.left)}..${Math.round(rect.right)} x ${Math.round(rect.top)}..${Math.round(rect.bottom)}`);
    }
  }
  for (const el of measure ? body.querySelectorAll('pre, table, .jp-OutputArea-output, .jp-InputArea-editor, .jp-RenderedMarkdown') : []) {
    if (el.scrollWidth > el.clientWidth + 1 && el.tagName !== 'TABLE') {
      problems.push(`${describe(el)} is ${el.scrollWidth} px wide in a ${el.clientWidth} px box: cut or scrolled`);
    }
    if (el.tagName === 'TABLE' && el.offsetWidth > el.parentElement.clientWidth + 1 && getComputedStyle(el.parentElement).overflowX !== 'visible') {
      problems.push(`${describe(el)} is ${el.offsetWidth} px wide in a ${el.parentElement.clientWidth} px box`);
    }
  }
  // Exercises: a code cell with a worked solution or a check is shown only after its click.
  const solutions = [];
  for (const cell of body.querySelectorAll('.jp-CodeCell')) {
    const text = cell.textContent;
    if (!text.includes('# solution') && !text.includes('check_answer(')) continue;
    const fragment = cell.closest('.fragment');
    const shown = getComputedStyle(cell).visibility !== 'hidden' && Number(getComputedStyle(fragment || cell).opacity) > 0;
    if (!fragment) problems.push(`${describe(cell)}: a solution or check outside any fragment`);
    else if (!fragment.classList.contains('visible') && shown) problems.push(`${describe(cell)}: a solution shown before its click`);
    solutions.push({id: cell.id, shown: !!fragment && fragment.classList.contains('visible')});
  }
  const last = Reveal.isLastSlide() && !Reveal.availableFragments().next;
  return {indices: {h: indices.h, v: indices.v || 0, f: indices.f === undefined ? -1 : indices.f}, problems, solutions, last};
}
"""

DECK_COUNTS_JS = """
() => ({
  slides: document.querySelectorAll('.reveal .slides > section > section').length,
  fragments: document.querySelectorAll('.reveal .slides .fragment').length,
  totalSlides: Reveal.getTotalSlides(),
  report: SlideFitting.report,
  fontsLoaded: [...document.fonts].filter(f => f.status === 'loaded').map(f => f.family + ' ' + f.weight + ' ' + f.style),
})
"""


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def decks(tmp_path_factory) -> dict[str, Path]:
    """Every deck built, then its folder copied elsewhere and the build deleted: {stem: index.html}."""
    build = tmp_path_factory.mktemp("build")
    make_slides.install_js_libraries()  # once, before any worker starts
    if threading.active_count() == 1:
        # Two forked workers (nbconvert already imported) build the decks on two cores. A fork is
        # only safe without other threads; with any, the decks are built here, one by one.
        with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("fork")) as pool:
            list(pool.map(make_slides.notebook_to_slides, NOTEBOOKS, [build] * len(NOTEBOOKS), timeout=BUILD_TIMEOUT_S))
    else:
        for notebook in NOTEBOOKS:
            make_slides.notebook_to_slides(notebook, build)
    usb = tmp_path_factory.mktemp("usb-stick")
    for deck in build.glob("*/index.html"):
        shutil.copytree(deck.parent, usb / deck.parent.name)
    shutil.rmtree(build)
    return {deck.parent.name: deck for deck in sorted(usb.glob("*/index.html"))}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with system_chromium() as chromium:
        yield chromium


# ---------------------------------------------------------------------------
# In the browser
# ---------------------------------------------------------------------------


def walk(page, deck_name: str) -> list[dict]:
    """Every step from the first slide to the last, by PageDown and Space alternately."""
    steps = [page.evaluate(SLIDE_STATE_JS, True)]
    while not steps[-1]["last"]:
        assert len(steps) < MAX_STEPS, f"{deck_name}: more than {MAX_STEPS} steps: the walk does not end"
        page.keyboard.press("PageDown" if len(steps) % 2 else "Space")
        before = steps[-1]["indices"]
        now = page.evaluate("(() => { const i = Reveal.getIndices(); return [i.h, i.v || 0]; })()")
        steps.append(page.evaluate(SLIDE_STATE_JS, now != [before["h"], before["v"]]))
        assert steps[-1]["indices"] != steps[-2]["indices"], f"{deck_name}: a click at {steps[-2]['indices']} did not move on"
    return steps


def screenshot_every_slide(page, deck_name: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for section in page.evaluate("SlideFitting.report.slides"):
        page.evaluate(f"Reveal.slide({section['h']}, {section['v']}, 1000)")
        page.screenshot(path=str(folder / f"{deck_name}_{section['h']:02d}_{section['v']:02d}.png"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[notebook.stem for notebook in NOTEBOOKS])
def test_every_slide_and_click_fits_the_projector(notebook, decks, browser):
    deck = decks[notebook.stem]
    context = browser.new_context(viewport=VIEWPORT)
    errors: list[str] = []
    outside: list[str] = []

    def only_files(route):
        url = route.request.url
        if url.startswith(("file:", "data:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    context.route("**/*", only_files)
    page = context.new_page()
    page.on("console", lambda message: errors.append(f"console: {message.text}") if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.on("requestfailed", lambda request: errors.append(f"failed request: {request.url} ({request.failure})"))
    try:
        page.goto(deck.as_uri(), timeout=PAGE_LOAD_TIMEOUT_MS)
        page.wait_for_function("window.SlideFitting && SlideFitting.report.done", timeout=PAGE_LOAD_TIMEOUT_MS)
        counts = page.evaluate(DECK_COUNTS_JS)
        steps = walk(page, notebook.stem)
        if SCREENSHOTS:
            screenshot_every_slide(page, notebook.stem, Path(SCREENSHOTS))
    finally:
        context.close()

    assert not outside, f"{notebook.stem} asks the network for {outside}"
    assert not errors, f"{notebook.stem}: {errors}"
    assert any("Source Sans Pro" in face for face in counts["fontsLoaded"]), "the deck's own text font did not load"

    problems = [f"slide {s['indices']['h']}/{s['indices']['v']} click {s['indices']['f']}: {p}" for s in steps for p in s["problems"]]
    assert not problems, f"{notebook.stem}:\n" + "\n".join(problems[:40])

    visited = {(s["indices"]["h"], s["indices"]["v"]) for s in steps}
    assert len(visited) == counts["slides"] == counts["totalSlides"], "PageDown and Space must reach every slide"
    assert len(steps) == counts["slides"] + counts["fragments"], "PageDown and Space must reach every click"

    solutions: dict[str, list[bool]] = {}
    for step in steps:
        for solution in step["solutions"]:
            solutions.setdefault(solution["id"], []).append(solution["shown"])
    for cell_id, shown in solutions.items():
        assert not shown[0] and shown[-1], f"{notebook.stem}: {cell_id} must be hidden first, then shown on a click"

    fitted = counts["report"]["slides"]
    assert all(not slide["overflows"] for slide in fitted)
    smallest = min(slide["zoom"] for slide in fitted)
    assert smallest >= 0.6, f"{notebook.stem}: a slide shrunk to {smallest:.2f}: split it at build time (tools/slide_plan.py)"
    print(
        f"\n{notebook.stem}: {len(fitted)} slides, {counts['fragments']} clicks, "
        f"{sum(s['zoom'] < 0.999 for s in fitted)} scaled down (smallest {smallest:.2f}), "
        f"smallest code or table scale {min(s['smallestElementScale'] for s in fitted):.2f}"
    )


# ---------------------------------------------------------------------------
# In the HTML
# ---------------------------------------------------------------------------


class Loads(HTMLParser):
    """Every file a page loads (src= and href= of scripts, styles, images and icons)."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag in ("script", "img") and attributes.get("src"):
            self.urls.append(attributes["src"])
        if tag == "link" and attributes.get("href"):
            self.urls.append(attributes["href"])


def test_a_deck_folder_holds_everything_it_loads(decks):
    for name, deck in decks.items():
        parser = Loads()
        parser.feed(deck.read_text(encoding="utf-8"))
        css = (deck.parent / "lib" / "slides.css").read_text(encoding="utf-8")
        font_urls = [f"lib/{url}" for url in re.findall(r'url\("([^"]+)"\)', css)]
        local = [url for url in parser.urls if not url.startswith("data:")]
        assert any(url.endswith("reveal.js/dist/reveal.js") for url in local)
        for url in local + font_urls:
            assert not re.match(r"(https?:)?//", url), f"{name}: {url} needs the network"
            if "DejaVu" in url and not (deck.parent / url).exists():
                continue  # shipped only when the building machine has the font; else the system's monospace
            assert (deck.parent / url).is_file(), f"{name}: {url} is not in the deck's folder"
        assert "MathJax" not in deck.read_text(encoding="utf-8"), f"{name}: no MathJax is shipped"


def exercise_count(nb) -> int:
    return sum(len(re.findall(r"\*\*Exercise \d+", cell.source)) for cell in nb.cells if cell.cell_type == "markdown")


def test_every_exercise_has_its_solution_on_a_click(decks):
    for notebook in NOTEBOOKS:
        html = decks[notebook.stem].read_text(encoding="utf-8")
        fragments = re.split(r'<div class="fragment"', html)[1:]
        with_solution = [fragment for fragment in fragments if "# solution" in fragment.split("</section>")[0]]
        expected = exercise_count(nbformat.read(notebook, as_version=4))
        assert expected > 0
        assert len(with_solution) == expected, f"{notebook.stem}: {expected} exercises, {len(with_solution)} solution clicks"


def visible_text(html: str) -> str:
    """The text of a page, without its markup (syntax highlighting splits code into many spans)."""
    return unescape(re.sub(r"<[^>]+>", "", html))


def test_long_outputs_are_whole_and_the_colab_cell_is_left_out(decks):
    notebook = next(n for n in NOTEBOOKS if n.name.startswith("01_"))
    nb = nbformat.read(notebook, as_version=4)
    printed = next(c for c in nb.cells if c.cell_type == "code" and c.source.strip() == "print(model)")
    text = printed.outputs[0].text
    html = decks[notebook.stem].read_text(encoding="utf-8")
    assert len(text.splitlines()) > 15
    page_text = visible_text(html)
    for line in text.splitlines():
        assert line in page_text, f"print(model) lost the line {line!r}"
    assert "more lines: see the notebook" not in html
    assert "google.colab" not in page_text, "the Colab setup cell has no place on a slide"
    assert "Open in Colab" not in html, "nobody clicks the Colab badge on a projector"


def test_plumbing_tag_hides_the_input_and_keeps_the_output(tmp_path):
    notebook = next(n for n in NOTEBOOKS if n.name.startswith("01_"))
    nb = nbformat.read(notebook, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    imports = next(c for c in code if "quiet_transformers()" in c.source)
    silent = next(c for c in code if not c.outputs and "# solution" not in c.source and len(c.source.splitlines()) > 3)
    silent_line = max(silent.source.splitlines(), key=len)
    assert sum(silent_line in c.source for c in nb.cells) == 1, "a line found in that cell only"
    assert imports.outputs, "the imports cell prints the versions"
    for cell in (imports, silent):
        tags = cell.metadata.setdefault("tags", [])
        if "plumbing" not in tags:  # the notebook may already have it
            tags.append("plumbing")
    copy = tmp_path / notebook.name
    nbformat.write(nb, copy)

    text = visible_text(make_slides.notebook_to_slides(copy, tmp_path / "slides").read_text(encoding="utf-8"))

    assert "quiet_transformers" not in text, "a plumbing cell shows no input"
    assert imports.outputs[0].text.strip() in text, "a plumbing cell keeps its output"
    assert silent_line not in text, "a plumbing cell without output is left out"
