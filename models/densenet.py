"""DenseNet-BC for 32x32 images (Huang et al. 2017), as used in the paper's Figure 5.

DenseNet-121 here: a 3x3 stem with 2*growth channels, dense blocks of 6, 12,
24 and 16 bottleneck layers with growth rate 32, transitions that halve the
channels and the resolution, then BN-ReLU, global average pool and a linear
classifier (6,956,298 parameters with 10 classes).

Each layer puts its new features before its input when concatenating, and the
module names (``dense1.0.bn1``, ``trans1.conv``, ``bn``, ``linear``) follow the
reference checkpoints, so their weights mean the same thing here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv to 4*growth, BN-ReLU-3x3 conv to growth; output is [new, input]."""

    def __init__(self, in_planes: int, growth_rate: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, 4 * growth_rate, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth_rate)
        self.conv2 = nn.Conv2d(4 * growth_rate, growth_rate, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([out, x], dim=1)


class Transition(nn.Module):
    """BN-ReLU-1x1 conv to fewer channels, then 2x2 average pool."""

    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_planes)
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNet(nn.Module):
    """Stem, dense blocks ``dense1..denseN`` joined by ``trans1..trans(N-1)``, BN, linear."""

    def __init__(
        self,
        layers_per_block: Sequence[int],
        growth_rate: int = 32,
        reduction: float = 0.5,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        planes = 2 * growth_rate
        self.conv1 = nn.Conv2d(3, planes, kernel_size=3, padding=1, bias=False)
        self.num_blocks = len(layers_per_block)
        for index, count in enumerate(layers_per_block, start=1):
            layers = []
            for _ in range(count):
                layers.append(DenseLayer(planes, growth_rate))
                planes += growth_rate
            self.add_module(f"dense{index}", nn.Sequential(*layers))
            if index < self.num_blocks:
                reduced = int(planes * reduction)
                self.add_module(f"trans{index}", Transition(planes, reduced))
                planes = reduced
        self.bn = nn.BatchNorm2d(planes)
        self.linear = nn.Linear(planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        for index in range(1, self.num_blocks + 1):
            out = getattr(self, f"dense{index}")(out)
            if index < self.num_blocks:
                out = getattr(self, f"trans{index}")(out)
        out = F.adaptive_avg_pool2d(F.relu(self.bn(out)), 1).flatten(1)
        return self.linear(out)


def densenet121(num_classes: int = 10) -> DenseNet:
    """DenseNet-121 (blocks of 6, 12, 24, 16 layers, growth rate 32) for 32x32 images."""
    return DenseNet((6, 12, 24, 16), growth_rate=32, num_classes=num_classes)
