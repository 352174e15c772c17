"""The handout and slide builders: assets/make_handouts.py and assets/make_slides.py.

Each test builds one notebook into pytest's tmp_path. The handout test needs
Debian's Chromium (`make handouts` / `make test` install it); the slides test
needs npm the first time, to install reveal.js under build/npm/.
"""

import importlib
import re
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pypdf
import pytest

import helpers

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "assets"
HANDOUT_NOTEBOOK = REPO / "notebooks" / "03_rank_and_targets.ipynb"
SLIDES_NOTEBOOK = REPO / "notebooks" / "01_architecture.ipynb"
LLAMA = "meta-llama/Llama-3.2-1B-Instruct"


@pytest.fixture
def make_handouts(monkeypatch):
    """The handout script, imported as a module."""
    monkeypatch.syspath_prepend(str(ASSETS))
    return importlib.import_module("make_handouts")


@pytest.fixture
def make_slides(monkeypatch):
    """The slides script, imported as a module (it imports make_handouts too)."""
    monkeypatch.syspath_prepend(str(ASSETS))
    return importlib.import_module("make_slides")


# ---------------------------------------------------------------------------
# Handout
# ---------------------------------------------------------------------------


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


def pdf_text_without_spaces(pdf_path: Path) -> str:
    """All the text of a PDF, with every space and line break removed.

    Text extraction breaks lines where the page wrapped them, and may split or
    join words; without any whitespace, "1,235,814,400" is found wherever it was.
    """
    reader = pypdf.PdfReader(pdf_path)
    text = " ".join(page.extract_text() for page in reader.pages)
    return "".join(text.split())


def test_handout_pdf_shows_the_counts_and_the_figures(make_handouts, tmp_path):
    make_handouts.find_chromium()  # fails with how to install it, rather than skipping

    pdf_path = make_handouts.make_handout(HANDOUT_NOTEBOOK, tmp_path)

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


# ---------------------------------------------------------------------------
# Slides
# ---------------------------------------------------------------------------


def expected_sections(nb) -> tuple[int, int]:
    """(slides, slides + subslides) that the slide types of nb ask for.

    Skipped cells and speaker notes do not count, and a deck always opens with
    a slide, whatever the first shown cell is tagged.
    """
    types = [cell.metadata.get("slideshow", {}).get("slide_type", "-") for cell in nb.cells]
    shown = [slide_type for slide_type in types if slide_type not in ("skip", "notes")]
    shown[0] = "slide"
    slides = shown.count("slide")
    return slides, slides + shown.count("subslide")


class SectionCounter(HTMLParser):
    """Counts <section> elements by depth: reveal.js nests each slide's pages inside it."""

    def __init__(self):
        super().__init__()
        self.depth = 0
        self.count_at_depth = {1: 0, 2: 0}

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.depth += 1
            self.count_at_depth[self.depth] = self.count_at_depth.get(self.depth, 0) + 1

    def handle_endtag(self, tag):
        if tag == "section":
            self.depth -= 1


def longest_single_print(nb) -> int:
    """The most lines a code cell printed as one stream output."""
    longest = 0
    for cell in nb.cells:
        if cell.cell_type == "code" and len(cell.outputs) == 1 and cell.outputs[0].output_type == "stream":
            longest = max(longest, len(cell.outputs[0].text.splitlines()))
    return longest


def test_slides_follow_the_slide_types_and_work_offline(make_slides, tmp_path):
    notebook = SLIDES_NOTEBOOK  # its slide types are set by assets/stamp_course.py
    nb = nbformat.read(notebook, as_version=4)
    deck_dir = tmp_path / "slides"

    deck = make_slides.notebook_to_slides(notebook, deck_dir)
    html = deck.read_text(encoding="utf-8")

    counter = SectionCounter()
    counter.feed(html)
    slides, pages = expected_sections(nb)
    assert counter.count_at_depth[1] == slides, "one outer <section> per slide"
    assert counter.count_at_depth[2] == pages, "one inner <section> per slide and per subslide"

    longest = longest_single_print(nb)
    assert longest > 15, "the notebook should have a long output to shorten"
    assert f"… {longest - 12} more lines: see the notebook" in html

    # Every script and style sheet the deck loads is a file on disk, never a CDN.
    loaded = re.findall(r"[\"']([^\"'\s]+\.(?:js|css))[\"']", html)
    reveal_files = [url for url in loaded if "reveal.js/" in url]
    assert any(url.endswith("dist/reveal.js") for url in reveal_files)
    assert any(url.endswith("dist/reveal.css") for url in reveal_files)
    for url in loaded:
        assert not url.startswith(("http://", "https://", "//")), f"{url} needs the network"
        assert (deck_dir / url).is_file(), f"{url} is not on disk"
