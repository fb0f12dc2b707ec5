"""What naming an image folder's decoded-image cache costs: a stat per file against hashing its bytes.

    python bench/image_cache_key.py                      # 3,000 PNG images of 32x32 in a temporary folder
    python bench/image_cache_key.py --images 5000 --side 64

``image_folder.cache_path`` keys the cache by each file's size, modification
time, inode and inode change time (one ``os.stat`` per file). The alternative
is a hash of every file's bytes (sha256 here), which a run would pay every
time, cache hit or not. Both are timed in interleaved rounds on the same
folder (warm page cache, so the hash's figure is its lower bound: cold files
on a network file system cost a read each), beside decoding the same images
once (what a cache miss costs).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time

import numpy as np
from PIL import Image
from torchvision.datasets import ImageFolder

from machine import environment, machine_name, write_result
from mpi_landscape import image_folder

CLASSES = 10


def write_folder(root: str, images: int, side: int) -> str:
    """root/train/<class>/<i>.png: ``images`` noisy PNG images of side x side."""
    rng = np.random.default_rng(0)
    for i in range(images):
        folder = os.path.join(root, "train", f"class{i % CLASSES}")
        os.makedirs(folder, exist_ok=True)
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, f"{i}.png"))
    return os.path.join(root, "train")


def content_key(samples: list[tuple[str, int]]) -> str:
    """The alternative: a sha256 over every file's bytes."""
    digest = hashlib.sha256()
    for file, _ in samples:
        with open(file, "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()


def seconds(run) -> float:
    began = time.perf_counter()
    run()
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--side", type=int, default=32, help="pixels per side of each image")
    parser.add_argument("--image_size", type=int, default=32, help="the --image_size they are decoded to")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as root:
        folder = write_folder(root, args.images, args.side)
        dataset = ImageFolder(folder)
        samples = dataset.samples
        total_bytes = sum(os.path.getsize(file) for file, _ in samples)
        stat_key = lambda: image_folder.cache_path(folder, samples, args.image_size, "all", root)  # noqa: E731
        hash_key = lambda: content_key(samples)  # noqa: E731
        stat_key(), hash_key()  # warm the page cache and the stat cache alike
        times: dict[str, list[float]] = {"stat": [], "sha256": []}
        for _ in range(args.rounds):
            times["stat"].append(seconds(stat_key))
            times["sha256"].append(seconds(hash_key))
        decode = seconds(lambda: image_folder._decode(dataset, samples, args.image_size, folder))

    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.images} PNG images of {args.side}x{args.side} ({total_bytes / 1e6:.1f} MB), "
          f"median of {args.rounds} interleaved rounds, warm page cache:")
    for name, value in median.items():
        print(f"  {name:7s} key: {1e3 * value:8.1f} ms  ({1e6 * value / args.images:.1f} us per image)")
    print(f"  decoding once:  {1e3 * decode:8.1f} ms  ({1e6 * decode / args.images:.1f} us per image)")
    print(f"  sha256 / stat: {median['sha256'] / median['stat']:.1f}x")
    write_result(f"image_cache_key_{args.side}px", machine_name(), {
        "environment": environment(), "images": args.images, "side": args.side, "bytes": total_bytes,
        "rounds": args.rounds, "seconds": times, "median_seconds": median, "decode_seconds": decode})
    return 0


if __name__ == "__main__":
    sys.exit(main())
