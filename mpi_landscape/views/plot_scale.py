"""How values become colours, contour levels and tick labels, shared by every 2D figure.

A ``Scale`` holds the value range, the levels and the colour map of one
figure (or of a grid of panels on one scale), and draws the colour bar: its
ticks are round numbers inside the coloured range only, so that no number is
printed where the bar does not have that value; they use the typographic
minus of the axes. Positive quantities spanning decades (a loss, a Hessian's
λmax) get log levels; signed ones (λmin) diverge from white at zero, on a
symmetric-log scale when the values crowd near zero. Contour lines are
darkened where the colour map is too pale to see on white.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib.colors import ListedColormap, LogNorm, Normalize, SymLogNorm, TwoSlopeNorm, to_rgba_array
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator

from ..errors import LandscapeError

MAX_LEVELS = 1000
ROUND_LEVELS = 12  # about this many contour levels when the spacing comes from the data
LOG_MANTISSAS = ((1, 2, 5), (1, 1.5, 2, 3, 5, 7), (1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9))
MIN_LOG_LEVELS = 8  # finer mantissas until a log range has this many levels
MIN_BAR_TICKS = 3  # fewer round ticks than this inside the bar: label levels instead
SYMLOG_RATIO = 50.0  # a signed range this many times its weaker side gets a symmetric-log scale
LINE_CONTRAST = 2.0  # WCAG contrast against white that every contour line keeps
MINUS = "\u2212"


@dataclass(frozen=True)
class Scale:
    """The value range, contour levels and colour map shared by a figure's colours and lines.

    ``step`` is the reference's ``--vlevel`` (levels ``vmin, vmin+step, ...``;
    in decades with ``log``); without it the levels are round numbers inside
    the range: 1-2-5 per decade on a log scale, so the lowest decade -- a
    trained network's basin -- gets contours of its own. ``centre`` makes the
    colours diverge from that value (a curvature's sign); ``linthresh`` makes
    that a symmetric-log scale, linear within ±linthresh of the centre.
    """

    vmin: float
    vmax: float
    step: float | None = None
    log: bool = False
    cmap: str = "viridis"
    centre: float | None = None
    linthresh: float | None = None

    def __post_init__(self) -> None:
        if not self.vmin < self.vmax:
            raise LandscapeError(f"--vmin {self.vmin:g} must be below --vmax {self.vmax:g}")
        if self.step is not None and not self.step > 0:
            raise LandscapeError(f"--vlevel {self.step:g} must be positive")
        if self.log and self.vmin <= 0:
            raise LandscapeError(f"--log needs a positive --vmin (got {self.vmin:g})")
        if len(self.levels()) > MAX_LEVELS:
            raise LandscapeError(f"--vlevel {self.step:g} gives more than {MAX_LEVELS} contour levels "
                                 f"between {self.vmin:g} and {self.vmax:g}; choose a larger step")

    @property
    def symlog(self) -> bool:
        return self.linthresh is not None and not self.log and self.step is None

    def levels(self) -> np.ndarray:
        """Contour levels: from ``step`` when given (the reference's arange; in decades with
        ``log``, vmax included), else round numbers within [vmin, vmax]."""
        if self.step is not None:
            if self.log:
                exponents = np.arange(np.log10(self.vmin), np.log10(self.vmax) + 1e-9, self.step)
                return 10.0 ** exponents
            return np.arange(self.vmin, self.vmax, self.step)
        if self.log:
            return round_log_levels(self.vmin, self.vmax)
        if self.symlog:
            return symlog_levels(self.vmin, self.vmax, self.linthresh)
        levels = MaxNLocator(ROUND_LEVELS, steps=[1, 2, 2.5, 5, 10]).tick_values(self.vmin, self.vmax)
        span = self.vmax - self.vmin
        return levels[(levels >= self.vmin - 1e-9 * span) & (levels <= self.vmax + 1e-9 * span)]

    def norm(self) -> Normalize:
        if self.log:
            return LogNorm(self.vmin, self.vmax)
        if self.symlog:
            limit = max(abs(self.vmin), abs(self.vmax))
            return SymLogNorm(self.linthresh, linscale=1.0, vmin=-limit, vmax=limit, base=10)
        if self.centre is not None and self.vmin < self.centre < self.vmax:
            return TwoSlopeNorm(self.centre, self.vmin, self.vmax)
        return Normalize(self.vmin, self.vmax)

    def bar_ticks(self, lo: float, hi: float) -> np.ndarray:
        """Round tick values inside the bar's coloured range [lo, hi] (never beyond it): 1-2-5 per
        decade on a log scale, else a few round numbers; the levels themselves when too few fit."""
        if self.log:
            ticks = LogLocator(subs=(1.0, 2.0, 5.0)).tick_values(lo, hi)
        elif self.symlog:
            ticks = self.levels()[::2] if len(self.levels()) > 9 else self.levels()
        else:
            ticks = MaxNLocator(6, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
        slack = 1e-9 * (hi - lo)
        ticks = ticks[(ticks >= lo - slack) & (ticks <= hi + slack)]
        if len(ticks) < MIN_BAR_TICKS:
            levels = self.levels()
            levels = levels[(levels >= lo - slack) & (levels <= hi + slack)]
            ticks = levels[::max(1, len(levels) // 6)]
        return ticks

    def colorbar(self, fig: Figure, mappable, ax, label: str, **kwargs):
        """A colour bar whose tick labels are round numbers inside its range, whatever the levels.

        Beside one axes the bar is an inset as tall as the axes' box (equal aspect
        shrinks the box, and a bar beside it must not stand taller); beside several
        axes it is laid out by the figure.
        """
        extend = kwargs.pop("extend", None)
        if isinstance(ax, (list, tuple)) or ax.name == "3d":
            bar = fig.colorbar(mappable, ax=ax, label=label, extend=extend, **kwargs)
        else:
            kwargs.pop("shrink", None), kwargs.pop("pad", None)
            cax = ax.inset_axes([1.04, 0.0, 0.05, 1.0])
            bar = fig.colorbar(mappable, cax=cax, label=label, extend=extend, **kwargs)
        lo, hi = sorted(bar.ax.get_ylim() if bar.orientation == "vertical" else bar.ax.get_xlim())
        ticks = self.bar_ticks(lo, hi)
        bar.set_ticks(ticks)
        bar.set_ticklabels(tick_labels(ticks))
        bar.minorticks_off()
        return bar

    def line_cmap(self) -> ListedColormap:
        """The colour map with its colours too pale for white paper darkened, for contour lines."""
        return ListedColormap(legible(matplotlib.colormaps[self.cmap](np.linspace(0, 1, 256))),
                              name=f"{self.cmap}_lines")


def round_log_levels(vmin: float, vmax: float) -> np.ndarray:
    """Levels m·10^k inside (vmin, vmax], with m from 1-2-5 or finer until there are enough of them."""
    decades = np.arange(np.floor(np.log10(vmin)), np.ceil(np.log10(vmax)) + 1)
    levels = np.array([])
    for mantissas in LOG_MANTISSAS:
        candidates = np.array([float(f"{m * 10.0 ** k:.3g}") for k in decades for m in mantissas])
        levels = np.unique(candidates[(candidates > vmin) & (candidates <= vmax * (1 + 1e-9))])
        if len(levels) >= MIN_LOG_LEVELS:
            break
    return levels


def symlog_levels(vmin: float, vmax: float, linthresh: float) -> np.ndarray:
    """Zero, ±linthresh, and 1-2-5 log levels beyond it on each side, up to the first level past
    each end of [vmin, vmax], so that no value falls beyond the levels into an extension."""
    limit = max(abs(vmin), abs(vmax))
    outer = np.array([float(f"{m * 10.0 ** k:.3g}")
                      for k in range(math.floor(math.log10(linthresh)), math.ceil(math.log10(limit)) + 1)
                      for m in (1, 2, 5)])
    outer = outer[outer >= linthresh * (1 - 1e-9)]
    levels = np.concatenate([-outer[::-1], [0.0], outer])
    low = levels[levels <= vmin].max() if (levels <= vmin).any() else levels[0]
    high = levels[levels >= vmax].min() if (levels >= vmax).any() else levels[-1]
    return levels[(levels >= low) & (levels <= high)]


def linear_threshold(lo: float, hi: float) -> float | None:
    """For a signed quantity ranging over [lo, hi]: the round value below which a symmetric-log
    scale should be linear, or None when a linear scale shows both signs well.

    The weaker sign's extent (or a hundredth of the range when one sign is
    missing) sets it, so values near zero keep colours of their own.
    """
    limit = max(abs(lo), abs(hi))
    weaker = min(abs(lo), abs(hi)) if lo < 0 < hi else limit / 100
    weaker = max(weaker, limit / 1000)
    if limit / weaker < SYMLOG_RATIO:
        return None
    exponent = math.floor(math.log10(weaker))
    mantissa = max(m for m in (1, 2, 5) if m * 10.0 ** exponent <= weaker * (1 + 1e-9))
    return float(f"{mantissa * 10.0 ** exponent:.3g}")


def number(value: float, digits: int = 3) -> str:
    """A value as a figure prints it: up to ``digits`` significant digits, typographic minus."""
    return f"{value:.{digits}g}".replace("-", MINUS)


def tick_labels(values: np.ndarray) -> list[str]:
    """Labels for ticks: the fewest significant digits (at least 3) that tell every tick apart."""
    return [number(v, label_digits(values)) for v in values]


def label_digits(values: np.ndarray, least: int = 3) -> int:
    """Significant digits that print the distinct ``values`` (levels, ticks) distinctly, each within
    a hundredth of their spacing of its value (6.2375, not 6.24, between 6.235 and 6.24)."""
    values = np.unique(np.asarray(values, dtype=np.float64))
    spacing = np.diff(values).min() if len(values) > 1 else abs(values[0]) if len(values) else 1.0
    for digits in range(least, 12):
        printed = np.array([float(f"{v:.{digits}g}") for v in values])
        if len(np.unique(printed)) == len(values) and np.all(np.abs(printed - values) <= 0.01 * spacing):
            return digits
    return 12


def level_formatter(levels: np.ndarray) -> FuncFormatter:
    """Contour-label text precise enough that no two levels read the same (6.235 vs 6.24)."""
    digits = label_digits(levels)
    return FuncFormatter(lambda v, _=None: number(v, digits))


def contrast_with_white(rgba: np.ndarray) -> np.ndarray:
    """WCAG contrast ratio of colours against white (1: invisible on white, 21: black)."""
    rgb = to_rgba_array(rgba)[:, :3]
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return 1.05 / (linear @ np.array([0.2126, 0.7152, 0.0722]) + 0.05)


def legible(rgba: np.ndarray, contrast: float = LINE_CONTRAST) -> np.ndarray:
    """``rgba`` with each colour too pale for white paper darkened (hue kept) to ``contrast``."""
    out = to_rgba_array(rgba).copy()
    for i in np.flatnonzero(contrast_with_white(out) < contrast):
        lo, hi = 0.0, 1.0  # the largest factor on RGB that still meets the contrast
        for _ in range(30):
            mid = (lo + hi) / 2
            candidate = out[i].copy()
            candidate[:3] *= mid
            lo, hi = (mid, hi) if contrast_with_white(candidate[None])[0] >= contrast else (lo, mid)
        out[i, :3] *= lo
    return out
