"""Off-screen VTK rendering of a surface (and its trajectory) to a PNG, legible as the paper's Fig. 1.

Used for ``python -m mpi_landscape.vtk --png`` and for the pictures in the
docs; kept apart from the export so that writing .vtp/.vts files never loads
OpenGL. The surface is coloured by the same quantity as its height, lit by a
light kit and seen from the front and above so the basin and the ridges show;
labelled axes carry round ticks in the metric's own units (a log height is
labelled in loss, never in ln(loss + 0.1)), and so does the colour bar. The
path is sampled along the surface (never a chord under it) with its start,
end and learning-rate drops marked. Needs no display: without ``DISPLAY`` VTK
is pointed at its EGL window, which Mesa's software renderer serves on a
headless machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import vtkmodules.vtkRenderingFreeType  # noqa: F401  (text: labels and the colour bar)
import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (the OpenGL render window and mappers)
from matplotlib import font_manager
from matplotlib.ticker import MaxNLocator
from vtkmodules.util.numpy_support import numpy_to_vtk, numpy_to_vtkIdTypeArray
from vtkmodules.vtkCommonCore import VTK_FONT_FILE, vtkPoints
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData
from vtkmodules.vtkFiltersCore import vtkPolyDataNormals
from vtkmodules.vtkFiltersSources import vtkSphereSource
from vtkmodules.vtkIOImage import vtkPNGWriter
from vtkmodules.vtkRenderingAnnotation import vtkScalarBarActor
from vtkmodules.vtkRenderingCore import (vtkActor, vtkBillboardTextActor3D, vtkColorTransferFunction,
                                         vtkLightKit, vtkPolyDataMapper, vtkRenderer, vtkRenderWindow,
                                         vtkTextActor, vtkTextProperty, vtkWindowToImageFilter)

from ..errors import LandscapeError
from ..store import Projection
from .path_on_surface import sample_path
from .figure_3d import round_log_values
from .plot_data import is_loss
from .vtk_export import HEIGHT, SurfaceGrid, heights, to_polydata, with_log_height

ELEVATION, AZIMUTH = 35.0, -50.0  # degrees: the camera above the plane, and round from the front (−β side)
LOG_HEIGHT_RATIO = 10.0  # a loss whose largest value is this many times its smallest: log height
HEIGHT_SHARE = 0.4  # the relief is drawn this tall against the plane's width, whatever its units
COOL, WARM = (0.230, 0.299, 0.754), (0.706, 0.016, 0.150)  # ParaView's Cool to Warm ends
MARK_COLOURS = {"start": (0.0, 0.75, 0.0), "end": (1.0, 0.8, 0.0), "lr_drop": (1.0, 0.0, 0.0)}
INK = (0.1, 0.1, 0.1)
FONT_FILE = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans"))
MIN_TICK_GAP = 0.12  # of the height range: closer round values (ln(z + 0.1) squeezes small ones) are dropped


@dataclass
class Scene:
    """What a render shows, in words and numbers: the axes' and the colour bar's ticks as
    (position, label) pairs (positions in the data's units: the height for z and the bar), the
    axis titles, and how many of each mark were drawn."""

    axis_ticks: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    axis_titles: dict[str, str] = field(default_factory=dict)
    colour_ticks: list[tuple[float, str]] = field(default_factory=list)
    marks: dict[str, int] = field(default_factory=dict)


def render_png(grid: SurfaceGrid, path: str, projection: Projection | None = None,
               size: tuple[int, int] = (900, 700), title: str | None = None,
               axis_titles: tuple[str, str, str] = ("α", "β", "")) -> Scene:
    """Render ``grid`` (coloured by its height, captioned ``title``) and a path on it into a PNG;
    returns what the picture shows."""
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    surface = to_polydata(grid)
    if surface.GetNumberOfPolys() == 0:
        raise LandscapeError("no finished quad to render yet")
    scene = Scene()
    renderer = vtkRenderer()
    renderer.SetBackground(1.0, 1.0, 1.0)
    vtkLightKit().AddLightsToRenderer(renderer)
    x0, x1, y0, y1, h0, h1 = surface.GetBounds()
    z_scale = HEIGHT_SHARE * max(x1 - x0, y1 - y0) / (h1 - h0) if h1 > h0 else 1.0
    values = value_ticks(grid)
    lut = _colour_map(h0, h1)
    renderer.AddActor(_surface_actor(surface, lut, z_scale))
    marks = vtkRenderer()  # a layer above: the marks are never covered by the surface
    marks.SetLayer(1)
    marks.InteractiveOff()
    marks.SetActiveCamera(renderer.GetActiveCamera())
    if projection is not None:
        line, spheres = _path_actors(grid, projection, z_scale, scene)
        renderer.AddActor(line)
        for actor in spheres:
            marks.AddActor(actor)
    for actor in _axes(grid, (x0, x1, y0, y1, h0, h1), z_scale, values, axis_titles, scene):
        renderer.AddActor(actor)
    renderer.AddViewProp(_colour_bar(lut, values, scene))
    renderer.AddViewProp(_caption(title or grid.metric))
    _place_camera(renderer)
    window = vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(*size)
    window.SetNumberOfLayers(2)
    window.AddRenderer(renderer)
    window.AddRenderer(marks)
    window.Render()
    _write_png(window, path)
    return scene


def picture_grid(grid: SurfaceGrid) -> SurfaceGrid:
    """The grid as the picture draws it: a loss spanning a decade or more gets the log height
    (the readable one) even when the export keeps the linear one."""
    values = grid.arrays[grid.metric][grid.drawable]
    values = values[np.isfinite(values) & (values > 0)]
    spans_decades = len(values) and values.max() >= LOG_HEIGHT_RATIO * values.min()
    return with_log_height(grid) if is_loss(grid.metric) and spans_decades else grid


def value_ticks(grid: SurfaceGrid) -> list[tuple[float, str]]:
    """Round values of the metric within the drawn range, as (height, label): 1-2-5 per decade
    on a log height, a few round numbers on a linear one."""
    drawn = grid.height[grid.drawable]
    lo, hi = float(drawn.min()), float(drawn.max())
    metric = grid.arrays[grid.metric][grid.drawable]
    metric = metric[np.isfinite(metric)]
    if grid.log:
        v_lo = float(np.exp(lo) - 0.1)
        v_hi = float(np.exp(hi) - 0.1)
        positive = metric[metric > 0]
        v_lo = max(v_lo, float(positive.min()) if len(positive) else 1e-3, 1e-12)
        values = round_log_values(v_lo, v_hi)
    else:
        values = MaxNLocator(5, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    span = hi - lo
    ticks: list[tuple[float, str]] = []
    for v, h in zip(values, heights(np.asarray(values, dtype=float), grid.log, grid.zmax)):
        if np.isfinite(h) and lo - 1e-9 * span <= h <= hi + 1e-9 * span and \
                (not ticks or h - ticks[-1][0] >= MIN_TICK_GAP * span):
            ticks.append((float(h), f"{v:g}"))
    return ticks


def _colour_map(h0: float, h1: float) -> vtkColorTransferFunction:
    lut = vtkColorTransferFunction()
    lut.SetColorSpaceToDiverging()
    lut.AddRGBPoint(h0, *COOL)
    lut.AddRGBPoint(h1, *WARM)
    return lut


def _surface_actor(surface: vtkPolyData, lut: vtkColorTransferFunction, z_scale: float) -> vtkActor:
    """The surface coloured by its height (the quantity it is lifted by), smoothly shaded."""
    normals = vtkPolyDataNormals()  # smooth shading across the quads
    normals.SetInputData(surface)
    normals.SplittingOff()
    mapper = vtkPolyDataMapper()
    mapper.SetInputConnection(normals.GetOutputPort())
    mapper.SetScalarModeToUsePointFieldData()
    mapper.SelectColorArray(HEIGHT)
    mapper.SetLookupTable(lut)
    mapper.SetScalarRange(*surface.GetPointData().GetArray(HEIGHT).GetRange())
    mapper.ScalarVisibilityOn()
    mapper.InterpolateScalarsBeforeMappingOn()  # colours follow the height inside each quad
    actor = vtkActor()
    actor.SetMapper(mapper)
    actor.SetScale(1.0, 1.0, z_scale)
    prop = actor.GetProperty()
    prop.SetAmbient(0.2)
    prop.SetDiffuse(0.85)
    prop.SetSpecular(0.05)
    return actor


def _path_actors(grid: SurfaceGrid, projection: Projection, z_scale: float,
                 scene: Scene) -> tuple[vtkActor, list[vtkActor]]:
    """The path sampled along the surface, lifted a hair above it, and its marks as spheres
    resting on it: start, end, and the drops (a drop at the end sits on top of the end's sphere)."""
    x0, x1, y0, y1 = grid.x[0], grid.x[-1], grid.y[0], grid.y[-1]
    width = max(x1 - x0, y1 - y0)
    lift = 0.006 * width
    sampled = sample_path(grid.x, grid.y, grid.height, projection.xcoord, projection.ycoord)
    xyz = np.column_stack([sampled.x, sampled.y, sampled.z * z_scale + lift])
    actors = []
    radius = 0.018 * width
    at = {"start": [0], "end": [len(projection.xcoord) - 1], "lr_drop": list(projection.drop_indices())}
    end = np.array([projection.xcoord[-1], projection.ycoord[-1]])
    for kind, indices in at.items():
        count = 0
        for index in indices:
            z = float(np.interp(index, sampled.t, sampled.z)) * z_scale
            if not np.isfinite(z):
                continue
            r = radius * (0.8 if kind == "lr_drop" else 1.0)
            centre = [projection.xcoord[index], projection.ycoord[index], z + r]
            if kind == "lr_drop" and np.hypot(*(end - centre[:2])) < 2 * radius:
                centre[2] += 1.8 * radius  # stacked above the end marker, never inside it
            actors.append(_sphere_actor(centre, r, MARK_COLOURS[kind]))
            count += 1
        scene.marks[kind] = count
    return _polyline_actor(xyz), actors


def _polyline_actor(xyz: np.ndarray) -> vtkActor:
    """Dark tube-like lines through the finite points; broken where a point has no height."""
    finite = np.isfinite(xyz).all(axis=1)
    runs = [run for run in np.split(np.arange(len(xyz)), np.flatnonzero(np.diff(finite)) + 1)
            if finite[run[0]] and len(run) > 1]
    keep = np.concatenate(runs) if runs else np.zeros(0, dtype=int)
    offsets = np.concatenate([[0], np.cumsum([len(run) for run in runs])])
    actor = _lines_actor(xyz[keep], offsets, (0.05, 0.05, 0.05), 4)
    actor.GetProperty().SetRenderLinesAsTubes(True)
    return actor


def _lines_actor(xyz: np.ndarray, offsets: np.ndarray, colour, width: float) -> vtkActor:
    """Polylines through consecutive points, the i-th from ``offsets[i]`` to ``offsets[i + 1]``."""
    points = vtkPoints()
    points.SetData(numpy_to_vtk(np.ascontiguousarray(xyz, dtype=np.float64), deep=True))
    lines = vtkCellArray()
    lines.SetData(numpy_to_vtkIdTypeArray(np.asarray(offsets, dtype=np.int64), deep=True),
                  numpy_to_vtkIdTypeArray(np.arange(len(xyz), dtype=np.int64), deep=True))
    poly = vtkPolyData()
    poly.SetPoints(points)
    poly.SetLines(lines)
    mapper = vtkPolyDataMapper()
    mapper.SetInputData(poly)
    mapper.ScalarVisibilityOff()
    actor = vtkActor()
    actor.SetMapper(mapper)
    actor.GetProperty().SetColor(*colour)
    actor.GetProperty().SetLineWidth(width)
    return actor


def _sphere_actor(centre, radius: float, colour) -> vtkActor:
    """A flat-coloured sphere (the same colour whatever the light, so a picture can be checked)."""
    sphere = vtkSphereSource()
    sphere.SetCenter(*centre)
    sphere.SetRadius(radius)
    sphere.SetThetaResolution(24)
    sphere.SetPhiResolution(16)
    mapper = vtkPolyDataMapper()
    mapper.SetInputConnection(sphere.GetOutputPort())
    actor = vtkActor()
    actor.SetMapper(mapper)
    prop = actor.GetProperty()
    prop.SetColor(*colour)
    prop.SetAmbient(1.0)
    prop.SetDiffuse(0.0)
    prop.SetSpecular(0.0)
    prop.LightingOff()
    return actor


def _axes(grid: SurfaceGrid, bounds, z_scale: float, values: list[tuple[float, str]],
          titles: tuple[str, str, str], scene: Scene) -> list:
    """The box's floor with labelled axes along its front and left edges and up its back-left
    corner, with round ticks (the height's in the metric's own units)."""
    x0, x1, y0, y1, h0, h1 = bounds
    z0, z1 = h0 * z_scale, h1 * z_scale
    size = max(x1 - x0, y1 - y0)
    tick = 0.02 * size
    segments: list[tuple[tuple, tuple]] = [((x0, y0, z0), (x1, y0, z0)), ((x1, y0, z0), (x1, y1, z0)),
                                           ((x1, y1, z0), (x0, y1, z0)), ((x0, y1, z0), (x0, y0, z0)),
                                           ((x0, y1, z0), (x0, y1, z1))]  # the floor, and the z axis
    labels: list = []
    ticks = {
        "x": [(float(v), f"{v:g}") for v in _round(x0, x1)],
        "y": [(float(v), f"{v:g}") for v in _round(y0, y1) if v < y1 - MIN_TICK_GAP * (y1 - y0)],
        "z": values,
    }  # no y tick at the back-left corner: the z axis's lowest label is there
    for v, text in ticks["x"]:  # along the front edge
        segments.append(((v, y0, z0), (v, y0 - tick, z0)))
        labels.append(_label(text, (v, y0 - 3.5 * tick, z0)))
    for v, text in ticks["y"]:  # along the left edge
        segments.append(((x0, v, z0), (x0 - tick, v, z0)))
        labels.append(_label(text, (x0 - 3.5 * tick, v, z0)))
    for h, text in ticks["z"]:  # up the back-left corner
        segments.append(((x0, y1, h * z_scale), (x0 - tick, y1, h * z_scale)))
        labels.append(_label(text, (x0 - 3.5 * tick, y1, h * z_scale)))
    labels.append(_label(titles[0], (x0 + 0.6 * (x1 - x0), y0 - 9 * tick, z0), bold=True))
    labels.append(_label(titles[1], (x0 - 9 * tick, y0 + 0.4 * (y1 - y0), z0), bold=True))
    labels.append(_label(titles[2], (x0 - 3.5 * tick, y1, z1 + 3 * tick), bold=True))
    scene.axis_ticks = ticks
    scene.axis_titles = dict(zip("xyz", titles))
    return [_segments_actor(segments)] + labels


def _round(lo: float, hi: float) -> np.ndarray:
    values = MaxNLocator(5, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    span = hi - lo
    return values[(values >= lo - 1e-9 * span) & (values <= hi + 1e-9 * span)]


def _segments_actor(segments) -> vtkActor:
    """Straight segments (pairs of points) in the axes' ink, unlit."""
    xyz = np.array([p for segment in segments for p in segment], dtype=np.float64)
    actor = _lines_actor(xyz, np.arange(0, len(xyz) + 1, 2), INK, 1.5)
    actor.GetProperty().LightingOff()
    return actor


def _label(text: str, position, bold: bool = False) -> vtkBillboardTextActor3D:
    """Text at a point of the scene, always facing the camera, centred on it."""
    label = vtkBillboardTextActor3D()
    label.SetInput(text)
    label.SetPosition(*position)
    _dark_text(label.GetTextProperty(), 15 if bold else 13)
    label.GetTextProperty().SetBold(bold)
    label.GetTextProperty().SetJustificationToCentered()
    label.GetTextProperty().SetVerticalJustificationToCentered()
    return label


def _colour_bar(lut: vtkColorTransferFunction, values: list[tuple[float, str]], scene: Scene) -> vtkScalarBarActor:
    """A horizontal colour bar along the bottom, labelled with the round values of the metric at
    their heights (annotations: the bar's own tick numbers would be in the height's units)."""
    lut.ResetAnnotations()
    for h, text in values:
        lut.SetAnnotation(h, text)
    bar = vtkScalarBarActor()
    bar.SetLookupTable(lut)
    bar.DrawTickLabelsOff()
    bar.DrawAnnotationsOn()
    bar.SetAnnotationLeaderPadding(4)
    bar.SetOrientationToHorizontal()
    bar.SetPosition(0.2, 0.06)
    bar.SetWidth(0.6)
    bar.SetHeight(0.12)
    bar.SetBarRatio(0.3)
    bar.UnconstrainedFontSizeOn()
    _dark_text(bar.GetAnnotationTextProperty(), 14)
    scene.colour_ticks = list(values)
    return bar


def _caption(text: str) -> vtkTextActor:
    """What the colours and heights show, along the top."""
    caption = vtkTextActor()
    caption.SetInput(text)
    caption.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
    caption.SetPosition(0.5, 0.97)
    _dark_text(caption.GetTextProperty(), 16)
    caption.GetTextProperty().SetJustificationToCentered()
    caption.GetTextProperty().SetVerticalJustificationToTop()
    return caption


def _dark_text(text: vtkTextProperty, points: int) -> None:
    """Dark text in DejaVu Sans (matplotlib's font, which has α, β and θ; VTK's own has not)."""
    text.SetFontFamily(VTK_FONT_FILE)
    text.SetFontFile(FONT_FILE)
    text.SetFontSize(points)
    text.SetColor(*INK)
    text.ShadowOff()
    text.ItalicOff()
    text.BoldOff()


def _place_camera(renderer: vtkRenderer) -> None:
    """Look from the front-left and above the plane, z up, the whole scene in view."""
    renderer.ResetCamera()
    camera = renderer.GetActiveCamera()
    focal = np.array(camera.GetFocalPoint())
    distance = camera.GetDistance()
    elevation, azimuth = np.radians(ELEVATION), np.radians(AZIMUTH)
    direction = np.array([np.sin(azimuth) * np.cos(elevation), -np.cos(azimuth) * np.cos(elevation),
                          np.sin(elevation)])
    camera.SetPosition(*(focal + distance * direction))
    camera.SetViewUp(0.0, 0.0, 1.0)
    renderer.ResetCamera()
    camera.Zoom(1.2)
    camera.SetWindowCenter(0.0, -0.06)  # lift the scene clear of the colour bar
    renderer.ResetCameraClippingRange()


def _write_png(window: vtkRenderWindow, path: str) -> str:
    """The window's pixels (its back buffer, where off-screen rendering draws) as a PNG."""
    grab = vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.ReadFrontBufferOff()
    grab.Update()
    writer = vtkPNGWriter()
    writer.SetFileName(path)
    writer.SetInputConnection(grab.GetOutputPort())
    writer.Write()
    if writer.GetErrorCode():
        raise LandscapeError(f"VTK could not write {path}")
    return path
