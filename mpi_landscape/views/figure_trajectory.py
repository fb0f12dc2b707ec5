"""The PCA trajectory figure: an optimizer's path on the contours of the surface around it."""

from __future__ import annotations

from matplotlib.figure import Figure

from .plane_axes import label_plane
from .plot_data import masked_values, metric_label
from .plot_figures import COLUMN_WIDTH, Scale, _contour_lines, _mark_diverged
from ..store import Projection, Surface


def figure_trajectory(surface: Surface, metric: str, projection: Projection, scale: Scale,
                      title: str, explained_variance: tuple[float, float] | None = None) -> Figure:
    """Contour lines of ``metric`` with the projected optimizer path: start, end, and red dots
    at learning-rate drops (the paper's marks), their epochs named in the legend."""
    fig = Figure(figsize=(COLUMN_WIDTH, 3.3), layout="constrained")
    ax = fig.add_subplot()
    lines = _contour_lines(ax, surface, masked_values(surface, metric, log=scale.log), scale)
    ax.plot(projection.xcoord, projection.ycoord, "-", color="k", linewidth=0.9, marker=".", markersize=2.5,
            label="path")
    drops = projection.drop_indices()
    if len(drops):
        epochs = ", ".join(str(projection.epochs[i]) for i in drops)
        ax.plot(projection.xcoord[drops], projection.ycoord[drops], "o", color="red", markersize=4,
                linestyle="none", zorder=4, label=f"lr drop (epoch {epochs})")
    ax.plot(projection.xcoord[:1], projection.ycoord[:1], "^", color="tab:green", markeredgecolor="k",
            markeredgewidth=0.5, markersize=5, linestyle="none", zorder=5, label="start")
    ax.plot(projection.xcoord[-1:], projection.ycoord[-1:], "*", color="gold", markeredgecolor="k",
            markeredgewidth=0.5, markersize=8, linestyle="none", zorder=5, label="end")
    _mark_diverged(ax, surface, metric, legend=False)
    label_plane(ax, surface, explained_variance)
    if len(lines.levels):
        scale.colorbar(fig, lines, ax, metric_label(metric, surface))
    fig.legend(loc="outside lower center", ncols=2, frameon=False)
    if title:
        ax.set_title(title)
    return fig
