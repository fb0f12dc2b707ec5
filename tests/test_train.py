"""Tests of the training command: schedule, checkpoints, exact resumption, the log, each model family."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import textwrap

import pytest
import torch

import mpi_landscape_models as models
from cifar_folder import write_cifar10
from mpi_landscape.data import demo_split
from mpi_landscape.errors import LandscapeError
from mpi_landscape.train import (
    LOG_COLUMNS,
    Schedule,
    TrainConfig,
    build_optimizer,
    is_save_epoch,
    main,
    model_path,
    opt_state_path,
    parse_milestones,
    read_log,
    resumable_epochs,
    saved_epochs,
    train,
    train_epoch,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def demo_config(save_dir, **changes) -> TrainConfig:
    """A few seconds of demo_mlp on the spirals with the paper's SGD recipe."""
    settings = dict(model="demo_mlp", dataset="demo", epochs=3, save_epoch=2, lr_milestones="2",
                    batch_size=128, save_dir=str(save_dir))
    settings.update(changes)
    return TrainConfig(**settings)


def cifar_config(save_dir, datapath, **changes) -> TrainConfig:
    """resnet20 on the tiny CIFAR-10 folder, with augmentation, loaded in this process."""
    settings = dict(model="resnet20", dataset="cifar10", datapath=str(datapath), epochs=2, save_epoch=1,
                    lr_milestones="1", batch_size=32, num_workers=0, save_dir=str(save_dir))
    settings.update(changes)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory) -> str:
    return write_cifar10(str(tmp_path_factory.mktemp("cifar")), per_batch=12, test_size=20)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> str:
    """One finished 3-epoch demo run, shared by the tests that only read it."""
    return train(demo_config(tmp_path_factory.mktemp("runs") / "demo"))


def test_schedule_divides_lr_after_each_milestone():
    schedule = Schedule(0.1, 0.1, (150, 225, 275))
    expected = {0: 0.1, 1: 0.1, 150: 0.1, 151: 0.01, 225: 0.01, 226: 1e-3, 275: 1e-3, 276: 1e-4, 300: 1e-4}
    for epoch, lr in expected.items():
        assert math.isclose(schedule.lr(epoch), lr, rel_tol=1e-12), epoch
    assert Schedule(0.01, 0.5, ()).lr(1000) == 0.01


def test_milestones_are_parsed_and_checked():
    assert parse_milestones("150,225,275") == (150, 225, 275)
    assert parse_milestones("") == ()
    for bad in ("150,x", "225,150", "0,10", "10,10"):
        with pytest.raises(LandscapeError, match="--lr_milestones"):
            parse_milestones(bad)


def test_optimizer_is_the_papers_by_default():
    net = models.build_model("demo_mlp")
    optimizer, schedule = build_optimizer(net, TrainConfig())
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.SGD)
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (0.1, 0.9, 5e-4, True)
    assert schedule == Schedule(0.1, 0.1, (150, 225, 275))
    assert sum(p.numel() for p in group["params"]) == sum(p.numel() for p in net.parameters())
    adam, _ = build_optimizer(net, TrainConfig(optimizer="adam", lr=0.01, weight_decay=0.0))
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["lr"] == 0.01


def test_save_epochs_and_default_folder():
    config = TrainConfig(epochs=25, save_epoch=10)
    assert [e for e in range(30) if is_save_epoch(e, config)] == [0, 1, 10, 20, 25]
    assert TrainConfig(model="resnet56").resolved_save_dir() == os.path.join(
        "trained_nets", "resnet56_sgd_lr=0.1_bs=128_wd=0.0005")


def test_demo_training_lowers_the_loss_and_logs_every_epoch(demo_run):
    rows = read_log(demo_run)
    with open(os.path.join(demo_run, "log.csv")) as handle:
        assert handle.readline().strip() == ",".join(LOG_COLUMNS)
    assert [row["epoch"] for row in rows] == [0, 1, 2, 3]
    assert [row["lr"] for row in rows] == pytest.approx([0.1, 0.1, 0.1, 0.01])
    assert rows[3]["train_loss"] < rows[1]["train_loss"]
    assert rows[3]["test_loss"] < 0.8 * rows[0]["test_loss"]
    assert rows[3]["test_acc"] > rows[0]["test_acc"] + 20
    assert saved_epochs(demo_run) == [0, 1, 2, 3]
    assert all(os.path.isfile(opt_state_path(demo_run, e)) for e in (0, 1, 2, 3))
    with open(os.path.join(demo_run, "log.png"), "rb") as handle:
        assert handle.read(8) == PNG_SIGNATURE


def test_checkpoint_reloads_to_the_logged_network(demo_run):
    """Evaluating a saved checkpoint again reproduces the test loss logged for its epoch."""
    rows = read_log(demo_run)
    for epoch in (0, 2, 3):
        net = models.build_model("demo_mlp")
        meta = models.load_checkpoint(net, model_path(demo_run, epoch))
        assert meta["epoch"] == epoch
        assert meta["lr"] == pytest.approx(rows[epoch]["lr"])
        assert meta["acc"] == pytest.approx(rows[epoch]["test_acc"], abs=1e-3)
        test = demo_split("test")
        with torch.no_grad():
            outputs = net.eval()(test.inputs)
        loss = torch.nn.functional.cross_entropy(outputs.double(), test.targets).item()
        acc = 100.0 * (outputs.argmax(dim=1) == test.targets).double().mean().item()
        assert loss == pytest.approx(rows[epoch]["test_loss"], rel=1e-5)
        assert acc == pytest.approx(rows[epoch]["test_acc"], abs=1e-3)


def test_fresh_run_refuses_a_folder_with_a_run(demo_run):
    with pytest.raises(LandscapeError, match="--resume_epoch 3"):
        train(demo_config(demo_run))


def resume_copy(straight: str, epoch: int, config: TrainConfig, target) -> str:
    """Resume, in a new folder, from the files ``straight`` saved after ``epoch``: a run cut short there."""
    os.makedirs(target)
    for name in (f"model_{epoch}.t7", f"opt_state_{epoch}.t7", "log.csv"):
        shutil.copy(os.path.join(straight, name), target)
    return train(dataclasses.replace(config, save_dir=str(target), resume_epoch=epoch))


def assert_same_run(straight: str, resumed: str, epoch: int) -> None:
    """Identical weights, optimizer state and log: the resumed run is the uninterrupted one."""
    a = torch.load(model_path(straight, epoch), weights_only=True)
    b = torch.load(model_path(resumed, epoch), weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][key]), key
    opt_a = torch.load(opt_state_path(straight, epoch), weights_only=True)["optimizer"]["state"]
    opt_b = torch.load(opt_state_path(resumed, epoch), weights_only=True)["optimizer"]["state"]
    assert opt_a.keys() == opt_b.keys() and opt_a
    for index, state in opt_a.items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt_b[index][name])), (index, name)
    assert read_log(straight) == read_log(resumed)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_demo_resume_is_bit_exact(tmp_path, optimizer):
    config = demo_config(tmp_path / "straight", epochs=2, save_epoch=1, lr_milestones="1",
                         optimizer=optimizer, batch_size=256)
    straight = train(config)
    resumed = resume_copy(straight, 1, config, tmp_path / "resumed")
    assert_same_run(straight, resumed, 2)
    after_1 = torch.load(model_path(straight, 1), weights_only=True)["state_dict"]
    after_2 = torch.load(model_path(straight, 2), weights_only=True)["state_dict"]
    assert not torch.equal(after_1["0.weight"], after_2["0.weight"])


def test_resnet20_on_cifar_trains_and_resumes_bit_exactly(tmp_path, cifar_root):
    """Epochs of 60 augmented images in batches of 32; the second is also rerun from epoch 1's files."""
    config = cifar_config(tmp_path / "straight", cifar_root)
    straight = train(config)
    rows = read_log(straight)
    assert [row["epoch"] for row in rows] == [0, 1, 2]
    assert [row["lr"] for row in rows] == pytest.approx([0.1, 0.1, 0.01])
    assert all(math.isfinite(row[c]) for row in rows for c in LOG_COLUMNS)
    resumed = resume_copy(straight, 1, config, tmp_path / "resumed")
    assert_same_run(straight, resumed, 2)


def test_resume_needs_the_saved_epoch(demo_run, tmp_path):
    with pytest.raises(LandscapeError, match="epochs that can be resumed in .*: 0, 1, 2, 3"):
        train(demo_config(demo_run, epochs=5, resume_epoch=4))
    # a run killed between its two files: the lone model file is not offered for resuming
    half = tmp_path / "half"
    shutil.copytree(demo_run, half)
    os.remove(opt_state_path(str(half), 3))
    assert resumable_epochs(str(half)) == [0, 1, 2]
    with pytest.raises(LandscapeError, match="continue it with --resume_epoch 2"):
        train(demo_config(str(half), epochs=5))
    with pytest.raises(LandscapeError, match="later checkpoints .* would overwrite; resume from 2"):
        train(demo_config(str(half), epochs=5, resume_epoch=1))


def test_vgg9_takes_a_finite_step_on_four_images():
    net = models.build_model("vgg9")
    optimizer, _ = build_optimizer(net, TrainConfig())
    before = [p.detach().clone() for p in net.parameters()]
    inputs, targets = torch.randn(4, 3, 32, 32), torch.tensor([0, 3, 5, 9])
    loss, acc = train_epoch(net, [(inputs, targets)], optimizer, "crossentropy", torch.device("cpu"))
    assert math.isfinite(loss) and 0 <= acc <= 100
    assert net(inputs).shape == (4, 10)
    assert any(not torch.equal(b, p) for b, p in zip(before, net.parameters()))


def test_user_model_and_dataset_factories(tmp_path, monkeypatch):
    (tmp_path / "my_task.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        def data():
            gen = torch.Generator().manual_seed(0)
            x = torch.randn(200, 5, generator=gen)
            y = (x[:, 0] > 0).long()
            return {"train": (x[:150], y[:150]), "test": (x[150:], y[150:])}

        def net():
            return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2))
    """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    run = train(TrainConfig(model="my_task:net", dataset="my_task:data", init="model", optimizer="adam",
                            lr=0.01, lr_milestones="", epochs=5, save_epoch=5, batch_size=32, save_dir="run"))
    rows = read_log(run)
    assert rows[-1]["test_acc"] > 80
    assert saved_epochs(run) == [0, 1, 5]


def test_cli_writes_the_run_and_reports_user_errors(tmp_path, capsys):
    save_dir = str(tmp_path / "cli")
    assert main(["--model", "demo_mlp", "--dataset", "demo", "--epochs", "1", "--batch-size", "512",
                 "--save-dir", save_dir, "--rand_seed", "3"]) == 0
    assert saved_epochs(save_dir) == [0, 1]
    assert os.path.abspath(save_dir) in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", "demo_mlp", "--dataset", "demo", "--lr_milestones", "20,10",
              "--save_dir", str(tmp_path / "other")])
    assert exit_info.value.code == 2
    assert "--lr_milestones" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "other")
