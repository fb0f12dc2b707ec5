"""The Hessian spectral density of a spectrum file, on a log axis as PyHessian draws it.

Drawn by the hessian command when it writes the file, and again from the
file alone by ``python -m mpi_landscape.plot --spectrum FILE``; one column
wide, like the other figures, with λmax, λmin and the trace to the same
number of significant digits.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ..store import Spectrum, read_spectrum
from .plot_layout import COLUMN_WIDTH, column_style, figure_title, plain_log_axis
from .plot_scale import number

DENSITY_FLOOR = 1e-8  # densities below this are drawn at it, so the log axis keeps its range
DIGITS = 3  # significant digits of every eigenvalue and the trace in the legend
DPI = 300


def density_figure(spectrum: Spectrum, title: str | None = None) -> Figure:
    """Density against eigenvalue (log density axis), with λmin, λmax and the trace in the legend.

    ``title`` None: the model and split the file records.
    """
    if title is None:
        title = " · ".join(str(spectrum.attrs[k]) for k in ("model", "split") if k in spectrum.attrs)
    fig = Figure(figsize=(COLUMN_WIDTH, 2.8), layout="constrained")
    ax = fig.add_subplot()
    density = np.maximum(spectrum.density, DENSITY_FLOOR)
    runs, steps = spectrum.slq_nodes.shape
    ax.semilogy(spectrum.density_grid, density, color="tab:blue",
                label=f"SLQ density ({runs} run{'s' if runs != 1 else ''} × {steps} steps)")
    ax.axvline(spectrum.top_eigenvalues[0], color="tab:red", linestyle="--",
               label=f"λmax = {number(spectrum.top_eigenvalues[0], DIGITS)}")
    ax.axvline(spectrum.min_eigenvalue, color="tab:green", linestyle=":",
               label=f"λmin = {number(spectrum.min_eigenvalue, DIGITS)}")
    ax.plot([], [], " ", label=f"trace = {number(spectrum.trace, DIGITS)} ± {number(spectrum.trace_error, 2)}")
    ax.set_xlabel("eigenvalue of the Hessian")
    ax.set_ylabel("density")
    ax.set_ylim(bottom=DENSITY_FLOOR)
    plain_log_axis(ax.yaxis, subs=(1.0,))
    ax.legend(loc="upper right", frameon=False)
    figure_title(fig, title)
    return fig


def plot_spectrum_file(spectrum_file: str, out_file: str, dpi: int = DPI) -> str:
    """Draw the density of ``spectrum_file`` into ``out_file`` (PDF, PNG, ... by its extension)."""
    with column_style():
        density_figure(read_spectrum(spectrum_file)).savefig(out_file, dpi=dpi)
    return out_file
