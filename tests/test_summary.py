"""The landscape in numbers: every figure checked on surfaces whose answer is known in closed form,
first on arrays, then through real surface files and the summary command."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import run_module
from surface_files import write_reference_surface, write_surface
from mpi_landscape import summary
from mpi_landscape.summary import BEYOND, INSIDE, UNKNOWN
from mpi_landscape.summary.report import COLUMNS, SET_COLUMNS, in_units, summarize
from mpi_landscape.store import read_surface

ROOT = Path(__file__).resolve().parent.parent
EPS = 0.1


def grid(nx=101, ny=81, span=1.0):
    return np.linspace(-span, span, nx), np.linspace(-span, span, ny)


def quadratic(x, y, hxx, hyy, hxy=0.0, offset=0.3):
    """offset + ½ [α β] H [α β]ᵀ with H = [[hxx, hxy], [hxy, hyy]]."""
    xx, yy = np.meshgrid(x, y)
    return offset + 0.5 * (hxx * xx ** 2 + hyy * yy ** 2) + hxy * xx * yy


# ---------------------------------------------------------------- the numbers, on arrays


def test_bowl_radius_along_each_eigen_axis_is_sqrt_2eps_over_lambda():
    x, y = grid()
    lam_x, lam_y = 4.0, 1.0
    z = quadratic(x, y, lam_x, lam_y)
    cy, cx = summary.centre_index(x, y)
    threshold = z[cy, cx] + EPS
    for side in summary.axis_radii(x, z[cy], cx, threshold):
        assert side.status == INSIDE
        assert side.value == pytest.approx(np.sqrt(2 * EPS / lam_x), abs=2e-3)
    for side in summary.axis_radii(y, z[:, cx], cy, threshold):
        assert side.value == pytest.approx(np.sqrt(2 * EPS / lam_y), abs=2e-3)


def test_bowl_radius_averaged_over_directions_and_basin_area():
    x, y = grid()
    lam_x, lam_y = 4.0, 1.0
    z = quadratic(x, y, lam_x, lam_y)
    centre = summary.centre_index(x, y)
    rays = summary.ray_radii(x, y, z, centre, z[centre] + EPS)
    angles = 2 * np.pi * np.arange(summary.RAY_DIRECTIONS) / summary.RAY_DIRECTIONS
    exact = np.sqrt(2 * EPS / (lam_x * np.cos(angles) ** 2 + lam_y * np.sin(angles) ** 2))
    np.testing.assert_allclose([r.value for r in rays], exact, atol=2e-3)
    region = summary.basin_region(z, centre, z[centre] + EPS)
    area = summary.basin_area(z, region)
    ellipse = np.pi * np.sqrt(2 * EPS / lam_x) * np.sqrt(2 * EPS / lam_y) / (2 * 2)
    assert area.status == INSIDE
    assert area.value == pytest.approx(ellipse, rel=0.03)


def test_rotated_bowl_curvature_and_eigenvalues_and_all_points_convex():
    x, y = grid(41, 31)
    rotation = np.array([[np.cos(0.6), -np.sin(0.6)], [np.sin(0.6), np.cos(0.6)]])
    hessian = rotation @ np.diag([5.0, 0.5]) @ rotation.T
    z = quadratic(x, y, hessian[0, 0], hessian[1, 1], hessian[0, 1])
    curvature = summary.centre_curvature(x, y, z)
    assert (curvature.xx, curvature.yy, curvature.xy) == pytest.approx(
        (hessian[0, 0], hessian[1, 1], hessian[0, 1]), rel=1e-6)
    assert curvature.eigenvalues == pytest.approx((5.0, 0.5), rel=1e-6)
    mask = summary.convex_mask(x, y, z)
    assert np.isnan(mask[0]).all() and np.isnan(mask[:, -1]).all()  # edges: no 3×3 neighbourhood
    assert summary.convex_share(mask) == 1.0
    assert summary.local_minima(z).sum() == 1


def test_egg_crate_has_nine_minima_and_its_known_convex_share():
    # f = -cos 2πα - cos 2πβ: minima at the integers, Hessian diag(4π² cos 2πα, 4π² cos 2πβ), so the
    # discrete Hessian is PSD exactly where cos 2πα ≥ 0 and cos 2πβ ≥ 0 (no grid point at a zero)
    x = y = np.linspace(-1.5, 1.5, 31)
    xx, yy = np.meshgrid(x, y)
    z = -np.cos(2 * np.pi * xx) - np.cos(2 * np.pi * yy)
    assert summary.local_minima(z).sum() == 9
    positive = np.cos(2 * np.pi * x[1:-1]) >= 0
    assert summary.convex_share(summary.convex_mask(x, y, z)) == pytest.approx(positive.mean() ** 2)
    assert 0.2 < positive.mean() ** 2 < 0.3  # a quarter of the plane, as in the continuum


def test_double_well_barrier_height_and_location():
    alpha = np.linspace(-0.5, 1.5, 201)
    height = 0.7
    z = 0.2 + 16 * height * alpha ** 2 * (alpha - 1) ** 2  # wells at 0 and 1, peak 0.2 + height at 0.5
    found = summary.barrier(alpha, z)
    assert found.height == pytest.approx(height, rel=1e-9)
    assert found.at == pytest.approx(0.5)
    assert summary.barrier(alpha, 0.2 + alpha).height == 0.0  # a path that only climbs has none


def test_basin_leaving_the_grid_is_beyond_not_the_edge():
    x, y = grid(21, 21)
    z = quadratic(x, y, 0.01, 0.01)  # radius √20 ≈ 4.5, far outside [-1, 1]
    centre = summary.centre_index(x, y)
    sides = summary.axis_radii(x, z[centre[0]], centre[1], z[centre] + EPS)
    assert [s.status for s in sides] == [BEYOND, BEYOND]
    assert summary.combine(list(sides)).text() == ">1"
    assert summary.basin_area(z, summary.basin_region(z, centre, z[centre] + EPS)).status == BEYOND


def test_diverged_point_stops_a_ray_and_unfinished_point_makes_it_unknown():
    distances = np.linspace(0, 1, 11)
    values = 0.1 * distances
    stopped = values.copy()
    stopped[4] = np.inf
    crossing = summary.first_crossing(distances, stopped, 0.05)
    assert crossing.status == INSIDE and crossing.value == pytest.approx(0.3)  # the last point below
    gap = values.copy()
    gap[2] = np.nan
    assert summary.first_crossing(distances, gap, 0.05).status == UNKNOWN


def test_curve_set_mean_and_spread_ignore_non_finite_values():
    curves = np.array([[1.0, 2.0, np.inf], [3.0, 4.0, 5.0]])
    found = summary.curve_set(curves)
    np.testing.assert_allclose(found.mean, [2.0, 3.0, 5.0])
    np.testing.assert_allclose(found.std, [1.0, 1.0, 0.0])


# ---------------------------------------------------------------- files and the command


def bowl_metrics(x, y, lam_x=4.0, lam_y=1.0):
    z = quadratic(x, y, lam_x, lam_y)
    return {"train_loss": z, "train_acc": 100 - 10 * z, "test_loss": z + 0.05, "test_acc": 90 - 10 * z}


def test_nan_and_diverged_points_are_excluded_and_counted(tmp_path):
    x, y = grid(41, 41)
    metrics = bowl_metrics(x, y)
    metrics["train_nonfinite"] = np.zeros((41, 41))
    metrics["train_nonfinite"][5, 5] = 0.02          # some outputs were not finite: diverged
    metrics["train_loss"][30, 30] = np.nan           # a diverged point stored as NaN
    metrics["train_loss"][0, 0] = -50.0              # diverged (nonfinite share) and absurdly low
    metrics["train_nonfinite"][0, 0] = 1.0
    done = np.ones((41, 41), dtype=bool)
    done[40, :] = False                              # an unfinished row
    path = write_surface(tmp_path / "s.h5", x, y, done=done, metrics=metrics)
    row, _ = summarize(path, read_surface(path), "train_loss", EPS)
    assert row["diverged"] == 3
    assert row["done"] == pytest.approx(40 / 41)
    assert row["min_loss"] == pytest.approx(0.3)     # the -50 of a diverged point is not a minimum
    assert row["radius_x"].value == pytest.approx(np.sqrt(2 * EPS / 4.0), abs=2e-3)


def test_reference_layout_file_with_unfinished_points(tmp_path):
    # the reference's bowl: 0.2 + α² + 3β² + 0.5α, minimum at α = -0.25, -1 where unfinished
    x, y = np.linspace(-1, 1, 41), np.linspace(-1, 1, 11)
    path = write_reference_surface(str(tmp_path / "ref.h5"), x, y, unfinished=[(10, 40), (0, 0)])
    row, _ = summarize(path, read_surface(path), "train_loss", EPS)
    assert row["done"] == pytest.approx(1 - 2 / 451)
    assert row["centre_train_loss"] == pytest.approx(0.2)
    assert (row["min_x"], row["min_y"], row["min_loss"]) == pytest.approx((-0.25, 0.0, 0.2 + 0.0625 - 0.125))
    assert (row["curv_xx"], row["curv_yy"], row["curv_xy"]) == pytest.approx((2.0, 6.0, 0.0))
    assert row["local_minima"] == 1


def test_reference_1d_interpolation_file_asked_for_as_interpolation(tmp_path):
    # the reference's 1D files: no done mask, no provenance, -1 where unfinished
    alpha = np.linspace(-0.5, 1.5, 41)
    well = 0.2 + 16 * 0.4 * alpha ** 2 * (alpha - 1) ** 2
    path = str(tmp_path / "ref_1d.h5")
    with h5py.File(path, "w") as f:
        f["dir_file"] = "ref_dirs.h5"
        f["xcoordinates"] = alpha
        f["train_loss"] = np.where(alpha > 1.42, -1, well)
        f["test_loss"] = np.where(alpha > 1.42, -1, well + 0.1)
    surface = read_surface(path)
    assert summarize(path, surface, "train_loss", EPS)[0]["kind"] == "1d"
    row, _ = summarize(path, surface, "train_loss", EPS, interpolation=True)
    assert row["kind"] == "interpolation" and row["done"] == pytest.approx(39 / 41)
    assert (row["barrier"], row["barrier_at"]) == pytest.approx((0.4, 0.5))
    assert row["gap_loss_end"] == pytest.approx(0.1) and "gap_acc_end" not in row


def test_a_grid_without_the_origin_takes_the_nearest_point_and_says_so(tmp_path):
    x, y = np.linspace(-1, 1, 10), np.linspace(-1, 1, 11)
    path = write_surface(tmp_path / "even.h5", x, y)
    row, notes = summarize(path, read_surface(path), "train_loss", EPS)
    assert notes == [f"{path}: no grid point at the origin; the nearest, (α = {x[4]:g}, β = 0), "
                     f"is used as the centre"]
    assert row["centre_train_loss"] == pytest.approx(0.2 + x[4] ** 2 + 0.5 * x[4])


def test_command_prints_and_writes_every_documented_column_with_units(tmp_path):
    x, y = grid(41, 41)
    metrics = {**bowl_metrics(x, y), "max_eig": np.full((41, 41), 12.5), "min_eig": np.full((41, 41), -0.5)}
    bowl = write_surface(tmp_path / "bowl.h5", x, y, metrics=metrics)
    alpha = np.linspace(-0.5, 1.5, 41)
    well = 0.2 + 16 * 0.7 * alpha ** 2 * (alpha - 1) ** 2
    line = write_surface(tmp_path / "interp.h5", alpha,
                         metrics={"train_loss": well, "train_acc": 100 - 10 * well,
                                  "test_loss": well + 0.3, "test_acc": 95 - 10 * well},
                         config={"model": "demo_mlp", "model_file": "a.t7", "model_file2": "b.t7"})
    result = run_module("mpi_landscape.summary", bowl, line, "--markdown",
                        "--json", str(tmp_path / "s.json"), "--csv", str(tmp_path / "s.csv"))
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0]
    for column in in_units(COLUMNS, "train_loss"):
        name = column.name.replace("<split>", "train")
        assert (f"{name} [{column.unit}]" if column.unit else name) in header
    rows = list(csv.DictReader(open(tmp_path / "s.csv", encoding="utf-8")))
    assert rows[0]["radius_y_status"] == "inside"
    assert float(rows[0]["radius_y"]) == pytest.approx(np.sqrt(2 * EPS / 1.0), abs=3e-3)
    assert float(rows[0]["eig_max"]) == pytest.approx(4.0) and float(rows[0]["hessian_max_eig"]) == 12.5
    assert rows[1]["kind"] == "interpolation" and rows[0]["barrier"] == ""
    assert float(rows[1]["barrier"]) == pytest.approx(0.7) and float(rows[1]["barrier_at"]) == 0.5
    assert float(rows[1]["gap_loss_start"]) == pytest.approx(0.3)
    assert float(rows[1]["gap_acc_end"]) == pytest.approx(5.0)
    document = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))
    units = {c["name"]: c["unit"] for c in document["columns"]}
    assert units["radius_x"] == "α" and units["curv_xx"] == "loss/unit²" and units["centre_test_acc"] == "%"
    assert document["rows"][0]["basin_area"]["status"] == "inside"


def test_docs_page_lists_every_column_and_its_unit():
    page = (ROOT / "docs" / "summary.md").read_text(encoding="utf-8")
    for column in in_units((*COLUMNS, *SET_COLUMNS), "train_loss"):  # the default metric's units
        assert re.search(rf"^\| `{re.escape(column.name)}` \| {re.escape(column.unit or '–')} \|", page, re.M), \
            column.name


def test_set_of_1d_random_directions_gives_the_distribution_of_radii(tmp_path):
    x = np.linspace(-1, 1, 101)
    curvatures = [1.0, 2.0, 4.0]
    paths = [write_surface(tmp_path / f"line{k}.h5", x,
                           metrics={"train_loss": 0.1 + 0.5 * lam * x ** 2, "train_acc": 90 + 0 * x})
             for k, lam in enumerate(curvatures)]
    result = run_module("mpi_landscape.summary", *paths, "--json", str(tmp_path / "s.json"))
    assert result.returncode == 0, result.stderr
    assert "sets of 1D random directions" in result.stdout
    chosen = run_module("mpi_landscape.summary", *paths, "--columns", "radius_x,file")
    assert chosen.stdout.splitlines()[0].split() == ["radius_x", "[α]", "file"]
    (found,) = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))["sets"]
    radii = np.sqrt(2 * EPS / np.array(curvatures))
    assert found["files"] == 3
    assert found["radius_mean"] == pytest.approx(radii.mean(), abs=2e-3)
    assert found["radius_std"] == pytest.approx(radii.std(), abs=2e-3)
    assert found["radius_min"] == pytest.approx(radii.min(), abs=2e-3)
    np.testing.assert_allclose(found["mean"], 0.1 + 0.5 * np.mean(curvatures) * x ** 2)


@pytest.mark.parametrize("args, message", [
    (["--metric", "val_loss"], "no array 'val_loss'"),
    (["--level", "0"], "--level 0"),
    (["--csv", "missing_folder/s.csv"], "does not exist"),
    (["--columns", "file,barrier"], "no column barrier"),
])
def test_bad_input_is_one_error_line_and_exit_2(tmp_path, args, message):
    x, y = grid(11, 11)
    path = write_surface(tmp_path / "s.h5", x, y)
    result = run_module("mpi_landscape.summary", path, *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    with h5py.File(path, "r") as f:  # nothing touched
        assert "train_loss" in f


def test_a_grid_too_small_for_second_differences_is_refused(tmp_path):
    from mpi_landscape.errors import LandscapeError

    x, y = grid(11, 2)
    path = write_surface(tmp_path / "s.h5", x, y)
    with pytest.raises(LandscapeError, match="at least 3 points on each axis"):
        summarize(path, read_surface(path), "train_loss", EPS)


# ---------------------------------------------------------------- the figures carry the numbers


def test_compare_panels_carry_the_key_figures(tmp_path, capsys, monkeypatch):
    from mpi_landscape import plot
    from mpi_landscape.views.plot_data import key_figures, short_name, test_error_text
    from mpi_landscape.views.plot_figures import figure_compare

    x, y = grid(41, 41)
    sharp = write_surface(tmp_path / "sharp.h5", x, y, metrics=bowl_metrics(x, y, 8.0, 2.0))
    flat = write_surface(tmp_path / "flat.h5", x, y, metrics=bowl_metrics(x, y, 2.0, 0.5))
    texts = [key_figures(p, read_surface(p), "train_loss") for p in (sharp, flat)]
    radius = summarize(sharp, read_surface(sharp), "train_loss", EPS)[0]["radius_mean"].value
    assert texts[0] == f"r̄ {radius:.2g} · λmax 8 · convex 100%"
    drawn = []
    monkeypatch.setattr(plot, "figure_compare",
                        lambda *args, **kwargs: drawn.append(figure_compare(*args, **kwargs)) or drawn[-1])

    def titles(*flags):
        assert plot.main([sharp, flat, "--compare", "--annotate", "--format", "png",
                          "--out", str(tmp_path / "cmp"), *flags]) == 0
        assert capsys.readouterr().out.split() == [str(tmp_path / "cmp_train_loss_2dcompare.png")]
        return [ax.get_title() for ax in drawn[-1].axes[:2]]

    name = short_name(read_surface(sharp), sharp)  # the same checkpoint: told apart by file
    errors = [test_error_text(read_surface(p)) for p in (sharp, flat)]  # the paper's subtitle, then the figures
    assert titles() == [f"{name} [sharp.h5]\n{errors[0]}\n{texts[0]}", f"{name} [flat.h5]\n{errors[1]}\n{texts[1]}"]
    assert titles("--labels", "sharp,flat") == [f"sharp\n{errors[0]}\n{texts[0]}", f"flat\n{errors[1]}\n{texts[1]}"]
    with pytest.raises(SystemExit) as stopped:
        plot.main([sharp, "--annotate"])
    assert stopped.value.code == 2 and "add --compare" in capsys.readouterr().err


def test_band_of_1d_random_directions_is_mean_plus_minus_std(tmp_path, capsys):
    from matplotlib.collections import PolyCollection

    from mpi_landscape import plot
    from mpi_landscape.views.plot_figures import figure_band

    x = np.linspace(-1, 1, 21)
    paths = [write_surface(tmp_path / f"line{k}.h5", x,
                           metrics={"train_loss": 0.1 + lam * x ** 2, "train_acc": 90 + 0 * x})
             for k, lam in enumerate((1.0, 3.0))]
    mean, std = 0.1 + 2.0 * x ** 2, 1.0 * x ** 2
    fig = figure_band(read_surface(paths[0]), summary.curve_set(np.stack([0.1 + x ** 2, 0.1 + 3 * x ** 2])),
                      2, "train_loss", "two directions")
    (band,) = [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]
    vertices = band.get_paths()[0].vertices
    assert vertices[:, 1].max() == pytest.approx((mean + std).max())
    assert vertices[:, 1].min() == pytest.approx((mean - std).min())
    np.testing.assert_allclose(fig.axes[0].lines[-1].get_ydata(), mean)
    assert plot.main([*paths, "--band", "--format", "png", "--out", str(tmp_path / "lines")]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "lines_train_loss_1d_band.png")]
    with pytest.raises(SystemExit) as stopped:
        plot.main([*paths, "--band", "--labels", "a,b"])
    assert stopped.value.code == 2 and "leave out --labels or --band" in capsys.readouterr().err


# ---------------------------------------------------------------- the worked comparison, shrunk


def test_worked_comparison_script_runs_shrunk(tmp_path):
    """docs/examples/batch_size_comparison.sh end to end on tiny sizes: four trainings, four 2D
    surfaces, two interpolations, two sets of 1D directions, their numbers and figures."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHON": sys.executable, "NP": "1", "EPOCHS": "2", "SMALL_BATCH": "64",
           "LARGE_BATCH": "1500", "GRID": "-1:1:5", "LINE": "-0.5:1.5:9", "SEEDS": "1 2",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    out = tmp_path / "cmp"
    result = subprocess.run(["bash", str(ROOT / "docs" / "examples" / "batch_size_comparison.sh"), str(out)],
                            env=env, text=True, capture_output=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    kinds = [row["kind"] for row in document["rows"]]
    assert kinds == ["2d"] * 4 + ["interpolation"] * 2
    assert all(row["barrier"] is not None and row["barrier"] >= 0 for row in document["rows"][4:])
    assert all(isinstance(row["eig_max"], float) for row in document["rows"][:4])
    assert "| file | kind |" in result.stdout and "sets of 1D random directions" in result.stdout
    for bs in (64, 1500):
        (found,) = json.loads((out / f"lines_bs{bs}.json").read_text(encoding="utf-8"))["sets"]
        assert found["files"] == 2 and len(found["mean"]) == 5
        assert (out / f"lines_bs{bs}_train_loss_1d_band.png").stat().st_size > 0
    assert (out / "comparison_train_loss_2dcompare.png").stat().st_size > 0


def test_columns_in_the_metrics_units_name_them(tmp_path, capsys):
    from mpi_landscape.summary.command import main

    x, y = grid(21, 21)
    loss = quadratic(x, y, 4.0, 1.0) + 6.2
    path = write_surface(tmp_path / "lm.h5", x, y, metrics={"train_loss": loss, "train_perplexity": np.exp(loss)})
    assert main([path, "--metric", "train_perplexity", "--columns", "min_loss,level,curv_xx,eig_max"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split()
    assert header == ["min_loss", "[perplexity]", "level", "[perplexity]", "curv_xx", "[perplexity/unit²]",
                      "eig_max", "[perplexity/unit²]"]
    assert main([path, "--columns", "min_loss"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split() == ["min_loss", "[loss]"]
