"""The evaluator against a reference-style evaluation, point by point."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import mpi_landscape_models as models
from conftest import train_demo_net
from mpi_landscape import compute_surface
from mpi_landscape.data import demo_split
from mpi_landscape.directions import DirectionSpec, create_directions, model_tensors
from mpi_landscape.errors import LandscapeError
from mpi_landscape.evaluate import (PointEvaluator, SplitData, check_weights_fit, largest_fitting_batch,
                                    weights_memory_bytes)


def reference_style_loss(net, dir_type, x, y, alpha, beta, data, loss_name="crossentropy"):
    """What the reference computes: set θ*+αδ+βη tensor by tensor, then batches of 128."""
    net = copy.deepcopy(net)
    if dir_type == "weights":
        with torch.no_grad():
            for p, dx, dy in zip(net.parameters(), x, y):
                p.data = p.data + dx * alpha + dy * beta
    else:
        states = net.state_dict()
        for (k, v), dx, dy in zip(list(states.items()), x, y):
            if v.is_floating_point():
                states[k] = v + dx * alpha + dy * beta
        net.load_state_dict(states)
    net.eval()
    total, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for inputs, targets in DataLoader(TensorDataset(data.inputs, data.targets), batch_size=128):
            out = net(inputs)
            if loss_name == "mse":
                loss = F.mse_loss(F.softmax(out, dim=1), F.one_hot(targets, out.shape[1]).float())
            else:
                loss = F.cross_entropy(out, targets)
            total += loss.item() * len(targets)
            correct += (out.argmax(1) == targets).sum().item()
            n += len(targets)
    return total / n, 100.0 * correct / n


@pytest.fixture(scope="module")
def trained():
    return train_demo_net()


@pytest.mark.parametrize("dir_type", ["weights", "states"])
@pytest.mark.parametrize("loss_name", ["crossentropy", "mse"])
def test_equals_reference_evaluation(trained, dir_type, loss_name):
    data = demo_split("train")
    x, y = create_directions(trained, DirectionSpec(dir_type=dir_type, seed=3))
    evaluator = PointEvaluator(copy.deepcopy(trained), dir_type, x, y, {"train": data},
                               loss_name=loss_name, batch_size=1000)
    for alpha, beta in [(0.0, 0.0), (0.5, -0.25), (-1.0, 1.0), (0.3, 0.0)]:
        ours = evaluator(alpha, beta)
        ref_loss, ref_acc = reference_style_loss(trained, dir_type, x, y, alpha, beta, data, loss_name)
        assert ours["train_loss"] == pytest.approx(ref_loss, rel=1e-5, abs=1e-7)
        assert ours["train_acc"] == pytest.approx(ref_acc, abs=1e-9)


def test_centre_is_the_trained_network_and_points_do_not_drift(trained):
    data = demo_split("test")
    x, y = create_directions(trained, DirectionSpec())
    evaluator = PointEvaluator(copy.deepcopy(trained), "weights", x, y, {"test": data})
    first = evaluator(0.0, 0.0)
    evaluator(1.0, 1.0)
    evaluator(-0.7, 0.2)
    assert evaluator(0.0, 0.0) == first  # set, not accumulate
    assert first["test_acc"] > 85


def test_batch_size_does_not_change_the_answer(trained):
    data = demo_split("train")
    x, y = create_directions(trained, DirectionSpec())
    a = PointEvaluator(copy.deepcopy(trained), "weights", x, y, {"train": data}, batch_size=7)(0.2, 0.1)
    b = PointEvaluator(copy.deepcopy(trained), "weights", x, y, {"train": data}, batch_size=3000)(0.2, 0.1)
    assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    assert a["train_acc"] == b["train_acc"]


def test_bad_loss_or_batch_size_is_refused(trained):
    x, y = create_directions(trained, DirectionSpec())
    with pytest.raises(LandscapeError, match="loss_name"):
        PointEvaluator(trained, "weights", x, y, {"train": demo_split("train")}, loss_name="hinge")
    with pytest.raises(LandscapeError, match="batch_size"):
        PointEvaluator(trained, "weights", x, y, {"train": demo_split("train")}, batch_size=0)


def test_compute_surface_without_mpi_or_files(trained):
    data = demo_split("train")
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    spec = DirectionSpec(seed=5)
    surface = compute_surface(trained, {"train": (data.inputs, data.targets)}, "-1:1:5", "-1:1:3", spec=spec)
    z = surface.metrics["train_loss"]
    assert z.shape == (3, 5) and surface.done.all()
    x, y = create_directions(trained, spec)
    ref, _ = reference_style_loss(trained, "weights", x, y, surface.x[4], surface.y[0], data)
    assert z[0, 4] == pytest.approx(ref, rel=1e-5)
    assert z[1, 2] == z.min()  # the trained network sits at the centre
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())


def test_user_model_with_tied_or_frozen_parts_is_covered():
    net = models.build_model("demo_mlp")
    data = SplitData(torch.randn(50, 2), torch.randint(0, 3, (50,)))
    x, y = create_directions(net, DirectionSpec())
    values = PointEvaluator(net, "weights", x, y, {"train": data})(0.0, 0.0)
    assert np.isfinite(values["train_loss"]) and 0 <= values["train_acc"] <= 100


def test_several_splits_in_one_pass_equal_each_split_alone(trained):
    train, test = demo_split("train"), demo_split("test")
    x, y = create_directions(trained, DirectionSpec())
    both = PointEvaluator(copy.deepcopy(trained), "weights", x, y, {"train": train, "test": test},
                          batch_size=1000)(0.4, -0.3)
    alone = PointEvaluator(copy.deepcopy(trained), "weights", x, y, {"test": test}, batch_size=1000)(0.4, -0.3)
    assert list(both) == ["train_loss", "train_acc", "train_nonfinite", "test_loss", "test_acc", "test_nonfinite"]
    assert both["test_loss"] == pytest.approx(alone["test_loss"], rel=1e-6)
    assert both["test_acc"] == alone["test_acc"]


def test_a_batch_across_two_splits_adds_each_sample_to_its_own_split(trained):
    train, test = demo_split("train", n=250), demo_split("test", n=130)  # batch 4 of 64 holds both
    x, y = create_directions(trained, DirectionSpec())
    both = PointEvaluator(copy.deepcopy(trained), "weights", x, y, {"train": train, "test": test}, batch_size=64)
    assert None in list(both.data.batch_splits(64))
    values = both(0.3, 0.2)
    for name, split in (("train", train), ("test", test)):
        alone = PointEvaluator(copy.deepcopy(trained), "weights", x, y, {name: split}, batch_size=64)(0.3, 0.2)
        assert values[f"{name}_loss"] == pytest.approx(alone[f"{name}_loss"], rel=1e-6)
        assert values[f"{name}_acc"] == alone[f"{name}_acc"]
        assert values[f"{name}_nonfinite"] == alone[f"{name}_nonfinite"] == 0


def test_reduced_precision_is_close_and_checked_against_fp32(trained):
    x, y = create_directions(trained, DirectionSpec())
    splits = {"train": demo_split("train")}
    fp32 = PointEvaluator(copy.deepcopy(trained), "weights", x, y, splits)(0.5, 0.5)
    bf16 = PointEvaluator(copy.deepcopy(trained), "weights", x, y, splits, precision="bf16")
    assert bf16(0.5, 0.5)["train_loss"] == pytest.approx(fp32["train_loss"], rel=0.05)
    check = bf16.precision_check()
    assert set(check) == {"fp32", "bf16", "max_relative_loss_gap"}
    assert check["fp32"]["train_loss"] != check["bf16"]["train_loss"]
    assert 0 < check["max_relative_loss_gap"] < 0.5
    with pytest.raises(LandscapeError, match="--precision"):
        PointEvaluator(trained, "weights", x, y, splits, precision="fp8")


def test_bn_recompute_re_estimates_running_statistics_at_each_point(trained):
    data = demo_split("train")
    x, y = create_directions(trained, DirectionSpec())
    evaluator = PointEvaluator(copy.deepcopy(trained), "weights", x, y, {"train": data}, bn="recompute")
    ours = evaluator(0.6, -0.2)
    # by hand: move the weights, reset BN, cumulative statistics over batches of 128, then eval
    net = copy.deepcopy(trained)
    with torch.no_grad():
        for p, dx, dy in zip(net.parameters(), x, y):
            p.add_(dx * 0.6 + dy * -0.2)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.reset_running_stats()
                m.momentum = None
        net.train()
        for start in range(0, len(data), 128):
            net(data.inputs[start:start + 128])
    expected, _ = reference_style_loss(net, "weights", [torch.zeros_like(t) for t in x],
                                       [torch.zeros_like(t) for t in y], 0, 0, data)
    assert ours["train_loss"] == pytest.approx(expected, rel=1e-5)
    plain = PointEvaluator(copy.deepcopy(trained), "weights", x, y, {"train": data})(0.6, -0.2)
    assert ours["train_loss"] != pytest.approx(plain["train_loss"], rel=1e-3)
    with pytest.raises(LandscapeError, match="train"):
        PointEvaluator(trained, "weights", x, y, {"test": data}, bn="recompute")


def test_compiled_model_gives_the_same_surface(trained):
    data = demo_split("test")
    x, y = create_directions(trained, DirectionSpec())
    eager = PointEvaluator(copy.deepcopy(trained), "weights", x, y, {"test": data})
    compiled = PointEvaluator(copy.deepcopy(trained), "weights", x, y, {"test": data}, compile=True)
    assert compiled.warm_up() > 0
    for point in [(0.0, 0.0), (0.7, -0.4), (-1.0, 1.0)]:
        assert compiled(*point)["test_loss"] == pytest.approx(eager(*point)["test_loss"], rel=1e-5)


def test_channels_last_layout_gives_the_same_losses(trained):
    """The NHWC buffer layout, the default for conv nets, against NCHW with a real conv net."""
    torch.manual_seed(0)
    net = models.build_model("resnet20").eval()
    data = SplitData(torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,)))
    x, y = create_directions(net, DirectionSpec())
    plain = PointEvaluator(copy.deepcopy(net), "weights", x, y, {"train": data}, channels_last=False)
    nhwc = PointEvaluator(copy.deepcopy(net), "weights", x, y, {"train": data})
    conv = next(m for m in nhwc.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert nhwc.data.inputs.is_contiguous(memory_format=torch.channels_last)
    assert not plain.data.inputs.is_contiguous(memory_format=torch.channels_last)
    mlp = PointEvaluator(copy.deepcopy(trained), "weights", *create_directions(trained, DirectionSpec()),
                         {"train": demo_split("test")})
    assert not mlp.flat.channels_last  # nothing to gain without convolutions
    for point in [(0.0, 0.0), (0.3, -0.6)]:
        assert nhwc(*point)["train_loss"] == pytest.approx(plain(*point)["train_loss"], rel=1e-5)


def test_batch_search_halves_until_the_forward_pass_fits():
    """The GPU batch search, driven by a stand-in for the device's allocator (no GPU here)."""
    tried, released = [], []

    def fits_up_to_300(batch):
        tried.append(batch)
        if batch > 300:
            raise torch.OutOfMemoryError("CUDA out of memory")

    assert largest_fitting_batch(fits_up_to_300, 4096, release=lambda: released.append(1)) == 256
    assert tried == [4096, 2048, 1024, 512, 256] and len(released) == 4

    def never_fits(batch):
        raise torch.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(LandscapeError, match="does not fit in GPU memory even with a batch of 1"):
        largest_fitting_batch(never_fits, 8)

    def other_error(batch):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):  # only running out of memory is retried
        largest_fitting_batch(other_error, 8)


def test_precision_check_runs_fp32_eagerly_with_its_own_batch(trained):
    """A compiled bf16 evaluator checks its centre in eager fp32, at the batch fp32 would get."""
    x, y = create_directions(trained, DirectionSpec())
    splits = {"train": demo_split("train")}
    evaluator = PointEvaluator(copy.deepcopy(trained), "weights", x, y, splits, precision="bf16", compile=True)
    evaluator.warm_up()
    calls = []
    evaluator._largest_batch = lambda precision, forward: calls.append((precision, forward)) or 64
    check = evaluator.precision_check()
    assert calls == [("fp32", evaluator.net)]
    eager_fp32 = PointEvaluator(copy.deepcopy(trained), "weights", x, y, splits, batch_size=64)(0.0, 0.0)
    assert check["fp32"]["train_loss"] == pytest.approx(eager_fp32["train_loss"], rel=1e-6)


def test_diverged_network_never_counts_as_correct_and_reports_its_nonfinite_share(trained):
    """Beyond an interpolation's end BatchNorm variances go negative: NaN outputs are no prediction."""
    _, states = model_tensors(trained, "states")
    towards_minus_theta = [-t.float() for t in states]  # at α = 2 every state is −θ*: negative variances
    evaluator = PointEvaluator(copy.deepcopy(trained), "states", towards_minus_theta, None,
                               {"train": demo_split("train")}, batch_size=500)
    diverged = evaluator(2.0)
    assert np.isnan(diverged["train_loss"])
    assert diverged["train_acc"] == 0.0  # argmax of a NaN row would say class 0: 33.33% on 3 classes
    assert diverged["train_nonfinite"] == 1.0
    centre = evaluator(0.0)
    assert centre["train_nonfinite"] == 0.0 and centre["train_acc"] > 85


def test_low_memory_holds_theta_and_directions_in_the_reduced_precision(trained):
    x, y = create_directions(trained, DirectionSpec())
    splits = {"train": demo_split("train")}
    fp32 = PointEvaluator(copy.deepcopy(trained), "weights", x, y, splits, precision="bf16")
    low = PointEvaluator(copy.deepcopy(trained), "weights", x, y, splits, precision="bf16", low_memory=True)
    assert low.flat.theta.dtype == low.dx.dtype == low.dy.dtype == torch.bfloat16
    assert low.flat.buffer.dtype == torch.float32  # the model still reads float32 weights
    assert low(0.4, -0.3)["train_loss"] == pytest.approx(fp32(0.4, -0.3)["train_loss"], rel=0.02)
    with pytest.raises(LandscapeError, match="--low_memory .* --precision bf16 or fp16"):
        PointEvaluator(copy.deepcopy(trained), "weights", x, y, splits, low_memory=True)


def test_weights_that_cannot_fit_are_refused_with_the_figure():
    assert weights_memory_bytes(1000, 2) == 16000
    assert weights_memory_bytes(1000, 2, torch.bfloat16) == 10000
    assert weights_memory_bytes(1000, 1, torch.float16) == 8000
    with pytest.raises(LandscapeError, match=r"1,000,000,000 weights need 14.9 GiB .* more than the 8 GiB "
                                             r"free \(--low_memory with --precision bf16 needs 9.31 GiB\)"):
        check_weights_fit(10**9, 2, torch.float32, 8 * 2**30)
    check_weights_fit(10**9, 2, torch.bfloat16, 10 * 2**30)


def test_low_memory_on_the_command_line(tmp_path, demo_checkpoint, capsys):
    from mpi_landscape import surface
    from mpi_landscape.store import read_surface

    args = ["--model", "demo_mlp", "--dataset", "demo", "--model_file", demo_checkpoint, "--x=-1:1:3",
            "--dir_file", str(tmp_path / "d.h5"), "--low_memory"]
    with pytest.raises(SystemExit) as exit_info:
        surface.main([*args, "--surf_file", str(tmp_path / "fp32.h5")])
    assert exit_info.value.code == 2
    assert "error: --low_memory holds θ* and the directions" in capsys.readouterr().err
    assert not (tmp_path / "fp32.h5").exists() and not (tmp_path / "d.h5").exists()  # refused before any file
    assert surface.main([*args, "--precision", "bf16", "--surf_file", str(tmp_path / "bf16.h5")]) == 0
    written = read_surface(str(tmp_path / "bf16.h5"))
    assert written.done.all() and written.attrs["config"]["low_memory"] is True
