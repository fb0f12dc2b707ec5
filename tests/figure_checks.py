"""Checks a reviewer makes of a rendered matplotlib figure, for the figure tests to share.

Each check renders the figure with Agg (as ``savefig`` does) and reads back
what was drawn: the pixel positions of colour-bar tick labels, the boxes of
every piece of text, the colours of contour lines. They assert what a reader
would otherwise catch by eye: a number printed where the bar does not have
that value, two labels on top of each other, a label cut by the canvas or by
its axes' frame, a line that vanishes on a white background.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from mpi_landscape.views.plot_scale import contrast_with_white

HALF_PIXEL = 0.5
LABEL_OFFSET = 2.5  # px a tick label's box may sit off its tick (font metrics)
MIN_LINE_CONTRAST = 1.9  # WCAG contrast of a line colour against white (white itself is 1)


def render(fig: Figure):
    """Draw ``fig`` on an Agg canvas (its layout engine runs); returns the renderer."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def colour_bars(fig: Figure) -> list:
    """The figure's colour bars, inset ones included (matplotlib marks a bar's axes with its ``Colorbar``)."""
    return [ax._colorbar for ax in fig.findobj(lambda a: getattr(a, "_colorbar", None) is not None)]


def all_axes(fig: Figure) -> list[Axes]:
    """Every axes of the figure, insets (an inset colour bar's) included."""
    return fig.findobj(lambda a: isinstance(a, Axes))


def tick_value(text: str) -> float:
    """A tick label's number: plain decimals, with a typographic minus or a hyphen."""
    try:
        return float(text.replace("\u2212", "-"))
    except ValueError:
        raise AssertionError(f"tick label {text!r} is not a plain number") from None


def assert_colour_bar_ticks(fig: Figure, min_ticks: int = 2, renderer=None) -> None:
    """Every colour bar's tick labels are numbers that sit where the bar has that value.

    Each drawn tick's location is taken to display pixels, and the pixels half
    a pixel either side of it back through the bar's own axis (its norm, or
    the spacing of its levels) to the values the bar has there: the printed
    number must lie between them, and within the coloured range (never on an
    extension triangle). The label's box must be centred on its tick.
    """
    renderer = renderer or render(fig)
    bars = colour_bars(fig)
    assert bars, "the figure has no colour bar"
    for bar in bars:
        vertical = bar.orientation == "vertical"
        along = 1 if vertical else 0
        axis = bar.ax.yaxis if vertical else bar.ax.xaxis
        lo, hi = sorted(bar.ax.get_ylim() if vertical else bar.ax.get_xlim())
        ticks = [(tick, label) for tick in axis._update_ticks() for label in (tick.label1, tick.label2)
                 if label.get_visible() and label.get_text()]
        assert len(ticks) >= min_ticks, f"colour bar {axis.label.get_text()!r}: {len(ticks)} tick labels"
        inverse = bar.ax.transData.inverted()
        for tick, label in ticks:
            text = label.get_text()
            printed = tick_value(text)
            slack = 1e-9 * abs(hi - lo)
            assert lo - slack <= printed <= hi + slack, f"tick {text!r} lies outside the bar's range {lo:g}…{hi:g}"
            pixel = bar.ax.transData.transform([(tick.get_loc(), tick.get_loc())])[0][along]
            around = [inverse.transform([(p, p)])[0][along] for p in (pixel - HALF_PIXEL, pixel + HALF_PIXEL)]
            assert min(around) - slack <= printed <= max(around) + slack, \
                f"tick {text!r} is where the bar has {min(around):.4g}…{max(around):.4g}"
            box = label.get_window_extent(renderer)
            centre = (box.y0 + box.y1) / 2 if vertical else (box.x0 + box.x1) / 2
            assert abs(centre - pixel) <= LABEL_OFFSET, f"tick label {text!r} is {centre - pixel:+.1f} px off its tick"


def drawn_tick_labels(axis) -> list[Text]:
    """The tick labels an axis draws: its ticks inside the view interval, label1/label2 if visible."""
    if not (axis.axes.axison and axis.get_visible()):
        return []
    labels = [label for tick in axis._update_ticks() for label in (tick.label1, tick.label2)]
    return [t for t in labels if t.get_visible() and t.get_text().strip()]


def visible_texts(fig: Figure, rendered: bool = False) -> list[Text]:
    """Every drawn, non-empty piece of text of the figure: titles, axis and tick labels (of
    drawn ticks only), legends, contour labels, free text. ``rendered``: the figure is drawn already."""
    if not rendered:
        render(fig)
    axis_texts, drawn = set(), []
    for ax in all_axes(fig):
        for axis in ax._axis_map.values():
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                axis_texts |= {tick.label1, tick.label2}
            axis_texts |= {axis.label, axis.offsetText}
            drawn += drawn_tick_labels(axis)
            if ax.axison and axis.get_visible():
                drawn += [t for t in (axis.label, axis.offsetText) if t.get_visible() and t.get_text().strip()]
    others = [t for t in fig.findobj(Text)
              if t not in axis_texts and t.get_visible() and t.get_text().strip()]
    return drawn + others


def text_boxes(fig: Figure, renderer=None) -> list[tuple[Text, object]]:
    """(text, its box in display pixels) for every visible text of the figure (``renderer``: drawn already)."""
    rendered = renderer is not None
    renderer = renderer or render(fig)
    return [(t, t.get_window_extent(renderer)) for t in visible_texts(fig, rendered=rendered)]


def assert_no_overlapping_text(fig: Figure, tolerance: float = 0.5, renderer=None) -> None:
    """No two pieces of text share pixels (boxes may touch, within ``tolerance`` px)."""
    boxes = text_boxes(fig, renderer)
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            overlap_x = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
            overlap_y = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
            assert min(overlap_x, overlap_y) <= tolerance, \
                f"{a.get_text()!r} and {b.get_text()!r} overlap by {overlap_x:.1f}×{overlap_y:.1f} px"


def assert_text_inside(fig: Figure, tolerance: float = 0.5, renderer=None) -> None:
    """Every piece of text lies within the canvas, and clipped text (contour labels) within its clip box."""
    boxes = text_boxes(fig, renderer)
    canvas = fig.bbox
    for text, box in boxes:
        assert box.x0 >= canvas.x0 - tolerance and box.x1 <= canvas.x1 + tolerance \
            and box.y0 >= canvas.y0 - tolerance and box.y1 <= canvas.y1 + tolerance, \
            f"{text.get_text()!r} is cut by the canvas edge ({box} in {canvas})"
        clip = text.get_clip_box() if text.get_clip_on() else None
        if clip is not None:
            assert box.x0 >= clip.x0 - tolerance and box.x1 <= clip.x1 + tolerance \
                and box.y0 >= clip.y0 - tolerance and box.y1 <= clip.y1 + tolerance, \
                f"{text.get_text()!r} is cut by its axes' frame"


def assert_legible(fig: Figure) -> None:
    """No text overlaps another or is cut off, and every colour bar's ticks are true."""
    renderer = render(fig)
    assert_no_overlapping_text(fig, renderer=renderer)
    assert_text_inside(fig, renderer=renderer)
    if colour_bars(fig):
        assert_colour_bar_ticks(fig, renderer=renderer)


def assert_lines_visible(contour_set, minimum: float = MIN_LINE_CONTRAST) -> None:
    """Every level's line of a line-contour set stands out from a white background."""
    contrast = contrast_with_white(contour_set.get_edgecolor())
    worst = int(np.argmin(contrast))
    assert contrast[worst] >= minimum, \
        f"the line at level {contour_set.levels[worst]:g} has contrast {contrast[worst]:.2f} on white"


def assert_bar_spans_axes(fig: Figure, ax, tolerance: float = 1.5) -> None:
    """A colour bar beside ``ax`` is no taller than the axes' own box (equal aspect shrinks the box)."""
    renderer = render(fig)
    frame = ax.get_window_extent(renderer)
    for bar in colour_bars(fig):
        box = bar.ax.get_window_extent(renderer)
        if bar.orientation == "vertical":
            assert box.height <= frame.height + tolerance, \
                f"the colour bar is {box.height:.0f} px tall beside axes {frame.height:.0f} px tall"
