"""The axes of a plane in weight space: what α and β are, and whether they share one scale."""

from __future__ import annotations

import numpy as np

from .plot_data import axis_label
from ..store import Surface

EQUAL_ASPECT_MAX = 4.0  # α and β drawn to one scale unless one range is this many times the other


def label_plane(ax, surface: Surface, explained_variance: tuple[float, float] | None,
                spans: tuple[float, float] | None = None, max_ratio: float = EQUAL_ASPECT_MAX) -> None:
    """Axis labels; α and β on one scale when they are in the same units and the ranges shown
    (``spans``, by default the grid's) are within ``max_ratio`` of each other."""
    ax.set_xlabel(axis_label("x", surface, explained_variance))
    ax.set_ylabel(axis_label("y", surface, explained_variance))
    if same_units(surface):
        spans = spans or (np.ptp(surface.x), np.ptp(surface.y))
        if min(spans) > 0 and max(spans) / min(spans) <= max_ratio:
            ax.set_aspect("equal", adjustable="box")


def same_units(surface: Surface) -> bool:
    """Whether α and β measure the same thing: both random/PCA directions, or both model differences."""
    config = surface.attrs.get("config") if isinstance(surface.attrs.get("config"), dict) else {}
    return bool(config.get("model_file2")) == bool(config.get("model_file3"))
