"""Fixtures shared by the suite: a trained demo checkpoint, mpirun, the command runner, a slow
model, and the ``slow`` marker that ``make test-fast`` leaves out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import types

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
    import mpi_landscape_models as models
    from mpi_landscape.data import demo_split

    from mpi_landscape.threads import sized_thread_pool

    torch.manual_seed(seed)
    net = models.build_model("demo_mlp")
    data = demo_split("train")
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    with sized_thread_pool(net, data.inputs, 128):
        for _ in range(steps):
            idx = torch.randint(0, len(data), (128,), generator=gen)
            loss = torch.nn.functional.cross_entropy(net(data.inputs[idx]), data.targets[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def demo_net(path) -> torch.nn.Module:
    """demo_mlp with the weights of the checkpoint at ``path``."""
    import mpi_landscape_models as models

    net = models.build_model("demo_mlp")
    models.load_checkpoint(net, path)
    return net


def demo_state(path) -> dict[str, torch.Tensor]:
    """The state dict of the demo_mlp checkpoint at ``path``."""
    return demo_net(path).state_dict()


def demo_loss(state: dict[str, torch.Tensor], split: str) -> float:
    """Mean cross-entropy of demo_mlp with ``state`` over the whole demo split, in eval mode,
    computed directly rather than through the library's evaluator."""
    import mpi_landscape_models as models
    from mpi_landscape.data import demo_split

    net = models.build_model("demo_mlp")
    net.load_state_dict(state)
    data = demo_split(split)
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(net.eval()(data.inputs), data.targets).item()


def start_surface_job(args, cwd, env, ranks: int = 2) -> subprocess.Popen:
    """``mpirun -n ranks python -m mpi_landscape.surface args`` started in its own process group,
    so a test can signal or kill the whole job while it runs."""
    return subprocess.Popen(module_command("mpi_landscape.surface", *args, ranks=ranks), cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for_points(out, points: int, job: subprocess.Popen, timeout: float = 180) -> None:
    """Return once the surface file ``out`` holds ``points`` finished points; fail if the job ends first."""
    from mpi_landscape.store import read_surface

    deadline = time.time() + timeout
    while time.time() < deadline and job.poll() is None:
        if out.exists() and read_surface(str(out)).done.sum() >= points:
            return
        time.sleep(0.2)
    raise AssertionError(f"the job did not reach {points} points in time: {job.poll()}")


@pytest.fixture(scope="session")
def demo_checkpoint(tmp_path_factory) -> str:
    """A reference-layout .t7 of a briefly trained demo_mlp."""
    import mpi_landscape_models as models

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


SLOW_MODEL = '''\
"""demo_mlp whose forward pass sleeps SLOW_SECONDS (0.03 unless set), so that a job can be
caught while it runs, raises on the rank named by FAIL_ON_RANK, and with PRINT_EACH_PASS set
prints a line per pass (a job whose ranks keep writing to its terminal)."""
import os
import time

import mpi_landscape_models as models


class Slow(models.build_model("demo_mlp").__class__):
    def forward(self, x):
        time.sleep(float(os.environ.get("SLOW_SECONDS", "0.03")))
        if os.environ.get("PRINT_EACH_PASS"):
            print("forward pass", flush=True)
        if os.environ.get("FAIL_ON_RANK") == os.environ.get("PMI_RANK", "0"):
            raise RuntimeError("deliberate failure in forward on rank " + os.environ["FAIL_ON_RANK"])
        return super().forward(x)


def build():
    return Slow(*models.build_model("demo_mlp"))
'''


@pytest.fixture
def slow_model(tmp_path) -> str:
    """The --model of SLOW_MODEL, written as slowmod.py into the test's tmp_path (run jobs there)."""
    (tmp_path / "slowmod.py").write_text(SLOW_MODEL)
    return "slowmod:build"


# What makes a test slow, found by looking at the test rather than by marking each one: it is in
# a module that drives the Slurm test cluster or clones the project, it uses a fixture that runs a
# command, or it (or a helper of its module, or one of its fixtures) starts a process or a training run.
SLOW_MODULES = {"test_launch", "test_slurm_harness", "test_getting_started"}
SLOW_FIXTURES = {"demo_run", "slow_model", "browser"}  # browser: the page tests' Chromium
SLOW_TESTS = {"test_evaluate.py::test_compiled_model_gives_the_same_surface"}  # torch.compile takes its time


def _starts_work(obj) -> bool:
    """Is ``obj`` something that starts a process or a training run?"""
    from mpi_landscape.train import train

    return any(obj is work for work in (subprocess, train, run_module, module_command))  # identity: obj may be an array


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: starts processes (mpirun, Slurm, git, pip) or trains a "
                                       "network; `make test-fast` runs everything else")


def pytest_sessionfinish(session, exitstatus):
    """Stop the test Slurm cluster if this session started it: the suite leaves no daemons behind."""
    slurm_cluster = sys.modules.get("slurm_cluster")
    if slurm_cluster is not None:
        slurm_cluster.stop_started_cluster()


def pytest_collection_modifyitems(items):
    for item in items:
        if _is_slow(item):
            item.add_marker(pytest.mark.slow)


def _is_slow(item) -> bool:
    module = item.module
    if module.__name__ in SLOW_MODULES or SLOW_FIXTURES & set(item.fixturenames):
        return True
    if f"{item.path.name}::{item.originalname}" in SLOW_TESTS:
        return True
    fixtures = [(d.func, sys.modules.get(d.func.__module__, module))
                for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs]
    for function, home in [(getattr(item, "function", None), module), *fixtures]:
        namespace = vars(home)
        if function is not None and any(_starts_work(namespace.get(n)) for n in _names_used(function, namespace, 3)):
            return True
    return False


def _names_used(function, namespace: dict, depth: int) -> set[str]:
    """The names ``function`` uses, and those used by the functions of its module that it calls."""
    code = getattr(function, "__code__", None)
    if code is None:
        return set()
    names = _code_names(code)
    if depth > 0:
        for name in list(names):
            helper = namespace.get(name)
            if isinstance(helper, types.FunctionType) and helper is not function:
                names |= _names_used(helper, namespace, depth - 1)
    return names


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:  # nested functions and comprehensions
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _process_signal_handlers() -> dict:
    from mpi_landscape.distributed import STOP_SIGNALS

    return {s: signal.getsignal(s) for s in STOP_SIGNALS}


PROCESS_SIGNAL_HANDLERS = _process_signal_handlers()  # the test process's own, before any test


@pytest.fixture(autouse=True)
def keep_signal_handlers():
    """Every test starts and ends with the test process's own stop-signal handlers, even where an entry point
    it or a wider-scoped fixture called in-process left others (a failed job's exit ignores them): a signal
    left ignored is ignored by every process a test starts, and a shell cannot even trap it."""
    for s, handler in PROCESS_SIGNAL_HANDLERS.items():
        signal.signal(s, handler)
    yield
    for s, handler in PROCESS_SIGNAL_HANDLERS.items():
        signal.signal(s, handler)
