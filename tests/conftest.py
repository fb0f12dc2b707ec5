"""Fixtures shared by the suite: a trained demo checkpoint, mpirun, and the command runner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import torch

from mpi_landscape import demo

sys.path.insert(0, os.path.dirname(__file__))  # tests' helper modules (cifar_folder, ...)

PYTHON = sys.executable


def find_mpirun() -> str:
    """The mpirun the commands themselves would use (the MPICH wheel's beside this Python)."""
    found = demo.find_mpirun()
    if not found:
        raise RuntimeError("mpirun not found: pip install mpich (see README)")
    return found


def module_command(module: str, *args: str, ranks: int | None = None) -> list[str]:
    """``python -m module args``, under ``mpirun -n ranks`` when ranks is given."""
    cmd = [PYTHON, "-m", module, *args]
    return [find_mpirun(), "-n", str(ranks), *cmd] if ranks else cmd


def run_module(module: str, *args: str, ranks: int | None = None, cwd=None,
               timeout: float = 240) -> subprocess.CompletedProcess:
    """Run an entry point to completion and capture what it printed."""
    return subprocess.run(module_command(module, *args, ranks=ranks), cwd=cwd, text=True,
                          capture_output=True, timeout=timeout)


def train_demo_net(seed: int = 0, steps: int = 150):
    """demo_mlp trained briefly on the demo spirals, so surfaces have a real minimum."""
    import models
    from mpi_landscape.data import demo_split

    torch.manual_seed(seed)
    net = models.build_model("demo_mlp")
    data = demo_split("train")
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(data), (128,), generator=gen)
        loss = torch.nn.functional.cross_entropy(net(data.inputs[idx]), data.targets[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="session")
def demo_checkpoint(tmp_path_factory) -> str:
    """A reference-layout .t7 of a briefly trained demo_mlp."""
    import models

    path = tmp_path_factory.mktemp("ckpt") / "demo.t7"
    models.save_checkpoint(str(path), train_demo_net(), epoch=1, acc=0.0)
    return str(path)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, demo_checkpoint) -> str:
    """A small non-square 2D surface of the trained demo net, computed by the surface command."""
    folder = tmp_path_factory.mktemp("demo_run")
    result = run_module("mpi_landscape.surface", "--model", "demo_mlp", "--model_file", demo_checkpoint,
                        "--dataset", "demo", "--data_split", "5", "--x=-1:1:5", "--y=-0.5:0.5:4",
                        "--splits", "train,test", "--surf_file", "demo.h5", cwd=folder)
    assert result.returncode == 0, result.stderr
    return str(folder / "demo.h5")


@pytest.fixture(autouse=True)
def keep_signal_handlers():
    """Entry points called in-process catch SIGUSR1/SIGTERM; give the test process its own back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)
