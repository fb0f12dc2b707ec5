"""Tests of the ``models`` package: architectures, the registry, checkpoints."""

from __future__ import annotations

import hashlib
import itertools
import os
import sys
import textwrap
from collections import OrderedDict

import pytest
import torch
from torch import nn

from mpi_landscape_models import MODEL_NAMES, ModelError, build_model, checkpoint_sha256, load_checkpoint, save_checkpoint

# Parameter counts with 10 classes, as published for the paper's networks.
EXPECTED_PARAMETERS = {
    "resnet20": 272_474,
    "resnet56": 855_770,
    "resnet56_noshort": 853_018,
    "resnet110": 1_730_714,
    "resnet18": 11_173_962,
    "wrn56_2": 3_412_394,
    "vgg9": 2_789_706,
    "densenet121": 6_956_298,
}

CIFAR_DEPTHS = (20, 32, 44, 56, 110)
IMAGENET_STYLE_DEPTHS = (18, 34, 50, 101, 152)
REQUIRED_NAMES = (
    {f"resnet{d}" for d in CIFAR_DEPTHS + IMAGENET_STYLE_DEPTHS}
    | {f"resnet{d}_noshort" for d in CIFAR_DEPTHS + IMAGENET_STYLE_DEPTHS}
    | {f"wrn56_{k}" for k in (2, 4, 8)}
    | {f"wrn56_{k}_noshort" for k in (2, 4, 8)}
    | {"wrn110_2_noshort", "wrn110_4_noshort", "resnet50_16_noshort", "vgg9", "densenet121", "demo_mlp"}
)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def on_meta(spec: str, num_classes: int | None = None) -> nn.Module:
    """Build without allocating weights: fast enough for the largest networks."""
    with torch.device("meta"):
        return build_model(spec, num_classes)


def randomized(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every float tensor of the state (BN statistics included) distinct random values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
    return model


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key


# --- architectures -------------------------------------------------------------------


def test_registry_holds_every_required_name_sorted():
    assert REQUIRED_NAMES <= set(MODEL_NAMES)
    assert list(MODEL_NAMES) == sorted(MODEL_NAMES)
    assert len(set(MODEL_NAMES)) == len(MODEL_NAMES)


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMETERS))
def test_parameter_counts_match_the_published_ones(name):
    assert n_params(on_meta(name)) == EXPECTED_PARAMETERS[name]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_registered_name_builds_with_its_class_count(name):
    model = on_meta(name, num_classes=7)
    assert isinstance(model, nn.Module)
    assert model.model_spec == name
    last_linear = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    assert last_linear.out_features == 7


def test_default_class_counts():
    assert [m for m in on_meta("resnet20").modules() if isinstance(m, nn.Linear)][-1].out_features == 10
    assert [m for m in on_meta("demo_mlp").modules() if isinstance(m, nn.Linear)][-1].out_features == 3


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if n.endswith("_noshort")])
def test_noshort_variants_have_no_shortcut(name):
    model = on_meta(name)
    assert not any("shortcut" in key for key in model.state_dict())
    blocks = [m for m in model.modules() if hasattr(m, "shortcut")]
    assert blocks and all(block.shortcut is None for block in blocks)
    with_skip = name.removesuffix("_noshort")
    if with_skip in MODEL_NAMES:
        assert n_params(model) < n_params(on_meta(with_skip))
        assert all(block.shortcut is not None for block in on_meta(with_skip).modules() if hasattr(block, "shortcut"))


@pytest.mark.parametrize(
    ("name", "expect_identity"),
    [("resnet20", True), ("resnet20_noshort", False), ("resnet50", True), ("resnet50_noshort", False)],
)
def test_a_block_adds_its_input_only_with_skip(name, expect_identity):
    """With the residual branch silenced, a block passes its input through only if it has a skip."""
    torch.manual_seed(0)
    block = build_model(name).layer2[1].eval()  # identity shortcut in every family
    last_bn = block.bn3 if hasattr(block, "bn3") else block.bn2
    with torch.no_grad():
        last_bn.weight.zero_()
        last_bn.bias.zero_()
        channels = last_bn.num_features
        x = torch.rand(1, channels, 4, 4) + 0.1
        out = block(x)
    if expect_identity:
        assert torch.equal(out, x)
    else:
        assert torch.count_nonzero(out) == 0


@pytest.mark.parametrize("name", ["resnet20", "resnet20_noshort", "wrn56_2_noshort", "vgg9"])
def test_forward_shape_on_cifar_images(name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def test_forward_shape_with_other_class_count():
    model = build_model("resnet20", num_classes=100).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_demo_mlp_classifies_2d_points():
    torch.manual_seed(0)
    model = build_model("demo_mlp")
    assert n_params(model) == (2 * 64 + 64) + 2 * 64 + (64 * 64 + 64) + 2 * 64 + (64 * 3 + 3)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in model.modules()) == 2
    assert model.train()(torch.randn(8, 2)).shape == (8, 3)
    with torch.no_grad():
        assert build_model("demo_mlp", num_classes=5).eval()(torch.randn(4, 2)).shape == (4, 5)


def test_state_dict_keys_follow_the_reference_layout():
    resnet = on_meta("resnet56").state_dict()
    assert list(resnet)[:2] == ["conv1.weight", "bn1.weight"]
    assert "layer2.0.shortcut.0.weight" in resnet and "layer2.0.shortcut.1.running_var" in resnet
    assert "layer1.0.shortcut.0.weight" not in resnet
    assert list(resnet)[-2:] == ["linear.weight", "linear.bias"]
    vgg = on_meta("vgg9").state_dict()
    assert vgg["features.0.weight"].shape == (64, 3, 3, 3)
    assert vgg["features.1.running_mean"].shape == (64,)
    assert vgg["fc.0.weight"].shape == (256, 256 * 4 * 4)
    assert vgg["classifier.weight"].shape == (10, 256)
    dense = on_meta("densenet121").state_dict()
    assert dense["dense1.0.bn1.weight"].shape == (64,)
    assert dense["trans3.conv.weight"].shape == (512, 1024, 1, 1)
    assert dense["linear.weight"].shape == (10, 1024)


def test_parameter_order_matches_state_dict_order():
    """Direction files list tensors in parameters() order; it must follow the layer order."""
    model = on_meta("resnet20")
    names = [name for name, _ in model.named_parameters()]
    state_order = [k for k in model.state_dict() if k in set(names)]
    assert names == state_order
    order = [names.index(k) for k in ("layer2.0.bn2.bias", "layer2.0.shortcut.0.weight", "layer2.1.conv1.weight")]
    assert order == sorted(order)


# --- building from a spec ------------------------------------------------------------

_module_counter = itertools.count()


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """Write a module into a fresh working directory; return its import name."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])

    def write(source: str) -> str:
        name = f"user_nets_{os.getpid()}_{next(_module_counter)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        monkeypatch.delitem(sys.modules, name, raising=False)
        return name

    yield write


def test_module_factory_spec_imports_from_the_working_directory(user_module):
    name = user_module(
        """
        from torch import nn

        def build(num_classes=4):
            return nn.Linear(5, num_classes)
        """
    )
    model = build_model(f"{name}:build")
    assert isinstance(model, nn.Linear) and model.out_features == 4
    assert model.model_spec == f"{name}:build"
    assert build_model(f"{name}:build", num_classes=9).out_features == 9


def test_module_factory_in_a_package(user_module, tmp_path):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "mynet.py").write_text("from torch import nn\ndef build():\n    return nn.Conv2d(3, 2, 1)\n")
    for key in [k for k in sys.modules if k == "mypkg" or k.startswith("mypkg.")]:
        del sys.modules[key]
    try:
        assert isinstance(build_model("mypkg.mynet:build"), nn.Conv2d)
    finally:
        for key in [k for k in sys.modules if k == "mypkg" or k.startswith("mypkg.")]:
            del sys.modules[key]


@pytest.mark.parametrize(
    ("source", "attr", "num_classes", "expected"),
    [
        ("x = 1\n", "missing", None, "has no 'missing'"),
        ("x = 1\n", "x", None, "not a callable"),
        ("def build():\n    return 42\n", "build", None, "returned a int, not a torch.nn.Module"),
        ("def build():\n    return None\n", "build", None, "not a torch.nn.Module"),
        ("def build():\n    raise ValueError('no weights today')\n", "build", None, "ValueError: no weights today"),
        ("from torch import nn\ndef build():\n    return nn.Linear(1, 1)\n", "build", 10, "num_classes"),
        ("def build(:\n", "build", None, "SyntaxError"),
        ("import not_a_module_anywhere\n", "build", None, "No module named 'not_a_module_anywhere'"),
    ],
)
def test_bad_factories_are_refused(user_module, source, attr, num_classes, expected):
    name = user_module(source)
    with pytest.raises(ModelError) as info:
        build_model(f"{name}:{attr}", num_classes=num_classes)
    assert expected in str(info.value)
    assert name in str(info.value)


def test_factory_error_names_the_user_line(user_module):
    name = user_module("def build():\n    x = 1\n    raise RuntimeError('boom')\n")
    with pytest.raises(ModelError, match=r"RuntimeError: boom \(at .*:3\)"):
        build_model(f"{name}:build")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("resnet57", "did you mean resnet56"),
        ("vgg", "vgg9"),
        ("", "no model given"),
        ("   ", "no model given"),
        ("no_such_module_xyz:build", "cannot import module 'no_such_module_xyz'"),
        ("pkg.mod:", "not of the form"),
        (":build", "not of the form"),
        ("a:b:c", "not of the form"),
        ("mynet.py:build", "names a file"),
        ("nets/mynet:build", "names a file"),
    ],
)
def test_bad_specs_are_refused(spec, expected):
    with pytest.raises(ModelError) as info:
        build_model(spec)
    assert expected in str(info.value)


def test_unknown_name_with_no_close_match_lists_all_names():
    with pytest.raises(ModelError) as info:
        build_model("transformer")
    assert all(name in str(info.value) for name in ("resnet56", "vgg9", "densenet121"))


def test_registered_names_ignore_case():
    assert build_model("ResNet20").model_spec == "ResNet20"
    assert n_params(build_model("ResNet20")) == EXPECTED_PARAMETERS["resnet20"]


@pytest.mark.parametrize("num_classes", [0, -3, 2.5, True, "10"])
def test_bad_class_counts_are_refused(num_classes):
    with pytest.raises(ModelError, match="num_classes must be a positive integer"):
        build_model("demo_mlp", num_classes=num_classes)


# --- checkpoints ---------------------------------------------------------------------


@pytest.fixture
def trained():
    """A resnet20 whose every weight and BN statistic differs from a fresh one's."""
    return randomized(build_model("resnet20"), seed=1)


def test_reference_t7_round_trip(tmp_path, trained):
    path = tmp_path / "model_300.t7"
    torch.save({"state_dict": trained.state_dict(), "acc": 93.02, "epoch": 300}, path)
    fresh = build_model("resnet20")
    meta = load_checkpoint(fresh, str(path))
    assert meta == {"acc": 93.02, "epoch": 300}
    assert_same_state(fresh, trained)


def test_dataparallel_prefixes_are_removed(tmp_path, trained):
    path = tmp_path / "dp.t7"
    state = OrderedDict((f"module.{k}", v) for k, v in trained.state_dict().items())
    torch.save({"state_dict": state, "acc": torch.tensor(91.5), "epoch": 12}, path)
    fresh = build_model("resnet20")
    meta = load_checkpoint(fresh, path)
    assert meta == {"acc": 91.5, "epoch": 12}
    assert isinstance(meta["acc"], float)
    assert_same_state(fresh, trained)


def test_plain_state_dict_round_trip(tmp_path, trained):
    path = tmp_path / "plain.pt"
    torch.save(trained.state_dict(), path)
    fresh = build_model("resnet20")
    assert load_checkpoint(fresh, path) == {}
    assert_same_state(fresh, trained)


def test_legacy_serialization_without_num_batches_tracked(tmp_path, trained):
    """Files from old PyTorch versions: non-zip format and no BN num_batches_tracked."""
    path = tmp_path / "old.t7"
    state = trained.state_dict()  # keeps the per-module versions, which say BN has num_batches_tracked
    for key in [k for k in state if k.endswith("num_batches_tracked")]:
        del state[key]
    torch.save({"state_dict": state, "acc": 90.0, "epoch": 1}, path, _use_new_zipfile_serialization=False)
    fresh = build_model("resnet20")
    assert load_checkpoint(fresh, path) == {"acc": 90.0, "epoch": 1}
    for key, value in trained.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(fresh.state_dict()[key], value), key


def test_save_checkpoint_round_trip_with_optimizer_state(tmp_path):
    torch.manual_seed(0)
    model = build_model("demo_mlp")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loss = nn.functional.cross_entropy(model(torch.randn(16, 2)), torch.randint(0, 3, (16,)))
    loss.backward()
    optimizer.step()
    path = tmp_path / "sub" / "dir" / "model_1.t7"
    save_checkpoint(path, model, epoch=1, acc=55.5, optimizer=optimizer.state_dict(), note="demo", lr=[0.1, 0.01])

    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert set(raw) == {"state_dict", "epoch", "acc", "optimizer", "note", "lr"}
    fresh = build_model("demo_mlp")
    meta = load_checkpoint(fresh, path)
    assert_same_state(fresh, model)
    assert meta["epoch"] == 1 and meta["acc"] == 55.5 and meta["note"] == "demo" and meta["lr"] == [0.1, 0.01]
    restored = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    restored.load_state_dict(meta["optimizer"])
    buffers = [restored.state[p]["momentum_buffer"] for p in fresh.parameters()]
    originals = [optimizer.state[p]["momentum_buffer"] for p in model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(buffers, originals))
    assert os.listdir(path.parent) == ["model_1.t7"]


def test_save_checkpoint_replaces_an_existing_file(tmp_path):
    path = tmp_path / "m.t7"
    first, second = randomized(build_model("demo_mlp"), 1), randomized(build_model("demo_mlp"), 2)
    save_checkpoint(path, first, epoch=1)
    save_checkpoint(path, second, epoch=2)
    fresh = build_model("demo_mlp")
    assert load_checkpoint(fresh, path) == {"epoch": 2}
    assert_same_state(fresh, second)
    assert sorted(os.listdir(tmp_path)) == ["m.t7"]


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"args": object()}, "meta['args'] is a builtins.object"),
        ({"history": {"acc": [1.0, {2, 3}, range(3)]}}, "meta['history']['acc'][2] is a builtins.range"),
        ({"state_dict": {}}, "may not be named"),
    ],
)
def test_save_checkpoint_refuses_unsafe_metadata(tmp_path, meta, expected):
    path = tmp_path / "m.t7"
    with pytest.raises(ModelError) as info:
        save_checkpoint(path, build_model("demo_mlp"), **meta)
    assert expected in str(info.value)
    assert os.listdir(tmp_path) == []


def test_checkpoint_sha256(tmp_path):
    path = tmp_path / "m.t7"
    save_checkpoint(path, build_model("demo_mlp"))
    assert checkpoint_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert checkpoint_sha256(str(path)) == checkpoint_sha256(path)
    with pytest.raises(ModelError, match="not found"):
        checkpoint_sha256(tmp_path / "nope.t7")


# --- checkpoint refusals -------------------------------------------------------------


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ModelError, match=r"checkpoint file not found: .*absent\.t7"):
        load_checkpoint(build_model("demo_mlp"), tmp_path / "absent.t7")
    with pytest.raises(ModelError, match="not a file"):
        load_checkpoint(build_model("demo_mlp"), tmp_path)


@pytest.mark.parametrize("content", [b"", b"this is not a checkpoint", b"PK\x03\x04truncated zip"])
def test_unreadable_file_is_refused(tmp_path, content):
    path = tmp_path / "bad.t7"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=r"bad\.t7 cannot be read as a PyTorch checkpoint"):
        load_checkpoint(build_model("demo_mlp"), path)


def test_truncated_checkpoint_is_refused(tmp_path):
    path = tmp_path / "cut.t7"
    save_checkpoint(path, build_model("demo_mlp"))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ModelError, match="cannot be read"):
        load_checkpoint(build_model("demo_mlp"), path)


class Pickled:
    """A class a safe load must refuse to instantiate."""


def test_arbitrary_objects_are_not_unpickled(tmp_path):
    path = tmp_path / "unsafe.t7"
    torch.save({"state_dict": build_model("demo_mlp").state_dict(), "args": Pickled()}, path)
    with pytest.raises(ModelError) as info:
        load_checkpoint(build_model("demo_mlp"), path)
    assert "Pickled" in str(info.value) and "could run code" in str(info.value)


@pytest.mark.parametrize("payload", [[1, 2, 3], {"acc": 90.0, "epoch": 3}, {}])
def test_files_without_weights_are_refused(tmp_path, payload):
    path = tmp_path / "noweights.t7"
    torch.save(payload, path)
    with pytest.raises(ModelError, match="not a dict of weights|has no weights"):
        load_checkpoint(build_model("demo_mlp"), path)


def test_wrong_architecture_names_unexpected_keys_and_the_fitting_model(tmp_path, trained):
    path = tmp_path / "r20.t7"
    save_checkpoint(path, trained)
    target = build_model("resnet20_noshort")
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ModelError) as info:
        load_checkpoint(target, path)
    message = str(info.value)
    assert "model 'resnet20_noshort'" in message
    assert "12 checkpoint keys not in the model" in message and "layer2.0.shortcut.0.weight" in message
    assert "fits the registered model resnet20" in message
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_wrong_depth_names_missing_keys(tmp_path, trained):
    path = tmp_path / "r20.t7"
    save_checkpoint(path, trained)
    with pytest.raises(ModelError) as info:
        load_checkpoint(build_model("resnet32"), path)
    message = str(info.value)
    assert "60 model keys missing from the checkpoint" in message
    assert "layer1.3.conv1.weight" in message and "(55 more)" in message


def test_wrong_class_count_names_shape_mismatches(tmp_path, trained):
    path = tmp_path / "r20.t7"
    save_checkpoint(path, trained)
    with pytest.raises(ModelError) as info:
        load_checkpoint(build_model("resnet20", num_classes=100), path)
    message = str(info.value)
    assert "2 shapes differ" in message
    assert "linear.weight (checkpoint (10, 64), model (100, 64))" in message
    assert "missing" not in message and "not in the model" not in message
    assert "fits 'resnet20' built with its default number of classes" in message


def test_unregistered_model_and_checkpoint(tmp_path):
    path = tmp_path / "lin.t7"
    torch.save({"weight": torch.zeros(3, 4), "bias": torch.zeros(3)}, path)
    with pytest.raises(ModelError) as info:
        load_checkpoint(nn.Linear(4, 2), path)
    message = str(info.value)
    assert "the model (Linear, 10 parameters)" in message
    assert "weight (checkpoint (3, 4), model (2, 4))" in message
    assert "trained with, with the same number of classes" in message
