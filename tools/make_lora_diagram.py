"""Draw the LoRA diagram used in notebook 03 and save it as assets/lora_diagram.png.

Run: python tools/make_lora_diagram.py   (the tests check the committed PNG is up to date)

The picture: the input x (n numbers) goes through the frozen weight W (m x n)
and, in parallel, through the trainable pair A (r x n) then B (m x r), scaled
by alpha / r; the two results are added: h = W x + (alpha / r) B A x.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Polygon  # noqa: E402

OUTPUT = Path(__file__).resolve().parent.parent / "assets" / "lora_diagram.png"
FROZEN = "#B8C4D6"
TRAINABLE = "#F28E2B"
INK = "#222222"


def box(ax, x: float, y: float, width: float, height: float, color: str, label: str, note: str = "") -> None:
    """A rounded box with a bold label and an optional small note under it."""
    ax.add_patch(FancyBboxPatch((x, y), width, height, boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=color, edgecolor=INK, linewidth=1.5))
    ax.text(x + width / 2, y + height / 2 + (0.35 if note else 0), label, ha="center", va="center",
            fontsize=17, fontweight="bold", color=INK)
    if note:
        ax.text(x + width / 2, y + height / 2 - 0.3, note, ha="center", va="center", fontsize=13, color=INK)


def arrow(ax, start: tuple[float, float], end: tuple[float, float]) -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=18, linewidth=1.6, color=INK))


def draw() -> plt.Figure:
    fig, ax = plt.subplots(figsize=(10.5, 5.2))
    ax.set_xlim(0, 10.5)
    ax.set_ylim(0, 5.2)
    ax.axis("off")

    # input and output
    ax.text(5, 0.25, "input x  (n numbers)", ha="center", va="center", fontsize=14, color=INK)
    ax.text(5, 4.95, "output h = W x + (α / r) · B A x   (m numbers)", ha="center", va="center", fontsize=14, color=INK)
    ax.add_patch(plt.Circle((5, 4.35), 0.22, facecolor="white", edgecolor=INK, linewidth=1.5))
    ax.text(5, 4.35, "+", ha="center", va="center", fontsize=18, color=INK)
    arrow(ax, (5, 4.57), (5, 4.78))

    # frozen path
    box(ax, 1.0, 1.5, 3.0, 2.2, FROZEN, "W  (m × n)", "pretrained, frozen\nm · n weights")
    arrow(ax, (4.6, 0.45), (2.5, 1.45))
    arrow(ax, (2.5, 3.75), (4.8, 4.25))

    # trainable path: A narrows n -> r, B widens r -> m
    ax.add_patch(Polygon([(6.0, 1.2), (8.6, 1.2), (7.6, 1.95), (7.0, 1.95)], closed=True,
                         facecolor=TRAINABLE, edgecolor=INK, linewidth=1.5))
    ax.text(7.3, 1.5, "A  (r × n)", ha="center", va="center", fontsize=15, fontweight="bold", color=INK)
    ax.add_patch(Polygon([(7.0, 2.45), (7.6, 2.45), (8.6, 3.2), (6.0, 3.2)], closed=True,
                         facecolor=TRAINABLE, edgecolor=INK, linewidth=1.5))
    ax.text(7.3, 2.9, "B  (m × r)", ha="center", va="center", fontsize=15, fontweight="bold", color=INK)
    arrow(ax, (7.3, 1.95), (7.3, 2.45))
    ax.text(7.7, 2.2, "r numbers", ha="left", va="center", fontsize=13, color=INK)
    ax.text(7.3, 3.55, "× α / r", ha="center", va="center", fontsize=14, color=INK)
    arrow(ax, (5.4, 0.45), (7.3, 1.15))
    arrow(ax, (7.0, 3.75), (5.2, 4.25))
    ax.text(8.7, 1.55, "trainable:\nr · (m + n)\nnumbers", ha="left", va="center", fontsize=13, color=INK)
    ax.text(8.7, 2.95, "B starts at 0:\nat first the pair\nadds nothing", ha="left", va="center",
            fontsize=13, style="italic", color=INK)
    return fig


def main() -> None:
    fig = draw()
    # No timestamp or version in the file, so the same code always writes the same bytes.
    fig.savefig(OUTPUT, dpi=250, metadata={"Software": None})  # 250 dpi: sharp on paper and projectors
    plt.close(fig)


if __name__ == "__main__":
    main()
