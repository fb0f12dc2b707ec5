"""The data layer: torchvision's CIFAR-10 loader on a folder the tests write, demo data, user data."""

import os
import textwrap

import numpy as np
import pytest
import torch
from torchvision import transforms

import mpi_landscape_models as models
from cifar_folder import write_cifar10
from conftest import run_module
from mpi_landscape.data import CIFAR10_MEAN, CIFAR10_STD, demo_split, load_splits, local_cifar10
from mpi_landscape.errors import LandscapeError
from mpi_landscape.store import read_surface


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    return write_cifar10(str(tmp_path_factory.mktemp("cifar")), per_batch=10, test_size=20)


def test_cifar_splits_equal_the_per_image_eval_transform(cifar_root):
    splits = load_splits("cifar10", ["train", "test"], cifar_root)
    assert splits["train"].inputs.shape == (50, 3, 32, 32) and splits["test"].inputs.shape == (20, 3, 32, 32)
    per_image = transforms.Compose([transforms.ToTensor(), transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)])
    raw = local_cifar10(cifar_root, train=True)  # torchvision's own reading, image by image
    for i in (0, 7, 49):
        image, label = raw[i]
        assert torch.allclose(splits["train"].inputs[i], per_image(image), atol=1e-6)
        assert splits["train"].targets[i] == label
    unnormalized = load_splits("cifar10", ["train"], cifar_root, raw_data=True)["train"]
    assert 0 <= unnormalized.inputs.min() and unnormalized.inputs.max() <= 1


def test_missing_or_incomplete_cifar_folder_says_how_to_get_it(tmp_path):
    with pytest.raises(LandscapeError, match="--download"):
        load_splits("cifar10", ["train"], str(tmp_path))
    root = write_cifar10(str(tmp_path / "partial"), per_batch=2, test_size=2)
    os.remove(os.path.join(root, "cifar-10-batches-py", "data_batch_3"))
    with pytest.raises(LandscapeError, match="incomplete"):
        load_splits("cifar10", ["train"], root)


def test_data_split_is_a_fixed_seeded_subset(cifar_root):
    a = load_splits("cifar10", ["train"], cifar_root, data_split=5, seed=1)["train"]
    b = load_splits("cifar10", ["train"], cifar_root, data_split=5, seed=1)["train"]
    c = load_splits("cifar10", ["train"], cifar_root, data_split=5, seed=2)["train"]
    assert len(a) == 10 and torch.equal(a.inputs, b.inputs) and not torch.equal(a.inputs, c.inputs)
    with pytest.raises(LandscapeError, match="--data_split"):
        load_splits("demo", ["train"], data_split=0)


def test_demo_data_is_fixed_and_balanced():
    a, b = demo_split("train"), demo_split("train")
    assert torch.equal(a.inputs, b.inputs) and a.inputs.shape == (3000, 2)
    assert np.bincount(a.targets.numpy()).tolist() == [1000, 1000, 1000]
    assert not torch.equal(demo_split("test").inputs[:10], a.inputs[:10])


USER_DATA = textwrap.dedent('''
    """A user's dataset in three shapes: tensors, a Dataset, and a dict of splits."""
    import torch
    from torch.utils.data import TensorDataset

    def _points(n, seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 2, generator=g)
        return x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()

    def tensors():
        return _points(60, 0)

    def dataset():
        return TensorDataset(*_points(60, 0))

    def splits():
        return {"train": _points(60, 0), "test": TensorDataset(*_points(30, 1))}

    not_callable = 3
''')


@pytest.fixture
def user_data(tmp_path, monkeypatch):
    (tmp_path / "userdata.py").write_text(USER_DATA)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_user_dataset_factories(user_data):
    a = load_splits("userdata:tensors", ["train"])["train"]
    b = load_splits("userdata:dataset", ["train"])["train"]
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    both = load_splits("userdata:splits", ["train", "test"])
    assert len(both["train"]) == 60 and len(both["test"]) == 30
    for spec, match in [("userdata:tensors", "dict"), ("userdata:nothing", "cannot import"),
                        ("userdata:not_callable", "not callable"), ("imagenet", "--dataset")]:
        with pytest.raises(LandscapeError, match=match):
            load_splits(spec, ["train", "test"])


USER_MODEL = textwrap.dedent('''
    """A user's own network, not registered in the project."""
    from torch import nn

    def build():
        return nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 3))
''')


def test_user_model_and_dataset_through_module_factory_under_mpirun(user_data):
    (user_data / "usernet.py").write_text(USER_MODEL)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    torch.save(net.state_dict(), user_data / "usernet.pt")  # a plain state_dict
    result = run_module("mpi_landscape.surface", "--model", "usernet:build", "--model_file", "usernet.pt",
                        "--dataset", "userdata:splits", "--splits", "train,test",
                        "--x=-1:1:5", "--y=-1:1:5", "--surf_file", "user.h5", ranks=2, cwd=user_data)
    assert result.returncode == 0, result.stderr
    surface = read_surface(str(user_data / "user.h5"))
    assert surface.done.all() and np.isfinite(surface.metrics["test_loss"]).all()


def reference_t7(path, net):
    """A checkpoint as the reference's trainer saves it: DataParallel prefixes, acc and epoch."""
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "acc": 93.1, "epoch": 300}, path)


def test_resnet56_reference_checkpoint_on_cifar_under_mpirun(cifar_root, tmp_path):
    torch.manual_seed(0)
    net = models.build_model("resnet56")
    reference_t7(tmp_path / "resnet56.t7", net)
    result = run_module("mpi_landscape.surface", "--model", "resnet56", "--model_file", "resnet56.t7",
                        "--dataset", "cifar10", "--datapath", cifar_root, "--x=-1:1:11", "--y=-1:1:11",
                        ranks=2, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    name = ("resnet56.t7_weights_xignore=biasbn_xnorm=filter_yignore=biasbn_ynorm=filter.h5"
            "_[-1,1,11]x[-1,1,11].h5")  # the reference's default file names
    surface = read_surface(str(tmp_path / name))
    assert surface.done.all() and surface.metrics["train_loss"].shape == (11, 11)
    assert surface.attrs["identity"]["dataset_size"] == {"train": 50}


TOKEN_FACTORIES = textwrap.dedent("""
    import torch

    IDS = torch.arange(60).view(6, 10) % 40

    class DictItems(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return {"input_ids": IDS[i], "attention_mask": torch.ones(10, dtype=torch.int64)}

    def dict_items():
        return DictItems()

    def columns():
        return {"train": {"input_ids": IDS, "labels": IDS.masked_fill(IDS < 5, -100)}}

    def two_inputs():
        return [(torch.randn(4), torch.randn(2), i % 3) for i in range(6)]
""")


def test_token_and_multi_input_datasets_are_kept_compact_and_structured(tmp_path, monkeypatch):
    (tmp_path / "tokens.py").write_text(TOKEN_FACTORIES)
    monkeypatch.chdir(tmp_path)
    items = load_splits("tokens:dict_items", ["train"])["train"]
    assert set(items.inputs) == {"input_ids", "attention_mask"}
    assert items.inputs["input_ids"].dtype == torch.int8 and items.inputs["attention_mask"].dtype == torch.int8
    assert torch.equal(items.targets.long(), items.inputs["input_ids"].long())  # next tokens: the ids themselves
    columns = load_splits("tokens:columns", ["train"])["train"]
    assert list(columns.inputs) == ["input_ids"]  # labels are the targets, not a model input
    assert columns.targets.dtype == torch.int8 and int(columns.targets.min()) == -100
    half = load_splits("tokens:columns", ["train"], data_split=2, seed=0)["train"]
    assert len(half) == 3 and half.inputs["input_ids"].shape == half.targets.shape == (3, 10)
    pairs = load_splits("tokens:two_inputs", ["train"])["train"]
    assert isinstance(pairs.inputs, tuple) and [t.shape for t in pairs.inputs] == [(6, 4), (6, 2)]
    assert pairs.inputs[0].dtype == torch.float32 and pairs.targets.tolist() == [0, 1, 2, 0, 1, 2]
