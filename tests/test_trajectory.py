"""PCA directions of optimizer trajectories: the maths against numpy, the files, and a real run.

The exact values a PCA must reproduce are computed here independently, with
numpy's SVD of the explicitly centred matrix: that is what the reference's
``sklearn.decomposition.PCA(n_components=2).fit(M)`` computes.
"""

from __future__ import annotations

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mpi_landscape_models as models
from conftest import demo_loss, demo_state, find_mpirun, run_module
from mpi_landscape import pca
from mpi_landscape.data import demo_split
from mpi_landscape.directions import DirectionSpec, save_directions
from mpi_landscape.errors import LandscapeError
from mpi_landscape.pca import principal_components, project
from mpi_landscape.store import read_directions, read_projection, read_surface
from mpi_landscape.trajectory import (TensorLayout, TrajectoryConfig, checkpoint_series, lr_drop_epochs,
                                      main, run)


def numpy_pca(matrix: np.ndarray, k: int = 2):
    """sklearn's PCA by hand: SVD of the centred rows; (components, ratios, singular values)."""
    centred = matrix.astype(np.float64) - matrix.astype(np.float64).mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    return vt[:k], (s ** 2 / (s ** 2).sum())[:k], s[:k]


# ---------------------------------------------------------------- the maths


def test_recovers_known_directions_and_sklearn_numbers():
    rng = np.random.default_rng(0)
    n, p = 40, 300
    basis, _ = np.linalg.qr(rng.normal(size=(p, 2)))
    # zero-mean, uncorrelated coefficients with variances 9 and 1: the true components are the basis
    draws = rng.normal(size=(n, 2))
    coefficients, _ = np.linalg.qr(draws - draws.mean(axis=0))  # orthonormal columns, still zero-mean
    a, b = (coefficients * np.sqrt(n - 1) * [3.0, 1.0]).T
    offset = rng.normal(0, 5.0, p)  # a common offset that only centring removes
    matrix = (offset + np.outer(a, basis[:, 0]) + np.outer(b, basis[:, 1])
              + 1e-6 * rng.normal(size=(n, p))).astype(np.float32)
    kept = matrix.copy()

    found = principal_components(matrix, 2)

    assert abs(found.vectors[0] @ basis[:, 0]) > 0.999 and abs(found.vectors[1] @ basis[:, 1]) > 0.999
    vectors, ratios, singular = numpy_pca(matrix)
    np.testing.assert_allclose(found.explained_variance_ratio, ratios, rtol=0, atol=1e-6)
    np.testing.assert_allclose(found.singular_values, singular, rtol=1e-6)
    np.testing.assert_allclose(found.explained_variance, singular ** 2 / (n - 1), rtol=1e-6)
    np.testing.assert_allclose(np.abs(np.sum(found.vectors * vectors, axis=1)), 1.0, atol=1e-9)
    np.testing.assert_allclose(found.vectors @ found.vectors.T, np.eye(2), atol=1e-9)
    np.testing.assert_array_equal(matrix, kept)  # the one big array is never modified
    # without centring the top direction would be the offset's, not the path's
    assert abs(np.linalg.svd(matrix.astype(np.float64))[2][0] @ basis[:, 0]) < 0.5


def test_column_blocks_give_the_same_components(monkeypatch):
    rng = np.random.default_rng(1)
    matrix = rng.normal(size=(12, 101)).astype(np.float32)
    whole = principal_components(matrix)
    monkeypatch.setattr(pca, "BLOCK_BYTES", 8 * 12 * 7)  # blocks of 7 columns, the last one short
    blocked = principal_components(matrix)
    np.testing.assert_allclose(blocked.vectors, whole.vectors, atol=1e-12)
    np.testing.assert_allclose(blocked.explained_variance_ratio, whole.explained_variance_ratio, atol=1e-14)
    x, y = project(matrix, *whole.vectors)
    np.testing.assert_allclose(x, matrix.astype(np.float64) @ whole.vectors[0], atol=1e-12)
    np.testing.assert_allclose(y, matrix.astype(np.float64) @ whole.vectors[1], atol=1e-12)


def test_signs_are_fixed_and_degenerate_paths_refused():
    rng = np.random.default_rng(2)
    found = principal_components(rng.normal(size=(8, 30)))
    assert np.all(found.vectors[np.arange(2), np.argmax(np.abs(found.vectors), axis=1)] > 0)
    with pytest.raises(LandscapeError, match="at least 3 checkpoints"):
        principal_components(rng.normal(size=(2, 30)))
    on_a_line = np.outer(np.arange(6.0), rng.normal(size=30))
    with pytest.raises(LandscapeError, match="fewer than 2 directions"):
        principal_components(on_a_line)


def test_projection_round_trip():
    rng = np.random.default_rng(3)
    p = 80
    a, b = rng.normal(size=10), rng.normal(size=10)
    d1, d2 = rng.normal(size=p), rng.normal(size=p)  # independent, not orthogonal
    x, y = project(np.outer(a, d1) + np.outer(b, d2), d1, d2, "lstsq")
    np.testing.assert_allclose(x, a, atol=1e-10)
    np.testing.assert_allclose(y, b, atol=1e-10)
    x, _ = project(np.outer(a, d1) + np.outer(b, d2), d1, d2, "cos")
    assert np.max(np.abs(x - a)) > 0.1  # cos is a different answer unless the directions are orthonormal
    orthonormal, _ = np.linalg.qr(np.stack([d1, d2], axis=1))
    u1, u2 = orthonormal[:, 0], orthonormal[:, 1]
    rows = np.outer(a, u1) + np.outer(b, u2)
    for method in ("cos", "lstsq"):
        x, y = project(rows, u1, u2, method)
        np.testing.assert_allclose(x, a, atol=1e-10)
        np.testing.assert_allclose(y, b, atol=1e-10)
    with pytest.raises(LandscapeError, match="parallel"):
        project(rows, u1, 2 * u1, "lstsq")


# ---------------------------------------------------------------- checkpoints and logs


def touch(folder, *names):
    for name in names:
        (folder / name).write_bytes(b"")


def test_checkpoint_series_rule(tmp_path):
    touch(tmp_path, *[f"model_{e}.t7" for e in range(8)], "model_final.t7", "opt_state_3.t7")
    epochs = lambda **kw: [c.epoch for c in checkpoint_series(str(tmp_path), **kw)]  # noqa: E731
    assert epochs() == list(range(8))  # max_epoch: the last one found
    assert epochs(save_epoch=3) == [0, 3, 6, 7]  # the last epoch is always the final model
    assert epochs(start_epoch=2, max_epoch=6, save_epoch=2) == [2, 4, 6]
    series = checkpoint_series(str(tmp_path), start_epoch=1, max_epoch=3)
    assert [os.path.basename(c.path) for c in series] == ["model_1.t7", "model_2.t7", "model_3.t7"]
    with pytest.raises(LandscapeError, match=r"2 of 4 checkpoints are missing: .*model_9\.t7, .*model_12\.t7"):
        checkpoint_series(str(tmp_path), start_epoch=3, max_epoch=12, save_epoch=3)
    with pytest.raises(LandscapeError, match="no checkpoints named ckpt<epoch>.pt"):
        checkpoint_series(str(tmp_path), prefix="ckpt", suffix=".pt")
    touch(tmp_path, "ckpt_0.pt", "ckpt_5.pt")
    assert [c.epoch for c in checkpoint_series(str(tmp_path), save_epoch=5, prefix="ckpt_", suffix=".pt")] == [0, 5]


def test_lr_drop_epochs_from_the_training_log(tmp_path):
    assert lr_drop_epochs(str(tmp_path)).tolist() == []
    (tmp_path / "log.csv").write_text(
        "epoch,lr,train_loss,train_acc,test_loss,test_acc\n"
        "0,0.1,2,10,2,10\n1,0.1,1,50,1,50\n2,0.01,1,60,1,60\n3,0.01,1,61,1,61\n4,0.001,1,62,1,62\n")
    assert lr_drop_epochs(str(tmp_path)).tolist() == [1, 3]  # the last epoch at the old rate
    (tmp_path / "log.csv").write_text("step,loss\n1,2\n")
    with pytest.raises(LandscapeError, match="'epoch' and 'lr'"):
        lr_drop_epochs(str(tmp_path))


def test_tensor_layout_leaves_out_integers_and_optionally_biasbn():
    net = models.build_model("demo_mlp")
    states = TensorLayout(net, "states", "none")
    names = [n for n, keep in zip(states.names, states.kept) if keep]
    assert "1.running_var" in names and not any(n.endswith("num_batches_tracked") for n in names)
    weights = TensorLayout(net, "weights", "biasbn")
    assert [n for n, keep in zip(weights.names, weights.kept) if keep] == ["0.weight", "3.weight", "6.weight"]
    assert weights.size == 64 * 2 + 64 * 64 + 3 * 64


# ---------------------------------------------------------------- a trajectory of checkpoints


def planar_run(folder, n: int = 9, seed: int = 0):
    """Checkpoints θ_i = θ_n + a_i·d1 + b_i·d2 on the weight matrices (biases, BN stay at θ_n).

    Returns the coefficients and the flat directions over the weight matrices.
    """
    torch.manual_seed(seed)
    net = models.build_model("demo_mlp")
    final = {k: v.clone() for k, v in net.state_dict().items()}
    gen = np.random.default_rng(seed)
    matrices = [k for k, v in final.items() if v.dim() > 1]
    d1 = {k: torch.from_numpy(gen.normal(size=final[k].shape).astype(np.float32)) for k in matrices}
    d2 = {k: torch.from_numpy(gen.normal(size=final[k].shape).astype(np.float32)) for k in matrices}
    a = np.append(np.linspace(3.0, 0.3, n - 1), 0.0)
    b = np.append(np.sin(np.arange(n - 1)), 0.0)
    for epoch in range(n):
        state = {k: v + (float(a[epoch]) * d1[k] + float(b[epoch]) * d2[k] if k in d1 else 0)
                 for k, v in final.items()}
        net.load_state_dict(state)
        models.save_checkpoint(str(folder / f"model_{epoch}.t7"), net, epoch=epoch)
    flat = lambda d: np.concatenate([d[k].reshape(-1).double().numpy() for k in matrices])  # noqa: E731
    return a, b, flat(d1), flat(d2), {k: (d1[k], d2[k]) for k in matrices}


def weight_matrix_rows(folder, epochs) -> np.ndarray:
    """[θ_i − θ_n] over the weight matrices, built here from the files, independently of the library."""
    rows = []
    for e in epochs:
        state = torch.load(folder / f"model_{e}.t7", weights_only=True)["state_dict"]
        rows.append(np.concatenate([v.reshape(-1).double().numpy() for v in state.values() if v.dim() > 1]))
    return np.stack(rows) - rows[-1]


def test_pca_trajectory_files_and_numbers(tmp_path):
    a, b, d1, d2, _ = planar_run(tmp_path)
    (tmp_path / "log.csv").write_text("epoch,lr\n" + "".join(
        f"{e},{0.1 if e < 5 else 0.01}\n" for e in range(9)))
    config = TrajectoryConfig(model="demo_mlp", model_folder=str(tmp_path), ignore="biasbn")
    result = run(config)

    folder = tmp_path / "PCA_weights_ignore=biasbn_save_epoch=1"
    assert result.dir_file == str(folder / "directions.h5")
    assert result.proj_file == str(folder / "directions.h5_proj_cos.h5")
    rows = weight_matrix_rows(tmp_path, range(9))
    vectors, ratios, singular = numpy_pca(rows)
    with h5py.File(result.dir_file, "r") as f:  # the reference's layout, read the reference's way
        shapes = [tuple(t.shape) for t in models.build_model("demo_mlp").parameters()]
        assert sorted(f["xdirection"], key=int) == [str(i) for i in range(len(shapes))]
        assert [f["xdirection"][str(i)].shape for i in range(len(shapes))] == shapes
        assert all(not f[g][str(i)][()].any() for g in ("xdirection", "ydirection")
                   for i, s in enumerate(shapes) if len(s) <= 1)
        np.testing.assert_allclose(f["explained_variance_ratio_"][()], ratios, atol=1e-6)
        np.testing.assert_allclose(f["singular_values_"][()], singular, rtol=1e-5)
        np.testing.assert_allclose(f["explained_variance_"][()], singular ** 2 / 8, rtol=1e-5)
        pcs = [np.concatenate([f[g][str(i)][()].reshape(-1) for i, s in enumerate(shapes) if len(s) > 1])
               for g in ("xdirection", "ydirection")]
    for pc, expected in zip(pcs, vectors):
        assert abs(pc @ expected) == pytest.approx(1.0, abs=1e-6)
    assert ratios.sum() == pytest.approx(1.0, abs=1e-6)  # the path is planar
    basis, _ = np.linalg.qr(np.stack([d1, d2], axis=1))
    for pc in pcs:  # the PCA plane is the plane the path was built in
        assert np.linalg.norm(basis.T @ pc) == pytest.approx(1.0, abs=1e-5)

    projection = read_projection(result.proj_file)
    assert projection.epochs.tolist() == list(range(9)) and projection.lr_drop_epochs.tolist() == [4]
    assert (projection.xcoord[-1], projection.ycoord[-1]) == (0.0, 0.0)  # θ_n itself
    rebuilt = np.outer(projection.xcoord, pcs[0]) + np.outer(projection.ycoord, pcs[1])
    np.testing.assert_allclose(rebuilt, rows, atol=1e-4 * np.abs(rows).max())

    before = os.stat(result.dir_file).st_mtime_ns, os.stat(result.proj_file).st_mtime_ns
    again = run(config)  # the same request again: both files reused, nothing rewritten
    assert (os.stat(result.dir_file).st_mtime_ns, os.stat(result.proj_file).st_mtime_ns) == before
    np.testing.assert_array_equal(again.xcoord, projection.xcoord)
    lstsq = run(TrajectoryConfig(model="demo_mlp", model_folder=str(tmp_path), ignore="biasbn",
                                 projection="lstsq"))
    assert lstsq.proj_file.endswith("directions.h5_proj_lstsq.h5")
    np.testing.assert_allclose(lstsq.xcoord, projection.xcoord, atol=1e-6 * np.abs(projection.xcoord).max())
    with pytest.raises(LandscapeError, match=r"epochs 0\.\.8 .*not of 0\.\.6"):  # directions of other epochs: refused
        run(TrajectoryConfig(model="demo_mlp", model_folder=str(tmp_path), ignore="biasbn", max_epoch=6))


def test_lstsq_projection_onto_given_directions_round_trips(tmp_path):
    """θ_i = θ_n + a·d1 + b·d2 projects back to (a, b) through a user's --dir_file."""
    a, b, _, _, by_tensor = planar_run(tmp_path, n=6, seed=4)
    net = models.build_model("demo_mlp")
    x = [by_tensor[n][0] if n in by_tensor else torch.zeros_like(p) for n, p in net.named_parameters()]
    y = [by_tensor[n][1] if n in by_tensor else torch.zeros_like(p) for n, p in net.named_parameters()]
    dir_file = str(tmp_path / "given.h5")
    save_directions(dir_file, net, DirectionSpec("weights"), x, y)
    result = run(TrajectoryConfig(model="demo_mlp", model_folder=str(tmp_path), dir_file=dir_file,
                                  projection="lstsq"))
    np.testing.assert_allclose(result.xcoord, a, atol=1e-5)
    np.testing.assert_allclose(result.ycoord, b, atol=1e-5)
    assert result.explained_variance_ratio is None and result.proj_file == dir_file + "_proj_lstsq.h5"


def test_states_directions_cover_the_whole_state_dict(tmp_path):
    torch.manual_seed(5)
    net = models.build_model("demo_mlp")
    for epoch in range(4):  # a few training steps between saves move weights and BN statistics
        models.save_checkpoint(str(tmp_path / f"model_{epoch}.t7"), net)
        data = demo_split("train", n=256)
        opt = torch.optim.SGD(net.parameters(), lr=0.5)
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(net.train()(data.inputs), data.targets).backward()
            opt.step()
    result = run(TrajectoryConfig(model="demo_mlp", model_folder=str(tmp_path), dir_type="states"))
    saved = read_directions(result.dir_file)
    state = net.state_dict()
    assert saved.attrs["dir_type"] == "states" and len(saved.x) == len(state)
    by_name = dict(zip(state, saved.x))
    assert by_name["1.num_batches_tracked"] == 0 and np.abs(by_name["1.running_mean"]).sum() > 0
    assert result.dir_file == str(tmp_path / "PCA_states_save_epoch=1" / "directions.h5")


# ---------------------------------------------------------------- end to end


def printed_command(stdout: str, after: str) -> str:
    """The command line printed on the line after ``after``."""
    lines = stdout.splitlines()
    return lines[lines.index(after) + 1].strip()


def test_train_trajectory_then_the_printed_surface_and_plot_commands_as_printed(tmp_path):
    run_dir = tmp_path / "run"
    trained = run_module("mpi_landscape.train", "--model", "demo_mlp", "--dataset", "demo", "--epochs", "4",
                         "--save_epoch", "1", "--batch_size", "256", "--lr", "0.2", "--lr_milestones", "2",
                         "--save_dir", str(run_dir))
    assert trained.returncode == 0, trained.stderr

    traj_args = ("--model", "demo_mlp", "--model_folder", str(run_dir), "--ignore", "biasbn", "--dataset", "demo")
    traj = run_module("mpi_landscape.trajectory", *traj_args)
    assert traj.returncode == 0, traj.stderr
    ratio_line = [line for line in traj.stdout.splitlines() if "explained variance ratio" in line]
    assert len(ratio_line) == 1
    rerun = run_module("mpi_landscape.trajectory", *traj_args)  # files reused: the ratios are still reported
    assert rerun.returncode == 0 and ratio_line[0] in rerun.stdout.splitlines()
    dir_file = run_dir / "PCA_weights_ignore=biasbn_save_epoch=1" / "directions.h5"
    projection = read_projection(f"{dir_file}_proj_cos.h5")
    assert projection.epochs.tolist() == [0, 1, 2, 3, 4] and projection.lr_drop_epochs.tolist() == [2]

    # the commands exactly as printed, in a shell whose python and mpirun are this installation's
    path = os.pathsep.join([os.path.dirname(sys.executable), os.path.dirname(find_mpirun()), os.environ["PATH"]])
    env = {**os.environ, "PATH": path}
    for after in ("surface along these directions:", "the path on it:"):
        line = printed_command(traj.stdout, after)
        done = subprocess.run(line, shell=True, cwd=tmp_path, env=env, text=True, capture_output=True, timeout=400)
        assert done.returncode == 0, f"{line}\n{done.stderr}"
    surf = dir_file.parent / "surface.h5"
    result = read_surface(str(surf))
    assert result.done.all() and np.isfinite(result.metrics["train_loss"]).all()
    assert result.x.min() < projection.xcoord.min() and projection.xcoord.max() < result.x.max()
    assert result.y.min() < projection.ycoord.min() and projection.ycoord.max() < result.y.max()
    assert result.attrs["config"]["model_file"] == str(run_dir / "model_4.t7")
    assert result.metrics["train_loss"].min() < demo_loss(demo_state(str(run_dir / "model_0.t7")), "train")
    figure = dir_file.parent / "surface_train_loss_2dcontour_proj.png"
    assert str(figure) in done.stdout.splitlines() and os.path.getsize(figure) > 0


def test_cli_user_error_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--model", "demo_mlp", "--model_folder", str(tmp_path)])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no checkpoints named model_<epoch>.t7 in ")
