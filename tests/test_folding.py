"""Eval-mode BatchNorm folded into the layer before it: the same numbers as the network's own modules,
at every point, for every layer kind; left alone wherever folding would not be the same network."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

import mpi_landscape_models as models
from conftest import train_demo_net
from mpi_landscape.directions import DirectionSpec, create_directions
from mpi_landscape.evaluate import PointEvaluator, SplitData
from mpi_landscape.folding import fold_batchnorm

POINTS = [(0.0, 0.0), (0.3, -0.2), (-0.9, 0.7)]


def with_running_statistics(net: nn.Module, inputs: torch.Tensor) -> nn.Module:
    """``net`` with BatchNorm statistics of ``inputs`` (not the fresh 0 and 1) and non-trivial affine
    parameters, in eval mode: what a trained network's BatchNorms look like."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=gen))
        net.train()(inputs)
    return net.eval()


def evaluations(net, inputs, targets, dir_type="weights", ignore="biasbn", **options):
    """Metrics at POINTS, folded and unfolded, and the folded evaluator."""
    x, y = create_directions(net, DirectionSpec(dir_type=dir_type, xignore=ignore, yignore=ignore, seed=1))
    split = {"train": SplitData(inputs, targets)}
    folded = PointEvaluator(copy.deepcopy(net), dir_type, x, y, split, batch_size=64, **options)
    plain = PointEvaluator(copy.deepcopy(net), dir_type, x, y, split, batch_size=64, fold_bn=False, **options)
    return [folded(*p) for p in POINTS], [plain(*p) for p in POINTS], folded


def assert_same_metrics(a, b, samples):
    """Losses equal to float32 rounding; accuracies too, or apart by one sample that sat on a class
    boundary to within that rounding."""
    for got, want in zip(a, b):
        assert got.keys() == want.keys()
        for k in got:
            slack = 100 / samples if k.endswith("_acc") else 1e-6
            assert got[k] == pytest.approx(want[k], rel=1e-5, abs=slack), k


@pytest.mark.parametrize("name", ["resnet20", "vgg9", "resnet20_noshort"])
def test_conv_networks_fold_every_batchnorm_and_keep_their_numbers(name):
    torch.manual_seed(0)
    inputs, targets = torch.randn(96, 3, 32, 32), torch.randint(0, 10, (96,))
    net = with_running_statistics(models.build_model(name), inputs)
    folded, plain, evaluator = evaluations(net, inputs, targets)
    norms = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert len(evaluator.folded.pairs) == norms
    assert_same_metrics(folded, plain, len(targets))
    assert sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in evaluator.net.modules()) == norms  # kept


def test_the_demo_mlp_folds_linear_and_batchnorm1d_and_keeps_its_numbers():
    net = train_demo_net(steps=30)
    torch.manual_seed(0)
    inputs, targets = torch.randn(500, 2), torch.randint(0, 3, (500,))
    folded, plain, evaluator = evaluations(net, inputs, targets)
    assert len(evaluator.folded.pairs) == 2
    assert_same_metrics(folded, plain, len(targets))


@pytest.mark.parametrize("dir_type", ["weights", "states"])
def test_moved_biases_batchnorm_parameters_and_statistics_are_folded_at_each_point(dir_type):
    # xignore none: biases and BatchNorm tensors move too (and with states the running statistics)
    torch.manual_seed(0)
    inputs, targets = torch.randn(64, 3, 16, 16), torch.randint(0, 10, (64,))
    net = with_running_statistics(models.build_model("resnet20"), inputs)
    folded, plain, evaluator = evaluations(net, inputs, targets, dir_type=dir_type, ignore="none")
    assert_same_metrics(folded, plain, len(targets))
    moving = evaluator.folded.pairs[0]._moving
    assert moving == ({"weight", "gamma", "beta", "mean", "var"} if dir_type == "states" else
                      {"weight", "gamma", "beta"})


def test_with_the_papers_ignore_only_the_weights_are_refolded_at_a_point():
    torch.manual_seed(0)
    inputs, targets = torch.randn(64, 3, 16, 16), torch.randint(0, 10, (64,))
    net = with_running_statistics(models.build_model("resnet20"), inputs)
    folded, plain, evaluator = evaluations(net, inputs, targets, dir_type="states")
    assert_same_metrics(folded, plain, len(targets))
    assert all(layer._moving == {"weight"} for layer in evaluator.folded.pairs)


class Layers(nn.Module):
    """Convolutions with no bias, reflect padding, groups, 1D and 3D, and a BatchNorm without affine
    parameters: every form a folded layer must reproduce."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1, bias=False, padding_mode="reflect")
        self.bn_a = nn.BatchNorm2d(8)
        self.b = nn.Conv2d(8, 8, 3, padding=1, groups=4)
        self.bn_b = nn.BatchNorm2d(8, affine=False)
        self.c = nn.Conv1d(8, 6, 3)
        self.bn_c = nn.BatchNorm1d(6)
        self.d = nn.Conv3d(1, 2, 3, padding=1)
        self.bn_d = nn.BatchNorm3d(2)
        self.head = nn.Linear(6 * 14 + 2 * 8 * 4 * 4, 5)

    def forward(self, x):
        h = torch.relu(self.bn_b(self.b(torch.relu(self.bn_a(self.a(x))))))  # (B, 8, 16, 16)
        line = self.bn_c(self.c(h.mean(dim=3)))  # (B, 6, 14)
        cube = self.bn_d(self.d(h[:, None, :, ::4, ::4]))  # (B, 2, 8, 4, 4)
        return self.head(torch.cat([line.flatten(1), cube.flatten(1)], dim=1))


@pytest.mark.parametrize("channels_last", [False, True])
def test_every_convolution_form_folds_to_the_same_numbers(channels_last):
    torch.manual_seed(0)
    inputs, targets = torch.randn(48, 3, 16, 16), torch.randint(0, 5, (48,))
    net = with_running_statistics(Layers(), inputs)
    folded, plain, evaluator = evaluations(net, inputs, targets, channels_last=channels_last)
    assert len(evaluator.folded.pairs) == 4
    assert_same_metrics(folded, plain, len(targets))


class FeaturesThenSequenceNorm(nn.Module):
    """A Linear over the last axis of (B, L, F) sequences, then a BatchNorm1d over axis 1 (L == F):
    the BatchNorm normalizes positions, not the Linear's features, so folding would change it."""

    def __init__(self):
        super().__init__()
        self.proj, self.norm, self.head = nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Linear(64, 3)

    def forward(self, x):
        return self.head(self.norm(self.proj(x)).flatten(1))


class Branching(nn.Module):
    """A forward pass that depends on the data: fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.layer, self.norm = nn.Linear(4, 3), nn.BatchNorm1d(3)

    def forward(self, x):
        out = self.norm(self.layer(x))
        return out if bool(out.sum() > 0) else -out


def test_folding_is_refused_where_it_would_not_be_the_same_network():
    torch.manual_seed(0)
    sequences = torch.randn(40, 8, 8)
    net = with_running_statistics(FeaturesThenSequenceNorm(), sequences)
    assert fold_batchnorm(net, lambda forward: forward(sequences[:8])) is None

    branching = with_running_statistics(Branching(), torch.randn(40, 4))
    assert fold_batchnorm(branching, lambda forward: forward(torch.randn(8, 4))) is None

    net = train_demo_net(steps=5).eval()
    handle = torch.nn.modules.module.register_module_forward_hook(lambda module, args, out: None)
    try:
        assert fold_batchnorm(net, lambda forward: forward(sequences[0, :, :2])) is None  # every module hooked
    finally:
        handle.remove()


def test_a_hooked_layer_keeps_its_batchnorm_and_its_hook_sees_its_own_output():
    net = train_demo_net(steps=5).eval()
    seen = []
    net[0].register_forward_hook(lambda module, args, out: seen.append(out.clone()))
    inputs, targets = torch.randn(30, 2), torch.randint(0, 3, (30,))
    evaluator = PointEvaluator(net, "weights", *create_directions(net, DirectionSpec()),
                               {"train": SplitData(inputs, targets)}, batch_size=30)
    assert [pair.layer for pair in evaluator.folded.pairs] == [net[3]]  # only the pair without a hook
    seen.clear()
    evaluator(0.1, 0.1)
    assert len(seen) == 1
    torch.testing.assert_close(seen[0], nn.functional.linear(inputs, net[0].weight, net[0].bias))


class Counting(nn.Module):
    """A user's model whose forward has Python of its own: it counts its calls."""

    def __init__(self):
        super().__init__()
        self.calls = 0
        self.body = nn.Sequential(nn.Linear(2, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x):
        self.calls += 1
        return self.body(x)


def test_the_models_own_forward_still_runs_at_every_point():
    torch.manual_seed(0)
    inputs, targets = torch.randn(40, 2), torch.randint(0, 3, (40,))
    net = with_running_statistics(Counting(), inputs)
    evaluator = PointEvaluator(net, "weights", *create_directions(net, DirectionSpec()),
                               {"train": SplitData(inputs, targets)}, batch_size=20)
    assert len(evaluator.folded.pairs) == 1
    before = net.calls
    for point in POINTS:
        evaluator(*point)
    assert net.calls - before == 2 * len(POINTS)  # two batches a point


def test_autograd_and_train_mode_see_the_unfolded_network():
    torch.manual_seed(0)
    inputs, targets = torch.randn(64, 3, 16, 16), torch.randint(0, 10, (64,))
    net = with_running_statistics(models.build_model("resnet20"), inputs)
    plain = copy.deepcopy(net)
    evaluator = PointEvaluator(net, "weights", *create_directions(net, DirectionSpec()),
                               {"train": SplitData(inputs, targets)})
    assert len(evaluator.folded.pairs) == 21
    for model in (evaluator.net, plain):
        nn.functional.cross_entropy(model(inputs.contiguous(memory_format=torch.channels_last)), targets).backward()
    grads = {name: p.grad for name, p in plain.named_parameters()}
    for name, p in evaluator.net.named_parameters():
        torch.testing.assert_close(p.grad, grads[name], rtol=1e-4, atol=1e-6)
    evaluator.net.train()
    with torch.no_grad():
        torch.testing.assert_close(evaluator.net(inputs), plain.train()(inputs), rtol=1e-4, atol=1e-5)


def test_sequences_with_a_refused_fold_are_still_evaluated_exactly():
    torch.manual_seed(0)
    inputs, targets = torch.randn(40, 8, 8), torch.randint(0, 3, (40,))
    net = with_running_statistics(FeaturesThenSequenceNorm(), inputs)
    folded, plain, evaluator = evaluations(net, inputs, targets)
    assert evaluator.folded is None
    assert folded == plain


def test_bn_recompute_runs_the_real_batchnorms():
    torch.manual_seed(0)
    inputs, targets = torch.randn(64, 2), torch.randint(0, 3, (64,))
    net = train_demo_net(steps=5)
    x, y = create_directions(net, DirectionSpec())
    evaluator = PointEvaluator(net, "weights", x, y, {"train": SplitData(inputs, targets)}, bn="recompute")
    assert evaluator.folded is None


def test_the_command_line_folds_by_default_and_records_it(tmp_path, demo_checkpoint):
    from mpi_landscape import surface
    from mpi_landscape.store import read_surface

    args = ["--model", "demo_mlp", "--dataset", "demo", "--model_file", demo_checkpoint, "--x=-1:1:5",
            "--y=-1:1:3", "--dir_file", str(tmp_path / "d.h5")]
    assert surface.main([*args, "--surf_file", str(tmp_path / "folded.h5")]) == 0
    assert surface.main([*args, "--no_fold_bn", "--surf_file", str(tmp_path / "plain.h5")]) == 0
    folded, plain = read_surface(str(tmp_path / "folded.h5")), read_surface(str(tmp_path / "plain.h5"))
    assert folded.attrs["last_run"]["folded_batchnorms"] == 2 and plain.attrs["last_run"]["folded_batchnorms"] == 0
    assert folded.attrs["config"]["fold_bn"] is True and plain.attrs["config"]["fold_bn"] is False
    torch.testing.assert_close(folded.metrics["train_loss"], plain.metrics["train_loss"], rtol=1e-5, atol=0)
    np.testing.assert_allclose(folded.metrics["train_acc"], plain.metrics["train_acc"], atol=0.05)  # 1 of 3,000
