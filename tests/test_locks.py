"""What keeps jobs apart: the surface lock (held on the file itself, noticed when removed or
replaced, never released for another job), direction files that several jobs create at once
or name with other flags, and the signals that stop a job (a closed terminal, a second SIGTERM).
Real mpirun jobs, real files read back with h5py."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from conftest import module_command, start_surface_job, wait_for_points
from mpi_landscape import store, surface
from mpi_landscape.directions import fingerprint
from mpi_landscape.errors import LandscapeError
from mpi_landscape.store import JOURNAL_SUFFIX, LOCK_SUFFIX, SurfaceWriter, read_surface

X, Y = np.linspace(-1, 1, 5), np.linspace(-1, 1, 4)
METRICS = ["train_loss", "train_acc"]
POINT = {"train_loss": 0.5, "train_acc": 90.0}
LAUNCH = Path(__file__).resolve().parent.parent / "launch"


def open_writer(path, **kwargs) -> SurfaceWriter:
    return SurfaceWriter.open(str(path), X, Y, "dirs.h5", METRICS, {"model": "m"}, flush_seconds=3600,
                              **kwargs)


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def slow_args(model, checkpoint, surf_file, *extra) -> list[str]:
    return ["--model", model, "--dataset", "demo", "--model_file", checkpoint, "--surf_file", str(surf_file),
            "--batch_size", "1000", *extra]


def run_surface_job(args, cwd, env=None, ranks: int = 2) -> subprocess.CompletedProcess:
    return subprocess.run(module_command("mpi_landscape.surface", *args, ranks=ranks), cwd=cwd, env=env,
                          text=True, capture_output=True, timeout=240)


# ---------------------------------------------------------------- the lock belongs to the file


def test_a_removed_lock_file_is_noticed_before_the_next_write(tmp_path):
    out = tmp_path / "s.h5"
    writer = open_writer(out)
    writer.record(0, POINT)
    journal = (tmp_path / ("s.h5" + JOURNAL_SUFFIX)).read_bytes()
    os.remove(str(out) + LOCK_SUFFIX)
    with pytest.raises(LandscapeError, match="lock"):
        writer.record(1, POINT)
    with pytest.raises(LandscapeError, match="lock"):
        writer.flush(force=True)
    assert (tmp_path / ("s.h5" + JOURNAL_SUFFIX)).read_bytes() == journal  # nothing written after it
    assert read_surface(str(out)).done.sum() == 0  # the snapshot of the open, not a later one


def test_a_replaced_lock_file_is_noticed_and_never_removed_by_the_first_holder(tmp_path):
    path = str(tmp_path / "s.h5")
    first = store.SurfaceLock.acquire(path)
    os.remove(path + LOCK_SUFFIX)
    second = store.SurfaceLock.acquire(path)  # a job started after the lock file was deleted
    with pytest.raises(LandscapeError, match="removed or replaced"):
        first.check()
    second.check()
    first.release()
    assert os.path.exists(path + LOCK_SUFFIX), "the first holder removed the second one's lock file"
    with pytest.raises(LandscapeError, match="in use"):
        store.SurfaceLock.acquire(path)
    second.release()
    assert not os.path.exists(path + LOCK_SUFFIX)


def test_a_surface_file_reached_through_a_symlink_is_locked_and_written_as_its_target(tmp_path):
    (tmp_path / "data").mkdir()
    target = tmp_path / "data" / "s.h5"
    link = tmp_path / "link.h5"
    link.symlink_to(target)
    writer = open_writer(link)
    with pytest.raises(LandscapeError, match="in use"):
        store.SurfaceLock.acquire(str(target))  # the same file, by its own name
    writer.record(3, POINT)
    writer.flush(force=True)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert read_surface(str(target)).done.ravel()[3]
    assert (tmp_path / "data" / ("s.h5" + JOURNAL_SUFFIX)).exists()
    assert not (tmp_path / ("link.h5" + JOURNAL_SUFFIX)).exists()
    writer.close()
    assert link.is_symlink() and read_surface(str(link)).done.sum() == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["data", "link.h5", "s.h5"]


def test_the_lock_cannot_be_evaded_by_a_symlink_or_by_deleting_it(tmp_path, slow_model, demo_checkpoint):
    """Job A runs; B through a symlink to A's file is refused (and writes no direction file); once
    A's lock file is deleted, A stops before it writes again and C, started then, finishes."""
    out = tmp_path / "s.h5"
    (tmp_path / "link.h5").symlink_to(out)
    grid = ["--x=-1:1:9", "--y=-1:1:9", "--flush_seconds", "0.2"]
    job_a = start_surface_job(slow_args(slow_model, demo_checkpoint, out, *grid), tmp_path,
                              {**os.environ, "SLOW_SECONDS": "0.6"})
    try:
        wait_for_points(out, 3, job_a)
        job_b = run_surface_job(slow_args(slow_model, demo_checkpoint, "link.h5", *grid, "--dir_file",
                                          "fresh_dirs.h5"), tmp_path)
        assert job_b.returncode == 2, job_b.stdout + job_b.stderr
        assert "in use" in one_error_line(job_b.stderr)
        assert not (tmp_path / "fresh_dirs.h5").exists(), "a refused job wrote a direction file"
        assert (tmp_path / "link.h5").is_symlink()
        assert job_a.poll() is None

        os.remove(str(out) + LOCK_SUFFIX)
        job_c = start_surface_job(slow_args(slow_model, demo_checkpoint, out, *grid), tmp_path,
                                  {**os.environ, "SLOW_SECONDS": "0.01"})
        stdout_a, stderr_a = job_a.communicate(timeout=120)
        stdout_c, stderr_c = job_c.communicate(timeout=180)
    finally:
        for job in (job_a, locals().get("job_c")):
            if job is not None and job.poll() is None:
                os.killpg(job.pid, signal.SIGKILL)
    assert job_a.returncode == 2, stdout_a + stderr_a
    assert "lock" in one_error_line(stderr_a)
    assert job_c.returncode == 0, stdout_c + stderr_c
    assert "Traceback" not in stderr_c and "81/81 done" in stdout_c
    final = read_surface(str(out))
    assert final.done.all() and np.isfinite(final.metrics["train_loss"]).all()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("s.h5", "link"))) == \
        ["link.h5", "s.h5"]


# ---------------------------------------------------------------- direction files shared by jobs


def direction_attrs(path) -> dict:
    return store.read_directions(str(path), tensors=False).attrs


def file_fingerprint(path) -> str:
    data = store.read_directions(str(path))
    as_torch = lambda d: [torch.from_numpy(np.asarray(t)) for t in d]  # noqa: E731
    return fingerprint(as_torch(data.x), as_torch(data.y))


def test_jobs_started_together_on_one_new_dir_file_share_it_or_are_refused(tmp_path, demo_checkpoint):
    """Three jobs, one new --dir_file, --seed 1/2/3: one creates it, the others read it and are
    refused (their seed contradicts it); every surface computed holds the file's directions."""
    grid = ["--x=-1:1:3", "--y=-1:1:3", "--data_split", "20", "--dir_file", "shared.h5"]
    jobs = [start_surface_job(["--model", "demo_mlp", "--dataset", "demo", "--model_file", demo_checkpoint,
                               "--surf_file", f"s{seed}.h5", "--seed", str(seed), *grid], tmp_path, None)
            for seed in (1, 2, 3)]
    outcomes = [(job.communicate(timeout=240), job.returncode) for job in jobs]
    made_with = direction_attrs(tmp_path / "shared.h5")["seed"]
    for seed, ((stdout, stderr), code) in zip((1, 2, 3), outcomes):
        if seed == made_with:
            assert code == 0, stdout + stderr
            identity = read_surface(str(tmp_path / f"s{seed}.h5")).attrs["identity"]
            assert identity["directions_sha256"] == file_fingerprint(tmp_path / "shared.h5")
        else:
            assert code == 2, stdout + stderr
            line = one_error_line("\n".join(l for l in stderr.splitlines() if not l.startswith("note: ")))
            assert f"--seed {made_with}" in line and f"--seed {seed}" in line
            assert not (tmp_path / f"s{seed}.h5").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s%d.h5" % made_with, "shared.h5"]


def test_direction_flags_that_contradict_an_existing_dir_file_are_refused(tmp_path, demo_checkpoint,
                                                                          monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    base = ["--model", "demo_mlp", "--dataset", "demo", "--model_file", demo_checkpoint, "--x=-1:1:3",
            "--y=-1:1:3", "--data_split", "20", "--dir_file", "d.h5"]
    assert surface.main([*base, "--surf_file", "a.h5"]) == 0  # seed 123, filter: the defaults
    made = (tmp_path / "d.h5").read_bytes()
    proc = run_surface_job([*base, "--surf_file", "b.h5", "--seed", "9", "--xnorm", "layer"], tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = one_error_line(proc.stderr)
    assert "--seed 123 --xnorm filter" in line and "--seed 9 --xnorm layer" in line
    assert not (tmp_path / "b.h5").exists() and (tmp_path / "d.h5").read_bytes() == made
    for contradiction in (["--same_dir"], ["--model_file3", demo_checkpoint], ["--yignore", "none"]):
        capsys.readouterr()
        with pytest.raises(SystemExit):
            surface.main([*base, "--surf_file", "c.h5", *contradiction])
        assert contradiction[0] in one_error_line(capsys.readouterr().err)
    # flags left at their defaults, or set to what the file records, agree with it
    assert surface.main([*base, "--surf_file", "c.h5", "--seed", "123", "--ynorm", "filter"]) == 0
    assert surface.main([*base, "--surf_file", "e.h5"]) == 0
    assert (tmp_path / "d.h5").read_bytes() == made


def test_a_dir_file_reached_through_a_symlink_is_created_as_its_target(tmp_path, demo_checkpoint, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dirs").mkdir()
    (tmp_path / "link.h5").symlink_to(tmp_path / "dirs" / "d.h5")
    assert surface.main(["--model", "demo_mlp", "--dataset", "demo", "--model_file", demo_checkpoint,
                         "--x=-1:1:3", "--data_split", "20", "--dir_file", "link.h5", "--surf_file", "s.h5"]) == 0
    assert (tmp_path / "link.h5").is_symlink() and direction_attrs(tmp_path / "dirs" / "d.h5")["seed"] == 123
    assert sorted(p.name for p in (tmp_path / "dirs").iterdir()) == ["d.h5"]


def test_an_in_process_run_gives_the_caller_its_signal_handlers_back(tmp_path, demo_checkpoint, monkeypatch,
                                                                     capsys):
    """``surface.main`` called from Python (a notebook, a script) catches the stop signals only while it
    runs: after a finished run and after a user error the caller's own handlers are back (its Ctrl-C
    still interrupts it)."""
    from mpi_landscape.distributed import STOP_SIGNALS

    monkeypatch.chdir(tmp_path)

    def callers(signum, frame):
        pass

    for s in STOP_SIGNALS:
        signal.signal(s, callers)
    args = ["--model", "demo_mlp", "--dataset", "demo", "--model_file", demo_checkpoint, "--x=-1:1:3",
            "--data_split", "20"]
    assert surface.main([*args, "--surf_file", "a.h5"]) == 0
    assert {s: signal.getsignal(s) for s in STOP_SIGNALS} == {s: callers for s in STOP_SIGNALS}
    with pytest.raises(SystemExit):
        surface.main([*args, "--x=1:-1:0", "--surf_file", "b.h5"])
    assert "error:" in capsys.readouterr().err
    assert {s: signal.getsignal(s) for s in STOP_SIGNALS} == {s: callers for s in STOP_SIGNALS}


# ---------------------------------------------------------------- signals that stop a job


def rank_pids(job: subprocess.Popen, surf_file) -> list[int]:
    """The pids of the job's ranks: the processes running the surface command on ``surf_file``,
    mpirun aside."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if str(surf_file).encode() in argv and b"mpi_landscape.surface" in argv and int(entry) != job.pid:
            pids.append(int(entry))
    return pids


def stopped_by(job: subprocess.Popen, out, send) -> tuple[str, str]:
    """Wait for 2 points, ``send`` the job its signals, and return what it printed."""
    try:
        wait_for_points(out, 2, job)
        send()
        return job.communicate(timeout=90)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)


def assert_stopped_cleanly(job: subprocess.Popen, out, stdout: str, stderr: str) -> None:
    assert job.returncode == surface.EXIT_STOPPED, stdout + stderr
    assert "Traceback" not in stderr and "BAD TERMINATION" not in stdout + stderr
    done = int(read_surface(str(out)).done.sum())
    assert 0 < done < 49 and f"{49 - done} points remain" in stdout


def slow_job(tmp_path, slow_model, demo_checkpoint) -> tuple[subprocess.Popen, object]:
    out = tmp_path / "s.h5"
    args = slow_args(slow_model, demo_checkpoint, out, "--x=-1:1:7", "--y=-1:1:7", "--flush_seconds", "0.2")
    return start_surface_job(args, tmp_path, {**os.environ, "SLOW_SECONDS": "0.1"}), out


def test_sigterms_to_mpirun_while_the_job_winds_down_keep_it_a_clean_stop(tmp_path, slow_model,
                                                                          demo_checkpoint):
    """A scheduler or a user may send SIGTERM again (0.2 s apart here) until the job is gone:
    the later ones reach the ranks while they finish and exit, and change nothing."""
    job, out = slow_job(tmp_path, slow_model, demo_checkpoint)

    def sigterm_until_it_ends() -> None:
        while job.poll() is None:
            job.send_signal(signal.SIGTERM)
            time.sleep(0.2)

    stdout, stderr = stopped_by(job, out, sigterm_until_it_ends)
    assert_stopped_cleanly(job, out, stdout, stderr)


def test_sighup_to_the_ranks_is_a_clean_stop(tmp_path, slow_model, demo_checkpoint):
    """A hangup (a closed terminal, passed on by a launcher or reaching a rank directly) stops the
    job as SIGTERM does."""
    job, out = slow_job(tmp_path, slow_model, demo_checkpoint)

    def hang_up() -> None:
        for pid in rank_pids(job, out):
            os.kill(pid, signal.SIGHUP)

    stdout, stderr = stopped_by(job, out, hang_up)
    assert_stopped_cleanly(job, out, stdout, stderr)


def as_if_from_a_terminal() -> None:
    """The child's set-up: its standard input becomes its controlling terminal, and SIGHUP is at its default
    action, as a terminal's shell starts it (the test process may hold it ignored, and bash cannot trap a
    signal ignored on entry)."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_a_closed_terminal_stops_mpirun_local_cleanly(tmp_path, slow_model, demo_checkpoint):
    """launch/mpirun_local.sh run on a terminal that then closes (the kernel's hangup, on a real
    pseudo-terminal): the ranks stop as on Ctrl-C, the script exits 75, nothing finished is lost -- even
    though the ranks go on printing after the terminal is gone (MPICH's mpirun exits 255 when it
    cannot write a rank's output)."""
    out = tmp_path / "s.h5"
    env = {**os.environ, "PYTHON": sys.executable, "NP": "2", "MODEL": slow_model, "MODEL_FILE": demo_checkpoint,
           "DATASET": "demo", "X": "-1:1:7", "Y": "-1:1:7", "SURF_FILE": str(out), "SLOW_SECONDS": "0.1",
           "PRINT_EACH_PASS": "1", "EXTRA_ARGS": "--flush_seconds 0.2 --batch_size 1000"}
    terminal, tty = os.openpty()
    printed, closing = bytearray(), threading.Event()

    def read_terminal() -> None:
        """What the job prints (so it never blocks on a full terminal), until the terminal closes."""
        with contextlib.suppress(OSError):
            while not closing.is_set():
                if select.select([terminal], [], [], 0.1)[0]:
                    printed.extend(os.read(terminal, 4096))

    job = subprocess.Popen(["bash", str(LAUNCH / "mpirun_local.sh")], cwd=tmp_path, env=env, stdin=tty,
                           stdout=tty, stderr=tty, start_new_session=True,
                           preexec_fn=as_if_from_a_terminal)
    os.close(tty)
    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        wait_for_points(out, 2, job)
        closing.set()
        reader.join()
        os.close(terminal)  # the terminal window closes
        # and the hangup the login shell resends to its jobs as it exits, on top of the kernel's: the
        # script counts one stop, not a stop and an abort
        os.killpg(job.pid, signal.SIGHUP)
        code = job.wait(timeout=90)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert code == surface.EXIT_STOPPED, printed.decode(errors="replace")
    stopped = read_surface(str(out))
    assert 0 < stopped.done.sum() < 49 and np.isfinite(stopped.metrics["train_loss"][stopped.done]).all()
    assert stopped.attrs["last_run"]["stopped_early"]
