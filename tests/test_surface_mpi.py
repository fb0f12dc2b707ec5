"""The surface command end to end: real mpirun jobs, real HDF5 files read back with h5py."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest
import torch

import mpi_landscape_models as models
from conftest import PYTHON, demo_net, find_mpirun, module_command, run_module
from mpi_landscape import surface
from mpi_landscape.data import demo_split
from mpi_landscape.directions import DirectionSpec, load_directions
from mpi_landscape.evaluate import PointEvaluator
from mpi_landscape.store import JOURNAL_SUFFIX, LOCK_SUFFIX, read_surface

DEMO = ["--model", "demo_mlp", "--dataset", "demo"]


def surface_args(checkpoint, surf_file, *extra):
    return [*DEMO, "--model_file", checkpoint, "--surf_file", str(surf_file), *extra]


def test_same_surface_without_mpirun_and_with_1_2_4_ranks(demo_checkpoint, tmp_path):
    grid = ["--x=-1:1:9", "--y=-1:1:7", "--splits", "train,test", "--dir_file", str(tmp_path / "d.h5")]
    results = {}
    for ranks in (None, 1, 2, 4):
        out = tmp_path / f"s{ranks}.h5"
        proc = run_module("mpi_landscape.surface", *surface_args(demo_checkpoint, out, *grid), ranks=ranks)
        assert proc.returncode == 0, proc.stderr
        assert f"surface file: {out}" in proc.stdout
        results[ranks] = read_surface(str(out))
    base = results[None]
    assert base.done.all() and base.metrics["train_loss"].shape == (7, 9)
    for ranks in (1, 2, 4):
        for name in ("train_loss", "train_acc", "test_loss", "test_acc"):
            np.testing.assert_allclose(results[ranks].metrics[name], base.metrics[name], rtol=1e-6)
        by_rank = results[ranks].attrs["last_run"]["points_by_rank"]
        assert sum(by_rank.values()) == 63 and len(by_rank) == ranks
    # with 4 ranks every worker got work from the coordinator, and rank 0 evaluated too
    assert all(v > 0 for v in results[4].attrs["last_run"]["points_by_rank"].values())


def test_same_seed_same_surface_and_files_read_the_reference_way(demo_checkpoint, tmp_path):
    """Z[iy, ix] with meshgrid(x, y), as the reference's plotting code reads it; non-square grid."""
    out = tmp_path / "s.h5"
    proc = run_module("mpi_landscape.surface",
                      *surface_args(demo_checkpoint, out, "--x=-1:1:6", "--y=-0.5:0.5:3", "--seed", "9",
                                   "--dir_file", str(tmp_path / "d9.h5")),
                      ranks=2)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out, "r") as f:
        x, y = f["xcoordinates"][:], f["ycoordinates"][:]
        z = np.array(f["train_loss"][:])
        dir_file = f["dir_file"][()].decode()
    xx, yy = np.meshgrid(x, y)
    assert z.shape == xx.shape == (3, 6)
    net = demo_net(demo_checkpoint)
    dx, dy = load_directions(dir_file, net, "weights", two_d=True)
    evaluator = PointEvaluator(net, "weights", dx, dy, {"train": demo_split("train")})
    for iy, ix in [(0, 0), (2, 5), (1, 3), (0, 4)]:
        assert z[iy, ix] == pytest.approx(evaluator(xx[iy, ix], yy[iy, ix])["train_loss"], rel=1e-6)


@pytest.fixture
def slow_surface(slow_model, demo_checkpoint) -> list[str]:
    """The surface command's model flags for the slow model, with the demo checkpoint."""
    return ["--model", slow_model, "--dataset", "demo", "--model_file", demo_checkpoint]


def test_killed_job_resumes_without_losing_or_recomputing_points(tmp_path, slow_surface):
    out = tmp_path / "s.h5"
    args = [*slow_surface, "--surf_file", str(out), "--x=-1:1:9", "--y=-1:1:9", "--flush_seconds", "0.5"]
    env = {**os.environ, "SLOW_SECONDS": "0.08"}
    job = subprocess.Popen(module_command("mpi_landscape.surface", *args, ranks=3), cwd=tmp_path,
                           env=env, start_new_session=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    seen_partial = 0
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.3)
        if out.exists():
            s = read_surface(str(out))  # a reader can open the file while the job writes it
            seen_partial = max(seen_partial, int(s.done.sum()))
            if 8 <= s.done.sum() < 60:
                break
    assert job.poll() is None, "the job finished before it could be killed"
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=30)
    time.sleep(0.5)

    assert (tmp_path / ("s.h5" + LOCK_SUFFIX)).exists()  # the dead job's lock file: it must not block
    killed = read_surface(str(out))  # still a readable file
    journal = (tmp_path / ("s.h5" + JOURNAL_SUFFIX)).read_text().splitlines()
    finished = {int(i) for i in np.flatnonzero(killed.done.ravel())}
    kept = dict(zip(finished, killed.metrics["train_loss"].ravel()[sorted(finished)]))
    for line in journal[1:]:  # after the header, which names the request
        try:
            entry = __import__("json").loads(line)
        except ValueError:
            continue
        finished.add(entry["i"])
        kept[entry["i"]] = entry["m"]["train_loss"]
    assert seen_partial >= 8 and 8 <= len(finished) < 81

    proc = subprocess.run(module_command("mpi_landscape.surface", *args, ranks=2), cwd=tmp_path,
                          env={**env, "SLOW_SECONDS": "0"}, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert f"surface: {81 - len(finished)} points" in proc.stdout  # only the unfinished ones
    resumed = read_surface(str(out))
    assert resumed.done.all() and np.isfinite(resumed.metrics["train_loss"]).all()
    for index, value in kept.items():
        assert resumed.metrics["train_loss"].ravel()[index] == value
    assert not (tmp_path / ("s.h5" + JOURNAL_SUFFIX)).exists()


def test_exception_on_one_rank_ends_the_whole_job(tmp_path, slow_surface):
    env = {**os.environ, "SLOW_SECONDS": "0", "FAIL_ON_RANK": "1"}
    proc = subprocess.run(module_command("mpi_landscape.surface", *slow_surface, "--surf_file",
                                         str(tmp_path / "s.h5"), "--x=-1:1:5", "--y=-1:1:5", ranks=2),
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "deliberate failure in forward on rank 1" in proc.stderr


def refused(tmp_path, *args, ranks=None):
    """Run a request that must be refused: one ``error:`` line, exit status 2, no traceback."""
    proc = run_module("mpi_landscape.surface", *args, ranks=ranks, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    return one_error_line(proc.stderr)


def refused_in_process(capsys, *args):
    """The same check without a new process (the CLI's main, as the command runs it)."""
    with pytest.raises(SystemExit) as exit_info:
        surface.main(list(args))
    assert exit_info.value.code == 2
    return one_error_line(capsys.readouterr().err)


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def test_refusals_leave_existing_files_untouched(tmp_path, demo_checkpoint, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "s.h5"
    assert surface.main(surface_args(demo_checkpoint, out, "--x=-1:1:5", "--y=-1:1:5")) == 0
    before = out.read_bytes()

    def request(*args):
        return refused_in_process(capsys, *args)

    assert "--x" in request(*surface_args(demo_checkpoint, out, "--x=-1:1", "--y=-1:1:5"))
    assert "another" in request(*surface_args(demo_checkpoint, out, "--x=-1:1:5", "--y=-1:1:5",
                                              "--seed", "99", "--dir_file", str(tmp_path / "d99.h5")))
    assert "another y grid" in request(*surface_args(demo_checkpoint, out, "--x=-1:1:5", "--y=-1:1:3"))
    assert "not found" in request(*surface_args(str(tmp_path / "missing.t7"), out))
    assert "does not exist" in request(*surface_args(demo_checkpoint, tmp_path / "no" / "s.h5"))
    # under mpirun every rank stops, with one message
    assert "another x grid" in refused(tmp_path, *surface_args(demo_checkpoint, out, "--x=-1:1:7", "--y=-1:1:5"),
                                       ranks=2)
    assert out.read_bytes() == before


def test_checkpoint_or_direction_file_of_another_model_is_refused(tmp_path, demo_checkpoint, capsys):
    other = tmp_path / "resnet20.t7"
    models.save_checkpoint(str(other), models.build_model("resnet20"))
    message = refused_in_process(capsys, *surface_args(str(other), tmp_path / "a.h5"))
    assert "demo_mlp" in message or "missing" in message or "unexpected" in message

    wide = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    from mpi_landscape.directions import create_directions, save_directions
    spec = DirectionSpec()
    save_directions(str(tmp_path / "wrong.h5"), wide, spec, *create_directions(wide, spec))
    message = refused(tmp_path, *surface_args(demo_checkpoint, tmp_path / "b.h5", "--dir_file",
                                              str(tmp_path / "wrong.h5"), "--y=-1:1:3"), ranks=2)
    assert "another model" in message
    assert not (tmp_path / "b.h5").exists()


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGTERM])
def test_scheduler_signal_stops_cleanly_and_a_rerun_completes(tmp_path, slow_surface, signum):
    """A scheduler's warning (SIGUSR1, or SIGTERM) to mpirun: finished points are kept, exit 75."""
    out = tmp_path / "s.h5"
    args = [*slow_surface, "--surf_file", str(out), "--x=-1:1:7", "--y=-1:1:7", "--flush_seconds", "0.2"]
    env = {**os.environ, "SLOW_SECONDS": "0.1"}
    job = subprocess.Popen(module_command("mpi_landscape.surface", *args, ranks=2), cwd=tmp_path,
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out.exists() and read_surface(str(out)).done.sum() >= 4):
        time.sleep(0.2)
    assert job.poll() is None, "the job finished before the signal"
    job.send_signal(signum)
    stdout, stderr = job.communicate(timeout=60)
    assert job.returncode == surface.EXIT_STOPPED, stdout + stderr
    assert "stopped early" in stdout
    stopped = read_surface(str(out))
    done_before = int(stopped.done.sum())
    assert 4 <= done_before < 49
    assert f"surface: {done_before} points" in stdout  # every evaluated point reached the file
    proc = run_module("mpi_landscape.surface", *args, ranks=2, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"surface: {49 - done_before} points" in proc.stdout
    final = read_surface(str(out))
    assert final.done.all()
    np.testing.assert_array_equal(final.metrics["train_loss"][stopped.done], stopped.metrics["train_loss"][stopped.done])


def test_ranks_bind_devices_from_their_node_local_rank():
    code = ("import sys; from mpi_landscape.distributed import Context; c = Context(); d = c.device(); "
            "import torch; sys.stdout.write(f'{c.rank} {c.local_rank} {c.local_size} {d.type} "
            "{torch.get_num_threads()}\\n')")
    proc = subprocess.run([find_mpirun(), "-n", "4", PYTHON, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = sorted(tuple(line.split()) for line in proc.stdout.splitlines() if line.strip())
    assert [(r[0], r[1], r[2]) for r in rows] == [(str(i), str(i), "4") for i in range(4)]
    threads = str(max(1, len(os.sched_getaffinity(0)) // 4))  # the node's cores shared by its 4 ranks
    assert all(r[3] == "cpu" and r[4] == threads for r in rows)


def test_coordinator_only_leaves_evaluation_to_the_workers(demo_checkpoint, tmp_path):
    out = tmp_path / "s.h5"
    proc = run_module("mpi_landscape.surface",
                      *surface_args(demo_checkpoint, out, "--x=-1:1:5", "--y=-1:1:5", "--coordinator_only"),
                      ranks=3)
    assert proc.returncode == 0, proc.stderr
    by_rank = read_surface(str(out)).attrs["last_run"]["points_by_rank"]
    assert by_rank["0"] == 0 and by_rank["1"] + by_rank["2"] == 25


def run_on_terminal(args: list[str], cwd) -> str:
    """Run a command on a pseudo-terminal of 100 columns; returns what the terminal showed."""
    import fcntl
    import pty
    import struct
    import termios

    pid, fd = pty.fork()
    if pid == 0:  # the child: its stdin/stdout/stderr are the terminal
        os.chdir(cwd)
        fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        os.execv(PYTHON, [PYTHON, *args])
    chunks = []
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode(errors="replace")


def test_progress_bar_on_a_terminal_only(demo_checkpoint, tmp_path):
    args = ["-m", "mpi_landscape.surface", *surface_args(demo_checkpoint, tmp_path / "t.h5", "--x=-1:1:9",
                                                         "--y=-1:1:9")]
    shown = run_on_terminal(args, tmp_path)
    assert "81/81" in shown and "pt/s" in shown  # points done/total and the rate, by tqdm
    piped = run_module("mpi_landscape.surface", *surface_args(demo_checkpoint, tmp_path / "p.h5",
                                                              "--x=-1:1:9", "--y=-1:1:9"))
    assert "pt/s" not in piped.stderr + piped.stdout
    assert "surface: 81 points" in piped.stdout  # the one-line summary stays
