"""Datasets as whole-split tensors: CIFAR-10 from a local folder, image folders, the
built-in demo data, and a user's own ``package.module:factory``.

Every split is materialized once per rank as an (inputs, targets) pair in a
fixed order, so the evaluator can keep it on the device and never touches a
DataLoader per grid point. Transforms are the deterministic evaluation ones.
In a group of K ranks per point each rank converts and keeps only its 1/K
shard; images can stay uint8 (``uint8=True``) and are normalized per batch.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

import numpy as np
import torch

from .errors import LandscapeError
from .evaluate import PixelNorm, SplitData
from .task import import_factory, map_tensors, tensors_of

if TYPE_CHECKING:  # torchvision is imported only by the runs that read CIFAR-10 or an image folder
    from torchvision.datasets import CIFAR10

SPLITS = ("train", "test")
# The per-channel statistics the paper's CIFAR-10 networks were trained with.
CIFAR10_MEAN = tuple(v / 255.0 for v in (125.3, 123.0, 113.9))
CIFAR10_STD = tuple(v / 255.0 for v in (63.0, 62.1, 66.7))
DEMO_CLASSES = 3
IMAGE_FOLDER_PREFIX = "imagefolder:"
DEFAULT_IMAGE_SIZE = 224


def load_splits(dataset: str, splits: list[str], datapath: str = "cifar10/data",
                raw_data: bool = False, data_split: int = 1, seed: int = 0,
                download: bool = False, shard: int = 0, shards: int = 1, uint8: bool = False,
                image_size: int = DEFAULT_IMAGE_SIZE, cache_dir: str | None = None) -> dict[str, SplitData]:
    """Load this rank's shard of the requested splits of ``dataset``.

    ``dataset`` is "cifar10", "demo", "imagefolder:PATH" or "module:factory".
    With ``shards`` K > 1 only samples shard/K of each split (after
    ``data_split``) are converted and kept. With ``uint8`` images stay uint8
    and are normalized per batch on the device; otherwise they are float32.
    """
    for split in splits:
        if split not in SPLITS:
            raise LandscapeError(f"--splits: unknown split {split!r}; use train, test or train,test")
    if data_split < 1:
        raise LandscapeError(f"--data_split must be at least 1, got {data_split}")

    kept = Selection(data_split, seed, shard, shards)
    if dataset == "cifar10":
        loaded = {s: _cifar10(datapath, s == "train", raw_data, download, kept) for s in splits}
    elif dataset.startswith(IMAGE_FOLDER_PREFIX):
        from .image_folder import load_image_folder

        root = dataset[len(IMAGE_FOLDER_PREFIX):]
        loaded = {s: load_image_folder(root, s, kept, image_size, raw_data, cache_dir) for s in splits}
    elif dataset == "demo":
        loaded = {s: kept.rows(demo_split(s)) for s in splits}
    elif ":" in dataset:
        loaded = {s: kept.rows(d) for s, d in _user_splits(dataset, splits).items()}
    else:
        raise LandscapeError(
            f"--dataset {dataset!r}: use cifar10, demo, imagefolder:PATH, or package.module:factory "
            f"for your own data"
        )
    for name, data in loaded.items():
        if len(data) == 0:
            raise LandscapeError(f"the {name} split has fewer samples than --ranks_per_point {shards}")
    if not uint8:
        loaded = {s: SplitData(d.float_inputs().contiguous(), d.targets, None, d.whole_size) if d.pixel_norm
                  else d for s, d in loaded.items()}
    return loaded


@dataclass(frozen=True)
class Selection:
    """Which samples of a split one rank keeps, in ascending order.

    ``data_split`` first keeps a fixed random 1/N of the split (for quick
    previews); shard i of K is then the i-th of K contiguous, nearly equal
    ranges of what is kept, so the shards of a group are the whole selection.
    """

    data_split: int = 1
    seed: int = 0
    shard: int = 0
    shards: int = 1

    def chosen(self, n: int) -> np.ndarray:
        """The samples of a split of ``n`` that all shards together keep."""
        if self.data_split == 1:
            return np.arange(n)
        keep = max(1, n // self.data_split)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))[:keep]
        return order.sort().values.numpy()

    def indices(self, n: int) -> np.ndarray:
        """The samples of a split of ``n`` that this shard keeps."""
        chosen = self.chosen(n)
        m = len(chosen)
        return chosen[self.shard * m // self.shards:(self.shard + 1) * m // self.shards]

    def whole(self, n: int) -> int | None:
        """Samples of all shards together, or None when this shard is the whole split."""
        return None if self.data_split == 1 and self.shards == 1 else len(self.chosen(n))

    def rows(self, data: SplitData) -> SplitData:
        """This shard of a split loaded whole."""
        if self.data_split == 1 and self.shards == 1:
            return data
        keep = torch.from_numpy(self.indices(len(data)))
        return SplitData(map_tensors(lambda t: t[keep], data.inputs), data.targets[keep], data.pixel_norm,
                         self.whole(len(data)))

    def key(self) -> str:
        """A name for this selection, unique among selections (cache files)."""
        return f"split{self.data_split}-seed{self.seed}-shard{self.shard}of{self.shards}"


def shard_sizes(n: int, shards: int) -> list[int]:
    """The sizes of the ``shards`` shards of a selection of ``n`` samples (see ``Selection``)."""
    return [(i + 1) * n // shards - i * n // shards for i in range(shards)]


def _cifar10(root: str, train: bool, raw_data: bool, download: bool, kept: Selection) -> SplitData:
    """This rank's shard of one CIFAR-10 split through torchvision's loader, as uint8 images."""
    try:
        ds = local_cifar10(root, train, download)
    except RuntimeError:
        raise LandscapeError(
            f"CIFAR-10 not found or incomplete under --datapath {root}. Put the "
            f"extracted 'cifar-10-batches-py' folder there, or add --download once to fetch it"
        ) from None
    keep = kept.indices(len(ds.data))
    pixels = torch.from_numpy(ds.data[keep]).permute(0, 3, 1, 2).contiguous()
    targets = torch.tensor(ds.targets, dtype=torch.int64)[torch.from_numpy(keep)]
    return SplitData(pixels, targets, cifar_norm(raw_data), kept.whole(len(ds.data)))


def cifar_norm(raw_data: bool = False) -> PixelNorm:
    """The evaluation transform of the paper's CIFAR-10 networks (ToTensor only with ``raw_data``)."""
    return PixelNorm.of(CIFAR10_MEAN, CIFAR10_STD, raw_data)


def cifar_inputs(pixels: np.ndarray, raw_data: bool = False) -> torch.Tensor:
    """uint8 HWC images as one NCHW float tensor: ToTensor() then Normalize(), for all at once."""
    return cifar_norm(raw_data).apply(torch.from_numpy(pixels).permute(0, 3, 1, 2)).contiguous()


@functools.cache
def _local_cifar10_class() -> type[CIFAR10]:
    """torchvision's CIFAR10 loader trusting the files that are present in a local folder.

    torchvision checks md5 sums made for the official archive; a local folder
    in the same format (a subset, a re-export, the tests' small copy) is
    refused by them although it loads fine. Downloads still use the checksums.
    Made on first use: importing torchvision costs seconds that other datasets do not need.
    """
    from torchvision.datasets import CIFAR10

    class LocalCIFAR10(CIFAR10):
        train_list = [[name, None] for name, _ in CIFAR10.train_list]
        test_list = [[name, None] for name, _ in CIFAR10.test_list]
        meta = {**CIFAR10.meta, "md5": None}

    return LocalCIFAR10


def local_cifar10(root: str, train: bool, download: bool = False) -> CIFAR10:
    """One CIFAR-10 split from ``root``, downloading it first only when asked to."""
    from torchvision.datasets import CIFAR10

    if download:
        CIFAR10(root=root, train=train, download=True)
    return _local_cifar10_class()(root=root, train=train)


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
    from .networks import user_code

    factory = import_factory(spec, "--dataset")
    with user_code(f"--dataset {spec}"):
        produced = factory()
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
    """A user's split: ``(inputs, targets)``, a dict of tensors, or a map-style Dataset.

    Inputs may be one tensor, a dict of tensors (``input_ids``,
    ``attention_mask``, ...) or a tuple of tensors. A dict's ``labels`` are
    the targets (``input_ids`` when it has none: a language model's next
    tokens). A Dataset's items are ``(input, target)`` pairs, tuples whose
    last element is the target, or such dicts.
    """
    if isinstance(obj, (tuple, list)) and len(obj) == 2 and torch.is_tensor(obj[1]):
        inputs, targets = obj
    elif isinstance(obj, Mapping):
        inputs, targets = _inputs_and_labels(dict(obj))
    elif hasattr(obj, "__getitem__") and hasattr(obj, "__len__"):
        from .networks import user_code

        with user_code(f"--dataset {spec}", "reading its items failed"):
            items = [obj[i] for i in range(len(obj))]
        if items and isinstance(items[0], Mapping):
            inputs, targets = _inputs_and_labels({k: _stack([it[k] for it in items]) for k in items[0]})
        else:
            inputs = [_stack([it[j] for it in items]) for j in range(len(items[0]) - 1)] if items else []
            inputs = inputs[0] if len(inputs) == 1 else tuple(inputs)
            targets = _stack([it[-1] for it in items])
    else:
        raise LandscapeError(
            f"--dataset {spec}: the factory must return a Dataset, (inputs, targets) tensors, "
            f"a dict of tensors, or a dict of those per split; got {type(obj).__name__}"
        )
    try:
        inputs = map_tensors(_compact, inputs)
    except LandscapeError as exc:
        raise LandscapeError(f"--dataset {spec}: {exc}") from None
    sizes = {len(t) for t in tensors_of(inputs)}
    if sizes != {len(targets)} or len(targets) == 0:
        raise LandscapeError(f"--dataset {spec}: inputs of {sorted(sizes)} samples but {len(targets)} targets")
    return SplitData(inputs, _compact(torch.as_tensor(targets)))


def _inputs_and_labels(columns: dict) -> tuple[dict, torch.Tensor]:
    """A dict split's model inputs and its targets (``labels``, else ``input_ids``)."""
    if "labels" in columns:
        targets = columns.pop("labels")
    elif "input_ids" in columns:
        targets = columns["input_ids"]
    else:
        raise LandscapeError(f"a dict split needs 'labels' or 'input_ids', got keys {sorted(columns)}")
    return columns, targets


def _stack(values: list) -> torch.Tensor:
    return torch.stack([torch.as_tensor(v) for v in values])


def _compact(t: torch.Tensor) -> torch.Tensor:
    """Real-valued data (and uint8 images) as float32; token ids and masks in the smallest integer dtype.

    A token corpus takes 2 bytes a token where its ids fit (int16), not 4 or
    8; the task widens each batch to int64 when it reaches the model.
    """
    t = torch.as_tensor(t)
    if t.is_floating_point() or t.dtype == torch.uint8:
        return t.float().contiguous()
    if t.dtype == torch.bool or t.numel() == 0:
        return t.contiguous()
    low, high = int(t.min()), int(t.max())
    for dtype in (torch.int8, torch.int16, torch.int32):
        info = torch.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return t.to(dtype).contiguous()
    return t.long().contiguous()

