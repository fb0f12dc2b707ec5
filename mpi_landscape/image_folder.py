"""Image folders (torchvision's ``ImageFolder`` layout) decoded once into uint8 tensors, with a cache.

``--dataset imagefolder:PATH`` reads ``PATH/train`` and ``PATH/val`` (or
``PATH/test``), one sub-folder per class. Each image goes through the
deterministic evaluation transform -- resize the shorter side to
``image_size / 0.875``, centre crop ``image_size`` -- and is kept as uint8;
ToTensor and Normalize (ImageNet statistics) happen per batch on the device.
The decoded shard is saved beside the data (or in ``cache_dir``), keyed by
the files, their sizes, modification and inode change times, inodes and the
transform, so a resumed or repeated run reads it back instead of decoding
again, and any file written since (``cp -p`` and ``rsync -a`` keep the
modification time, never the change time) is decoded anew. A cache file that
cannot be read or holds anything but this shard's images is decoded again.
"""

from __future__ import annotations

import hashlib
import os
import sys

import torch
from torchvision import transforms
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import find_classes

from .errors import LandscapeError
from .evaluate import PixelNorm, SplitData

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_FRACTION = 0.875  # the centre crop is this share of the resized image (224 of 256)
SPLIT_FOLDERS = {"train": ("train",), "test": ("val", "test")}
CACHE_FOLDER = ".mpi_landscape_cache"


def evaluation_transform(image_size: int) -> transforms.Compose:
    """Resize and centre crop to ``image_size``, as uint8 CHW (no normalization)."""
    return transforms.Compose([transforms.Resize(round(image_size / CROP_FRACTION)),
                               transforms.CenterCrop(image_size), transforms.PILToTensor()])


def split_folder(root: str, split: str) -> str:
    """The folder of ``split`` under ``root``: train/, and val/ or test/ for the test split."""
    for name in SPLIT_FOLDERS[split]:
        if os.path.isdir(os.path.join(root, name)):
            return os.path.join(root, name)
    wanted = " or ".join(f"{name}/" for name in SPLIT_FOLDERS[split])
    raise LandscapeError(f"--dataset imagefolder:{root}: no {wanted} folder for the {split} split "
                         f"(one sub-folder per class inside it)")


def load_image_folder(root: str, split: str, kept, image_size: int, raw_data: bool,
                      cache_dir: str | None) -> SplitData:
    """This rank's shard (``kept``, a data.Selection) of one split of an image folder, as uint8."""
    if image_size < 1:
        raise LandscapeError(f"--image_size must be positive, got {image_size}")
    folder = split_folder(root, split)
    try:
        dataset = ImageFolder(folder)
    except (FileNotFoundError, OSError) as exc:
        raise LandscapeError(f"--dataset imagefolder:{root}: {exc}") from None
    reference = os.path.join(root, "train")
    if split != "train" and os.path.isdir(reference):
        classes = find_classes(reference)[0]
        if classes != dataset.classes:
            raise LandscapeError(f"--dataset imagefolder:{root}: {folder} has classes {dataset.classes[:5]}... "
                                 f"unlike train/ ({classes[:5]}...): labels would not match")
    keep = kept.indices(len(dataset))
    samples = [dataset.samples[i] for i in keep]
    path = cache_path(folder, samples, image_size, kept.key(), cache_dir)
    pixels = _read_cache(path, (len(samples), 3, image_size, image_size))
    if pixels is None:
        pixels = _decode(dataset, samples, image_size, folder)
        _write_cache(path, pixels)
    targets = torch.tensor([label for _, label in samples], dtype=torch.int64)
    return SplitData(pixels, targets, PixelNorm.of(IMAGENET_MEAN, IMAGENET_STD, raw_data), kept.whole(len(dataset)))


def cache_path(folder: str, samples: list[tuple[str, int]], image_size: int, selection: str,
               cache_dir: str | None) -> str:
    """Where the decoded shard is cached: named by what it was decoded from, so a change decodes anew.

    A file's identity is its size, its modification time, and its inode and
    inode change time: writing a file always moves the change time, which no
    copy can set back, so regenerated images copied with their old times
    (same sizes too) are not mistaken for the decoded ones. Reading the bytes
    instead (a hash) would cost every run a pass over the data; a stat is
    cheap (bench/image_cache_key.py).
    """
    digest = hashlib.sha256(f"{image_size}\n{selection}\n".encode())
    for file, label in samples:
        info = os.stat(file)
        digest.update(f"{os.path.relpath(file, folder)}\t{label}\t{info.st_size}\t{info.st_mtime_ns}\t"
                      f"{info.st_ctime_ns}\t{info.st_ino}\n".encode())
    base = cache_dir or os.path.join(os.path.dirname(os.path.abspath(folder)), CACHE_FOLDER)
    name = f"{os.path.basename(os.path.normpath(folder))}-{image_size}px-{selection}-{digest.hexdigest()[:16]}.pt"
    return os.path.join(base, name)


def _decode(dataset: ImageFolder, samples: list[tuple[str, int]], image_size: int, folder: str) -> torch.Tensor:
    transform = evaluation_transform(image_size)
    pixels = torch.empty((len(samples), 3, image_size, image_size), dtype=torch.uint8)
    for i, (file, _) in enumerate(samples):
        try:
            pixels[i] = transform(dataset.loader(file))
        except OSError as exc:
            raise LandscapeError(f"cannot decode {os.path.relpath(file, folder)} in {folder}: {exc}") from None
    return pixels


def _read_cache(path: str, shape: tuple[int, ...]) -> torch.Tensor | None:
    """The cached uint8 images of ``shape`` at ``path``; None when there are none.

    A file that cannot be read (damaged, truncated, not a torch file) or holds
    anything else is treated as absent, with one warning: the images are
    decoded again and the file is replaced.
    """
    if not os.path.exists(path):
        return None
    try:
        pixels = torch.load(path, weights_only=True)
    except Exception as exc:
        problem = f"cannot be read ({type(exc).__name__})"
    else:
        if isinstance(pixels, torch.Tensor) and pixels.dtype == torch.uint8 and tuple(pixels.shape) == shape:
            return pixels
        what = (f"a {pixels.dtype} tensor of shape {tuple(pixels.shape)}" if isinstance(pixels, torch.Tensor)
                else f"a {type(pixels).__name__}")
        problem = f"holds {what}, not {shape[0]} uint8 images of {shape[2]}x{shape[3]}"
    print(f"warning: the decoded-image cache {path} {problem}; decoding the images again",
          file=sys.stderr, flush=True)
    return None


def _write_cache(path: str, pixels: torch.Tensor) -> None:
    """Save atomically; a folder that cannot be written only costs decoding again next time."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        partial = f"{path}.{os.getpid()}.tmp"
        torch.save(pixels, partial)
        os.replace(partial, path)
    except OSError as exc:
        print(f"warning: decoded images not cached ({exc}); use --cache_dir to choose a writable folder",
              file=sys.stderr, flush=True)
