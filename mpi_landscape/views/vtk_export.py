"""2D surfaces and trajectories as VTK datasets for ParaView.

The reference wrote its .vtp by hand as ASCII XML; here VTK's own classes and
XML writers do it (binary, compressed). A surface becomes a quad mesh (.vtp)
or a structured grid (.vts) whose point ``(x[ix], y[iy], z)`` has id
``iy * nx + ix`` and whose height z is one metric (optionally ln(z + 0.1)
after clipping at ``zmax``, as the reference); every metric of the file rides
along as point data (NaN where unfinished or diverged), so ParaView can
colour by any of them.

Points where the network diverged (non-finite outputs) carry ``diverged = 1``
and NaN metrics, and no quad uses them either: holes, never accuracy values.
Unfinished points of a partial run are never drawn: they carry ``done = 0``
and NaN metrics, no quad uses them (the .vts hides them through VTK's
blanking), and they sit at the lowest drawn height so they cannot stretch the
bounds. Imports are absolute (``vtkmodules``): this package's own ``vtk``
entry point must never stand in for the real library.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from vtkmodules.util.numpy_support import numpy_to_vtk, numpy_to_vtkIdTypeArray
from vtkmodules.vtkCommonCore import vtkPoints
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData, vtkStructuredGrid
from vtkmodules.vtkIOXML import vtkXMLPolyDataWriter, vtkXMLStructuredGridWriter

from ..errors import LandscapeError, require_folder
from .plot_data import diverged_mask, done_text, metric_values
from .path_on_surface import sample_path
from .plot_grid import is_regular, resample_bicubic, sample_bilinear
from ..store import Projection, Surface

HEIGHT = "height"
DONE = "done"
DIVERGED = "diverged"
LR_DROP = "lr_drop"
FORMATS = ("vtp", "vts")


@dataclass(frozen=True)
class SurfaceGrid:
    """One 2D surface ready for VTK: every metric (ny, nx), the done mask and the drawn height."""

    x: np.ndarray
    y: np.ndarray
    arrays: dict[str, np.ndarray]
    done: np.ndarray
    height: np.ndarray
    metric: str
    diverged: np.ndarray
    log: bool = False  # how the height was made from the metric: ln(z + 0.1) after clipping at zmax
    zmax: float | None = None

    @property
    def drawable(self) -> np.ndarray:
        """Points a quad may use: finished, with a finite height."""
        return self.done & np.isfinite(self.height)


def surface_grid(surface: Surface, metric: str, log: bool = False,
                 zmax: float | None = None) -> SurfaceGrid:
    """The surface's arrays (NaN where unfinished or not finite), and ``metric`` turned into a height."""
    if surface.y is None:
        raise LandscapeError("a 1D surface has no 2D shape to export; plot it with mpi_landscape.plot")
    metric_values(surface, metric)  # refuses a metric the file does not hold
    arrays = {name: metric_values(surface, name) for name in surface.metrics}
    raw = np.where(surface.done, surface.metrics[metric], np.nan)  # a diverged inf still clips to zmax
    diverged = diverged_mask(surface, metric)
    raw[diverged & ~np.isinf(raw)] = np.nan  # e.g. an accuracy at non-finite outputs: no height
    return SurfaceGrid(surface.x, surface.y, arrays, surface.done.copy(), heights(raw, log, zmax), metric,
                       diverged, log, zmax)


def heights(values: np.ndarray, log: bool = False, zmax: float | None = None) -> np.ndarray:
    """The reference's height: clipped at ``zmax``, then ln(z + 0.1) with ``log``; NaN where not finite."""
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.minimum(values, zmax) if zmax is not None else values.copy()
        if log:
            z = np.log(z + 0.1)
    z[~np.isfinite(z)] = np.nan
    return z


def with_log_height(grid: SurfaceGrid) -> SurfaceGrid:
    """The same grid with the reference's log height ln(z + 0.1) (itself when it already has it)."""
    if grid.log:
        return grid
    with np.errstate(invalid="ignore", divide="ignore"):
        height = np.log(grid.height + 0.1)
    height[~np.isfinite(height)] = np.nan
    return replace(grid, height=height, log=True)


def resample(grid: SurfaceGrid, n: int, log: bool = False, zmax: float | None = None) -> SurfaceGrid:
    """Every array resampled bicubically to ``n`` × ``n`` points; complete, regular, finite grids only."""
    if n < 2:
        raise LandscapeError(f"--interp {n}: give the number of points per axis (at least 2)")
    if not grid.done.all():
        raise LandscapeError(f"--interp needs a complete surface, this one is "
                             f"{done_text(grid.done.mean())}; export it without --interp")
    if not (is_regular(grid.x) and is_regular(grid.y)):
        raise LandscapeError("--interp needs evenly spaced x and y coordinates")
    bad = [name for name, values in grid.arrays.items() if not np.isfinite(values).all()]
    if bad:
        raise LandscapeError(f"--interp would smear the diverged (non-finite) points of "
                             f"{', '.join(bad)}; export without --interp")
    arrays = {name: resample_bicubic(values, n, n) for name, values in grid.arrays.items()}
    x = np.linspace(grid.x[0], grid.x[-1], n)
    y = np.linspace(grid.y[0], grid.y[-1], n)
    return replace(grid, x=x, y=y, arrays=arrays, done=np.ones((n, n), dtype=bool),
                   height=heights(arrays[grid.metric], log, zmax), diverged=np.zeros((n, n), dtype=bool),
                   log=log, zmax=zmax)


def to_polydata(grid: SurfaceGrid, flat: bool = False) -> vtkPolyData:
    """A quad mesh over the drawable points; ``flat`` puts every point at z = 0 (for Warp By Scalar)."""
    ny, nx = grid.done.shape
    corner = (np.arange(ny - 1)[:, None] * nx + np.arange(nx - 1)[None, :]).ravel()
    quads = np.stack([corner, corner + 1, corner + nx + 1, corner + nx], axis=1)
    quads = quads[grid.drawable.ravel()[quads].all(axis=1)]
    cells = vtkCellArray()
    cells.SetData(numpy_to_vtkIdTypeArray(np.arange(0, 4 * len(quads) + 1, 4, dtype=np.int64), deep=True),
                  numpy_to_vtkIdTypeArray(quads.ravel().astype(np.int64), deep=True))
    poly = vtkPolyData()
    poly.SetPoints(_points(grid, flat))
    poly.SetPolys(cells)
    _add_point_data(poly, grid)
    return poly


def to_structured_grid(grid: SurfaceGrid, flat: bool = False) -> vtkStructuredGrid:
    """A structured grid of all points, the undrawable ones blanked (hidden with their cells)."""
    ny, nx = grid.done.shape
    sgrid = vtkStructuredGrid()
    sgrid.SetDimensions(nx, ny, 1)
    sgrid.SetPoints(_points(grid, flat))
    _add_point_data(sgrid, grid)
    for point_id in np.flatnonzero(~grid.drawable.ravel()):
        sgrid.BlankPoint(int(point_id))
    return sgrid


@dataclass(frozen=True)
class Path3D:
    """A trajectory laid on the surface, and how many checkpoints could not be placed on it."""

    polydata: vtkPolyData
    left_out: int


def trajectory_polydata(grid: SurfaceGrid, projection: Projection, flat: bool = False) -> Path3D:
    """The projected path as polylines lying on the surface, sampled along it.

    Between checkpoints the path is resampled every quarter of a grid step, each
    sample at the surface's height there (bilinear), so the line follows the
    relief instead of cutting chords under it; the samples between checkpoints
    carry ``checkpoint`` = -1 and an interpolated ``epoch``. Checkpoints outside
    the grid or over unfinished points have no height and are left out; the
    path is split there, so it never jumps across a gap (a lone checkpoint
    between two gaps, with no segment to lie on, goes too). Each learning-rate
    drop is also a vertex cell of its own: ParaView's Threshold keeps whole
    cells, so a drop inside the polyline could never be selected, while its
    vertex cell (``lr_drop`` = 1 on all its points) is.
    """
    checkpoint_z = sample_bilinear(grid.x, grid.y, grid.height, projection.xcoord, projection.ycoord)
    placed = np.isfinite(checkpoint_z)
    runs = [run for run in np.split(np.arange(len(placed)), np.flatnonzero(np.diff(placed)) + 1)
            if placed[run[0]] and len(run) > 1]
    samples = [sample_path(grid.x, grid.y, grid.height, projection.xcoord[run], projection.ycoord[run])
               for run in runs]
    t = np.concatenate([run[0] + s.t for run, s in zip(runs, samples)] + [np.zeros(0)])
    xy = np.column_stack([np.concatenate([s.x for s in samples] + [np.zeros(0)]),
                          np.concatenate([s.y for s in samples] + [np.zeros(0)])])
    z = np.concatenate([s.z for s in samples] + [np.zeros(0)])
    z = np.where(np.isfinite(z), z, np.interp(t, np.arange(len(checkpoint_z)), np.nan_to_num(checkpoint_z)))
    at_checkpoint = t == np.round(t)  # a checkpoint sample has t exactly its index
    checkpoint = np.where(at_checkpoint, np.round(t), -1).astype(np.int64)
    points = vtkPoints()
    points.SetData(numpy_to_vtk(np.column_stack([xy, np.zeros(len(z)) if flat else z]), deep=True))
    offsets = np.concatenate([[0], np.cumsum([len(s.t) for s in samples])]).astype(np.int64)
    lines = vtkCellArray()
    lines.SetData(numpy_to_vtkIdTypeArray(offsets, deep=True),
                  numpy_to_vtkIdTypeArray(np.arange(len(z), dtype=np.int64), deep=True))
    is_drop = np.isin(checkpoint, projection.drop_indices()) & (checkpoint >= 0)
    drops = np.flatnonzero(is_drop).astype(np.int64)
    verts = vtkCellArray()
    verts.SetData(numpy_to_vtkIdTypeArray(np.arange(len(drops) + 1, dtype=np.int64), deep=True),
                  numpy_to_vtkIdTypeArray(drops, deep=True))
    poly = vtkPolyData()
    poly.SetPoints(points)
    poly.SetLines(lines)
    poly.SetVerts(verts)
    data = {HEIGHT: z, "checkpoint": checkpoint,
            grid.metric: sample_bilinear(grid.x, grid.y, grid.arrays[grid.metric], xy[:, 0], xy[:, 1]),
            "epoch": np.interp(t, np.arange(len(projection.epochs)), projection.epochs.astype(np.float64)),
            LR_DROP: is_drop.astype(np.uint8)}
    for name, values in data.items():
        _add_array(poly, name, values)
    kept = int(sum(len(run) for run in runs))
    return Path3D(poly, len(placed) - kept)


def write(dataset: vtkPolyData | vtkStructuredGrid, path: str) -> str:
    """Write a dataset with VTK's XML writer for its type (binary, zlib-compressed)."""
    require_folder(path, f"cannot write {path}")
    writer = vtkXMLPolyDataWriter() if isinstance(dataset, vtkPolyData) else vtkXMLStructuredGridWriter()
    writer.SetFileName(path)
    writer.SetInputData(dataset)
    writer.SetDataModeToBinary()
    writer.SetCompressorTypeToZLib()
    if not writer.Write():
        raise LandscapeError(f"VTK could not write {path}")
    return path


def _points(grid: SurfaceGrid, flat: bool) -> vtkPoints:
    """Point ``iy * nx + ix`` at (x[ix], y[iy], height); undrawable points at the lowest drawn height."""
    xx, yy = np.meshgrid(grid.x, grid.y)
    drawable = grid.drawable
    floor = float(grid.height[drawable].min()) if drawable.any() else 0.0
    zz = np.zeros_like(xx) if flat else np.where(drawable, grid.height, floor)
    points = vtkPoints()
    points.SetData(numpy_to_vtk(np.column_stack([xx.ravel(), yy.ravel(), zz.ravel()]), deep=True))
    return points


def _add_point_data(dataset: vtkPolyData | vtkStructuredGrid, grid: SurfaceGrid) -> None:
    for name, values in grid.arrays.items():
        _add_array(dataset, name, values.ravel())
    _add_array(dataset, HEIGHT, grid.height.ravel())
    _add_array(dataset, DONE, grid.done.ravel().astype(np.uint8))
    _add_array(dataset, DIVERGED, grid.diverged.ravel().astype(np.uint8))
    dataset.GetPointData().SetActiveScalars(grid.metric)


def _add_array(dataset: vtkPolyData | vtkStructuredGrid, name: str, values: np.ndarray) -> None:
    array = numpy_to_vtk(np.ascontiguousarray(values), deep=True)
    array.SetName(name)
    dataset.GetPointData().AddArray(array)

