"""The interpolation command: real ``mpirun -n 2`` jobs between briefly trained demo networks.

The ends of the line must be the models themselves: the values at α = 0 and
α = 1 are compared with each checkpoint's loss computed directly (conftest's
``demo_loss``: mean cross-entropy over the split, eval mode), not through the
library's evaluator.
"""

from __future__ import annotations

import numpy as np
import pytest

import mpi_landscape_models as models
from conftest import demo_loss, demo_state, run_module, train_demo_net
from mpi_landscape.errors import LandscapeError
from mpi_landscape.cli import parse_config
from mpi_landscape.interpolate import build_parser, interpolation_config, main
from mpi_landscape.store import read_directions, read_surface
from mpi_landscape.surface import SurfaceConfig

DEMO = ["--model", "demo_mlp", "--dataset", "demo"]
LINE = "--x=-0.5:1.5:9"  # α = 0 at index 2, α = 1 at index 6


@pytest.fixture(scope="module")
def three_models(tmp_path_factory) -> list[str]:
    """Three demo networks trained from different seeds (so their BatchNorm statistics differ too)."""
    folder = tmp_path_factory.mktemp("minima")
    paths = []
    for seed in (1, 2, 3):
        path = str(folder / f"seed{seed}.t7")
        models.save_checkpoint(path, train_demo_net(seed=seed, steps=40))
        paths.append(path)
    return paths


def interpolate(tmp_path, *args: str):
    surf = tmp_path / "line.h5"
    proc = run_module("mpi_landscape.interpolate", *DEMO, *args, "--surf_file", str(surf),
                      "--dir_file", str(tmp_path / "dir.h5"), ranks=2)
    assert proc.returncode == 0, proc.stderr
    return read_surface(str(surf)), proc


def test_states_line_ends_are_the_two_models(three_models, tmp_path):
    a, b, _ = three_models
    surface, _ = interpolate(tmp_path, "--model_file", a, "--model_file2", b, LINE)
    assert surface.done.all() and surface.x[2] == 0.0 and surface.x[6] == 1.0
    for split in ("train", "test"):  # --splits train,test is the default here
        loss = surface.metrics[f"{split}_loss"]
        assert loss[2] == pytest.approx(demo_loss(demo_state(a), split), rel=1e-5)
        assert loss[6] == pytest.approx(demo_loss(demo_state(b), split), rel=1e-5)
        assert loss[4] > 1.05 * min(loss[2], loss[6])  # a barrier between two separately trained nets
    directions = read_directions(str(tmp_path / "dir.h5"))
    assert directions.attrs["dir_type"] == "states" and directions.y is None


def test_weights_line_keeps_the_first_models_batchnorm_statistics(three_models, tmp_path):
    """With --dir_type weights, α = 1 is B's parameters with A's running statistics, not B:
    this is why the paper (and this command's default) interpolates the states."""
    a, b, _ = three_models
    surface, _ = interpolate(tmp_path, "--model_file", a, "--model_file2", b, LINE,
                             "--dir_type", "weights", "--splits", "train")
    loss = surface.metrics["train_loss"]
    hybrid = {k: (v if k.endswith(("running_mean", "running_var", "num_batches_tracked"))
                  else demo_state(b)[k]) for k, v in demo_state(a).items()}
    assert loss[2] == pytest.approx(demo_loss(demo_state(a), "train"), rel=1e-5)
    assert loss[6] == pytest.approx(demo_loss(hybrid, "train"), rel=1e-5)
    assert abs(loss[6] - demo_loss(demo_state(b), "train")) > 1e-3


def test_plane_through_three_models_and_resume(three_models, tmp_path):
    a, b, c = three_models
    args = ["--model_file", a, "--model_file2", b, "--model_file3", c, "--x=0:1:2", "--splits", "test"]
    surface, _ = interpolate(tmp_path, *args)
    loss = surface.metrics["test_loss"]  # loss[iy, ix]; --y defaults to --x
    assert loss.shape == (2, 2) and surface.done.all()
    assert loss[0, 0] == pytest.approx(demo_loss(demo_state(a), "test"), rel=1e-5)
    assert loss[0, 1] == pytest.approx(demo_loss(demo_state(b), "test"), rel=1e-5)
    assert loss[1, 0] == pytest.approx(demo_loss(demo_state(c), "test"), rel=1e-5)
    again, proc = interpolate(tmp_path, *args)  # the same command again computes nothing
    assert "surface: 0 points" in proc.stdout
    np.testing.assert_array_equal(again.metrics["test_loss"], loss)


def test_interpolation_defaults_and_refusals():
    config = parse_config(build_parser(), SurfaceConfig, ["--model_file", "a.t7", "--model_file2", "b.t7"])
    assert (config.dir_type, config.x, config.split_list) == ("states", "-0.5:1.5:401", ["train", "test"])
    assert interpolation_config(config) == config
    assert config.resolved_dir_file() == "a.t7_b.t7_states.h5"  # the reference's name for this command
    plane = interpolation_config(parse_config(build_parser(), SurfaceConfig,
                                              ["--model_file", "a", "--model_file2", "b",
                                               "--model_file3", "c", "--x=0:1:3"]))
    assert plane.y == "0:1:3"
    with pytest.raises(LandscapeError, match="--model_file2"):
        interpolation_config(SurfaceConfig(model_file="a.t7"))
    with pytest.raises(LandscapeError, match="--model_file3"):
        interpolation_config(SurfaceConfig(model_file="a", model_file2="b", y="0:1:3"))


def test_user_error_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main([*DEMO, "--model_file", str(tmp_path / "a.t7")])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --model_file and --model_file2 are required: the two models at α = 0 and α = 1"]
