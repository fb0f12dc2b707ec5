"""VGG-9, the plain (skip-free) network of the paper's batch-size and optimizer studies.

Configuration, for 32x32 inputs (2,789,706 parameters with 10 classes):

* ``features``: seven 3x3 conv layers (with bias), each followed by BatchNorm
  and ReLU, channels 64, 64, M, 128, 128, M, 256, 256, 256, M, where M is a
  2x2 max-pool (ceil mode). The output is 256 maps of 4x4.
* ``fc``: Linear(256*4*4 -> 256), BatchNorm1d, ReLU.
* ``classifier``: Linear(256 -> num_classes).

Seven conv layers and two linear layers make the nine. Module indices inside
``features`` and ``fc`` follow the reference checkpoints' key names
(``features.0.weight``, ``features.1.running_mean``, ``fc.0.weight``, ...).
"""

from __future__ import annotations

import math

import torch
from torch import nn

VGG9_CONFIG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M")


class VGG(nn.Module):
    """Conv-BN-ReLU stacks with max-pools, one hidden linear layer, a linear classifier."""

    def __init__(self, config: tuple[int | str, ...], num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = 3, 32  # 32x32 inputs
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
                size = math.ceil(size / 2)
            else:
                width = int(item)
                conv = nn.Conv2d(channels, width, kernel_size=3, padding=1)
                layers += [conv, nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
                channels = width
        self.features = nn.Sequential(*layers)
        self.fc = nn.Sequential(
            nn.Linear(channels * size * size, channels),
            nn.BatchNorm1d(channels),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.fc(self.features(x).flatten(1)))


def vgg9(num_classes: int = 10) -> VGG:
    """VGG-9 for 32x32 images (see the module docstring for the layers)."""
    return VGG(VGG9_CONFIG, num_classes=num_classes)
