"""A small classifier of 2-D points, the network of the built-in demo.

Small enough to train and to evaluate a whole surface on a CPU in seconds, and
with BatchNorm, so the demo exercises the same code paths (BN running
statistics, filter normalization, bias/BN handling) as the paper's networks.
"""

from __future__ import annotations

from torch import nn

INPUT_DIM = 2
HIDDEN_UNITS = 64


def demo_mlp(num_classes: int = 3) -> nn.Sequential:
    """Linear(2->64)-BN-ReLU, Linear(64->64)-BN-ReLU, Linear(64->num_classes)."""
    return nn.Sequential(
        nn.Linear(INPUT_DIM, HIDDEN_UNITS),
        nn.BatchNorm1d(HIDDEN_UNITS),
        nn.ReLU(),
        nn.Linear(HIDDEN_UNITS, HIDDEN_UNITS),
        nn.BatchNorm1d(HIDDEN_UNITS),
        nn.ReLU(),
        nn.Linear(HIDDEN_UNITS, num_classes),
    )
