"""Datasets as whole-split tensors: CIFAR-10 from a local folder, the built-in demo data,
and a user's own ``package.module:factory``.

Every split is materialized once per rank as an (inputs, targets) pair in a
fixed order, so the evaluator can keep it on the device and never touches a
DataLoader per grid point. Transforms are the deterministic evaluation ones.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import torch
from torchvision.datasets import CIFAR10

from .errors import LandscapeError
from .evaluate import SplitData
from .task import import_factory

SPLITS = ("train", "test")
# The per-channel statistics the paper's CIFAR-10 networks were trained with.
CIFAR10_MEAN = tuple(v / 255.0 for v in (125.3, 123.0, 113.9))
CIFAR10_STD = tuple(v / 255.0 for v in (63.0, 62.1, 66.7))
DEMO_CLASSES = 3


def load_splits(dataset: str, splits: list[str], datapath: str = "cifar10/data",
                raw_data: bool = False, data_split: int = 1, seed: int = 0,
                download: bool = False) -> dict[str, SplitData]:
    """Load the requested splits of ``dataset`` ("cifar10", "demo" or "module:factory")."""
    for split in splits:
        if split not in SPLITS:
            raise LandscapeError(f"--splits: unknown split {split!r}; use train, test or train,test")
    if dataset == "cifar10":
        loaded = {s: _cifar10(datapath, s == "train", raw_data, download) for s in splits}
    elif dataset == "demo":
        loaded = {s: demo_split(s) for s in splits}
    elif ":" in dataset:
        loaded = _user_splits(dataset, splits)
    else:
        raise LandscapeError(
            f"--dataset {dataset!r}: use cifar10, demo, or package.module:factory for your own data"
        )
    return {s: _subset(d, data_split, seed) for s, d in loaded.items()}


def _cifar10(root: str, train: bool, raw_data: bool, download: bool) -> SplitData:
    """One CIFAR-10 split through torchvision's loader, normalized as for evaluation."""
    try:
        ds = local_cifar10(root, train, download)
    except RuntimeError as exc:
        raise LandscapeError(
            f"CIFAR-10 not found or incomplete under --datapath {root} ({exc}). Put the "
            f"extracted 'cifar-10-batches-py' folder there, or add --download once to fetch it"
        ) from None
    return SplitData(cifar_inputs(ds.data, raw_data), torch.tensor(ds.targets, dtype=torch.int64))


def cifar_inputs(pixels: np.ndarray, raw_data: bool = False) -> torch.Tensor:
    """uint8 HWC images as one NCHW float tensor: ToTensor() then Normalize(), for all at once."""
    inputs = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(255)
    if not raw_data:
        mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
        inputs = inputs.sub(mean).div(std)
    return inputs.contiguous()


class LocalCIFAR10(CIFAR10):
    """torchvision's CIFAR10 loader trusting the files that are present in a local folder.

    torchvision checks md5 sums made for the official archive; a local folder
    in the same format (a subset, a re-export, the tests' small copy) is
    refused by them although it loads fine. Downloads still use the checksums.
    """

    train_list = [[name, None] for name, _ in CIFAR10.train_list]
    test_list = [[name, None] for name, _ in CIFAR10.test_list]
    meta = {**CIFAR10.meta, "md5": None}


def local_cifar10(root: str, train: bool, download: bool = False) -> LocalCIFAR10:
    """One CIFAR-10 split from ``root``, downloading it first only when asked to."""
    if download:
        CIFAR10(root=root, train=train, download=True)
    return LocalCIFAR10(root=root, train=train)


def demo_split(split: str, n: int | None = None) -> SplitData:
    """Three interleaved noisy spirals in the plane: a small, honest classification problem.

    Generated from a fixed seed per split, so every rank and every run sees the
    same points without any download.
    """
    n = n or (3000 if split == "train" else 1500)
    gen = np.random.default_rng(0 if split == "train" else 1)
    labels = np.arange(n) % DEMO_CLASSES
    radius = gen.uniform(0.05, 1.0, n)
    angle = labels * (2 * math.pi / DEMO_CLASSES) + radius * 3.5 + gen.normal(0, 0.22, n)
    points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return SplitData(torch.tensor(points, dtype=torch.float32), torch.tensor(labels, dtype=torch.int64))


def _user_splits(spec: str, splits: list[str]) -> dict[str, SplitData]:
    """Call the user's factory; it returns a Dataset, tensors, or a dict of them per split."""
    factory = import_factory(spec, "--dataset")
    try:
        produced = factory()
    except Exception as exc:
        raise LandscapeError(f"--dataset {spec}: the factory failed ({type(exc).__name__}: {exc})") from None
    if isinstance(produced, Mapping):
        missing = [s for s in splits if s not in produced]
        if missing:
            raise LandscapeError(f"--dataset {spec}: the factory's dict has no split {missing}")
        return {s: _as_split(produced[s], spec) for s in splits}
    if splits != ["train"]:
        raise LandscapeError(
            f"--dataset {spec} returned one dataset; return a dict {{'train': ..., 'test': ...}} "
            f"to evaluate several splits"
        )
    return {"train": _as_split(produced, spec)}


def _as_split(obj, spec: str) -> SplitData:
    """Tensors ``(inputs, targets)`` or any map-style Dataset of ``(input, target)`` pairs."""
    if isinstance(obj, (tuple, list)) and len(obj) == 2 and all(torch.is_tensor(t) for t in obj):
        inputs, targets = obj
    elif hasattr(obj, "__getitem__") and hasattr(obj, "__len__"):
        pairs = [obj[i] for i in range(len(obj))]
        inputs = torch.stack([torch.as_tensor(p[0]) for p in pairs])
        targets = torch.as_tensor([int(p[1]) for p in pairs])
    else:
        raise LandscapeError(
            f"--dataset {spec}: the factory must return a Dataset, (inputs, targets) tensors, "
            f"or a dict of those per split; got {type(obj).__name__}"
        )
    if len(inputs) != len(targets) or len(targets) == 0:
        raise LandscapeError(f"--dataset {spec}: {len(inputs)} inputs but {len(targets)} targets")
    return SplitData(inputs.float().contiguous(), targets.long())


def _subset(data: SplitData, data_split: int, seed: int) -> SplitData:
    """A fixed random 1/``data_split`` of the split (kept in ascending order) for quick previews."""
    if data_split < 1:
        raise LandscapeError(f"--data_split must be at least 1, got {data_split}")
    if data_split == 1:
        return data
    keep = max(1, len(data) // data_split)
    chosen = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:keep]
    chosen = chosen.sort().values
    return SplitData(data.inputs[chosen], data.targets[chosen])
