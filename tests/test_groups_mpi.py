"""Groups of ranks per point (``--ranks_per_point 2`` under ``mpirun -n 4``): the same surface as one
rank per point, and the job's guarantees kept -- resume after a kill, a stop signal reaching a member,
an exception in a member, and ``--coordinator_only``. Real mpirun jobs, files read back with h5py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest

from conftest import module_command, run_module, start_surface_job, wait_for_points
from mpi_landscape import surface
from mpi_landscape.store import JOURNAL_SUFFIX, read_surface

GRID = ["--x=-1:1:5", "--y=-1:1:3"]
FAST_EXIT_SECONDS = 90  # start-up of four ranks on a shared 2-core machine included

MEMBER_MODEL = '''\
"""demo_mlp that writes its pid to pid.<rank>, sleeps SLOW_SECONDS per forward pass, and fails on
rank FAIL_RANK from its FAIL_AFTER-th forward pass on."""
import os
import time

import mpi_landscape_models as models

rank = os.environ.get("PMI_RANK", "0")
calls = 0


class Member(models.build_model("demo_mlp").__class__):
    def forward(self, x):
        global calls
        calls += 1
        time.sleep(float(os.environ.get("SLOW_SECONDS", "0")))
        if rank == os.environ.get("FAIL_RANK") and calls > int(os.environ.get("FAIL_AFTER", "0")):
            raise RuntimeError("deliberate failure in a member on rank " + rank)
        return super().forward(x)


def build():
    with open("pid." + rank, "w") as f:
        f.write(str(os.getpid()))
    return Member(*models.build_model("demo_mlp"))
'''


@pytest.fixture
def member_model(tmp_path) -> str:
    (tmp_path / "membermod.py").write_text(MEMBER_MODEL)
    return "membermod:build"


def surface_args(model: str, checkpoint: str, out, *extra: str) -> list[str]:
    return ["--model", model, "--model_file", checkpoint, "--dataset", "demo", "--splits", "train,test",
            "--surf_file", str(out), "--dir_file", str(out.parent / "dirs.h5"), *GRID, *extra]


def reference(tmp_path, checkpoint: str) -> dict[str, np.ndarray]:
    """The surface with one rank per point, computed in this process over the same direction file."""
    out = tmp_path / "reference.h5"
    assert surface.main(surface_args("demo_mlp", checkpoint, out)) == 0
    return read_surface(str(out)).metrics


def assert_same_surface(path, expected: dict[str, np.ndarray]) -> None:
    got = read_surface(str(path))
    assert got.done.all()
    for name in ("train_loss", "test_loss"):
        np.testing.assert_allclose(got.metrics[name], expected[name], rtol=1e-10, atol=0)
    for name in ("train_acc", "test_acc"):
        np.testing.assert_array_equal(got.metrics[name], expected[name])


def test_groups_of_two_equal_one_rank_per_point_and_record_their_shards(tmp_path, demo_checkpoint):
    expected = reference(tmp_path, demo_checkpoint)
    out = tmp_path / "k2.h5"
    proc = run_module("mpi_landscape.surface", *surface_args("demo_mlp", demo_checkpoint, out,
                                                             "--ranks_per_point", "2"), ranks=4, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_same_surface(out, expected)
    with h5py.File(out, "r") as f:
        assert int(f.attrs["ranks_per_point"]) == 2
        assert json.loads(f.attrs["shard_sizes"]) == {"train": [1500, 1500], "test": [750, 750]}
        run = json.loads(f.attrs["last_run"])
    assert set(run["points_by_rank"]) == {"0", "1", "2", "3"}
    assert run["points_by_rank"]["1"] == run["points_by_rank"]["3"] == 0  # members report through leaders
    assert run["points_by_rank"]["0"] + run["points_by_rank"]["2"] == 15
    # rank 0 holds its half only: 2 float32 inputs, an int64 target and an int64 split id per sample
    assert run["data"]["bytes_rank0"] == (1500 + 750) * (2 * 4 + 8 + 8)


def test_coordinator_only_forms_groups_of_the_other_ranks(tmp_path, demo_checkpoint):
    out = tmp_path / "k2.h5"
    args = surface_args("demo_mlp", demo_checkpoint, out, "--ranks_per_point", "2", "--coordinator_only")
    start = time.monotonic()
    refused = run_module("mpi_landscape.surface", *args, ranks=4, cwd=tmp_path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    lines = [line for line in refused.stderr.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error: --ranks_per_point 2 must divide"), refused.stderr
    assert "launch 5 ranks" in lines[0] and time.monotonic() - start < FAST_EXIT_SECONDS
    assert not out.exists()
    proc = run_module("mpi_landscape.surface", *args, ranks=3, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_same_surface(out, reference(tmp_path, demo_checkpoint))
    with h5py.File(out, "r") as f:
        assert json.loads(f.attrs["last_run"])["points_by_rank"] == {"0": 0, "1": 15, "2": 0}


def test_a_killed_group_job_resumes_to_the_same_surface(tmp_path, member_model, demo_checkpoint):
    out = tmp_path / "k2.h5"
    args = surface_args(member_model, demo_checkpoint, out, "--ranks_per_point", "2", "--batch_size", "1000",
                        "--flush_seconds", "0.2")
    job = start_surface_job(args, tmp_path, {**os.environ, "SLOW_SECONDS": "0.1"}, ranks=4)
    wait_for_points(out, 3, job)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=30)
    journal = (tmp_path / ("k2.h5" + JOURNAL_SUFFIX)).read_text().splitlines()
    before = len(journal) - 1  # after the request's line, one line per finished point
    assert 0 < before < 15
    proc = run_module("mpi_landscape.surface", *args, ranks=4, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"surface: {15 - before} points" in proc.stdout  # only what was missing
    assert_same_surface(out, reference(tmp_path, demo_checkpoint))


def test_stop_signal_to_a_member_stops_the_job_within_a_point(tmp_path, member_model, demo_checkpoint):
    out = tmp_path / "k2.h5"
    args = surface_args(member_model, demo_checkpoint, out, "--ranks_per_point", "2", "--batch_size", "1000",
                        "--flush_seconds", "0.2", "--x=-1:1:9", "--y=-1:1:9")
    job = start_surface_job(args, tmp_path, {**os.environ, "SLOW_SECONDS": "0.1"}, ranks=4)
    wait_for_points(out, 30, job)  # well into the grid (an early stop can hang at exit, K = 1 too)
    os.kill(int((tmp_path / "pid.3").read_text()), signal.SIGTERM)  # a member, not a leader
    stdout, stderr = job.communicate(timeout=90)
    assert job.returncode == surface.EXIT_STOPPED, stdout + stderr
    done = int(read_surface(str(out)).done.sum())
    assert done < 81 and f"{81 - done} points remain" in stdout
    assert "Traceback" not in stderr


@pytest.mark.parametrize("rank", ["1", "3"])  # a member of rank 0's group, and of another leader's
def test_exception_in_a_member_ends_the_job_with_one_report(tmp_path, member_model, demo_checkpoint, rank):
    out = tmp_path / "k2.h5"
    args = surface_args(member_model, demo_checkpoint, out, "--ranks_per_point", "2", "--batch_size", "1000",
                        "--x=-1:1:9", "--y=-1:1:9")
    env = {**os.environ, "FAIL_RANK": rank, "FAIL_AFTER": "6"}
    start = time.monotonic()
    proc = subprocess.run(module_command("mpi_landscape.surface", *args, ranks=4), cwd=tmp_path, env=env,
                          text=True, capture_output=True, timeout=180)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert time.monotonic() - start < FAST_EXIT_SECONDS
    assert proc.stderr.count("Traceback") == 1
    assert f"rank {rank}" in proc.stderr and f"deliberate failure in a member on rank {rank}" in proc.stderr
