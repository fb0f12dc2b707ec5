"""A rerun on an existing surface file: what it may compute, what it is refused, and that no
computed array is ever removed (the rule of docs/hdf5_layout.md, "Reruns").

The rules are checked on ``SurfaceWriter`` directly (every case, in milliseconds) and end to
end under ``mpirun -n 2``: a ``--hessian`` file rerun without ``--hessian`` (complete and
killed part way), a user task's file rerun as plain classification, and the list of runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal

import h5py
import numpy as np
import pytest

from conftest import run_module, start_surface_job, wait_for_points
from mpi_landscape import plot, surface
from mpi_landscape.errors import LandscapeError
from mpi_landscape.store import JOURNAL_SUFFIX, SurfaceWriter, read_surface
from surface_files import leave_as_killed, write_surface

X, Y = np.linspace(-1, 1, 4), np.linspace(-1, 1, 3)
LOSS = ("train_loss", "train_acc")
CURVATURE = ("max_eig", "min_eig", "eig_ratio")
IDENTITY = {"model": "demo_mlp", "directions_sha256": "abc", "dataset_size": {"train": 50, "test": 20}}
HESSIAN = {**IDENTITY, "hessian": {"split": "train", "tol": 1e-3, "max_iter": 100}}
OPTIONAL = ("hessian",)


def open_writer(path, metrics=LOSS, identity=IDENTITY, dir_file="dirs.h5", run=None):
    return SurfaceWriter.open(str(path), X, Y, dir_file, list(metrics), identity,
                              {"config": {"model": "demo_mlp"}}, flush_seconds=3600,
                              optional_identity=OPTIONAL, run=run)


def values(index: int, metrics=LOSS + CURVATURE) -> dict[str, float]:
    return {name: float(index) + 0.1 * k for k, name in enumerate(metrics)}


def computed(path, metrics=LOSS + CURVATURE, identity=HESSIAN, points=range(12), close=True) -> SurfaceWriter:
    """A file of ``metrics`` with ``points`` done (closed, or left as a killed job leaves it)."""
    writer = open_writer(path, metrics, identity)
    for index in points:
        writer.record(index, values(index, metrics))
    if close:
        writer.close()
    else:
        leave_as_killed(writer)
    return writer


def arrays(path) -> dict[str, bytes]:
    """Every dataset of a file, as bytes: what "bit for bit" compares."""
    with h5py.File(path, "r") as f:
        return {name: np.asarray(f[name][()]).tobytes() for name in f}


# ---------------------------------------------------------------- fewer metrics


def test_fewer_metrics_on_a_complete_file_compute_nothing_and_change_nothing(tmp_path):
    path = tmp_path / "s.h5"
    computed(path)
    before = path.read_bytes()
    writer = open_writer(path)  # as a rerun without --hessian
    assert writer.remaining(np.arange(12)).size == 0
    writer.close({"last_run": {"points": 0}})
    assert path.read_bytes() == before  # every array, the identity and the provenance as they were
    assert not os.path.exists(str(path) + JOURNAL_SUFFIX)


def test_fewer_metrics_on_a_partial_file_are_refused_with_the_command_that_finishes_it(tmp_path):
    path = tmp_path / "s.h5"
    writer = computed(path, points=range(5), close=False)
    writer.flush(force=True)
    before, journal = path.read_bytes(), (tmp_path / ("s.h5" + JOURNAL_SUFFIX)).read_bytes()
    with pytest.raises(LandscapeError) as refused:
        open_writer(path)
    message = str(refused.value)
    assert all(name in message for name in CURVATURE) and "5 of 12" in message and "--surf_file" in message
    assert path.read_bytes() == before
    assert (tmp_path / ("s.h5" + JOURNAL_SUFFIX)).read_bytes() == journal
    resumed = open_writer(path, LOSS + CURVATURE, HESSIAN)  # the file's own request finishes it
    assert sorted(resumed.metrics) == sorted(LOSS + CURVATURE) and resumed.done.sum() == 5
    resumed.close()


def test_a_journal_of_more_metrics_is_replayed_whole_and_never_cut_down(tmp_path):
    path = tmp_path / "s.h5"
    computed(path, points=range(7), close=False)  # the snapshot holds none of them, the journal all 7
    with pytest.raises(LandscapeError, match="max_eig"):
        open_writer(path)
    os.remove(path)  # the file lost: the journal alone holds the curvature of 7 points
    with pytest.raises(LandscapeError, match="max_eig"):
        open_writer(path)
    writer = open_writer(path, LOSS + CURVATURE, HESSIAN)
    assert writer.done.sum() == 7
    writer.close()
    s = read_surface(str(path))
    assert s.metrics["min_eig"].ravel()[6] == values(6)["min_eig"]


# ---------------------------------------------------------------- more or other metrics


def test_more_metrics_on_a_file_with_done_points_are_refused(tmp_path):
    path = tmp_path / "s.h5"
    computed(path, LOSS, IDENTITY, points=range(3))
    before = path.read_bytes()
    with pytest.raises(LandscapeError, match="max_eig, min_eig, eig_ratio.*--surf_file"):
        open_writer(path, LOSS + CURVATURE, HESSIAN)
    with pytest.raises(LandscapeError, match="test_loss"):
        open_writer(path, ("train_loss", "test_loss"))  # other metrics: one more, one fewer
    assert path.read_bytes() == before


def test_any_metrics_on_a_file_with_no_done_point_start_it_as_this_request(tmp_path):
    path = tmp_path / "s.h5"
    computed(path, LOSS, IDENTITY, points=())
    writer = open_writer(path, LOSS + CURVATURE, HESSIAN)
    writer.record(0, values(0))
    writer.close()
    s = read_surface(str(path))
    assert sorted(s.metrics) == sorted(LOSS + CURVATURE) and s.attrs["identity"] == HESSIAN


# ---------------------------------------------------------------- identity on the union of keys


@pytest.mark.parametrize("file_identity, request_identity, key", [
    ({**IDENTITY, "task": "mytask:build"}, IDENTITY, "task"),  # a user's task rerun as classification
    (IDENTITY, {**IDENTITY, "task": "mytask:build"}, "task"),  # and the other way round
    (IDENTITY, {k: v for k, v in IDENTITY.items() if k != "model"}, "model"),
    (IDENTITY, {**IDENTITY, "dataset_size": {"train": 51}}, "dataset_size"),
    (HESSIAN, {**IDENTITY, "hessian": {**HESSIAN["hessian"], "tol": 1e-4}}, "hessian"),
])
def test_a_key_either_side_lacks_or_holds_otherwise_is_another_request(tmp_path, file_identity,
                                                                        request_identity, key):
    path = tmp_path / "s.h5"
    computed(path, LOSS, file_identity, points=range(12))
    before = path.read_bytes()
    with pytest.raises(LandscapeError, match=f"another {key}"):
        open_writer(path, LOSS, request_identity)
    assert path.read_bytes() == before


def test_settings_of_metrics_a_rerun_leaves_out_and_splits_it_leaves_out_are_no_mismatch(tmp_path):
    path = tmp_path / "s.h5"
    computed(path, LOSS + ("test_loss",) + CURVATURE, points=range(12))
    before = arrays(path)
    writer = open_writer(path, LOSS, {**IDENTITY, "dataset_size": {"train": 50}})  # --splits train
    writer.close()
    assert arrays(path) == before and read_surface(str(path)).attrs["identity"] == HESSIAN


# ---------------------------------------------------------------- the list of runs


def test_each_run_that_computes_is_listed_and_a_rerun_keeps_the_directions_it_names(tmp_path):
    path = tmp_path / "s.h5"
    first = open_writer(path, run={"command_line": "first"})
    for index in range(4):
        first.record(index, values(index, LOSS))
    leave_as_killed(first)
    second = open_writer(path, dir_file="copy_of_dirs.h5", run={"command_line": "second"})
    for index in range(4, 12):
        second.record(index, values(index, LOSS))
    second.close({"last_run": {"points": 8}}, run={"points": 8})
    s = read_surface(str(path))
    runs = s.attrs["runs"]
    assert [r["command_line"] for r in runs] == ["first", "second"]
    assert [r["dir_file"] for r in runs] == ["dirs.h5", "copy_of_dirs.h5"]
    assert "finished" not in runs[0] and runs[1]["points"] == 8 and "finished" in runs[1]
    assert s.dir_file == "dirs.h5" and s.attrs["last_run"] == {"points": 8}
    before = path.read_bytes()
    open_writer(path, dir_file="third.h5", run={"command_line": "third"}).close({"last_run": {}})
    assert path.read_bytes() == before  # nothing to do: no run to list, nothing overwritten


def test_a_long_history_of_runs_stays_within_an_attribute(tmp_path):
    path = tmp_path / "s.h5"
    for index in range(12):
        writer = open_writer(path, run={"command_line": "x" * 6000})
        writer.record(index, values(index, LOSS))
        leave_as_killed(writer) if index < 11 else writer.close()
    runs = read_surface(str(path)).attrs["runs"]
    assert runs[0]["command_line"] == "x" * 6000 and runs[-1]["command_line"] == "x" * 6000
    assert len(runs) < 12 and len(json.dumps(runs)) < 64 * 1024
    assert sum(r.get("omitted", 1) for r in runs) == 12


# ---------------------------------------------------------------- flags and plots


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_flush_seconds_must_be_a_finite_number_of_seconds(value, capsys):
    with pytest.raises(SystemExit) as stopped:
        surface.main(["--model_file", "m.t7", "--flush_seconds", value])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.count("\n") == 1 and err.startswith("error:")
    assert "--flush_seconds" in err


def test_a_writer_refuses_nan_seconds(tmp_path):
    with pytest.raises(LandscapeError, match="flush_seconds"):
        SurfaceWriter.open(str(tmp_path / "s.h5"), X, Y, "d.h5", LOSS, IDENTITY, flush_seconds=float("nan"))
    assert not (tmp_path / "s.h5").exists()


@pytest.mark.parametrize("case", ["nothing done", "all diverged"])
def test_plot_of_a_file_with_nothing_to_draw_says_so_and_draws_nothing(tmp_path, capsys, case):
    path = tmp_path / "s.h5"
    if case == "nothing done":
        write_surface(path, X, Y, done=np.zeros((3, 4), dtype=bool))
    else:
        nan = np.full((3, 4), np.nan)
        write_surface(path, X, Y, metrics={"train_loss": nan, "train_acc": nan, "train_nonfinite": np.ones((3, 4))})
    with pytest.raises(SystemExit) as stopped:
        plot.main([str(path), "--format", "png"])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.count("\n") == 1 and err.startswith(f"error: {path}")
    assert "nothing to draw" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]


# ---------------------------------------------------------------- end to end under mpirun -n 2


DEMO = ["--model", "demo_mlp", "--dataset", "demo", "--data_split", "20", "--x=-1:1:3", "--y=-1:1:2",
        "--dir_file", "dirs.h5", "--surf_file", "s.h5"]


def test_a_hessian_file_rerun_without_hessian_keeps_its_curvature(tmp_path, demo_checkpoint):
    args = [*DEMO, "--model_file", demo_checkpoint]
    first = run_module("mpi_landscape.surface", *args, "--hessian", ranks=2, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = (tmp_path / "s.h5").read_bytes()
    shutil.copy(tmp_path / "dirs.h5", tmp_path / "same_dirs.h5")  # the same directions under another name
    again = run_module("mpi_landscape.surface", *args, "--dir_file", "same_dirs.h5", ranks=2, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "surface: 0 points" in again.stdout and "6/6 done" in again.stdout
    assert (tmp_path / "s.h5").read_bytes() == before  # its last_run, runs and dir_file too
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert {"max_eig", "min_eig", "eig_ratio"} <= set(f) and np.isfinite(f["max_eig"][()]).all()


def test_a_stopped_hessian_run_is_finished_only_by_its_own_request(tmp_path, slow_model, demo_checkpoint):
    out = tmp_path / "s.h5"
    args = [*DEMO, "--model", slow_model, "--model_file", demo_checkpoint, "--x=-1:1:3", "--y=-1:1:3",
            "--flush_seconds", "0.2"]
    job = start_surface_job([*args, "--hessian"], tmp_path, {**os.environ, "SLOW_SECONDS": "0.3"})
    wait_for_points(out, 3, job)
    job.send_signal(signal.SIGTERM)
    stdout, stderr = job.communicate(timeout=60)
    assert job.returncode == surface.EXIT_STOPPED, stdout + stderr
    before = out.read_bytes()
    assert 3 <= read_surface(str(out)).done.sum() < 9

    refused = run_module("mpi_landscape.surface", *args, ranks=2, cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert refused.stderr.startswith("error:") and "max_eig" in refused.stderr and "--hessian" in refused.stderr
    assert out.read_bytes() == before

    kept = read_surface(str(out))
    finished = run_module("mpi_landscape.surface", *args, "--hessian", ranks=2, cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    s = read_surface(str(out))
    assert s.done.all() and np.isfinite(s.metrics["max_eig"]).all()
    assert (s.metrics["max_eig"][kept.done] == kept.metrics["max_eig"][kept.done]).all()
    assert len(s.attrs["runs"]) == 2 and "finished" in s.attrs["runs"][1]


MARGIN_TASK = '''\
from mpi_landscape.task import Classification


class WithMargin(Classification):
    """Classification plus the mean gap between the two largest logits (train_margin)."""
    metrics = Classification.metrics + ("margin",)

    def sums(self, outputs, inputs, targets):
        top2 = outputs.float().topk(2, dim=1).values
        return {**super().sums(outputs, inputs, targets), "margin": (top2[:, 0] - top2[:, 1]).double()}

    def finish(self, totals, samples):
        return {**super().finish(totals, samples), "margin": totals["margin"] / samples}


build = WithMargin
'''


def test_a_users_task_file_rerun_as_plain_classification_is_refused(tmp_path, demo_checkpoint):
    (tmp_path / "margintask.py").write_text(MARGIN_TASK)
    args = [*DEMO, "--model_file", demo_checkpoint]
    first = run_module("mpi_landscape.surface", *args, "--task", "margintask:build", ranks=2, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = (tmp_path / "s.h5").read_bytes()
    plain = run_module("mpi_landscape.surface", *args, ranks=2, cwd=tmp_path)
    assert plain.returncode == 2 and plain.stderr.count("\n") == 1, plain.stderr
    assert "another task" in plain.stderr
    assert (tmp_path / "s.h5").read_bytes() == before
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert np.isfinite(f["train_margin"][()]).all()
        assert json.loads(f.attrs["identity"])["task"] == "margintask:build"
