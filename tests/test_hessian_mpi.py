"""Curvature end to end: the hessian command's spectrum and direction files, surfaces along the
eigenvectors of a quadratic with a known Hessian, and --hessian eigenvalue maps under mpirun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest
import torch

import mpi_landscape_models as models
from conftest import module_command, run_module
from mpi_landscape import hessian
from mpi_landscape.cli import parse_config
from mpi_landscape.views.plot_data import axis_label
from mpi_landscape.store import JOURNAL_SUFFIX, read_surface

DEMO = ["--model", "demo_mlp", "--dataset", "demo"]
QUICK_SPECTRUM = ["--data_split", "10", "--trace_samples", "10", "--slq_steps", "20", "--top_k", "3"]

QUADRATIC = '''\
"""A model whose mean cross-entropy is exactly q(w) = 1 + wᵀAw/2, with A known: logits
(0, log(exp(q) − 1)) for target 0 give log(1 + exp(q) − 1) = q."""
import torch

EIGENVALUES = [5.0, 3.0, 2.0, 1.0, 0.5, 0.2]
Q = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(7), dtype=torch.float64))[0]
A = Q @ torch.diag(torch.tensor(EIGENVALUES, dtype=torch.float64)) @ Q.T


class Quadratic(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1, 6))

    def forward(self, x):
        w = self.w[0]
        q = 1.0 + 0.5 * w @ A.float() @ w
        logits = torch.stack([torch.zeros_like(q), torch.log(torch.expm1(q))])
        return logits.expand(x.shape[0], 2)


def build():
    return Quadratic()


def data():
    return torch.zeros(8, 1), torch.zeros(8, dtype=torch.long)
'''
THETA_STAR = np.array([0.3, -0.2, 0.1, 0.4, -0.1, 0.2])


@pytest.fixture
def quadratic(tmp_path) -> list[str]:
    """The model and data flags of QUADRATIC (written into tmp_path) with θ* = THETA_STAR saved."""
    (tmp_path / "quadmod.py").write_text(QUADRATIC)
    net = torch.nn.Module()
    net.w = torch.nn.Parameter(torch.tensor(THETA_STAR, dtype=torch.float32)[None])
    models.save_checkpoint(str(tmp_path / "quad.t7"), net)
    return ["--model", "quadmod:build", "--dataset", "quadmod:data", "--model_file", "quad.t7"]


def known_hessian() -> tuple[np.ndarray, np.ndarray]:
    """The quadratic's A and its eigenvectors (columns, largest eigenvalue first)."""
    q = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(7), dtype=torch.float64))[0]
    values = np.array([5.0, 3.0, 2.0, 1.0, 0.5, 0.2])
    return q.numpy() @ np.diag(values) @ q.numpy().T, q.numpy()


def test_eigenvector_directions_of_a_known_hessian_and_the_parabolas_along_them(tmp_path, quadratic):
    result = run_module("mpi_landscape.hessian", *quadratic, "--trace_samples", "50", "--no_plot",
                        "--spectrum_file", "spec.h5", "--dir_file", "eig.h5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    a, q = known_hessian()
    with h5py.File(tmp_path / "eig.h5", "r") as f:
        x, y = f["xdirection/0"][()].ravel(), f["ydirection/0"][()].ravel()
        assert f.attrs["x_eigenvalue"] == pytest.approx(5.0, rel=1e-4)
        assert f.attrs["y_eigenvalue"] == pytest.approx(3.0, rel=1e-4)
    assert abs(x @ q[:, 0]) > 0.9999 and abs(y @ q[:, 1]) > 0.9999
    with h5py.File(tmp_path / "spec.h5", "r") as f:
        assert f["top_eigenvalues"][()] == pytest.approx([5.0, 3.0], rel=1e-4)
        assert f["min_eigenvalue"][()] == pytest.approx(0.2, rel=1e-4)
        assert abs(f["trace"][()] - np.trace(a)) < 3 * f["trace_error"][()]

    result = run_module("mpi_landscape.surface", *quadratic, "--dir_file", "eig.h5", "--x=-1:1:5",
                        "--y=-1:1:3", "--surf_file", "s.h5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    surface = read_surface(str(tmp_path / "s.h5"))
    for iy, beta in enumerate(surface.y):
        for ix, alpha in enumerate(surface.x):
            w = THETA_STAR + alpha * x + beta * y
            assert surface.metrics["train_loss"][iy, ix] == pytest.approx(1 + w @ a @ w / 2, rel=1e-5)
    assert "λ = 5" in axis_label("x", surface) and "λ = 3" in axis_label("y", surface)


def test_top_eigenvector_with_a_filter_normalized_random_y(tmp_path, quadratic):
    result = run_module("mpi_landscape.hessian", *quadratic, "--y_direction", "random", "--no_plot",
                        "--dir_file", "mixed.h5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with h5py.File(tmp_path / "mixed.h5", "r") as f:
        x, y = f["xdirection/0"][()].ravel(), f["ydirection/0"][()].ravel()
        assert "y_eigenvalue" not in f.attrs and f.attrs["ynorm"] == "filter"
    assert abs(x @ known_hessian()[1][:, 0]) > 0.9999
    assert np.linalg.norm(y) == pytest.approx(np.linalg.norm(THETA_STAR), rel=1e-5)  # one filter: w's norm


def test_spectrum_under_mpirun_equals_one_process_and_files_are_kept(tmp_path, demo_checkpoint):
    args = [*DEMO, "--model_file", demo_checkpoint, *QUICK_SPECTRUM]
    alone = hessian.run(parse_config(hessian.build_parser(), hessian.HessianConfig, [
        *args, "--spectrum_file", str(tmp_path / "one.h5"), "--dir_file", str(tmp_path / "d1.h5"), "--no_plot"]))
    result = run_module("mpi_landscape.hessian", *args, "--spectrum_file", "two.h5", "--dir_file", "d2.h5",
                        ranks=2, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "top-3 eigenvalues" in result.stdout and (tmp_path / "two_density.pdf").stat().st_size > 1000
    with h5py.File(tmp_path / "two.h5", "r") as f:
        assert f["top_eigenvalues"][()] == pytest.approx(alone.top_eigenvalues, rel=1e-5)
        assert f["min_eigenvalue"][()] == pytest.approx(alone.min_eigenvalue, rel=1e-4, abs=1e-6)
        assert f["trace"][()] == pytest.approx(alone.trace, rel=1e-6)
        assert f["slq_nodes"].shape == (1, 20) and f["density"].shape == f["density_grid"].shape
        assert json.loads(f.attrs["config"])["top_k"] == 3 and f.attrs["ranks"] == 2
        assert 2 <= f.attrs["trace_probes"] <= 10 and f.attrs["kept_gradient_graph"]
        assert f.attrs["model_file_sha256"] == models.checkpoint_sha256(demo_checkpoint)
    before = (tmp_path / "two.h5").read_bytes()
    again = run_module("mpi_landscape.hessian", *args, "--spectrum_file", "two.h5", "--dir_file", "d3.h5",
                       cwd=tmp_path)
    assert again.returncode == 2 and again.stderr.startswith("error: --spectrum_file two.h5 exists")
    assert (tmp_path / "two.h5").read_bytes() == before and not (tmp_path / "d3.h5").exists()


def test_eigenvalue_map_under_mpirun_equals_one_process(tmp_path, demo_checkpoint):
    args = [*DEMO, "--model_file", demo_checkpoint, "--data_split", "20", "--x=-1:1:3", "--y=-1:1:2",
            "--hessian", "--hessian_tol", "1e-4", "--dir_file", "dirs.h5"]
    one = run_module("mpi_landscape.surface", *args, "--surf_file", "one.h5", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    two = run_module("mpi_landscape.surface", *args, "--surf_file", "two.h5", ranks=2, cwd=tmp_path)
    assert two.returncode == 0, two.stderr
    with h5py.File(tmp_path / "one.h5", "r") as a, h5py.File(tmp_path / "two.h5", "r") as b:
        for name in ("max_eig", "min_eig", "eig_ratio", "train_loss"):
            assert a[name].shape == (2, 3) and np.isfinite(a[name][()]).all()
            assert np.allclose(a[name][()], b[name][()], rtol=1e-5, atol=1e-7), name
        assert (a["max_eig"][()] > 0).all() and (a["max_eig"][()] >= a["min_eig"][()]).all()
        assert np.allclose(a["eig_ratio"][()], np.abs(a["min_eig"][()] / a["max_eig"][()]))
    plain = [a for a in args if a not in ("--hessian", "--hessian_tol", "1e-4")]
    kept = run_module("mpi_landscape.surface", *plain, "--surf_file", "one.h5", cwd=tmp_path)
    assert kept.returncode == 0 and "surface: 0 points" in kept.stdout, kept.stderr  # curvature kept


def test_killed_hessian_map_resumes_keeping_finished_points(tmp_path, slow_model, demo_checkpoint):
    out = tmp_path / "s.h5"
    args = ["--model", slow_model, "--dataset", "demo", "--model_file", demo_checkpoint, "--data_split", "20",
            "--x=-1:1:4", "--y=-1:1:4", "--hessian", "--surf_file", str(out), "--flush_seconds", "0.3"]
    env = {**os.environ, "SLOW_SECONDS": "0.1"}  # the kept gradient graph makes a point a few passes
    job = subprocess.Popen(module_command("mpi_landscape.surface", *args, ranks=2), cwd=tmp_path, env=env,
                           start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and job.poll() is None:
        time.sleep(0.2)
        if out.exists() and read_surface(str(out)).done.sum() >= 3:
            break
    assert job.poll() is None, "the job finished before it could be killed"
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=30)
    killed = read_surface(str(out))
    finished = np.flatnonzero(killed.done.ravel())
    journal = tmp_path / ("s.h5" + JOURNAL_SUFFIX)
    records = [json.loads(line) for line in journal.read_text().splitlines() if line.endswith("}")]
    journaled = {record["i"] for record in records if "i" in record}  # the first line is the request
    kept = {int(i): killed.metrics["max_eig"].ravel()[i] for i in finished}
    assert 3 <= len(kept) < 16

    resumed_run = run_module("mpi_landscape.surface", *args, ranks=2, cwd=tmp_path)
    assert resumed_run.returncode == 0, resumed_run.stderr
    todo = 16 - len(set(kept) | journaled)
    assert f"surface: {todo} points" in resumed_run.stdout
    resumed = read_surface(str(out))
    assert resumed.done.all() and np.isfinite(resumed.metrics["min_eig"]).all()
    for index, value in kept.items():
        assert resumed.metrics["max_eig"].ravel()[index] == value


def test_hessian_at_diverged_points_is_recorded_as_nan_and_the_grid_finishes(tmp_path, demo_checkpoint):
    """At ±1e25 along a direction the loss and the products are not finite: those points are done with
    NaN curvature (as diverged loss points are), the centre keeps its own, and a rerun has nothing to do."""
    args = [*DEMO, "--model_file", demo_checkpoint, "--data_split", "20", "--x=-1e25:1e25:3", "--hessian",
            "--surf_file", "s.h5"]
    result = run_module("mpi_landscape.surface", *args, ranks=2, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "s.h5.lock").exists()
    surface = read_surface(str(tmp_path / "s.h5"))
    assert surface.done.all()
    for name in ("max_eig", "min_eig", "eig_ratio"):
        values = surface.metrics[name]
        assert np.isnan(values[[0, 2]]).all() and np.isfinite(values[1]), name
    assert surface.metrics["max_eig"][1] > 0
    assert not np.isfinite(surface.metrics["train_loss"][[0, 2]]).any() or (
        surface.metrics["train_nonfinite"][[0, 2]] > 0).all()
    again = run_module("mpi_landscape.surface", *args, ranks=2, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "surface: 0 points" in again.stdout
