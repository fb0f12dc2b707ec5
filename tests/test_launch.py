"""The scripts in launch/, submitted as they are to a real (one-node) Slurm with
``sbatch --wait``, and the workstation script run under mpirun.

Every job runs the demo workload (demo_mlp on the built-in spirals data, a 5x5
grid) on 2 ranks. What is checked is what a user relies on: the file each job
leaves behind (complete, the same numbers as a run without Slurm), the exit
status, and what happens on the time-limit warning (a clean stop that keeps
every finished point, then a requeue or a resubmission that finishes the grid).
"""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

import mpi_landscape_models as models
from conftest import demo_loss, demo_net, demo_state, run_module
from mpi_landscape.errors import LandscapeError
from mpi_landscape.store import read_surface
from slurm_cluster import SlurmInfo, require_slurm, sbatch_wait

LAUNCH = Path(__file__).resolve().parent.parent / "launch"
NTASKS = 2
GRID = {"X": "-1:1:5", "Y": "-1:1:5"}
POINTS = 25
METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")

# Everything the scripts read from the environment: set here, never inherited.
KNOBS = ("MODEL", "MODEL_FILE", "MODEL_FILE2", "MODEL_FILE3", "DATASET", "DATAPATH", "X", "Y",
         "DIR_TYPE", "XNORM", "YNORM", "XIGNORE", "YIGNORE", "DIR_FILE", "SURF_FILE", "EXTRA_ARGS",
         "SITE_SETUP", "PYTHON", "SRUN_MPI", "MPIRUN", "MPIRUN_ARGS", "REQUEUE", "MAX_REQUEUES",
         "NP", "OPTIMIZER", "LR", "BATCH_SIZE", "WEIGHT_DECAY", "EPOCHS", "SAVE_EPOCH", "SAVE_DIR",
         "NUM_WORKERS", "SLOW_SECONDS", "FAIL_ON_RANK")


# ---------------------------------------------------------------- helpers


def workload_env(base: dict[str, str], **knobs: str) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k not in KNOBS}
    env.update({"PYTHON": sys.executable, "EXTRA_ARGS": ""})
    env.update(knobs)
    return env


def job_size(slurm: SlurmInfo) -> list[str]:
    """2 ranks on one node; one placeholder GPU per rank where the node declares them."""
    gpus = NTASKS if _node_gpus(slurm) >= NTASKS else 0
    return ["--nodes=1", f"--ntasks-per-node={NTASKS}", f"--gpus-per-node={gpus}",
            "--cpus-per-task=1"]


def _node_gpus(slurm: SlurmInfo) -> int:
    out = subprocess.run(["scontrol", "show", "node", slurm.node], env=slurm.env,
                         capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"Gres=\S*gpu:(?:[^:\s,]+:)?(\d+)", out)
    return int(m.group(1)) if m else 0


def done_count(path: Path) -> int:
    """Finished points in a surface file that a job may be writing right now."""
    if not path.exists():
        return 0
    try:
        return int(read_surface(str(path)).done.sum())
    except LandscapeError:
        return 0


def wait_for(condition, timeout: float, what: str, poll: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def job_field(slurm: SlurmInfo, job_id: str, name: str) -> str | None:
    """A field of ``scontrol show job``; None once Slurm has forgotten the job."""
    proc = subprocess.run(["scontrol", "show", "job", job_id], env=slurm.env,
                          capture_output=True, text=True, timeout=30)
    m = re.search(rf"\b{name}=(\S*)", proc.stdout)
    return m.group(1) if m else None


def squeue_state(slurm: SlurmInfo, name: str) -> tuple[str, str] | None:
    """(job id, state) of the job called ``name``, while Slurm lists it."""
    out = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i %T"], env=slurm.env,
                         capture_output=True, text=True, timeout=30).stdout.split()
    return (out[0], out[1]) if len(out) >= 2 else None


class BackgroundSbatch:
    """``sbatch_wait`` in a thread, so the test can signal the job while it runs."""

    def __init__(self, *args, **kwargs):
        self.result = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=args, kwargs=kwargs, daemon=True)
        self.thread.start()

    def _run(self, *args, **kwargs):
        try:
            self.result = sbatch_wait(*args, **kwargs)
        except BaseException as exc:  # re-raised in join()
            self.error = exc

    def join(self, timeout: float):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "sbatch --wait did not return"
        if self.error is not None:
            raise self.error
        return self.result


def scancel(slurm: SlurmInfo, *args: str) -> None:
    proc = subprocess.run(["scancel", *args], env=slurm.env, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr


def summary(output: str) -> tuple[int, int]:
    """(points computed by this run, points done in the file) from the command's summary line."""
    m = re.search(r"surface: (\d+) points in .*?; (\d+)/\d+ done", output)
    assert m, f"no summary line in the job's output:\n{output}"
    return int(m.group(1)), int(m.group(2))


def assert_matches(surface, reference, names=METRICS) -> None:
    np.testing.assert_array_equal(surface.x, reference.x)
    np.testing.assert_array_equal(surface.y, reference.y)
    for name in names:
        np.testing.assert_allclose(surface.metrics[name], reference.metrics[name], rtol=1e-6,
                                   atol=1e-9, err_msg=name)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def reference(tmp_path_factory, demo_checkpoint):
    """The demo surface computed without Slurm or MPI, and its direction file, shared by the jobs."""
    folder = tmp_path_factory.mktemp("reference")
    dir_file, surf_file = folder / "directions.h5", folder / "surface.h5"
    proc = run_module("mpi_landscape.surface", "--model", "demo_mlp", "--dataset", "demo",
                      "--model_file", demo_checkpoint, f"--x={GRID['X']}", f"--y={GRID['Y']}",
                      "--splits", "train,test", "--dir_file", str(dir_file),
                      "--surf_file", str(surf_file), cwd=folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    surface = read_surface(str(surf_file))
    assert surface.done.all()
    return {"dir_file": str(dir_file), "surface": surface, "checkpoint": demo_checkpoint}


@pytest.fixture
def slurm() -> SlurmInfo:
    return require_slurm()


@pytest.fixture
def job_name(slurm):
    """A name for a job the test watches; whatever is left of it is cancelled at the end."""
    name = f"launch-test-{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run(["scancel", "--name", name], env=slurm.env, capture_output=True, timeout=30)


def surface_env(base, reference, surf_file, **knobs):
    """The demo surface, with the reference's checkpoint and direction file."""
    workload = {"MODEL": "demo_mlp", "DATASET": "demo", "MODEL_FILE": reference["checkpoint"],
                "DIR_FILE": reference["dir_file"], "SURF_FILE": str(surf_file), **GRID, **knobs}
    return workload_env(base, **workload)


# ---------------------------------------------------------------- complete runs


@pytest.mark.parametrize("script, launcher", [("surface.sbatch", "+ srun --mpi=pmi2 "),
                                              ("surface_mpirun.sbatch", "/mpirun -n 2 ")])
def test_surface_job_writes_the_same_surface_as_a_run_without_slurm(
        slurm, tmp_path, reference, script, launcher):
    """Both surface scripts give the reference's numbers (and so each other's)."""
    out = tmp_path / "surface.h5"
    rc, job_id, output = sbatch_wait(LAUNCH / script, "--splits", "train,test",
                                     env=surface_env(slurm.env, reference, out), cwd=tmp_path,
                                     sbatch_args=job_size(slurm), timeout=150)
    assert rc == 0, f"job {job_id} exited {rc}:\n{output}"
    assert launcher in output, output
    assert summary(output) == (POINTS, POINTS)

    s = read_surface(str(out))
    assert s.shape == (5, 5) and s.done.all()
    for name in METRICS:
        assert np.isfinite(s.metrics[name]).all(), name
    assert s.dir_file == reference["dir_file"]
    run = s.attrs["last_run"]
    assert run["ranks"] == NTASKS and sum(run["points_by_rank"].values()) == POINTS
    assert_matches(s, reference["surface"])


def test_interpolate_job_writes_the_line_between_two_models(slurm, tmp_path, demo_checkpoint):
    """1D, train and test, θ1 at α = 0 and θ2 at α = 1 (dir_type states: BN statistics too)."""
    torch.manual_seed(7)
    other = tmp_path / "other.t7"
    models.save_checkpoint(str(other), models.build_model("demo_mlp"))
    out = tmp_path / "line.h5"
    env = workload_env(slurm.env, MODEL="demo_mlp", DATASET="demo", MODEL_FILE=demo_checkpoint,
                       MODEL_FILE2=str(other), X="-0.5:1.5:9", SURF_FILE=str(out))
    rc, job_id, output = sbatch_wait(LAUNCH / "interpolate.sbatch", env=env, cwd=tmp_path,
                                     sbatch_args=job_size(slurm), timeout=150)
    assert rc == 0, f"job {job_id} exited {rc}:\n{output}"
    assert "+ srun --mpi=pmi2 " in output and "mpi_landscape.interpolate" in output

    s = read_surface(str(out))
    assert s.y is None and s.shape == (9,) and s.done.all()
    np.testing.assert_allclose(s.x, np.linspace(-0.5, 1.5, 9))
    # Between the models every value is finite; beyond them the interpolated BN running
    # variances may turn negative and the loss NaN (a finished point all the same).
    for name in METRICS:
        assert np.isfinite(s.metrics[name][2:7]).all(), name
    for alpha_index, path in ((2, demo_checkpoint), (6, str(other))):  # α = 0 and α = 1
        state = demo_state(path)
        for split in ("train", "test"):
            loss = demo_loss(state, split)
            assert s.metrics[f"{split}_loss"][alpha_index] == pytest.approx(loss, rel=1e-4)
    # the trained model is the better end of the line
    assert s.metrics["train_loss"][2] < s.metrics["train_loss"][6]


def test_train_job_writes_checkpoints_and_a_resubmission_continues(slurm, tmp_path):
    save_dir = tmp_path / "run"
    size = ["--gpus-per-node=0", "--cpus-per-task=1"]

    def submit(epochs: int):
        env = workload_env(slurm.env, MODEL="demo_mlp", DATASET="demo", EPOCHS=str(epochs),
                           SAVE_EPOCH="1", SAVE_DIR=str(save_dir))
        return sbatch_wait(LAUNCH / "train.sbatch", env=env, cwd=tmp_path, sbatch_args=size,
                           timeout=150)

    rc, job_id, output = submit(2)
    assert rc == 0, f"job {job_id} exited {rc}:\n{output}"
    for epoch in (0, 1, 2):
        assert (save_dir / f"model_{epoch}.t7").is_file() and (save_dir / f"opt_state_{epoch}.t7").is_file()
    demo_net(save_dir / "model_2.t7")  # the last checkpoint loads
    with open(save_dir / "log.csv") as f:
        first = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in first] == [0, 1, 2]
    assert float(first[2]["train_loss"]) < float(first[0]["train_loss"])

    rc, job_id, output = submit(3)  # the script finds epoch 2 and resumes from it
    assert rc == 0, f"job {job_id} exited {rc}:\n{output}"
    assert "--resume_epoch 2" in output
    assert (save_dir / "model_3.t7").is_file()
    with open(save_dir / "log.csv") as f:
        second = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in second] == [0, 1, 2, 3]
    assert [r["train_loss"] for r in second[:3]] == [r["train_loss"] for r in first]


# ---------------------------------------------------------------- time-limit warning


def test_warning_stops_cleanly_and_a_resubmission_finishes_the_grid(
        slurm, tmp_path, reference, slow_model, job_name):
    """``scancel --signal=USR1 --batch`` reaches only the batch shell, exactly like
    ``#SBATCH --signal=B:USR1@120``; with REQUEUE=0 the job ends with 75."""
    out, name = tmp_path / "surface.h5", job_name
    env = surface_env(slurm.env, reference, out, MODEL=slow_model, SLOW_SECONDS="0.5", REQUEUE="0",
                      EXTRA_ARGS="--flush_seconds 0.5")
    job = BackgroundSbatch(LAUNCH / "surface.sbatch", "--splits", "train,test", env=env,
                           cwd=tmp_path, sbatch_args=[*job_size(slurm), f"--job-name={name}"],
                           timeout=150)
    wait_for(lambda: done_count(out) >= 4, 90, "4 finished points")
    job_id, state = squeue_state(slurm, name)
    assert state == "RUNNING"
    scancel(slurm, "--signal=USR1", "--batch", job_id)
    rc, job_id, output = job.join(120)

    assert rc == 75, f"job {job_id} exited {rc}:\n{output}"
    assert "time limit near: asking the ranks to stop" in output
    assert "not requeued (REQUEUE=0)" in output and "requeueing" not in output
    computed, done = summary(output)
    remain = int(re.search(r"stopped early: (\d+) points remain", output).group(1))
    stopped = read_surface(str(out))
    assert int(stopped.done.sum()) == computed == done == POINTS - remain  # nothing finished is lost
    assert 4 <= done < POINTS
    assert np.isfinite(stopped.metrics["train_loss"][stopped.done]).all()
    assert np.isnan(stopped.metrics["train_loss"][~stopped.done]).all()

    env["SLOW_SECONDS"] = "0"
    rc, job_id, output = sbatch_wait(LAUNCH / "surface.sbatch", "--splits", "train,test", env=env,
                                     cwd=tmp_path, sbatch_args=job_size(slurm), timeout=150)
    assert rc == 0, f"job {job_id} exited {rc}:\n{output}"
    assert summary(output) == (remain, POINTS)  # only the missing points were computed
    final = read_surface(str(out))
    assert final.done.all()
    for metric in METRICS:
        np.testing.assert_array_equal(final.metrics[metric][stopped.done],
                                      stopped.metrics[metric][stopped.done])
    assert_matches(final, reference["surface"])


def test_real_time_limit_warning_requeues_the_job(slurm, tmp_path, reference, slow_model):
    """Slurm's own ``--signal=B:USR1`` (a 1-minute limit, warned 59 s before; Slurm sends it
    at its next periodic check, within about 30 s of the start) reaches the trap, and the
    script calls ``scontrol requeue``. The requeued run is cancelled while Slurm holds it.

    Whether the ranks are still starting or already computing when the warning comes is up
    to Slurm's timing; both must end in a requeue."""
    out = tmp_path / "surface.h5"
    # 961 points of at least 0.25 s each cannot finish within the 60 s limit, so the
    # warning must come first; the point in flight when it does takes under a second
    env = surface_env(slurm.env, reference, out, MODEL=slow_model, SLOW_SECONDS="0.25",
                      X="-1:1:31", Y="-1:1:31")
    log = tmp_path / "job.out"
    proc = subprocess.run(["sbatch", "--parsable", f"--output={log}", f"--chdir={tmp_path}",
                           "--time=1", "--signal=B:USR1@59", *job_size(slurm),
                           str(LAUNCH / "surface_mpirun.sbatch")],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip().split(";")[0]
    try:
        fields = {}

        def requeued_or_ended() -> bool:
            # a requeued job is first COMPLETING (its batch step ending, Restarts already 1),
            # then back in the queue
            fields.update({k: job_field(slurm, job_id, k) for k in ("JobState", "Restarts", "Reason")})
            return fields["JobState"] != "COMPLETING" and (
                (fields["Restarts"] or "0") != "0"
                or fields["JobState"] in (None, "FAILED", "COMPLETED", "TIMEOUT"))

        wait_for(requeued_or_ended, 100, "the job to be requeued or to end", poll=0.5)
        output = log.read_text(errors="replace")
        assert fields["Restarts"] == "1", f"job {job_id}: {fields}\n{output}"
        # back in the queue, held by Slurm for a while before it starts again
        assert fields["JobState"] in ("PENDING", "REQUEUED"), f"job {job_id}: {fields}\n{output}"
    finally:
        subprocess.run(["scancel", job_id], env=slurm.env, capture_output=True, timeout=30)
    assert "time limit near: asking the ranks to stop" in output
    assert f"requeueing job {job_id} to compute the remaining points" in output
    if "surface: " in output:  # the warning came after the ranks started: a clean stop
        computed, done = summary(output)
        assert "stopped early" in output
        assert int(read_surface(str(out)).done.sum()) == computed == done < 961


def test_warning_while_the_ranks_start_still_ends_as_a_stop(slurm, tmp_path, reference, slow_model,
                                                            job_name):
    """The warning may come while srun is still launching the ranks (Slurm sends it up to a
    minute early): srun may then drop it, or the ranks may die of it before they can catch
    it. Either way the job must end as stopped (75), not run on to the time limit."""
    out, log, name = tmp_path / "surface.h5", tmp_path / "job.out", job_name
    env = surface_env(slurm.env, reference, out, MODEL=slow_model, SLOW_SECONDS="0.3", REQUEUE="0")
    job = BackgroundSbatch(LAUNCH / "surface.sbatch", env=env, cwd=tmp_path, output_path=log,
                           sbatch_args=[*job_size(slurm), f"--job-name={name}"], timeout=150)
    # signal just after srun is started: the ranks are still importing torch
    wait_for(lambda: log.exists() and "+ srun " in log.read_text(), 60, "srun to start", poll=0.05)
    time.sleep(0.5)
    job_id, _ = squeue_state(slurm, name)
    scancel(slurm, "--signal=USR1", "--batch", job_id)
    rc, job_id, output = job.join(120)
    assert rc == 75, f"job {job_id} exited {rc}:\n{output}"
    assert "time limit near" in output and "not requeued (REQUEUE=0)" in output
    assert "surface step exited with status" in output
    assert done_count(out) < POINTS


# ---------------------------------------------------------------- workstation


def test_mpirun_local_stops_on_ctrl_c_and_a_rerun_finishes(tmp_path, reference, slow_model):
    """launch/mpirun_local.sh outside Slurm: Ctrl-C is a clean stop (75); rerunning completes."""
    script = LAUNCH / "mpirun_local.sh"
    out = tmp_path / "surface.h5"
    env = surface_env(os.environ, reference, out, MODEL=slow_model, NP="2", SLOW_SECONDS="0.5",
                      EXTRA_ARGS="--flush_seconds 0.5")
    command = ["bash", str(script), "--splits", "train,test"]
    job = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: done_count(out) >= 4 or job.poll() is not None, 90, "4 finished points")
        assert job.poll() is None, job.communicate()
        job.send_signal(signal.SIGINT)  # Ctrl-C reaches the script, not mpirun
        stdout, stderr = job.communicate(timeout=60)
    finally:
        if job.poll() is None:  # a second Ctrl-C makes the script kill mpirun and the ranks
            job.send_signal(signal.SIGINT)
            time.sleep(0.5)
            job.send_signal(signal.SIGINT)
            job.communicate(timeout=30)
    assert job.returncode == 75, stdout + stderr
    assert "stopping: the ranks finish their current point" in stderr
    computed, done = summary(stdout)
    stopped = read_surface(str(out))
    assert int(stopped.done.sum()) == computed == done and 4 <= done < POINTS

    env["SLOW_SECONDS"] = "0"
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "/mpirun -n 2 " in proc.stdout  # the mpirun beside PYTHON
    assert summary(proc.stdout) == (POINTS - done, POINTS)
    final = read_surface(str(out))
    assert final.done.all() and final.attrs["last_run"]["ranks"] == 2
    assert_matches(final, reference["surface"])
