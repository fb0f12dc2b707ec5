"""The 3D surface figure of a 2D loss surface (the reference's ``3dsurface``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, MultipleLocator

from .plot_data import axis_label
from ..store import Surface

if TYPE_CHECKING:
    from .plot_figures import Scale

FIGSIZE = (3.5, 3.0)  # inches: one column of a two-column paper


def surface_3d(surface: Surface, z: np.ma.MaskedArray, label: str, scale: Scale, title: str,
               explained_variance: tuple[float, float] | None, log_height: bool) -> Figure:
    """A 3D surface coloured by the scale, clipped at its vmax, with a colour bar that names it.

    With ``log_height`` the height is log10 of the metric (3D axes have no log
    scale) and its ticks are labelled in decades.
    """
    fig = Figure(figsize=FIGSIZE, layout="constrained")
    ax = fig.add_subplot(projection="3d")
    xx, yy = np.meshgrid(surface.x, surface.y)
    clipped = np.minimum(z.filled(np.nan), scale.vmax)
    height = np.log10(clipped) if log_height else clipped
    colours = matplotlib.colormaps[scale.cmap](scale.norm()(np.ma.masked_invalid(clipped)))
    ax.plot_surface(xx, yy, height, facecolors=colours, linewidth=0, antialiased=True,
                    rcount=200, ccount=200, shade=False)
    mappable = matplotlib.cm.ScalarMappable(norm=scale.norm(), cmap=scale.cmap)
    scale.colorbar(fig, mappable, ax, label, shrink=0.6, pad=0.12)  # its label names the height too
    ax.set_xlabel(axis_label("x", surface, explained_variance), labelpad=-2)
    ax.set_ylabel(axis_label("y", surface, explained_variance), labelpad=-2)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(4))
    if log_height:
        ax.zaxis.set_major_locator(MultipleLocator(1))
        ax.zaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{10.0 ** v:g}"))
    else:
        ax.zaxis.set_major_locator(MaxNLocator(4))
    top = np.log10(scale.vmax) if log_height else scale.vmax
    low = np.nanmin(height) if np.isfinite(height).any() else top - 1
    ax.set_zlim(min(low, top - 1e-9), top)
    ax.tick_params(pad=-1)
    if title:
        ax.set_title(title)
    return fig
