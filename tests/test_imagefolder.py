"""Image folders: PNG and JPEG files of several sizes decoded once into the tensors torchvision's own
transforms give, cached beside the data or in --cache_dir, sharded, and evaluated by the surface command."""

from __future__ import annotations

import json
import os
import shutil

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


def write_bitmaps(root, value: int) -> str:
    """root/train/<class>/<i>.bmp: uncompressed, so images of one size have files of one size whatever
    their pixels (``value`` sets them)."""
    rng = np.random.default_rng(value)
    for label, name in enumerate(CLASSES):
        folder = os.path.join(root, "train", name)
        os.makedirs(folder, exist_ok=True)
        for i in range(2):
            pixels = np.clip(rng.normal(value + 40 * label, 30, (20, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(os.path.join(folder, f"{i}.bmp"))
    return str(root)


def test_images_copied_with_their_times_kept_are_decoded_again(tmp_path):
    """``cp -p`` / ``rsync -a`` of regenerated images: same names, sizes and modification times, new pixels."""
    data = write_bitmaps(tmp_path / "data", value=60)
    old = load_splits(f"imagefolder:{data}", ["train"], image_size=SIZE, uint8=True)["train"]
    regenerated = write_bitmaps(tmp_path / "regenerated", value=160)
    for folder, _, files in os.walk(os.path.join(data, "train")):
        for name in files:
            target = os.path.join(folder, name)
            source = os.path.join(regenerated, os.path.relpath(target, data))
            info = os.stat(target)
            assert os.path.getsize(source) == info.st_size
            os.utime(source, ns=(info.st_atime_ns, info.st_mtime_ns))  # the times the copy keeps
            shutil.copy2(source, target)  # cp -p
            assert os.stat(target).st_mtime_ns == info.st_mtime_ns
    new = load_splits(f"imagefolder:{data}", ["train"], image_size=SIZE, uint8=True)["train"]
    expected, _ = torchvision_tensors(os.path.join(regenerated, "train"))
    torch.testing.assert_close(new.float_inputs(), expected, rtol=0, atol=1e-6)
    assert not torch.equal(new.inputs, old.inputs)


@pytest.mark.parametrize("foreign", ["a dict", "float pixels", "too few images", "not a torch file"])
def test_a_foreign_cache_file_is_decoded_again_with_one_warning(images, capfd, foreign):
    expected = load_splits(f"imagefolder:{images}", ["train"], image_size=SIZE, uint8=True)["train"].inputs
    folder = os.path.join(images, CACHE_FOLDER)
    (cache_file,) = [os.path.join(folder, name) for name in os.listdir(folder)]
    if foreign == "not a torch file":
        with open(cache_file, "wb") as handle:
            handle.write(b"\x00 not a cache")
    else:
        torch.save({"a dict": {"pixels": expected}, "float pixels": expected.float(),
                    "too few images": expected[:3]}[foreign], cache_file)
    capfd.readouterr()
    again = load_splits(f"imagefolder:{images}", ["train"], image_size=SIZE, uint8=True)["train"]
    assert torch.equal(again.inputs, expected)
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and os.path.basename(cache_file) in lines[0], lines
    assert torch.equal(torch.load(cache_file, weights_only=True), expected)  # replaced by the decoded images
