"""Sizes, fonts and the placing of words shared by every matplotlib figure.

Figures are one paper column wide; titles go over the whole figure (clear of
a colour bar) and are wrapped to its width; contour labels are placed after
the layout is fixed, kept off one another and inside the frame, and print
just enough digits to tell neighbouring levels apart.
"""

from __future__ import annotations

import textwrap
from contextlib import contextmanager
from typing import Iterator

import matplotlib
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ticker import FuncFormatter, LogLocator

from .plot_scale import level_formatter, number

COLUMN_WIDTH = 3.5  # inches: one column of a two-column paper
STYLE = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7,
    "ytick.labelsize": 7, "legend.fontsize": 6.5, "lines.linewidth": 1.2,
    "figure.titlesize": 8, "pdf.fonttype": 42, "savefig.bbox": "tight",
}
CHARACTER_WIDTH = 0.55  # a character's mean width, in font sizes
CONTOUR_LABEL_SIZE = 5.5
LABEL_GAP = 1.0  # px kept between contour labels and between a label and the frame


@contextmanager
def column_style() -> Iterator[None]:
    """Fonts and sizes that stay readable when a figure is printed one column wide."""
    with matplotlib.rc_context(STYLE):
        yield


def wrapped(text: str, width_inches: float, points: float) -> str:
    """``text`` broken into lines (at spaces, existing breaks kept) that fit ``width_inches`` at ``points``."""
    per_line = max(12, int(width_inches * 72 / (CHARACTER_WIDTH * points)))
    return "\n".join(textwrap.fill(line, per_line, break_on_hyphens=False) for line in text.split("\n"))


def figure_title(fig: Figure, text: str) -> None:
    """The figure's title over all its axes and colour bars, wrapped to the figure's width."""
    if text:
        fig.suptitle(wrapped(text, fig.get_figwidth(), _points("figure.titlesize")))


def panel_title(ax, text: str, width_inches: float) -> None:
    """A panel's title, wrapped to the panel's width."""
    ax.set_title(wrapped(text, width_inches, _points("axes.titlesize")))


def _points(setting: str) -> float:
    """A font-size setting (8, or 'large') in points."""
    return FontProperties(size=matplotlib.rcParams[setting]).get_size_in_points()


def plain_log_axis(axis, subs: tuple[float, ...] = (1.0, 2.0, 5.0)) -> None:
    """A log axis ticked at ``subs`` per decade (1-2-5) with plain numbers (0.05, not 5×10⁻²),
    as the colour bars are."""
    axis.set_major_locator(LogLocator(subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _=None: number(v)))
    axis.set_minor_formatter(FuncFormatter(lambda v, _=None: ""))


def settle_layout(fig: Figure, draws: int = 3) -> None:
    """Run the constrained layout until it has settled, then keep it: a colour bar inset beside
    equal-aspect axes moves with them, and the layout needs a few passes to make room for it."""
    for _ in range(draws):
        fig.draw_without_rendering()
    fig.set_layout_engine("none")


def label_contours(ax, lines) -> None:
    """Label contour lines with their levels, after the figure's layout is fixed.

    The labels sit on a white patch over their line (no gaps cut into it), and
    any label that would leave the frame or touch an earlier one is dropped,
    so labels never pile up on a steep wall or get cut at the edge.
    """
    if not len(lines.levels):
        return
    fig = ax.get_figure(root=True)
    fig.draw_without_rendering()  # the axes' final size: labels are placed in pixels
    texts = ax.clabel(lines, inline=False, fontsize=CONTOUR_LABEL_SIZE, fmt=level_formatter(lines.levels))
    frame = ax.get_window_extent()
    kept = []
    for index in reversed(range(len(texts))):  # popping from the end keeps the earlier indices
        text = texts[index]
        text.set_bbox(dict(boxstyle="square,pad=0.1", facecolor="white", edgecolor="none"))
        box = text.get_window_extent().padded(LABEL_GAP)
        inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        if inside and not any(box.overlaps(other) for other in kept):
            kept.append(box)
        else:
            lines.pop_label(index)
