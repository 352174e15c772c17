"""How much of each printed page is left blank: the measure behind the handouts' layout rule.

A page is rendered to a small greyscale bitmap by poppler's `pdftoppm` (Debian package
`poppler-utils`) and cropped to the printable area (the page minus the @page margins of
the handouts). A pixel row is blank when no pixel in it is darker than INK_LEVEL: light fills
and hairlines (a code cell's #f5f5f5 background and #e0e0e0 border) are not ink, so the empty
foot of a code box that a page break stretched to the bottom of the page counts as blank.
The blank fraction of a page is the height of

  - the blank rows below the last inked row (the hole a page break leaves), plus
  - every run of blank rows inside the page taller than HOLE_MM (a hole in the middle),

divided by the printable height. Ordinary gaps (between paragraphs, above a heading, the
white border inside a figure) are shorter than HOLE_MM and do not count. Rendering, not
text positions, because figures, table rules and the answer boxes of an exercise sheet
are ink too.

Run: python tools/page_space.py some.pdf ...   (prints each page's blank fraction)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

MAX_BLANK = 0.25  # the handouts' rule: no page but the last this blank, or more
DPI = 50  # enough to see a line of 8-pt text; a whole handout renders in a second or two
INK_LEVEL = 200  # 0 = black, 255 = white: text, figures, table rules and ruled lines are darker
HOLE_MM = 15.0
MARGINS_MM = {"top": 16.0, "bottom": 16.0, "left": 14.0, "right": 14.0}  # as PRINT_CSS's @page
MM_PER_INCH = 25.4


def find_poppler(tool: str = "pdftoppm") -> str:
    """The path of one of poppler's tools (pdftoppm, pdftotext), or a RuntimeError that says how to get it."""
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(
            f"{tool} was not found: it measures the printed handouts. `make handouts` installs it: "
            "the Debian package `poppler-utils` (sudo apt-get install poppler-utils)."
        )
    return path


def render_pages(pdf_path: Path, dpi: int = DPI, gray: bool = True) -> list[Image.Image]:
    """Every page of pdf_path as a PIL image (greyscale by default), in page order."""
    with tempfile.TemporaryDirectory(prefix="page-space-") as folder:
        prefix = Path(folder) / "page"
        command = [find_poppler("pdftoppm"), "-r", str(dpi), *(["-gray"] if gray else []), "-png", str(pdf_path), str(prefix)]
        subprocess.run(command, check=True, capture_output=True)
        # pdftoppm pads the page number to the width of the last one: page-01.png ... page-12.png.
        files = sorted(Path(folder).glob("page-*.png"), key=lambda path: int(path.stem.split("-")[-1]))
        return [Image.open(path).copy() for path in files]


def printable_area(image: Image.Image, dpi: int = DPI) -> np.ndarray:
    """The page's pixels inside the margins, as a 2-D array of grey levels."""
    pixels = np.asarray(image.convert("L"))
    per_mm = dpi / MM_PER_INCH
    top, bottom = round(MARGINS_MM["top"] * per_mm), round(MARGINS_MM["bottom"] * per_mm)
    left, right = round(MARGINS_MM["left"] * per_mm), round(MARGINS_MM["right"] * per_mm)
    return pixels[top : pixels.shape[0] - bottom, left : pixels.shape[1] - right]


def blank_fraction(image: Image.Image, dpi: int = DPI) -> float:
    """The share of the printable height that is a hole: the blank bottom, and blank runs taller than HOLE_MM."""
    area = printable_area(image, dpi)
    inked = (area < INK_LEVEL).any(axis=1)
    height = len(inked)
    rows = np.flatnonzero(inked)
    if len(rows) == 0:
        return 1.0
    hole_rows = HOLE_MM * dpi / MM_PER_INCH
    blank = height - 1 - rows[-1]  # below the last inked row
    blank += rows[0]  # above the first (a page starts with content, so this is 0 or a hole)
    gaps = np.diff(rows) - 1
    blank += int(gaps[gaps > hole_rows].sum())
    return blank / height


def bottom_blank_mm(image: Image.Image, dpi: int = DPI) -> float:
    """The height, in mm, of the blank rows between the page's last inked row and its bottom margin."""
    inked = (printable_area(image, dpi) < INK_LEVEL).any(axis=1)
    rows = np.flatnonzero(inked)
    blank_rows = len(inked) if len(rows) == 0 else len(inked) - 1 - rows[-1]
    return blank_rows * MM_PER_INCH / dpi


def blank_fractions(pdf_path: Path) -> list[float]:
    """The blank fraction of every page of pdf_path, in page order."""
    return [blank_fraction(image) for image in render_pages(pdf_path)]


def main(paths: list[str]) -> None:
    for path in paths:
        fractions = blank_fractions(Path(path))
        listed = " ".join(f"{fraction:.0%}" for fraction in fractions)
        print(f"{path}: {len(fractions)} pages, blank {listed}")


if __name__ == "__main__":
    main(sys.argv[1:])
