"""Write a small CIFAR-10 folder in torchvision's on-disk format, for tests.

The files are what torchvision's loader reads (pickled dicts with ``data``
as uint8 rows of 3072 values, ``labels``, and ``batches.meta``), so the real
loader runs on them; only the number of images is small.
"""

from __future__ import annotations

import os
import pickle

import numpy as np

LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck"]


def write_cifar10(root: str, per_batch: int = 20, test_size: int = 40, seed: int = 0) -> str:
    """Create ``root/cifar-10-batches-py`` with 5 train batches and a test batch; returns root."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)

    def dump(name: str, n: int) -> None:
        labels = (np.arange(n) % 10).tolist()
        # Class-dependent mean colour, so a network can learn something from it.
        base = np.array(labels)[:, None] * 20 + 30
        data = np.clip(base + rng.normal(0, 25, (n, 3072)), 0, 255).astype(np.uint8)
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump({"batch_label": name, "labels": labels, "data": data,
                         "filenames": [f"{name}_{i}.png" for i in range(n)]}, f)

    for i in range(1, 6):
        dump(f"data_batch_{i}", per_batch)
    dump("test_batch", test_size)
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump({"label_names": LABEL_NAMES, "num_cases_per_batch": per_batch,
                     "num_vis": 3072}, f)
    return root
