"""The Hessian spectral density of a spectrum file, on a log axis as PyHessian draws it."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ..store import Spectrum, read_spectrum

DENSITY_FLOOR = 1e-8  # densities below this are drawn at it, so the log axis keeps its range


def density_figure(spectrum: Spectrum, title: str = "") -> Figure:
    """Density against eigenvalue (log density axis), with λmin, λmax and the trace in the legend."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    density = np.maximum(spectrum.density, DENSITY_FLOOR)
    ax.semilogy(spectrum.density_grid, density, color="tab:blue",
                label=f"SLQ density ({spectrum.slq_nodes.shape[0]} runs × {spectrum.slq_nodes.shape[1]} steps)")
    ax.axvline(spectrum.top_eigenvalues[0], color="tab:red", linestyle="--",
               label=f"λmax = {spectrum.top_eigenvalues[0]:.4g}")
    ax.axvline(spectrum.min_eigenvalue, color="tab:green", linestyle=":",
               label=f"λmin = {spectrum.min_eigenvalue:.4g}")
    ax.plot([], [], " ", label=f"trace = {spectrum.trace:.4g} ± {spectrum.trace_error:.2g}")
    ax.set_xlabel("eigenvalue of the Hessian")
    ax.set_ylabel("density (log scale)")
    ax.set_ylim(bottom=DENSITY_FLOOR)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return fig


def plot_spectrum_file(spectrum_file: str, out_file: str, dpi: int = 150) -> str:
    """Draw the density of ``spectrum_file`` into ``out_file`` (PDF, PNG, ... by its extension)."""
    spectrum = read_spectrum(spectrum_file)
    title = " · ".join(str(spectrum.attrs[k]) for k in ("model", "split") if k in spectrum.attrs)
    density_figure(spectrum, title).savefig(out_file, dpi=dpi)
    return out_file
