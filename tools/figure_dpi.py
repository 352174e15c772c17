"""At what resolution a PDF prints each of its images: pixels ÷ printed inches.

The pixel size of an image is in its XObject (/Width, /Height); the printed size is where the
page's content stream draws it: the current transformation matrix at its `Do` operator maps the
unit square onto the page, so the image is sqrt(a² + b²) points wide (72 points to the inch).
Images drawn inside form XObjects are followed too.

Run: python tools/figure_dpi.py some.pdf ...   (prints each image's size and dpi)
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import pypdf
from pypdf.generic import ContentStream

POINTS_PER_INCH = 72
IDENTITY = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)


@dataclass
class PrintedImage:
    page: int  # 1-based
    pixel_width: int
    pixel_height: int
    printed_width_in: float
    printed_height_in: float
    bottom_pt: float = 0.0  # the lowest point of the image on the page, in points from the page's bottom

    @property
    def dpi(self) -> float:
        """The print resolution across the image (the lower of its two directions)."""
        across = self.pixel_width / self.printed_width_in if self.printed_width_in else math.inf
        down = self.pixel_height / self.printed_height_in if self.printed_height_in else math.inf
        return min(across, down)


def multiply(m: tuple, n: tuple) -> tuple:
    """The PDF matrix product m × n (m applied first)."""
    a, b, c, d, e, f = m
    p, q, r, s, t, u = n
    return (a * p + b * r, a * q + b * s, c * p + d * r, c * q + d * s, e * p + f * r + t, e * q + f * s + u)


def walk(content, resources, ctm: tuple, reader, page: int, found: list[PrintedImage], depth: int = 0) -> None:
    """Follow one content stream, recording each image it draws with the matrix in force."""
    if depth > 8:  # forms that draw themselves: give up rather than loop
        return
    xobjects = resources.get("/XObject", {}) if resources else {}
    xobjects = xobjects.get_object() if hasattr(xobjects, "get_object") else xobjects
    stack = []
    for operands, operator in ContentStream(content, reader).operations:
        if operator == b"q":
            stack.append(ctm)
        elif operator == b"Q":
            ctm = stack.pop() if stack else ctm
        elif operator == b"cm":
            ctm = multiply(tuple(float(value) for value in operands), ctm)
        elif operator == b"Do":
            xobject = xobjects.get(operands[0])
            if xobject is None:
                continue
            xobject = xobject.get_object()
            subtype = xobject.get("/Subtype")
            if subtype == "/Image":
                a, b, c, d, e, f = ctm
                found.append(
                    PrintedImage(
                        page=page,
                        pixel_width=int(xobject["/Width"]),
                        pixel_height=int(xobject["/Height"]),
                        printed_width_in=math.hypot(a, b) / POINTS_PER_INCH,
                        printed_height_in=math.hypot(c, d) / POINTS_PER_INCH,
                        bottom_pt=min(f, f + b, f + d, f + b + d),  # the unit square's four corners
                    )
                )
            elif subtype == "/Form":
                matrix = tuple(float(value) for value in xobject.get("/Matrix", IDENTITY))
                walk(xobject, xobject.get("/Resources", resources), multiply(matrix, ctm), reader, page, found, depth + 1)


def printed_images(pdf_path: Path) -> list[PrintedImage]:
    """Every image drawn on the pages of pdf_path, in page order, with its printed size."""
    reader = pypdf.PdfReader(pdf_path)
    found: list[PrintedImage] = []
    for number, page in enumerate(reader.pages, start=1):
        resources = page.get("/Resources")
        resources = resources.get_object() if resources is not None else {}
        if not resources.get("/XObject"):
            continue  # nothing drawn from an XObject: no image on this page (and no need to parse it)
        content = page.get_contents()
        if content is not None:
            walk(content, resources, IDENTITY, reader, number, found)
    return found


def main(paths: list[str]) -> None:
    for path in paths:
        for image in printed_images(Path(path)):
            print(
                f"{path} p. {image.page}: {image.pixel_width} × {image.pixel_height} px printed "
                f"{image.printed_width_in:.2f} × {image.printed_height_in:.2f} in = {image.dpi:.0f} dpi"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
