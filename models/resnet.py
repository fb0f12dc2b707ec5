"""Residual networks of the paper, with and without skip connections.

One class, :class:`ResNet`, covers both families the paper studies:

* CIFAR ResNets (He et al. 2016, section 4.2): a 3x3 stem, three stages of
  BasicBlocks at 16/32/64 channels (times ``width`` for Wide-ResNets) and
  depth = 6n + 2.
* ImageNet-style ResNets adapted to 32x32 inputs: a 3x3 stem with 64 channels
  and no max-pool, four stages at 64/128/256/512 channels of BasicBlocks
  (ResNet-18/34) or Bottlenecks (ResNet-50/101/152).

Where a block changes the shape of its input, its shortcut is a 1x1 convolution
followed by BatchNorm (a projection); elsewhere it is the identity. A block
built with ``skip=False`` has no shortcut at all, which is what the paper's
``_noshort`` networks are.

Module names and registration order (``conv1``, ``bn1``, ``layer1.0.conv1``,
..., ``layer1.0.shortcut.0``, ``linear``) are those of the reference
checkpoints, so their ``state_dict`` loads unchanged and ``parameters()`` comes
out in the order that reference direction files are written in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


def _projection(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
    """1x1 conv + BN that maps a block's input onto the shape of its output."""
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_planes),
    )


def _shortcut(in_planes: int, out_planes: int, stride: int, skip: bool) -> nn.Module | None:
    """The block's skip path: None without skip, identity or projection with it."""
    if not skip:
        return None
    if stride != 1 or in_planes != out_planes:
        return _projection(in_planes, out_planes, stride)
    return nn.Identity()


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers, plus the input when ``skip`` is true."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, skip: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes, stride, skip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return F.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4), plus the input when ``skip`` is true.

    Without skip the block ends at its last BatchNorm, with no ReLU: that is
    how the reference ``_noshort`` bottleneck networks were defined and
    trained, and their checkpoints only reproduce their losses this way.
    """

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, skip: bool = True) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = _shortcut(in_planes, out_planes, stride, skip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.shortcut is None:
            return out
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """3x3 stem, stages ``layer1..layerN`` of residual blocks, global average pool, linear.

    The first stage keeps the resolution; every later stage halves it with a
    stride-2 first block.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        num_blocks: Sequence[int],
        widths: Sequence[int],
        stem_width: int,
        skip: bool = True,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem_width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        in_planes = stem_width
        for stage, (count, planes) in enumerate(zip(num_blocks, widths)):
            strides = [1 if stage == 0 else 2] + [1] * (count - 1)
            blocks = []
            for stride in strides:
                blocks.append(block(in_planes, planes, stride, skip))
                in_planes = planes * block.expansion
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
        self.num_stages = len(num_blocks)
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        for stage in range(1, self.num_stages + 1):
            out = getattr(self, f"layer{stage}")(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def cifar_resnet(depth: int, width: int = 1, skip: bool = True, num_classes: int = 10) -> ResNet:
    """CIFAR ResNet-``depth`` (depth = 6n+2); ``width`` k > 1 gives WRN-depth-k."""
    if (depth - 2) % 6 != 0:
        raise ValueError(f"a CIFAR ResNet has depth 6n+2, got {depth}")
    n = (depth - 2) // 6
    return ResNet(
        BasicBlock,
        num_blocks=(n, n, n),
        widths=(16 * width, 32 * width, 64 * width),
        stem_width=16 * width,
        skip=skip,
        num_classes=num_classes,
    )


_IMAGENET_STYLE: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}

IMAGENET_STYLE_DEPTHS: tuple[int, ...] = tuple(_IMAGENET_STYLE)


def imagenet_style_resnet(depth: int, skip: bool = True, num_classes: int = 10) -> ResNet:
    """ResNet-18/34/50/101/152 with a 3x3, 64-channel stem and no max-pool, for 32x32 inputs."""
    if depth not in _IMAGENET_STYLE:
        raise ValueError(f"ImageNet-style ResNet depth must be one of {IMAGENET_STYLE_DEPTHS}, got {depth}")
    block, num_blocks = _IMAGENET_STYLE[depth]
    return ResNet(
        block,
        num_blocks=num_blocks,
        widths=(64, 128, 256, 512),
        stem_width=64,
        skip=skip,
        num_classes=num_classes,
    )
