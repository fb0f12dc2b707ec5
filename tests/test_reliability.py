"""Reliability of the surface command around the grid: one job per surface file, one `error:` line
for every user error under mpirun, a journal that cannot damage a file, fsync'd snapshots, and
stop signals that reach a single rank. Real mpirun jobs, real files read back with h5py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import numpy as np
import pytest

from conftest import module_command, run_module, start_surface_job, wait_for_points
from surface_files import leave_as_killed
from mpi_landscape import distributed, store, surface
from mpi_landscape.errors import LandscapeError
from mpi_landscape.store import JOURNAL_SUFFIX, LOCK_SUFFIX, SurfaceWriter, read_surface

DEMO = ["--model", "demo_mlp", "--dataset", "demo"]
FAST_EXIT_SECONDS = 60  # start-up of two ranks on a shared 2-core machine included

DATASETS = '''\
"""Datasets that do not fit demo_mlp (2 inputs, 3 classes), or that fail."""
import torch


def labels_beyond():
    return torch.randn(64, 2), torch.arange(64) % 7


def wrong_shape():
    return torch.randn(64, 5), torch.arange(64) % 3


def raises():
    raise ValueError("the data server is down")


def demo_on_a_full_disk():
    """The demo data; from now on this process cannot write a file past FULL_AT bytes (EFBIG),
    as if the disk were full. Set here, after MPI is up, so only the job's own files meet it."""
    import os
    import resource

    from mpi_landscape.data import demo_split

    limit = int(os.environ["FULL_AT"])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    data = demo_split("train")
    return data.inputs, data.targets
'''

FAILING_MODEL = '''\
"""demo_mlp that fails on rank 1 from its FAIL_AFTER-th forward pass on: an error in the grid."""
import os

import mpi_landscape_models as models

calls = 0


class Failing(models.build_model("demo_mlp").__class__):
    def forward(self, x):
        global calls
        calls += 1
        if os.environ.get("PMI_RANK") == "1" and calls > int(os.environ["FAIL_AFTER"]):
            raise RuntimeError("deliberate failure in the grid on rank 1")
        return super().forward(x)


def build():
    return Failing(*models.build_model("demo_mlp"))
'''


def demo_args(checkpoint, surf_file, *extra) -> list[str]:
    return [*DEMO, "--model_file", checkpoint, "--surf_file", str(surf_file), *extra]


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name)


def refused_under_mpirun(cwd, *args, env=None, prefix: tuple[str, ...] = ()) -> str:
    """Run ``args`` under mpirun -n 2: exit 2 within seconds, one error line, no temporary file."""
    start = time.monotonic()
    proc = subprocess.run([*prefix, *module_command("mpi_landscape.surface", *args, ranks=2)], cwd=cwd,
                          env=env, text=True, capture_output=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert time.monotonic() - start < FAST_EXIT_SECONDS
    assert leftovers(cwd) == []
    return one_error_line(proc.stderr)


# ---------------------------------------------------------------- user errors under mpirun


@pytest.mark.parametrize("extra, expected", [
    (["--batch_size", "0"], "--batch_size"),
    (["--batch_size", "-3"], "--batch_size"),
    (["--bn", "recompute", "--splits", "test"], "--bn recompute"),
    (["--flush_seconds", "-5"], "--flush_seconds"),
    (["--x=-1e300:1e300:5"], "float32"),
    (["--x=-1:1:1000000000"], "memory"),
    (["--no_such_flag"], "--no_such_flag"),
])
def test_user_errors_end_the_job_with_one_line_and_exit_2(tmp_path, demo_checkpoint, extra, expected):
    line = refused_under_mpirun(tmp_path, *demo_args(demo_checkpoint, tmp_path / "s.h5", *extra))
    assert expected in line
    assert not (tmp_path / "s.h5").exists()


@pytest.mark.parametrize("factory, expected", [
    ("labels_beyond", "label"), ("wrong_shape", "forward pass"), ("raises", "data server is down")])
def test_data_that_does_not_fit_the_model_is_one_line(tmp_path, demo_checkpoint, factory, expected):
    (tmp_path / "badsets.py").write_text(DATASETS)
    args = ["--model", "demo_mlp", "--model_file", demo_checkpoint, "--dataset", f"badsets:{factory}",
            "--surf_file", "s.h5"]
    assert expected in refused_under_mpirun(tmp_path, *args)


def test_surf_file_that_is_a_folder_is_named_so(tmp_path, demo_checkpoint):
    (tmp_path / "out").mkdir()
    assert "folder" in refused_under_mpirun(tmp_path, *demo_args(demo_checkpoint, tmp_path / "out"))


def test_full_disk_before_the_grid_is_one_line_and_so_is_the_rerun(tmp_path, demo_checkpoint):
    """The first snapshot does not fit: refused, no temporary file; the rerun on that disk alike."""
    (tmp_path / "badsets.py").write_text(DATASETS)
    args = ["--model", "demo_mlp", "--model_file", demo_checkpoint, "--surf_file", "s.h5", "--x=-1:1:71",
            "--y=-1:1:71", "--dataset", "badsets:demo_on_a_full_disk"]
    env = {**os.environ, "FULL_AT": "70000"}
    for _ in range(2):
        assert "cannot write" in refused_under_mpirun(tmp_path, *args, env=env)


def test_full_disk_during_the_grid_is_one_line_and_a_rerun_with_room_finishes(tmp_path, demo_checkpoint):
    (tmp_path / "badsets.py").write_text(DATASETS)
    out = tmp_path / "s.h5"
    args = ["--model", "demo_mlp", "--model_file", demo_checkpoint, "--surf_file", str(out), "--x=-1:1:41",
            "--y=-1:1:41", "--data_split", "100", "--dataset", "badsets:demo_on_a_full_disk"]
    env = {**os.environ, "FULL_AT": "70000"}  # the journal fills it mid-grid
    assert "cannot write the journal" in refused_under_mpirun(tmp_path, *args, env=env)
    lines = (tmp_path / ("s.h5" + JOURNAL_SUFFIX)).read_text().splitlines()[1:]
    journaled = [json.loads(line) for line in lines[:-1]]  # the last one may be torn by the full disk
    assert 100 < len(journaled) < 41 * 41
    proc = subprocess.run(module_command("mpi_landscape.surface", *args), cwd=tmp_path,
                          env={**env, "FULL_AT": "-1"}, text=True, capture_output=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert f"surface: {41 * 41 - len(journaled)} points" in proc.stdout or \
        f"surface: {41 * 41 - len(journaled) - 1} points" in proc.stdout  # nothing computed twice
    final = read_surface(str(out))
    assert final.done.all()
    for entry in journaled:
        assert final.metrics["train_loss"].ravel()[entry["i"]] == entry["m"]["train_loss"]


def test_error_on_a_worker_during_the_grid_is_one_traceback(tmp_path, demo_checkpoint):
    (tmp_path / "failing.py").write_text(FAILING_MODEL)
    out = tmp_path / "s.h5"
    env = {**os.environ, "FAIL_AFTER": "30"}
    start = time.monotonic()
    proc = subprocess.run(module_command("mpi_landscape.surface", "--model", "failing:build", "--dataset",
                                         "demo", "--model_file", demo_checkpoint, "--surf_file", str(out),
                                         "--x=-1:1:9", "--y=-1:1:9", "--batch_size", "1000", ranks=2),
                          cwd=tmp_path, env=env, text=True, capture_output=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert time.monotonic() - start < FAST_EXIT_SECONDS
    assert proc.stderr.count("Traceback") == 1 and "AttributeError" not in proc.stderr
    assert "rank 1" in proc.stderr and "deliberate failure in the grid on rank 1" in proc.stderr
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------- one job per surface file


def test_second_job_on_a_held_file_is_refused_and_the_first_finishes(tmp_path, slow_model, demo_checkpoint):
    out = tmp_path / "s.h5"
    args = ["--model", slow_model, "--dataset", "demo", "--model_file", demo_checkpoint, "--surf_file",
            str(out), "--x=-1:1:9", "--y=-1:1:9", "--flush_seconds", "0.2"]
    first = start_surface_job(args, tmp_path, {**os.environ, "SLOW_SECONDS": "0.8"})  # 30 s: time for a second
    wait_for_points(out, 3, first)
    journal_before = (tmp_path / ("s.h5" + JOURNAL_SUFFIX)).read_text()
    start = time.monotonic()
    second = run_module("mpi_landscape.surface", *args, ranks=2, cwd=tmp_path)
    assert second.returncode == 2, second.stdout + second.stderr
    assert time.monotonic() - start < FAST_EXIT_SECONDS
    line = one_error_line(second.stderr)
    assert f"pid {first.pid}" not in line  # the holder is rank 0's process, not mpirun
    assert socket.gethostname() in line and "pid " in line and "started" in line
    assert first.poll() is None, "the first job ended before the second one was refused"
    assert (tmp_path / ("s.h5" + JOURNAL_SUFFIX)).read_text().startswith(journal_before)  # only appended
    stdout, stderr = first.communicate(timeout=180)
    assert first.returncode == 0, stderr
    assert "surface: 81 points" in stdout and "81/81 done" in stdout
    final = read_surface(str(out))
    assert final.done.all() and np.isfinite(final.metrics["train_loss"]).all()
    assert not (tmp_path / ("s.h5" + JOURNAL_SUFFIX)).exists() and not (tmp_path / ("s.h5" + LOCK_SUFFIX)).exists()


def test_lock_names_its_holder_and_is_released(tmp_path):
    path = str(tmp_path / "s.h5")
    lock = store.SurfaceLock.acquire(path)
    with pytest.raises(LandscapeError) as refused:
        store.SurfaceLock.acquire(path)
    message = str(refused.value)
    assert f"pid {os.getpid()}" in message and socket.gethostname() in message
    lock.release()
    store.SurfaceLock.acquire(path).release()
    assert not os.path.exists(path + LOCK_SUFFIX)


# ---------------------------------------------------------------- the journal


X, Y = np.linspace(-1, 1, 5), np.linspace(-1, 1, 4)
METRICS = ["train_loss", "train_acc"]


def open_writer(path, identity=None, **kwargs) -> SurfaceWriter:
    return SurfaceWriter.open(str(path), X, Y, "dirs.h5", METRICS, identity or {"model": "m"},
                              flush_seconds=3600, **kwargs)


def test_bad_journal_lines_are_reported_and_never_applied(tmp_path):
    out = tmp_path / "s.h5"
    writer = open_writer(out)
    writer.record(7, {"train_loss": 0.5, "train_acc": 90.0})
    writer.flush(force=True)
    writer.record(8, {"train_loss": 0.25, "train_acc": 95.0})
    leave_as_killed(writer)
    with open(str(out) + JOURNAL_SUFFIX, "ab") as journal:
        journal.write(b'{"i": 97, "m": {}}\n')  # out of range and no metrics
        journal.write(b'{"i": 3, "m": {}}\n')  # metrics missing
        journal.write(b'{"i": 7.9, "m": {"train_loss": 123.0, "train_acc": 1.0}}\n')  # not an integer
        journal.write(b'{"i": 7, "m": {"train_loss": 123.0, "train_acc": 1.0}}\n')  # already done
        journal.write(b'\x00\xff\xfe garbage\n')
        journal.write(b'{"i": 4, "m": "x"}\n')
        journal.write(b'{"i": 5, "m": {"train_loss": "abc", "train_acc": 1.0}}\n')
        journal.write(b'{"i": 6, "m": {"train_loss": 0.75, "train_acc": 80.0}}\n')  # a good one
    writer = open_writer(out)
    writer.close()
    assert len(writer.notes) == 1 and "6 bad lines (line 4, 5, 6, 8, 9, 10)" in writer.notes[0]
    s = read_surface(str(out))
    assert sorted(np.flatnonzero(s.done.ravel())) == [6, 7, 8]
    assert s.metrics["train_loss"].ravel()[7] == 0.5 and s.metrics["train_loss"].ravel()[6] == 0.75


def test_journal_of_a_missing_or_damaged_file_is_replayed_into_a_new_one(tmp_path):
    out = tmp_path / "s.h5"
    writer = open_writer(out)
    for i in range(5):
        writer.record(i, {"train_loss": float(i), "train_acc": 50.0})
    leave_as_killed(writer)
    os.remove(out)
    with pytest.raises(LandscapeError, match="another request"):
        open_writer(out, identity={"model": "other"})
    writer = open_writer(out)
    assert writer.notes == [f"note: recovered 5 points from {out}{JOURNAL_SUFFIX}"]
    writer.record(5, {"train_loss": 5.0, "train_acc": 50.0})
    leave_as_killed(writer)
    out.write_bytes(out.read_bytes()[:300])  # a truncated file
    writer = open_writer(out)
    assert "cannot read" in writer.notes[0] and "recovered 6 points" in writer.notes[1]
    writer.close()
    np.testing.assert_array_equal(read_surface(str(out)).metrics["train_loss"].ravel()[:6], np.arange(6.0))
    assert list(tmp_path.glob("s.h5.unreadable*"))  # the damaged file is kept aside, not overwritten


def test_journal_records_the_request_first(tmp_path):
    writer = open_writer(tmp_path / "s.h5")
    head = json.loads((tmp_path / ("s.h5" + JOURNAL_SUFFIX)).read_text().splitlines()[0])
    assert head["identity"] == {"model": "m"} and head["shape"] == [4, 5]
    writer.close()


# ---------------------------------------------------------------- durability


def test_snapshot_and_journal_are_fsynced(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    out = tmp_path / "s.h5"
    writer = open_writer(out)
    assert str(tmp_path) in synced and any(".tmp" in p for p in synced)  # the snapshot, then its folder
    synced.clear()
    writer.record(0, {"train_loss": 1.0, "train_acc": 1.0})
    assert not synced  # within the flush interval: buffered by the OS
    writer.close()
    writer = open_writer(out, fsync_every_result=True)
    synced.clear()
    writer.record(1, {"train_loss": 1.0, "train_acc": 1.0})
    assert synced == [str(out) + JOURNAL_SUFFIX]
    writer.close()


# ---------------------------------------------------------------- stop signals


PID_MODEL = '''\
"""The slow demo_mlp, writing its pid to pid.<rank> when built."""
import os

from slowmod import build as slow_build


def build():
    with open("pid." + os.environ.get("PMI_RANK", "0"), "w") as f:
        f.write(str(os.getpid()))
    return slow_build()
'''


def journal_points(path) -> int:
    return max(0, len((path.parent / (path.name + JOURNAL_SUFFIX)).read_text().splitlines()) - 1)


def test_stop_signal_to_rank_0_alone_stops_every_rank_within_a_point(tmp_path, slow_model, demo_checkpoint):
    (tmp_path / "pidmod.py").write_text(PID_MODEL)
    out = tmp_path / "s.h5"
    args = ["--model", "pidmod:build", "--dataset", "demo", "--model_file", demo_checkpoint, "--surf_file",
            str(out), "--x=-1:1:13", "--y=-1:1:13", "--batch_size", "1000", "--coordinator_only"]
    job = start_surface_job(args, tmp_path, {**os.environ, "SLOW_SECONDS": "0.1"}, ranks=3)
    wait_for_points(out, 2, job)
    at_signal = journal_points(out)
    os.kill(int((tmp_path / "pid.0").read_text()), signal.SIGTERM)
    stdout, stderr = job.communicate(timeout=60)
    assert job.returncode == surface.EXIT_STOPPED, stdout + stderr
    done = int(read_surface(str(out)).done.sum())
    # each of the two workers: the point it was on, and results on their way to the journal
    # (a worker that finished its chunk instead would add up to 16)
    assert done - at_signal <= 6
    assert f"{169 - done} points remain" in stdout


def test_ctrl_c_on_mpirun_is_a_clean_stop(tmp_path, slow_model, demo_checkpoint):
    out = tmp_path / "s.h5"
    args = ["--model", slow_model, "--dataset", "demo", "--model_file", demo_checkpoint, "--surf_file",
            str(out), "--x=-1:1:7", "--y=-1:1:7", "--batch_size", "1000"]
    job = start_surface_job(args, tmp_path, {**os.environ, "SLOW_SECONDS": "0.1"})
    wait_for_points(out, 2, job)
    job.send_signal(signal.SIGINT)
    stdout, stderr = job.communicate(timeout=60)
    assert job.returncode == surface.EXIT_STOPPED, stdout + stderr
    assert "Traceback" not in stderr and "terminate called" not in stderr
    assert "points remain" in stdout


def test_run_stopped_before_its_first_point_says_what_remains(tmp_path, demo_checkpoint, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(distributed.Context, "stop_requested", property(lambda self: True))
    code = surface.main(demo_args(demo_checkpoint, tmp_path / "s.h5", "--x=-1:1:3", "--y=-1:1:3"))
    out = capsys.readouterr().out
    assert code == surface.EXIT_STOPPED
    assert "nothing to do" not in out and "9 points remain" in out
