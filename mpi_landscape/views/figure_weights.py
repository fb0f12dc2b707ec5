"""Histograms of the weights of several checkpoints (the paper's Fig. 3).

Why filter normalization matters: networks trained with different batch
sizes or weight decay end with weights of very different scales (with weight
decay, small batches give small weights; without it, large ones), and a
random direction of a fixed size is a large step for small weights and a
small one for large weights. Drawn on one set of bins, each checkpoint's
histogram shows its scale, and its legend entry gives the spread (RMS).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

COLUMN_WIDTH = 3.5  # inches: one column of a two-column paper
BINS = 100
SHOWN_QUANTILE = 0.999  # the bins span this central share of all weights: outliers do not squash the rest


def figure_weights(checkpoints: Sequence[tuple[str, dict[str, np.ndarray]]], title: str = "") -> Figure:
    """One step histogram (density) per (label, weight tensors by name), on shared bins."""
    values = [np.concatenate([w.ravel() for w in weights.values()]) for _, weights in checkpoints]
    every = np.concatenate(values)
    tail = (1 - SHOWN_QUANTILE) / 2
    lo, hi = np.quantile(every, [tail, 1 - tail])
    edge = max(abs(lo), abs(hi))  # symmetric about 0: the scales compare at a glance
    edges = np.linspace(-edge, edge, BINS + 1)
    fig = Figure(figsize=(COLUMN_WIDTH, 2.8), layout="constrained")
    ax = fig.add_subplot()
    for i, ((label, _), v) in enumerate(zip(checkpoints, values)):
        density, _ = np.histogram(v, bins=edges, density=False)
        density = density / (len(v) * np.diff(edges))
        rms = float(np.sqrt(np.mean(v ** 2)))
        ax.stairs(density, edges, color=f"C{i}", linewidth=1.1, label=f"{label} (RMS {rms:.3g})", gid="weights")
    ax.set_xlim(-edge, edge)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("weight value (convolution and linear weights)")
    ax.set_ylabel("density")
    if title:
        ax.set_title(title)
    fig.legend(loc="outside lower center", ncols=1, frameon=False)
    return fig
