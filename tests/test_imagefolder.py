"""Image folders: PNG and JPEG files of several sizes decoded once into the tensors torchvision's own
transforms give, cached beside the data or in --cache_dir, sharded, and evaluated by the surface command."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms
from torchvision.datasets import ImageFolder

import mpi_landscape_models as models
from mpi_landscape import image_folder, surface
from mpi_landscape.data import load_splits
from mpi_landscape.errors import LandscapeError
from mpi_landscape.image_folder import CACHE_FOLDER, IMAGENET_MEAN, IMAGENET_STD

CLASSES = ("cat", "dog", "fox")
SIZE = 16  # --image_size


def write_image_folder(root, per_class: int = 4) -> str:
    """root/train and root/val, one folder per class, images of different sizes in PNG and JPEG."""
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", 2)):
        for label, name in enumerate(CLASSES):
            folder = os.path.join(root, split, name)
            os.makedirs(folder)
            for i in range(n):
                h, w = 20 + 3 * i + label, 24 + 5 * i
                pixels = np.clip(rng.normal(60 + 60 * label, 40, (h, w, 3)), 0, 255).astype(np.uint8)
                ext = "png" if i % 2 else "jpg"
                Image.fromarray(pixels).save(os.path.join(folder, f"{i}.{ext}"))
    return str(root)


def torchvision_tensors(folder: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The split as torchvision's ImageFolder and evaluation transforms give it, image by image."""
    transform = transforms.Compose([transforms.Resize(round(SIZE / 0.875)), transforms.CenterCrop(SIZE),
                                    transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    ds = ImageFolder(folder, transform=transform)
    return torch.stack([ds[i][0] for i in range(len(ds))]), torch.tensor(ds.targets)


@pytest.fixture
def images(tmp_path) -> str:
    return write_image_folder(tmp_path / "images")


def test_splits_equal_torchvisions_transforms_and_stay_uint8(images):
    loaded = load_splits(f"imagefolder:{images}", ["train", "test"], image_size=SIZE, uint8=True)
    for split, folder in (("train", "train"), ("test", "val")):
        inputs, targets = torchvision_tensors(os.path.join(images, folder))
        data = loaded[split]
        assert data.inputs.dtype == torch.uint8 and data.inputs.shape == (len(targets), 3, SIZE, SIZE)
        torch.testing.assert_close(data.float_inputs(), inputs, rtol=0, atol=1e-6)
        assert torch.equal(data.targets, targets)
    as_float = load_splits(f"imagefolder:{images}", ["train"], image_size=SIZE)["train"]
    assert as_float.inputs.dtype == torch.float32
    torch.testing.assert_close(as_float.inputs, loaded["train"].float_inputs(), rtol=0, atol=0)


def test_decoded_images_are_cached_and_decoded_again_when_a_file_changes(images, tmp_path, monkeypatch):
    first = load_splits(f"imagefolder:{images}", ["train"], image_size=SIZE, uint8=True)["train"]
    cached = os.listdir(os.path.join(images, CACHE_FOLDER))
    assert len(cached) == 1 and f"{SIZE}px" in cached[0]

    def no_decoding(*args):
        raise AssertionError("decoded again although the cache holds the images")

    with monkeypatch.context() as patch:
        patch.setattr(image_folder, "_decode", no_decoding)
        again = load_splits(f"imagefolder:{images}", ["train"], image_size=SIZE, uint8=True)["train"]
    assert torch.equal(again.inputs, first.inputs)
    changed = os.path.join(images, "train", "dog", "0.jpg")
    Image.new("RGB", (30, 30), (255, 0, 0)).save(changed)
    redone = load_splits(f"imagefolder:{images}", ["train"], image_size=SIZE, uint8=True)["train"]
    assert not torch.equal(redone.inputs, first.inputs)
    elsewhere = tmp_path / "cache"
    load_splits(f"imagefolder:{images}", ["train"], image_size=SIZE, uint8=True, cache_dir=str(elsewhere))
    assert len(os.listdir(elsewhere)) == 1


def test_shards_decode_only_their_images_and_add_up_to_the_split(images, monkeypatch):
    decoded = []
    real_decode = image_folder._decode
    monkeypatch.setattr(image_folder, "_decode",
                        lambda ds, samples, *rest: decoded.append(len(samples)) or real_decode(ds, samples, *rest))
    whole = load_splits(f"imagefolder:{images}", ["train"], image_size=SIZE, uint8=True)["train"]
    shards = [load_splits(f"imagefolder:{images}", ["train"], image_size=SIZE, uint8=True, shard=i,
                          shards=3)["train"] for i in range(3)]
    assert decoded == [12, 4, 4, 4]
    assert torch.equal(torch.cat([s.inputs for s in shards]), whole.inputs)
    assert all(s.full_size == 12 for s in shards)


def test_a_missing_split_folder_is_one_clear_error(tmp_path):
    write_image_folder(tmp_path / "images")
    os.rename(tmp_path / "images" / "val", tmp_path / "images" / "elsewhere")
    with pytest.raises(LandscapeError, match="no val/ or test/ folder for the test split"):
        load_splits(f"imagefolder:{tmp_path / 'images'}", ["test"], image_size=SIZE)


TINY_CONV = '''\
import torch


def build():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(4, 3))
'''


def test_surface_of_an_image_folder_equals_torchvisions_pipeline(images, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tinyconv.py").write_text(TINY_CONV)
    import importlib
    import sys

    sys.path.insert(0, str(tmp_path))
    net = importlib.import_module("tinyconv").build()
    models.save_checkpoint(str(tmp_path / "tiny.t7"), net)
    out = tmp_path / "s.h5"
    code = surface.main(["--model", "tinyconv:build", "--model_file", str(tmp_path / "tiny.t7"),
                         "--dataset", f"imagefolder:{images}", "--image_size", str(SIZE), "--splits",
                         "train,test", "--x=-1:1:3", "--surf_file", str(out), "--stream", "--batch_size", "4"])
    assert code == 0
    inputs, targets = torchvision_tensors(os.path.join(images, "val"))
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(net.eval()(inputs).double(), targets).item()
    with h5py.File(out, "r") as f:
        assert f["test_loss"][1] == pytest.approx(expected, rel=1e-6)  # x = 0 is θ*
        run = json.loads(f.attrs["last_run"])
    assert run["data"] == {**run["data"], "resident": False, "dtype": "uint8"}
    assert run["data"]["chunks"] == 5  # 18 samples in chunks of one batch of 4
