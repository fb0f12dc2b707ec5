"""Several 2D surface files as the frames of one animation (GIF, or MP4 where ffmpeg exists).

For the evolution of a landscape over training (one surface per checkpoint,
along shared directions) in slides and supplementary material: every frame
has the same colour scale, contour levels, axes and 3D camera, so only the
landscape moves. Frames are drawn by matplotlib's animation module; Pillow
writes GIF, ffmpeg MP4.
"""

from __future__ import annotations

import os
from typing import Sequence

import matplotlib
import numpy as np
from matplotlib import animation
from matplotlib.figure import Figure

from ..errors import LandscapeError, require_folder
from ..store import Surface
from .plot_data import axis_label, diverged_mask, masked_values, metric_label
from .figure_3d import face_colours
from .plot_figures import DIVERGED_STYLE, Scale
from .plot_scale import tick_labels

WRITERS = {".gif": "pillow", ".mp4": "ffmpeg"}
FRAMES_PER_SECOND = 2.0
DPI = 120
CAMERA = {"elev": 32, "azim": -58}  # one view for every frame
FIGURE_SIZE = (9.0, 3.6)  # inches; fixed axes rectangles, so nothing moves between frames
SURFACE_RECT, CONTOUR_RECT, COLOUR_BAR_RECT = (0.0, 0.04, 0.42, 0.84), (0.56, 0.14, 0.29, 0.72), \
    (0.88, 0.14, 0.016, 0.72)


def write_animation(frames: Sequence[tuple[Surface, str]], metric: str, scale: Scale, path: str,
                    fps: float = FRAMES_PER_SECOND) -> str:
    """Write one frame per (surface, label) to ``path`` (.gif or .mp4) on the fixed ``scale``; returns ``path``."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in WRITERS:
        raise LandscapeError(f"--out {path}: an animation is written as .gif or .mp4")
    if not animation.writers.is_available(WRITERS[suffix]):
        raise LandscapeError(f"--out {path}: writing {suffix} needs {WRITERS[suffix]}, which is not "
                             f"installed; install it, or write a .gif")
    for surface, label in frames:
        if surface.y is None or min(surface.shape) < 2:
            raise LandscapeError(f"--animate draws 2D surfaces; {label} is not one")
    require_folder(path, f"--out {path}")
    fig, draw = _animated_figure(frames, metric, scale)
    movie = animation.FuncAnimation(fig, draw, frames=len(frames), blit=False)
    writer = animation.writers[WRITERS[suffix]](fps=fps)
    movie.save(path, writer=writer, dpi=DPI)
    return path


def _animated_figure(frames: Sequence[tuple[Surface, str]], metric: str, scale: Scale):
    """The figure and a function drawing frame ``i`` into it (same axes, limits and camera each time)."""
    fig = Figure(figsize=FIGURE_SIZE)
    surface_ax = fig.add_axes(SURFACE_RECT, projection="3d")
    contour_ax = fig.add_axes(CONTOUR_RECT)
    bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm=scale.norm(), cmap=scale.cmap),
                       cax=fig.add_axes(COLOUR_BAR_RECT), label=metric_label(metric, frames[0][0]))
    ticks = scale.bar_ticks(scale.vmin, scale.vmax)
    bar.set_ticks(ticks, labels=tick_labels(ticks))
    bar.minorticks_off()
    first = frames[0][0]
    x_range = (min(s.x.min() for s, _ in frames), max(s.x.max() for s, _ in frames))
    y_range = (min(s.y.min() for s, _ in frames), max(s.y.max() for s, _ in frames))
    heights = (np.log10(scale.vmin), np.log10(scale.vmax)) if scale.log else (scale.vmin, scale.vmax)
    title = fig.suptitle("")

    def draw(index: int) -> None:
        surface, label = frames[index]
        z = masked_values(surface, metric, log=scale.log)
        clipped = np.clip(z.filled(np.nan), scale.vmin, scale.vmax)
        surface_ax.clear()
        xx, yy = np.meshgrid(surface.x, surface.y)
        surface_ax.plot_surface(xx, yy, np.log10(clipped) if scale.log else clipped,
                                facecolors=face_colours(np.ma.masked_invalid(clipped), scale),
                                linewidth=0, antialiased=True, shade=False)
        surface_ax.set(xlim=x_range, ylim=y_range, zlim=heights, xlabel="α", ylabel="β")
        surface_ax.set_zlabel(f"log10 {metric}" if scale.log else metric)
        surface_ax.view_init(**CAMERA)
        contour_ax.clear()
        contour_ax.contourf(surface.x, surface.y, z, levels=scale.levels(), norm=scale.norm(), cmap=scale.cmap,
                            extend="both")
        contour_ax.contour(surface.x, surface.y, z, levels=scale.levels(), colors="k", linewidths=0.3, alpha=0.5)
        iy, ix = np.nonzero(diverged_mask(surface, metric))
        if len(ix):
            contour_ax.plot(surface.x[ix], surface.y[iy], **DIVERGED_STYLE)
        contour_ax.set(xlim=x_range, ylim=y_range, xlabel=axis_label("x", first), ylabel=axis_label("y", first))
        title.set_text(f"{label}   ({index + 1}/{len(frames)})")

    return fig, draw
