"""Tasks: what a batch means, summed over whole splits by the evaluator."""

import math
import textwrap

import h5py
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import run_module
from mpi_landscape.directions import DirectionSpec, create_directions
from mpi_landscape.errors import LandscapeError
from mpi_landscape.evaluate import PointEvaluator, SplitData
from mpi_landscape.store import read_surface
from mpi_landscape.task import (Classification, LanguageModel, Regression, make_task, metric_names, per_sample_loss,
                                split_mean_loss)


class TinyLM(nn.Module):
    """Embedding -> LayerNorm -> Linear, called with input_ids (and attention_mask) like a transformer."""

    def __init__(self, vocab=11, width=8):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)

    def forward(self, input_ids, attention_mask=None):
        hidden = self.norm(self.embed(input_ids))
        hidden = torch.cumsum(hidden, dim=1)  # each position sees its past
        return self.head(hidden)


def token_split(n=12, length=7, vocab=11, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (n, length), generator=gen, dtype=torch.int32)
    mask = torch.ones(n, length, dtype=torch.int8)
    for i in range(n):  # right padding of different lengths
        mask[i, length - (i % 4):] = 0
    labels = ids.clone()
    labels[0, 3] = -100
    return SplitData({"input_ids": ids, "attention_mask": mask}, labels)


def by_hand_lm_loss(net, data):
    """Next-token cross-entropy averaged over every scored token of the split."""
    logits = net(data.inputs["input_ids"].long())[:, :-1]
    labels = data.targets[:, 1:].long().masked_fill(data.inputs["attention_mask"][:, 1:] == 0, -100)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100).item()


def evaluator(net, splits, task, **kwargs):
    torch.manual_seed(0)
    x, y = create_directions(net, DirectionSpec(seed=1))
    return PointEvaluator(net, "weights", x, y, splits, task=task, **kwargs)


def test_language_model_loss_is_the_mean_over_scored_tokens_whatever_the_batch():
    torch.manual_seed(0)
    net = TinyLM().eval()
    data = token_split()
    expected = by_hand_lm_loss(net, data)
    values = [evaluator(net, {"train": data}, "language_model", batch_size=b)(0, 0)
              for b in (1, 5, 12)]
    for v in values:
        assert v["train_loss"] == pytest.approx(expected, rel=1e-6)
        assert v["train_perplexity"] == pytest.approx(math.exp(expected), rel=1e-6)
        assert 0 <= v["train_acc"] <= 100 and v["train_nonfinite"] == 0
    assert list(values[0]) == metric_names(["train"], LanguageModel())
    # a per-batch mean of means would differ: batches hold different numbers of tokens
    per_batch = sum(by_hand_lm_loss(net, SplitData({k: t[i:i + 1] for k, t in data.inputs.items()},
                                                   data.targets[i:i + 1])) for i in range(12)) / 12
    assert per_batch != pytest.approx(expected, rel=1e-4)


def test_language_model_counts_non_finite_tokens_and_never_as_correct():
    task = LanguageModel()
    logits = torch.zeros(2, 4, 5)
    logits[0, 1, 2] = float("nan")  # predicts token 2 of sample 0
    targets = torch.tensor([[0, 1, 3, 4], [1, 0, 0, -100]])
    sums = task.sums(logits, {"input_ids": targets}, targets)
    assert sums["count"].tolist() == [3, 2]
    assert sums["nonfinite"].tolist() == [1, 0]
    totals = {k: v.sum().item() for k, v in sums.items()}
    finished = task.finish(totals, 2)
    assert finished["nonfinite"] == pytest.approx(1 / 5)
    assert math.isnan(finished["loss"]) and math.isnan(finished["perplexity"])
    assert task.finish({"loss": 800.0, "count": 1, "acc": 0, "nonfinite": 0}, 1)["perplexity"] == math.inf


def test_regression_is_the_known_quadratic():
    """A linear model w·x with targets w*·x: the loss along δ is α²·mean((δ·x)²) exactly."""
    torch.manual_seed(0)
    inputs = torch.randn(200, 3)
    net = nn.Linear(3, 2, bias=False)
    targets = net(inputs).detach()
    ev = evaluator(net, {"train": SplitData(inputs, targets)}, "regression", batch_size=64)
    delta = ev.dx.view(2, 3)
    # At α = 0 the outputs equal the targets up to float32 rounding: the evaluator's batches of
    # 64 and the targets' one batch of 200 may take different matrix-product kernels.
    rounding = 1e-6
    for alpha in (0.0, 0.5, -2.0):
        values = ev(alpha, 0.0)
        error = alpha * inputs @ delta.T
        assert values["train_loss"] == pytest.approx(error.pow(2).mean().item(), rel=1e-5, abs=rounding ** 2)
        assert values["train_mae"] == pytest.approx(error.abs().mean().item(), rel=1e-5, abs=rounding)
    assert list(values) == ["train_loss", "train_mae", "train_nonfinite"]


def test_a_users_task_adds_metrics_by_name(tmp_path, monkeypatch):
    (tmp_path / "mytask.py").write_text(textwrap.dedent("""
        import torch
        from mpi_landscape.task import Classification

        class Margin(Classification):
            metrics = ("acc", "nonfinite", "margin")

            def sums(self, outputs, inputs, targets):
                parts = super().sums(outputs, inputs, targets)
                top2 = outputs.float().topk(2, dim=1).values
                parts["margin"] = (top2[:, 0] - top2[:, 1]).double()
                return parts

            def finish(self, totals, samples):
                return {**super().finish(totals, samples), "margin": totals["margin"] / samples}

        def build():
            return Margin()
    """))
    monkeypatch.chdir(tmp_path)
    task = make_task("mytask:build")
    net = nn.Linear(2, 3)
    data = SplitData(torch.randn(40, 2), torch.randint(0, 3, (40,)))
    values = evaluator(net, {"test": data}, task)(0, 0)
    top2 = net(data.inputs).topk(2, dim=1).values
    assert values["test_margin"] == pytest.approx((top2[:, 0] - top2[:, 1]).mean().item(), rel=1e-6)
    assert metric_names(["test"], task) == ["test_loss", "test_acc", "test_nonfinite", "test_margin"]


@pytest.mark.parametrize("spec, message", [
    ("ranking", "use classification, language_model, regression"),
    ("nowhere_module:build", "cannot import"),
    ("math:sqrt", "the factory failed"),
    ("builtins:object", "must return a mpi_landscape.task.Task"),
])
def test_bad_task_is_refused(spec, message):
    with pytest.raises(LandscapeError, match=message):
        make_task(spec)


def test_loss_name_belongs_to_classification():
    assert make_task("classification", "mse").loss_name == "mse"
    with pytest.raises(LandscapeError, match="--task classification only"):
        make_task("regression", "mse")


def test_preflight_asks_the_task():
    net = TinyLM().eval()
    with pytest.raises(LandscapeError, match=r"\(batch, classes\) scores"):
        evaluator(net, {"train": token_split()}, "classification")
    bad_labels = token_split()
    bad_labels.targets[2, 2] = 20
    with pytest.raises(LandscapeError, match="tokens 0..20 but the model's vocabulary has 11 entries"):
        evaluator(net, {"train": bad_labels}, "language_model")
    with pytest.raises(LandscapeError, match="per sample but the targets"):
        evaluator(nn.Linear(3, 2), {"train": SplitData(torch.randn(8, 3), torch.randn(8, 4))}, "regression")


@pytest.mark.parametrize("task, data, net", [
    (Classification(), SplitData(torch.randn(30, 2), torch.randint(0, 3, (30,))), nn.Linear(2, 3)),
    (LanguageModel(), token_split(), TinyLM()),
    (Regression(), SplitData(torch.randn(30, 2), torch.randn(30, 1)), nn.Linear(2, 1)),
])
def test_split_mean_loss_is_the_surface_loss_and_differentiable(task, data, net):
    net.eval()
    surface = evaluator(net, {"train": data}, task, batch_size=7)(0, 0)["train_loss"]
    inputs = data.inputs
    if isinstance(inputs, dict):
        inputs = {**inputs, "input_ids": inputs["input_ids"].long()}
    batches = [({k: v[i:i + 7] for k, v in inputs.items()} if isinstance(inputs, dict) else inputs[i:i + 7],
                task.store_targets(data.targets)[i:i + 7]) for i in range(0, len(data), 7)]
    loss = split_mean_loss(task, net, batches)
    assert loss.item() == pytest.approx(surface, rel=1e-6)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())



LINEAR_REGRESSION = textwrap.dedent("""
    import torch

    def build():
        torch.manual_seed(0)
        return torch.nn.Linear(3, 2, bias=False)

    def data():
        gen = torch.Generator().manual_seed(1)
        inputs = torch.randn(300, 3, generator=gen)
        return {"train": (inputs, build()(inputs).detach())}
""")


def test_regression_surface_under_mpirun_is_the_known_quadratic(tmp_path, monkeypatch):
    """Targets made by θ* itself: the loss along δ is exactly α²·mean((x·δᵀ)²), on every rank count."""
    (tmp_path / "linreg.py").write_text(LINEAR_REGRESSION)
    monkeypatch.syspath_prepend(str(tmp_path))
    import linreg

    torch.save(linreg.build().state_dict(), tmp_path / "theta.pt")
    out = tmp_path / "reg.h5"
    proc = run_module("mpi_landscape.surface", "--model", "linreg:build", "--model_file", "theta.pt",
                      "--dataset", "linreg:data", "--task", "regression", "--x=-2:2:5",
                      "--dir_file", str(tmp_path / "dirs.h5"), "--surf_file", str(out), ranks=2, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    surface = read_surface(str(out))
    with h5py.File(tmp_path / "dirs.h5", "r") as f:
        delta = torch.from_numpy(f["xdirection"]["0"][()])
    inputs = linreg.data()["train"][0]
    curvature = (inputs @ delta.T).pow(2).mean().item()
    np.testing.assert_allclose(surface.metrics["train_loss"], surface.x ** 2 * curvature, rtol=1e-5, atol=1e-12)
    assert surface.metrics["train_loss"][2] == 0.0 and set(surface.metrics) == {
        "train_loss", "train_mae", "train_nonfinite"}


def test_interpolation_and_compute_surface_take_a_task(tmp_path, monkeypatch):
    """Between θ1 and θ2 of a linear regression the loss is exactly (1 − α)²·‖(θ2 − θ1)x‖²/n."""
    from mpi_landscape import compute_surface, interpolate

    (tmp_path / "linreg.py").write_text(LINEAR_REGRESSION)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import linreg

    theta1 = linreg.build()
    theta2 = nn.Linear(3, 2, bias=False)
    torch.save(theta1.state_dict(), tmp_path / "theta1.pt")
    torch.save(theta2.state_dict(), tmp_path / "theta2.pt")
    out = tmp_path / "interp.h5"
    assert interpolate.main(["--model", "linreg:build", "--model_file", "theta2.pt", "--model_file2", "theta1.pt",
                             "--dataset", "linreg:data", "--splits", "train", "--task", "regression",
                             "--x=0:1:3", "--surf_file", str(out)]) == 0
    inputs, targets = linreg.data()["train"]
    gap = (inputs @ (theta2.weight - theta1.weight).detach().T).pow(2).mean().item()
    expected = (1 - np.array([0.0, 0.5, 1.0])) ** 2 * gap
    np.testing.assert_allclose(read_surface(str(out)).metrics["train_loss"], expected, rtol=1e-5, atol=1e-12)
    direction = [(theta1.weight - theta2.weight).detach()]
    api = compute_surface(theta2, (inputs, targets), "0:1:3", directions=(direction, None), task="regression")
    np.testing.assert_allclose(api.metrics["train_loss"], expected, rtol=1e-5, atol=1e-12)
    assert set(api.metrics) == {"train_loss", "train_mae", "train_nonfinite"}


def test_a_bad_task_on_the_command_line_is_one_error_line(tmp_path, demo_checkpoint, capsys):
    from mpi_landscape import surface

    out = tmp_path / "s.h5"
    for task, message in (("ranking", "--task 'ranking': use classification"),
                          ("nowhere_module:build", "--task nowhere_module:build: cannot import")):
        with pytest.raises(SystemExit) as exit_info:
            surface.main(["--model", "demo_mlp", "--dataset", "demo", "--model_file", demo_checkpoint,
                          "--x=-1:1:3", "--task", task, "--surf_file", str(out)])
        assert exit_info.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not out.exists()


def test_trajectory_prints_a_surface_command_with_its_task():
    from mpi_landscape.trajectory import TrajectoryConfig, TrajectoryResult, next_commands

    result = TrajectoryResult("run/PCA/directions.h5", "run/PCA/proj.h5", "run/model_10.t7", np.arange(3),
                              np.array([0.0, 1.0, 2.0]), np.array([0.0, -1.0, 0.5]), None)
    lm, _ = next_commands(TrajectoryConfig(model="tiny_gpt:build", dataset="tiny_gpt:corpus",
                                           task="language_model"), result)
    assert "--dataset tiny_gpt:corpus --datapath cifar10/data --task language_model --dir_type" in lm
    classification, _ = next_commands(TrajectoryConfig(model="demo_mlp", dataset="demo"), result)
    assert "--task" not in classification


def test_cpu_batch_of_a_language_model_is_sized_by_its_logits():
    """A token is 5 bytes (id and mask) but its logits are 4·vocabulary: the CPU batch follows the larger."""
    data = token_split(n=3000, length=8, vocab=500)
    ev = evaluator(TinyLM(vocab=500).eval(), {"train": data}, "language_model")
    assert ev.sample_output_bytes == 8 * 500 * 4
    assert ev.batch_size == 1500  # 32 MB / 16 kB: 2,097 a batch at most, two of 1,500; not the whole split


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 3), nn.Linear(2, 3)

    def forward(self, a, b):
        return self.a(a) + self.b(b)


def test_a_model_of_several_inputs_gets_them_as_a_tuple():
    torch.manual_seed(0)
    net = TwoInputs().eval()
    a, b, labels = torch.randn(50, 4), torch.randn(50, 2), torch.randint(0, 3, (50,))
    values = evaluator(net, {"train": SplitData((a, b), labels)}, "classification", batch_size=16)(0, 0)
    outputs = net(a, b)
    assert values["train_loss"] == pytest.approx(F.cross_entropy(outputs, labels).item(), rel=1e-6)
    assert values["train_acc"] == pytest.approx(100 * (outputs.argmax(1) == labels).float().mean().item())
    with pytest.raises(LandscapeError, match=r"forward pass fails on inputs of shape \[\(4,\), \(5,\)\]"):
        evaluator(net, {"train": SplitData((a, torch.randn(50, 5)), labels)}, "classification")


def test_figures_name_the_loss_of_the_task():
    from mpi_landscape.store import Surface
    from mpi_landscape.views.plot_data import metric_label

    def label(config):
        surface = Surface(np.zeros(3), None, {"train_loss": np.zeros(3)}, np.ones(3, bool), None,
                          {"config": config})
        return metric_label("train_loss", surface)

    assert label({"task": "language_model"}) == "loss (train, mean next-token cross-entropy)"
    assert label({"task": "regression"}) == "loss (train, mean squared error)"
    assert label({"task": "classification", "loss_name": "crossentropy"}) == "loss (train, mean cross-entropy)"
    assert label({"task": "mytask:build"}) == "loss (train, loss of --task mytask:build)"


@pytest.mark.parametrize("classes", [2, 3, 10, 15, 16, 100])
def test_cross_entropy_in_any_layout_equals_pytorchs_and_trains(classes):
    torch.manual_seed(0)
    outputs = (3 * torch.randn(257, classes)).requires_grad_()
    targets = torch.randint(0, classes, (257,))
    ours = per_sample_loss(outputs, targets, "crossentropy")
    torch.testing.assert_close(ours, nn.functional.cross_entropy(outputs, targets, reduction="none"),
                               rtol=1e-6, atol=1e-6)
    ours.sum().backward()
    expected = torch.softmax(outputs.detach(), dim=1) - nn.functional.one_hot(targets, classes)
    torch.testing.assert_close(outputs.grad, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("classes", [2, 3, 10])
def test_a_samples_loss_does_not_depend_on_its_place_in_the_batch(classes):
    # the class-first layout vectorizes along the batch: no sample may fall in a partial vector
    gen = torch.Generator().manual_seed(0)
    outputs, targets = 4 * torch.randn(4096, classes, generator=gen), torch.randint(0, classes, (4096,), generator=gen)
    whole = per_sample_loss(outputs, targets, "crossentropy")
    for size in (1, 5, 7, 13, 100, 999):
        pieces = [per_sample_loss(outputs[s:s + size], targets[s:s + size], "crossentropy")
                  for s in range(0, len(targets), size)]
        assert torch.equal(torch.cat(pieces), whole), size

