"""Gallery checks of the trajectory, 3D, VTK, ParaView and weight-histogram figures.

Each figure is made from a small real file (a surface written the way a run
writes it, a projection in the reference's layout, checkpoints saved by the
project's own trainer code) and checked on what a reader sees: the path's
markers are drawn and not covered (the pixels change when a marker is hidden),
the rendered basin has more than one colour, no two text boxes overlap and none
leaves the canvas, tick and colour-bar labels are round numbers in the metric's
own units. VTK files and pictures are read back with VTK's own readers.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkIOImage import vtkPNGReader
from vtkmodules.vtkIOXML import vtkXMLPolyDataReader

from mpi_landscape import vtk as vtk_command
from mpi_landscape.store import read_projection, read_surface
from mpi_landscape.views.figure_trajectory import figure_trajectory, figure_trajectory_3d
from mpi_landscape.views.plot_figures import Scale, column_style, figure_2d
from mpi_landscape.views.plot_grid import sample_bilinear
from mpi_landscape.views.plot_render import MARK_COLOURS, picture_grid, render_png
from mpi_landscape.views.vtk_export import surface_grid
from figure_checks import all_axes, assert_bar_spans_axes, assert_legible
from surface_files import write_projection, write_surface

PCA_CONFIG = {"model": "resnet56", "model_file": "model_300.t7", "dir_type": "weights"}


# ---------------------------------------------------------------- what a reader sees


def pixels(fig) -> np.ndarray:
    """The figure drawn by Agg, as an (h, w, 4) uint8 array (row 0 at the top)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def visible_at(fig, artist, ax, xy, shown: np.ndarray, radius: int = 3) -> bool:
    """Whether hiding ``artist`` changes the pixels (``shown``: the figure drawn) around data point
    ``xy`` of ``ax``: it is drawn there and nothing covers it."""
    px, py = ax.transData.transform(xy)
    row, col = int(round(shown.shape[0] - py)), int(round(px))
    window = np.s_[max(row - radius, 0):row + radius + 1, max(col - radius, 0):col + radius + 1]
    artist.set_visible(False)
    try:
        hidden = pixels(fig)
    finally:
        artist.set_visible(True)
    return bool((shown[window] != hidden[window]).any())


def artists(fig, gid: str) -> list:
    """Every line of every axes tagged ``gid`` (a marker kind), with its axes."""
    return [(ax, line) for ax in all_axes(fig) for line in ax.lines if line.get_gid() == gid]


def distinct_colours(image: np.ndarray, box=(0.3, 0.7, 0.3, 0.7)) -> int:
    """How many colours the central region (fractions of height and width) of an image holds."""
    h, w = image.shape[:2]
    region = image[int(box[0] * h):int(box[1] * h), int(box[2] * w):int(box[3] * w), :3].astype(np.uint32)
    return len(np.unique(region[..., 0] << 16 | region[..., 1] << 8 | region[..., 2]))


def is_round(value: float) -> bool:
    """1, 2 or 5 times a power of ten, or a number with at most two significant digits."""
    if value == 0:
        return True
    mantissa = abs(value) / 10.0 ** np.floor(np.log10(abs(value)))
    return bool(np.isclose(mantissa * 10, round(mantissa * 10), atol=1e-6))


# ---------------------------------------------------------------- a PCA trajectory


def pca_files(folder):
    """A surface in PCA coordinates 15.7 × 6 wide, steep on one side, and a 300-epoch path
    spiralling in whose last half (both learning-rate drops) lies within 0.1 of the end."""
    x, y = np.linspace(-1.7, 14.0, 41), np.linspace(-3.0, 3.0, 21)
    xx, yy = np.meshgrid(x, y)
    loss = 0.02 + 0.04 * xx ** 2 + 0.3 * yy ** 2 + 2.0 * np.exp(-(xx + 2.5))  # a wall at small α
    surf = write_surface(folder / "pca.h5", x, y, metrics={"train_loss": loss, "train_acc": 100 - loss},
                         config=PCA_CONFIG)
    epochs = np.arange(0, 301, 5)
    decay = np.exp(-epochs / 25.0)
    px, py = 13.0 * decay, 2.5 * np.sin(epochs / 12.0) * decay
    px[-1], py[-1] = 0.0, 0.0
    proj = write_projection(folder / "proj.h5", px, py, epochs=epochs, drops=np.array([150, 225]))
    return surf, proj


def test_trajectory_figure_reads_at_column_width(tmp_path):
    surf, proj = pca_files(tmp_path)
    surface, projection = read_surface(surf), read_projection(proj)
    with column_style():
        fig = figure_trajectory(surface, "train_loss", projection, Scale(0.02, 10, log=True),
                                "resnet56", (0.81, 0.09))
    ax = fig.axes[0]
    box = ax.get_position()
    fig_w, fig_h = fig.get_size_inches()
    assert box.height * fig_h >= 0.45 * box.width * fig_w, "the axes are a thin strip"
    assert_bar_spans_axes(fig, ax)
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    assert x0 < projection.xcoord.min() and x1 > projection.xcoord.max()
    assert y0 < projection.ycoord.min() and y1 > projection.ycoord.max()
    assert (x1 - x0) <= 1.5 * np.ptp(projection.xcoord)
    assert (y1 - y0) <= max(1.5 * np.ptp(projection.ycoord), 0.3 * (x1 - x0))  # a short side kept readable
    assert_legible(fig)

    # Start, end and every drop are visible: in the main axes or in the zoom of the path's end.
    shown = pixels(fig)
    for gid, indices in (("start", [0]), ("end", [-1]), ("lr_drop", list(projection.drop_indices()))):
        for index in indices:
            xy = projection.xcoord[index], projection.ycoord[index]
            seen = [visible_at(fig, line, ax_, xy, shown) for ax_, line in artists(fig, gid)
                    if _inside(ax_, xy)]
            assert any(seen), f"the {gid} marker of checkpoint {index} is covered or missing"
    drops, = [line for _, line in artists(fig, "lr_drop")][:1]
    end, = [line for _, line in artists(fig, "end")][:1]
    assert drops.get_zorder() > end.get_zorder()  # drops drawn above the end marker
    zoom, = [a for a in ax.child_axes if getattr(a, "_colorbar", None) is None]  # the zoom on the end's cluster
    zx, zy = zoom.get_xlim(), zoom.get_ylim()
    tail = projection.xcoord[30:], projection.ycoord[30:]  # from the first drop (epoch 150) on
    assert zx[0] < tail[0].min() and zx[1] > tail[0].max() and zy[0] < tail[1].min() and zy[1] > tail[1].max()
    assert np.ptp(zx) < 0.1 * (x1 - x0)


def _inside(ax, xy) -> bool:
    (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
    return x0 <= xy[0] <= x1 and y0 <= xy[1] <= y1


def test_trajectory_contour_labels_are_few_and_apart(tmp_path):
    surf, proj = pca_files(tmp_path)
    with column_style():
        fig = figure_trajectory(read_surface(surf), "train_loss", read_projection(proj),
                                Scale(0.02, 10, log=True), "", None)
    labels = [t for t in fig.axes[0].texts if t.get_text()]
    assert 2 <= len(labels) <= 8
    pixels(fig)
    frame = fig.axes[0].get_window_extent()
    for label in labels:
        box = label.get_window_extent()
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, \
            f"contour label {label.get_text()} is clipped at the frame"
    assert_legible(fig)


def test_trajectory_3d_draws_the_path_on_the_surface(tmp_path):
    surf, proj = pca_files(tmp_path)
    surface, projection = read_surface(surf), read_projection(proj)
    with column_style():
        fig = figure_trajectory_3d(surface, "train_loss", projection, Scale(0.02, 10, log=True), "", None)
    ax = fig.axes[0]
    path, = [line for line in ax.lines if line.get_gid() == "path"]
    px, py, pz = (np.asarray(v) for v in path.get_data_3d())
    assert len(px) > 3 * len(projection.xcoord)  # sampled along the surface, not chords between checkpoints
    loss = 0.02 + 0.04 * px ** 2 + 0.3 * py ** 2 + 2.0 * np.exp(-(px + 2.5))
    np.testing.assert_allclose(pz, np.log10(loss), atol=0.05)  # on the (log) height, not under it
    shown = pixels(fig)
    for gid in ("start", "end", "lr_drop", "path"):
        line, = [line for line in ax.lines if line.get_gid() == gid]
        line.set_visible(False)
        hidden = pixels(fig)
        line.set_visible(True)
        assert (shown != hidden).any(axis=2).sum() > 4, f"the 3D {gid} is hidden"


# ---------------------------------------------------------------- matplotlib 3D


def peaks_surface(folder, n: int = 5):
    x = np.linspace(-1, 1, n)
    xx, yy = np.meshgrid(x, x)
    loss = 0.05 + 4 * (xx ** 2 + yy ** 2) ** 2
    loss[0, 0], loss[-1, -1] = 167.0, 210.0
    return write_surface(folder / "peaks.h5", x, x, metrics={"train_loss": loss}), loss


def test_3d_surface_colours_each_face_by_its_own_mean(tmp_path):
    path, loss = peaks_surface(tmp_path)
    scale = Scale(float(loss.min()), float(loss.max()), log=True)
    fig = figure_2d(read_surface(path), "train_loss", "surface", scale, "")
    poly = fig.axes[0].collections[0]
    faces = np.log10(loss)
    means = 10 ** ((faces[:-1, :-1] + faces[1:, :-1] + faces[:-1, 1:] + faces[1:, 1:]) / 4)
    expected = matplotlib.colormaps[scale.cmap](scale.norm()(means.ravel()))
    drawn = np.asarray(poly._facecolor3d)[:, :4]
    assert len(drawn) == len(expected)
    order = lambda c: c[np.lexsort(c.T[::-1])]  # noqa: E731  (faces are drawn in depth order)
    np.testing.assert_allclose(order(drawn), order(expected), atol=1e-6)


def test_3d_surface_defaults_to_log_height_with_a_labelled_z_axis(tmp_path):
    x = np.linspace(-1, 1, 21)
    xx, yy = np.meshgrid(x, x)
    loss = 0.01 + 30 * (xx ** 2 + 0.5 * yy ** 2) ** 1.5
    surf = write_surface(tmp_path / "s.h5", x, x, metrics={"train_loss": loss})
    with column_style():
        fig = figure_2d(read_surface(surf), "train_loss", "surface",
                        Scale(float(loss.min()), float(loss.max()), log=True), "")
    ax = fig.axes[0]
    assert ax.get_zlabel().startswith("loss")
    z0, z1 = ax.get_zlim()
    assert z1 - z0 == pytest.approx(np.log10(loss.max() / loss.min()), rel=0.05)  # log10 height
    pixels(fig)
    ticks = [t for t in ax.zaxis.get_majorticklocs() if z0 - 1e-9 <= t <= z1 + 1e-9]
    assert len(ticks) >= 3
    labels = [ax.zaxis.get_major_formatter()(t) for t in ticks]
    assert all(is_round(float(label.replace("−", "-"))) for label in labels), labels
    image = pixels(fig)
    assert distinct_colours(image) > 20  # the basin is not one colour


# ---------------------------------------------------------------- VTK: vtk --png and the exported path


def png_pixels(path: str) -> np.ndarray:
    """A PNG read back with VTK's reader, as an (h, w, 3) array (row 0 at the top)."""
    reader = vtkPNGReader()
    reader.SetFileName(path)
    reader.Update()
    image = reader.GetOutput()
    w, h, _ = image.GetDimensions()
    return vtk_to_numpy(image.GetPointData().GetScalars())[:, :3].reshape(h, w, 3)[::-1].astype(int)


def colour_share(image: np.ndarray, rgb, tolerance: int = 10) -> int:
    """How many pixels have (about) this colour."""
    return int((np.abs(image - np.array(rgb)) <= tolerance).all(axis=2).sum())


def test_vtk_png_has_axes_round_ticks_in_loss_and_a_marked_path(tmp_path):
    surf, proj = pca_files(tmp_path)
    surface, projection = read_surface(surf), read_projection(proj)
    grid = surface_grid(surface, "train_loss", log=True)
    png = str(tmp_path / "pca.png")
    scene = render_png(grid, png, projection, size=(640, 500), title="loss",
                       axis_titles=("PC1", "PC2", "loss"))
    for name in ("x", "y", "z"):
        assert len(scene.axis_ticks[name]) >= 3 and scene.axis_titles[name]
        assert all(is_round(float(label)) for _, label in scene.axis_ticks[name]), scene.axis_ticks[name]
    for ticks in (scene.axis_ticks["z"], scene.colour_ticks):  # in loss, at their ln(loss + 0.1) height
        assert len(ticks) >= 3
        for position, label in ticks:
            assert is_round(float(label)) and position == pytest.approx(np.log(float(label) + 0.1))
    assert scene.marks == {"start": 1, "end": 1, "lr_drop": 2}
    image = png_pixels(png)
    assert image.shape == (500, 640, 3)
    assert distinct_colours(image) > 200  # lit and coloured: the basin is not one colour
    for kind, colour in MARK_COLOURS.items():  # every mark is in the picture, none covered
        assert colour_share(image, [round(255 * c) for c in colour]) > 15, f"no {kind} mark in the picture"


def test_vtk_png_of_the_command_defaults_to_the_log_height(tmp_path):
    surf, proj = pca_files(tmp_path)
    paths = vtk_command.run(vtk_command.parse_vtk_config(
        [surf, "--proj_file", proj, "--png", str(tmp_path / "p.png"), "--out", str(tmp_path / "p.vtp")]))
    assert paths[-1] == str(tmp_path / "p.png")
    assert distinct_colours(png_pixels(paths[-1])) > 200
    linear = surface_grid(read_surface(surf), "train_loss")
    assert picture_grid(linear).log  # a loss spanning decades: drawn with the log height
    assert not picture_grid(surface_grid(read_surface(surf), "train_acc")).log


def test_exported_path_follows_the_surface_between_checkpoints(tmp_path):
    surf, every_fifth = pca_files(tmp_path)
    saved = read_projection(every_fifth)
    proj = write_projection(tmp_path / "sparse.h5", saved.xcoord[::5], saved.ycoord[::5],
                            epochs=saved.epochs[::5], drops=np.array([150]))  # long chords: one per 25 epochs
    _, path_vtp = vtk_command.run(vtk_command.parse_vtk_config([surf, "--proj_file", proj, "--log"]))
    reader = vtkXMLPolyDataReader()
    reader.SetFileName(path_vtp)
    reader.Update()
    line = reader.GetOutput()
    xyz = vtk_to_numpy(line.GetPoints().GetData())
    grid = surface_grid(read_surface(surf), "train_loss", log=True)
    middle = (xyz[1:] + xyz[:-1]) / 2  # halfway along each drawn segment
    under = sample_bilinear(grid.x, grid.y, grid.height, middle[:, 0], middle[:, 1])
    span = np.nanmax(grid.height) - np.nanmin(grid.height)
    assert np.nanmax(np.abs(middle[:, 2] - under)) < 0.01 * span  # no chord through hill or valley
    checkpoint = vtk_to_numpy(line.GetPointData().GetArray("checkpoint"))
    assert (checkpoint[checkpoint >= 0] == np.arange(len(read_projection(proj).xcoord))).all()


# ---------------------------------------------------------------- weight histograms (the paper's Fig. 3)


def scaled_checkpoints(folder) -> list[str]:
    """The same demo network saved at two weight scales, as small-batch and large-batch training
    with weight decay leave them: one network, one function (up to scale), different weights."""
    import torch

    import mpi_landscape_models as models

    torch.manual_seed(0)
    net = models.build_model("demo_mlp")
    paths = []
    for name, factor in (("large_weights.t7", 1.0), ("small_weights.t7", 0.25)):
        with torch.no_grad():
            scaled = models.build_model("demo_mlp")
            scaled.load_state_dict({k: v * factor if v.dim() > 1 else v for k, v in net.state_dict().items()})
        models.save_checkpoint(str(folder / name), scaled)
        paths.append(str(folder / name))
    return paths


def test_weight_histograms_show_each_checkpoint_scale(tmp_path, capsys):
    from mpi_landscape import plot
    from mpi_landscape.networks import checkpoint_weights
    from mpi_landscape.views.figure_weights import figure_weights

    large, small = scaled_checkpoints(tmp_path)
    weights = [("bs 128", checkpoint_weights(large)), ("bs 8192", checkpoint_weights(small))]
    assert all(w.ndim > 1 for _, ws in weights for w in ws.values())  # biases and BN left out
    with column_style():
        fig = figure_weights(weights, "weight decay 5e-4")
    ax = fig.axes[0]
    curves = [p for p in ax.patches if p.get_gid() == "weights"]
    assert len(curves) == 2
    rms = [np.sqrt(np.mean(np.concatenate([w.ravel() for w in ws.values()]) ** 2)) for _, ws in weights]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [f"bs 128 (RMS {rms[0]:.3g})", f"bs 8192 (RMS {rms[1]:.3g})"]
    assert rms[1] == pytest.approx(rms[0] / 4)
    peaks = [curve.get_data().values.max() for curve in curves]
    assert peaks[1] > 2.5 * peaks[0]  # the small weights pile up near 0
    assert_legible(fig)

    assert plot.main([large, small, "--weights", "--format", "png", "--labels", "large,small",
                      "--out", str(tmp_path / "w")]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "w.png")]
    with pytest.raises(SystemExit) as exit_info:
        plot.main([str(tmp_path / "missing.t7"), "--weights"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: checkpoint file not found")
