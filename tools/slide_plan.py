"""Where each piece of a notebook goes in its lecture deck: which slide, which click.

tools/make_slides.py calls plan_slides(nb) on a copy of the executed notebook and renders
the result with nbconvert's reveal.js exporter. The slide types that tools/stamp_course.py
writes into every cell (metadata.slideshow.slide_type) give the sections:

  "slide"     a `#`/`##` heading: a new section, left/right on the deck,
  "subslide"  a `###` heading or an exercise: a new section below the current one,
  "-"         continues the current section,
  "skip"      left out (the Colab setup cell).

A section can be far taller than a 1280 x 720 screen, so this module cuts it into pieces
(a markdown paragraph, list item or table; a code cell's input; each of its outputs),
estimates each piece's height on the slide, and packs the pieces greedily into as many
vertical slides as needed. Pieces that belong together (a heading or a sentence ending in a
colon and what follows, a sentence and the code it introduces, a cell's input and outputs)
stay on one slide whenever they fit on one. A code cell taller than a slide is cut only
between top-level statements, at a blank line (each part is complete Python); on slides, two
or more blank lines in a row show as one. Every further slide of a section carries the
section's title as a small heading (tag "slide-kicker").

The estimates only decide where to cut: tools/slide_fitting.js measures every slide in the
browser and scales down what still does not fit, so an estimate that is a little off costs a
slightly smaller slide, never a cut one.

Other rules, all tag- or content-driven:
  - a code cell tagged "plumbing" shows no input (its output stays); with no output, no cell;
  - the Colab cell (tag "colab-setup") is left out;
  - an exercise (a markdown cell starting "**Exercise N", or such a block in the cell that
    starts the section) gets slides of its own and shows its question first; the code cells
    after it, up to the next section (the worked solution, lines marked "# solution", and the
    helpers.check_answer check), are one fragment, shown on the next click, on the same slide;
  - images from the network and the "Open in Colab" badge are removed: a deck works offline.
"""

from __future__ import annotations

import ast
import base64
import copy
import html
import math
import re
import struct
from dataclasses import dataclass, field

import nbformat

PLUMBING_TAG = "plumbing"
COLAB_TAG = "colab-setup"
KICKER_TAG = "slide-kicker"  # the small title of a continued section (styled in slides.css)
SOLUTION_TAG = "slide-solution"  # a cell shown on the exercise's second click
EXERCISE_MARK = re.compile(r"\*\*Exercise \d+")

# Slide geometry, in slide pixels; must agree with slides.css.
SLIDE_WIDTH = 1280
SLIDE_HEIGHT = 720
CONTENT_WIDTH = SLIDE_WIDTH - 2 * 48  # the slide's padding, left and right
CONTENT_HEIGHT = SLIDE_HEIGHT - 26 - 40  # top, and bottom (the slide number's row)
KICKER_HEIGHT = 19 * 1.35 + 14
CELL_GAP = 10

# Text metrics (average advance per character, in em) for the height estimates.
PROSE_SIZE, PROSE_LINE = 24, 1.35
PROSE_ADVANCE = 0.47  # Source Sans Pro, with some `code` spans
CODE_SIZE, CODE_LINE = 18, 1.3
CODE_ADVANCE = 0.602  # DejaVu Sans Mono
CODE_MIN_SCALE = 0.6  # slide_fitting.js shrinks wide code down to this, then wraps between words
TABLE_SIZE = 19
TABLE_ADVANCE = 0.5
HEADING_SIZES = {1: 44, 2: 36, 3: 30, 4: 26, 5: 24, 6: 24}

# How full the planner fills a slide. Below 1, a slight underestimate still fits at full size.
FILL = 0.94
# A last slide holding less than this share of a page joins the one before when both fit,
# somewhat shrunk, on one slide (slide_fitting.js then scales that slide to at least ~0.88).
ORPHAN_SHARE = 0.2
ORPHAN_STRETCH = 1.13


# ---------------------------------------------------------------------------
# Height estimates
# ---------------------------------------------------------------------------


def prose_chars_per_line(size: float = PROSE_SIZE, width: float = CONTENT_WIDTH) -> float:
    return width / (size * PROSE_ADVANCE)


def code_chars_per_line(width: float = CONTENT_WIDTH - 16) -> float:
    return width / (CODE_SIZE * CODE_ADVANCE)


def plain_text(markdown: str) -> str:
    """The visible text of a line of markdown (links, emphasis and code marks removed)."""
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", markdown)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = text.replace("**", "").replace("`", "")
    return html.unescape(text)


def wrapped_lines(text: str, chars_per_line: float) -> int:
    return max(1, math.ceil(len(text) / chars_per_line))


def code_block_height(lines: list[str]) -> float:
    """A block of code or text output at 18 px, shrunk to its widest line as slide_fitting.js does."""
    if not lines:
        return 0.0
    per_line = code_chars_per_line()
    widest = max(len(line.expandtabs()) for line in lines)
    scale = min(1.0, per_line / widest) if widest else 1.0
    if scale < CODE_MIN_SCALE:  # wrapped between words at the smallest size
        scale = CODE_MIN_SCALE
        count = sum(wrapped_lines(line, per_line / CODE_MIN_SCALE) for line in lines)
    else:
        count = len(lines)
    return count * CODE_SIZE * CODE_LINE * scale


def markdown_block_height(block: str) -> float:
    """One block of markdown (heading, paragraph, list, table or fenced code) on a slide."""
    lines = block.strip("\n").split("\n")
    first = lines[0]
    heading = re.match(r"(#{1,6})\s+(.*)", first)
    if heading and len(lines) == 1:
        size = HEADING_SIZES[len(heading.group(1))]
        count = wrapped_lines(plain_text(heading.group(2)), prose_chars_per_line(size) * 0.95)
        return count * size * 1.15 + 0.45 * size + (6 if len(heading.group(1)) == 2 else 0)
    if first.startswith("```"):
        return code_block_height(lines[1:-1]) + 12 + 0.55 * PROSE_SIZE
    if first.lstrip().startswith("|"):
        rows = [line for line in lines if not re.fullmatch(r"\s*\|?[\s:|-]+\|?\s*", line)]
        widest = max(len(plain_text(line)) for line in rows)
        scale = min(1.0, CONTENT_WIDTH / (widest * 20 * 0.55))
        return len(rows) * (20 * 1.25 + 0.44 * 20 + 1) * scale + 0.55 * PROSE_SIZE
    line_height = PROSE_SIZE * PROSE_LINE
    items = list_items(lines)
    if items:
        width = CONTENT_WIDTH - 1.4 * PROSE_SIZE
        count = sum(wrapped_lines(plain_text(item), prose_chars_per_line(width=width)) for item in items)
        return count * line_height + len(items) * 0.2 * PROSE_SIZE + (0.55 * PROSE_SIZE if len(items) > 1 else 0)
    text = plain_text(" ".join(line.strip() for line in lines))
    return wrapped_lines(text, prose_chars_per_line()) * line_height + 0.55 * PROSE_SIZE


def list_items(lines: list[str]) -> list[str]:
    """The items of a markdown list (continuation lines joined), or [] if the block is not a list."""
    if not re.match(r"\s*([-*+]|\d+[.)])\s+", lines[0]):
        return []
    items: list[str] = []
    for line in lines:
        if re.match(r"\s*([-*+]|\d+[.)])\s+", line):
            items.append(re.sub(r"^\s*([-*+]|\d+[.)])\s+", "", line))
        else:
            items[-1] += " " + line.strip()
    return items


def png_size(data: str) -> tuple[int, int] | None:
    """(width, height) of a base64 PNG, read from its header."""
    try:
        head = base64.b64decode(data[:64] + "=" * (-len(data[:64]) % 4))
    except ValueError:
        return None
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return struct.unpack(">II", head[16:24])


def table_height(markup: str) -> float:
    """An HTML table (pandas) at 19 px, as the browser lays it out on a slide: cells wrapped
    between words when the table is too wide (a number, having no space, never breaks), and
    the whole table scaled down (slide_fitting.js) when even that is too wide."""
    char, pad = TABLE_SIZE * TABLE_ADVANCE, 1.1 * TABLE_SIZE
    rows = []
    for row in re.findall(r"<tr\b.*?</tr>", markup, flags=re.DOTALL):
        cells = re.findall(r"<(t[hd])\b[^>]*>(.*?)</t[hd]>", row, flags=re.DOTALL)
        rows.append([(tag, html.unescape(re.sub(r"<[^>]+>", "", text)).strip()) for tag, text in cells])
    columns = max((len(row) for row in rows), default=0)
    natural, smallest = [pad] * columns, [pad] * columns
    for row in rows:
        for i, (_tag, text) in enumerate(row):
            natural[i] = max(natural[i], len(text) * char + pad)
            longest_word = max((len(word) for word in text.split()), default=0)
            smallest[i] = max(smallest[i], longest_word * char + pad)
    scale, widths = 1.0, natural
    if sum(natural) > CONTENT_WIDTH:
        if sum(smallest) <= CONTENT_WIDTH:  # headers wrap: they share the width left by the numbers
            spare = CONTENT_WIDTH - sum(smallest)
            stretch = sum(n - m for n, m in zip(natural, smallest)) or 1
            widths = [m + spare * (n - m) / stretch for n, m in zip(natural, smallest)]
        else:
            scale, widths = CONTENT_WIDTH / sum(smallest), smallest
    line = TABLE_SIZE * 1.25
    height = 0.0
    for row in rows:
        lines = max((math.ceil(len(text) * char / max(widths[i] - pad, char)) for i, (_tag, text) in enumerate(row) if text), default=1)
        height += (max(lines, 1) * line + 0.44 * TABLE_SIZE + 1) * scale
    before = re.sub(r"<table\b.*?</table>", "", markup, flags=re.DOTALL)
    before = re.sub(r"<style\b.*?</style>", "", before, flags=re.DOTALL)
    text = html.unescape(re.sub(r"<[^>]+>", " ", before)).strip()
    extra = wrapped_lines(text, prose_chars_per_line(19)) * 19 * 1.35 if text else 0
    return height + 12 + extra


def figure_height(width: int, height: int) -> float:
    """A figure as wide as the slide; slide_fitting.js lowers it, down to about half, to fit a slide."""
    return min(CONTENT_WIDTH * height / width, CONTENT_HEIGHT - KICKER_HEIGHT)


def output_height(output: nbformat.NotebookNode) -> float:
    if output.output_type == "stream":
        return code_block_height(output.text.rstrip("\n").split("\n")) + 6
    if output.output_type == "error":
        return code_block_height(output.get("traceback", [])) + 6
    data = output.get("data", {})
    if "image/png" in data:
        size = png_size(data["image/png"])
        return figure_height(*size) + 6 if size else CONTENT_HEIGHT * 0.6
    if "text/html" in data:
        markup = data["text/html"]
        if "<table" in markup:
            return table_height(markup)
        text = html.unescape(re.sub(r"<[^>]+>", " ", markup)).strip()
        return wrapped_lines(text, prose_chars_per_line(19)) * 19 * 1.35 + 6
    if "text/plain" in data:
        return code_block_height(data["text/plain"].rstrip("\n").split("\n")) + 6
    return 30.0


def input_height(source: str) -> float:
    return code_block_height(source.rstrip("\n").split("\n")) + 12


# ---------------------------------------------------------------------------
# Pieces and sections
# ---------------------------------------------------------------------------


@dataclass
class Piece:
    """A part of one cell that cannot be cut further: a markdown block, a code input, one output."""

    cell: int  # index of the cell in the notebook
    kind: str  # "markdown", "input" or "output"
    height: float
    block: str = ""  # markdown: the block's source; input: the part of the code on this piece
    output: int = -1  # output: its index in cell.outputs
    glue: str = "none"  # to the next piece: "hard" (never apart), "soft" (together if they fit), "none"
    exercise: bool = False  # an exercise's question, or what follows it
    fragment: bool = False  # shown on the exercise's second click


@dataclass
class Section:
    slide_type: str  # "slide" or "subslide"
    title: str  # what a continued slide shows as its small title (markdown)
    pieces: list[Piece] = field(default_factory=list)


def compact_code(source: str) -> str:
    """The code as a slide shows it: one blank line where the source has two or more (PEP 8 around a def)."""
    source = source.rstrip("\n")
    compact = re.sub(r"\n[ \t]*\n(?:[ \t]*\n)+", "\n\n", source)
    return compact if compact == source or syntax_tree(compact) == syntax_tree(source) != "" else source


def syntax_tree(source: str) -> str:
    """The code's syntax tree as text ("" if it does not parse): the same tree, the same program."""
    code = "\n".join("pass" if line.lstrip().startswith(("%", "!")) else line for line in source.split("\n"))
    try:
        return ast.dump(ast.parse(code))
    except SyntaxError:
        return ""


def parses(lines: list[str]) -> bool:
    """True if these lines are complete Python (IPython's %magics and !commands count as statements)."""
    return syntax_tree("\n".join(lines)) != ""


def code_parts(source: str, budget: float = (CONTENT_HEIGHT - KICKER_HEIGHT) * FILL) -> list[str]:
    """A code cell's source, whole if it fits on a slide, else cut at its top-level blank lines.

    Each part then starts with a statement at column 0 (a `def`, a loop, an assignment), so that
    no part begins in the middle of a block; a cell without such a blank line stays whole.
    """
    source = source.rstrip("\n")
    if input_height(source) <= budget:
        return [source]
    lines = source.split("\n")
    cuts = [i for i in range(1, len(lines)) if not lines[i - 1].strip() and lines[i][:1] not in ("", " ", "\t") and parses(lines[:i])]
    bounds = [0, *cuts, len(lines)]
    segments = ["\n".join(lines[a:b]).strip("\n") for a, b in zip(bounds, bounds[1:])]
    parts: list[str] = []
    current: list[str] = []
    for segment in segments:  # greedy: as many segments per part as fit on a slide
        if current and input_height("\n\n".join([*current, segment])) > budget:
            parts.append("\n\n".join(current))
            current = []
        current.append(segment)
    parts.append("\n\n".join(current))
    return [part for part in parts if part.strip()]


def markdown_blocks(source: str) -> list[str]:
    """A markdown cell cut at blank lines (never inside a fenced code block), each list item a block of its own."""
    blocks, current, in_fence = [], [], False
    for line in source.split("\n"):
        if line.startswith("```"):
            in_fence = not in_fence
        if not line.strip() and not in_fence:
            if current:
                blocks.append("\n".join(current))
                current = []
            continue
        # a heading line is a block of its own
        if not in_fence and re.match(r"#{1,6}\s", line) and current:
            blocks.append("\n".join(current))
            current = []
        current.append(line)
        if not in_fence and re.match(r"#{1,6}\s", line):
            blocks.append("\n".join(current))
            current = []
    if current:
        blocks.append("\n".join(current))
    return [item for block in blocks for item in list_item_blocks(block)]


TOP_LEVEL_ITEM = re.compile(r"([-*+]|\d+[.)])\s+")


def list_item_blocks(block: str) -> list[str]:
    """A top-level markdown list as one block per item (so that a long list can continue on the next slide)."""
    lines = block.split("\n")
    if not TOP_LEVEL_ITEM.match(lines[0]):
        return [block]
    items: list[list[str]] = []
    for line in lines:
        if TOP_LEVEL_ITEM.match(line) or not items:
            items.append([line])
        else:
            items[-1].append(line)  # a continuation line or a nested item
    return ["\n".join(item) for item in items]


def is_list_item(block: str) -> bool:
    return TOP_LEVEL_ITEM.match(block) is not None


REMOTE_IMAGE = re.compile(r"\[?!\[[^\]]*\]\((?:https?:)?//[^)]*\)(?:\]\([^)]*\))?")
COLAB_BADGE = re.compile(r"\[!\[Open in Colab\]\([^)]*\)\]\([^)]*\)")


def without_remote_images(source: str) -> str:
    """Markdown without images from the network (a link around one too), nor the Colab badge:
    a deck works offline, and nobody clicks a badge on a projector."""
    lines = [REMOTE_IMAGE.sub("", COLAB_BADGE.sub("", line)) for line in source.split("\n")]
    return "\n".join(line for line in lines if line.strip() or not line)


def heading_title(block: str) -> str | None:
    match = re.match(r"#{1,6}\s+(.*)", block.strip())
    return match.group(1).strip() if match and "\n" not in block.strip() else None


def slide_type_of(cell: nbformat.NotebookNode) -> str:
    return cell.metadata.get("slideshow", {}).get("slide_type", "-") or "-"


def tags_of(cell: nbformat.NotebookNode) -> list[str]:
    return list(cell.metadata.get("tags", []))


def is_left_out(cell: nbformat.NotebookNode) -> bool:
    if slide_type_of(cell) == "skip" or COLAB_TAG in tags_of(cell):
        return True
    if cell.cell_type == "code" and PLUMBING_TAG in tags_of(cell) and not cell.outputs:
        return True
    return cell.cell_type == "markdown" and not without_remote_images(cell.source).strip()


def starts_exercise(cell: nbformat.NotebookNode) -> bool:
    return cell.cell_type == "markdown" and EXERCISE_MARK.match(cell.source.lstrip()) is not None


def sections_of(nb: nbformat.NotebookNode) -> list[Section]:
    """The notebook's cells as sections of pieces, with the glue between pieces."""
    sections: list[Section] = []
    chapter = ""  # the current `#`/`##` title: continued exercise slides show it
    for index, cell in enumerate(nb.cells):
        if is_left_out(cell):
            continue
        slide_type = slide_type_of(cell)
        if slide_type not in ("slide", "subslide") and starts_exercise(cell):
            slide_type = "subslide"  # every exercise on slides of its own, even one not stamped so yet
        if not sections or slide_type in ("slide", "subslide"):
            kind = "slide" if not sections else slide_type
            sections.append(Section(kind, chapter))  # an exercise's section continues the chapter
        section = sections[-1]
        if cell.cell_type == "markdown":
            blocks = markdown_blocks(without_remote_images(cell.source))
            for number, block in enumerate(blocks):
                title = heading_title(block)
                if title and not section.pieces and number == 0:
                    section.title = title
                    if block.lstrip().startswith(("# ", "## ")):
                        chapter = title
                section.pieces.append(Piece(index, "markdown", markdown_block_height(block), block=block))
        elif cell.cell_type == "code":
            if PLUMBING_TAG not in tags_of(cell):
                for part in code_parts(compact_code(cell.source)):
                    section.pieces.append(Piece(index, "input", input_height(part), block=part))
            for number, output in enumerate(cell.outputs):
                section.pieces.append(Piece(index, "output", output_height(output), output=number))
    for section in sections:
        mark_exercise(section)
        set_glue(section)
    return sections


def mark_exercise(section: Section) -> None:
    """After an exercise's question, every code cell and what follows it is the second click."""
    question = next((i for i, p in enumerate(section.pieces) if p.kind == "markdown" and EXERCISE_MARK.search(p.block)), None)
    if question is None:
        return
    first_code = next((i for i in range(question + 1, len(section.pieces)) if section.pieces[i].kind != "markdown"), None)
    if first_code is None:
        return
    for piece in section.pieces[question:]:
        piece.exercise = True
    for piece in section.pieces[first_code:]:
        piece.fragment = True


def set_glue(section: Section) -> None:
    """What should stay together: headings with what follows, prose with the code it introduces,
    a cell's input with its outputs; an exercise's question with its answer, always."""
    pieces = section.pieces
    for current, following in zip(pieces, pieces[1:]):
        if current.exercise and following.exercise:
            current.glue = "hard"  # the whole question, then its solution and check on one slide: a click cannot span two
        elif current.kind == "markdown" and (heading_title(current.block) or current.block.rstrip().endswith(":")):
            # a heading, or a sentence ending in a colon, stays with what it introduces
            current.glue = "hard" if current.height + following.height <= CONTENT_HEIGHT * FILL else "soft"
        elif current.cell == following.cell:
            current.glue = "soft"
        elif current.kind == "markdown" and following.kind == "input":
            current.glue = "soft"


# ---------------------------------------------------------------------------
# Packing pieces into slides
# ---------------------------------------------------------------------------


def blocks_of(pieces: list[Piece], budget: float) -> list[list[Piece]]:
    """Runs of glued pieces; a soft-glued run taller than a slide is cut at its soft joints."""
    runs: list[list[Piece]] = [[]]
    for piece in pieces:
        runs[-1].append(piece)
        if piece.glue == "none":
            runs.append([])
    blocks: list[list[Piece]] = []
    for run in filter(None, runs):
        if sum(p.height for p in run) + CELL_GAP * len(run) <= budget:
            blocks.append(run)
            continue
        blocks.append([])
        for piece in run:
            blocks[-1].append(piece)
            if piece.glue != "hard":
                blocks.append([])
        if not blocks[-1]:
            blocks.pop()
    return blocks


def pack(section: Section) -> list[list[Piece]]:
    """The section's pieces, slide by slide: greedy, then a small last slide joins the one before."""
    first_budget = CONTENT_HEIGHT * FILL
    next_budget = (CONTENT_HEIGHT - KICKER_HEIGHT) * FILL
    pages: list[list[Piece]] = [[]]
    used = 0.0
    for block in blocks_of(section.pieces, next_budget):
        height = sum(p.height + CELL_GAP for p in block)
        budget = first_budget if len(pages) == 1 else next_budget
        if pages[-1] and used + height > budget:
            pages.append([])
            used = 0.0
        pages[-1].extend(block)
        used += height
    if len(pages) > 1:
        last = sum(p.height + CELL_GAP for p in pages[-1])
        before = sum(p.height + CELL_GAP for p in pages[-2])
        budget = first_budget if len(pages) == 2 else next_budget
        if last < ORPHAN_SHARE * CONTENT_HEIGHT and before + last <= budget * ORPHAN_STRETCH:
            pages[-2].extend(pages.pop())
    return pages


# ---------------------------------------------------------------------------
# The planned notebook
# ---------------------------------------------------------------------------


def kicker_cell(title: str, number: int) -> nbformat.NotebookNode:
    title = re.sub(r"^(\d+)\.", r"\1\\.", title)  # "4. The rank" is a title here, not a numbered list
    cell = nbformat.v4.new_markdown_cell(f"{title} (continued)")
    cell.id = f"kicker-{number}"
    cell.metadata["tags"] = [KICKER_TAG]
    return cell


def cell_part(original: nbformat.NotebookNode, pieces: list[Piece], number: int) -> nbformat.NotebookNode:
    """The part of one cell that a slide shows: some markdown blocks, or a code cell's input and some outputs."""
    cell = copy.deepcopy(original)
    cell.id = f"{original.get('id', 'cell')}-{number}"
    cell.metadata.pop("slideshow", None)
    if cell.cell_type == "markdown":
        cell.source = pieces[0].block
        for previous, piece in zip(pieces, pieces[1:]):  # items of one list stay one list
            cell.source += ("\n" if is_list_item(previous.block) and is_list_item(piece.block) else "\n\n") + piece.block
        return cell
    inputs = [p.block for p in pieces if p.kind == "input"]
    if inputs:
        cell.source = "\n\n".join(inputs)  # the whole cell, compacted, or the parts of it on this slide
    shown_outputs = [p.output for p in pieces if p.kind == "output"]
    cell.outputs = [cell.outputs[i] for i in shown_outputs]
    if not any(p.kind == "input" for p in pieces):
        cell.metadata["transient"] = {"remove_source": True}
    if any(p.fragment for p in pieces):
        cell.metadata["tags"] = [*tags_of(cell), SOLUTION_TAG]
    return cell


def plan_slides(nb: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, list[dict]]:
    """A new notebook whose cells and slide types make the deck; and a summary of each slide.

    Each summary dict: section title, page number within the section, estimated height.
    """
    planned = copy.deepcopy(nb)
    planned.cells = []
    summary = []
    made = 0
    for section in sections_of(nb):
        for page_number, page in enumerate(pack(section)):
            if page_number > 0:
                kicker = kicker_cell(section.title, made)
                kicker.metadata["slideshow"] = {"slide_type": "subslide"}
                planned.cells.append(kicker)
            first_on_page = True
            in_fragment = False
            groups: list[list[Piece]] = []
            for piece in page:  # consecutive pieces of one cell, and of one click, make one cell
                if groups and groups[-1][-1].cell == piece.cell and groups[-1][-1].fragment == piece.fragment:
                    groups[-1].append(piece)
                else:
                    groups.append([piece])
            for group in groups:
                made += 1
                cell = cell_part(nb.cells[group[0].cell], group, made)
                if first_on_page and page_number == 0:
                    slide_type = section.slide_type
                elif group[0].fragment and not in_fragment:
                    slide_type = "fragment"
                else:
                    slide_type = "-"
                in_fragment = in_fragment or group[0].fragment
                cell.metadata["slideshow"] = {"slide_type": slide_type}
                planned.cells.append(cell)
                first_on_page = False
            summary.append(
                {
                    "title": section.title,
                    "page": page_number,
                    "estimated_height": round(sum(p.height + CELL_GAP for p in page) + (KICKER_HEIGHT if page_number else 0)),
                }
            )
    return planned, summary
