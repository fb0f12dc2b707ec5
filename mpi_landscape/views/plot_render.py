"""Off-screen VTK rendering of an exported surface (and its trajectory) to a PNG.

Used for ``python -m mpi_landscape.vtk --png`` and for the pictures in the
docs; kept apart from the export so that writing .vtp/.vts files never loads
OpenGL. Needs no display: without ``DISPLAY`` VTK is pointed at its EGL
window, which Mesa's software renderer serves on a headless machine.
"""

from __future__ import annotations

import os

import vtkmodules.vtkRenderingFreeType  # noqa: F401  (text: the colour bar's labels)
import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (the OpenGL render window and mappers)
from vtkmodules.vtkCommonDataModel import vtkPolyData
from vtkmodules.vtkFiltersCore import vtkPolyDataNormals
from vtkmodules.vtkIOImage import vtkPNGWriter
from vtkmodules.vtkRenderingAnnotation import vtkScalarBarActor
from vtkmodules.vtkRenderingCore import (vtkActor, vtkColorTransferFunction, vtkPolyDataMapper,
                                         vtkRenderer, vtkRenderWindow, vtkTextActor, vtkTextProperty,
                                         vtkWindowToImageFilter)

from ..errors import LandscapeError
from .vtk_export import HEIGHT


def render_png(surface: vtkPolyData, path: str, trajectory: vtkPolyData | None = None,
               size: tuple[int, int] = (900, 700), title: str | None = None) -> str:
    """Render the surface (coloured by height, captioned ``title``) and a trajectory into a PNG.

    The height is drawn at half the plane's width whatever its units, as a
    viewer would scale it.
    """
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    renderer = vtkRenderer()
    renderer.SetBackground(1.0, 1.0, 1.0)
    surface_actor, lut, scale = _surface_actor(surface)
    renderer.AddActor(surface_actor)
    if trajectory is not None and trajectory.GetNumberOfPoints():
        renderer.AddActor(_path_actor(trajectory, scale))
    renderer.AddViewProp(_colour_bar(lut))
    renderer.AddViewProp(_caption(title or surface.GetPointData().GetScalars().GetName()))
    _place_camera(renderer)
    window = vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(*size)
    window.AddRenderer(renderer)
    window.Render()
    return _write_png(window, path)


def _surface_actor(surface: vtkPolyData) -> tuple[vtkActor, vtkColorTransferFunction, float]:
    """The surface coloured by height (cool to warm), z scaled for viewing; returns actor, map, z scale."""
    x0, x1, y0, y1, z0, z1 = surface.GetBounds()
    scale = 0.5 * max(x1 - x0, y1 - y0) / (z1 - z0) if z1 > z0 else 1.0
    z0, z1 = surface.GetPointData().GetArray(HEIGHT).GetRange()
    lut = vtkColorTransferFunction()
    lut.SetColorSpaceToDiverging()
    lut.AddRGBPoint(z0, 0.230, 0.299, 0.754)
    lut.AddRGBPoint(z1, 0.706, 0.016, 0.150)
    normals = vtkPolyDataNormals()  # smooth shading across the quads
    normals.SetInputData(surface)
    normals.SplittingOff()
    mapper = vtkPolyDataMapper()
    mapper.SetInputConnection(normals.GetOutputPort())
    mapper.SetScalarModeToUsePointFieldData()
    mapper.SelectColorArray(HEIGHT)
    mapper.SetLookupTable(lut)
    mapper.SetScalarRange(z0, z1)
    mapper.ScalarVisibilityOn()
    actor = vtkActor()
    actor.SetMapper(mapper)
    actor.SetScale(1.0, 1.0, scale)
    actor.GetProperty().SetAmbient(0.25)
    actor.GetProperty().SetDiffuse(0.8)
    actor.GetProperty().SetSpecular(0.1)
    return actor, lut, scale


def _path_actor(trajectory: vtkPolyData, scale: float) -> vtkActor:
    """The trajectory as a dark tube, lifted a hair above the surface so it is not hidden in it."""

    mapper = vtkPolyDataMapper()
    mapper.SetInputData(trajectory)
    mapper.ScalarVisibilityOff()
    actor = vtkActor()
    actor.SetMapper(mapper)
    actor.SetScale(1.0, 1.0, scale)
    actor.GetProperty().SetColor(0.05, 0.05, 0.05)
    actor.GetProperty().SetLineWidth(4)
    actor.GetProperty().SetRenderLinesAsTubes(True)
    x0, x1, y0, y1, _, _ = trajectory.GetBounds()
    actor.SetPosition(0.0, 0.0, 0.005 * max(x1 - x0, y1 - y0, 1e-9))
    return actor


def _colour_bar(lut: vtkColorTransferFunction) -> vtkScalarBarActor:
    """A horizontal colour bar along the bottom, its labels below it."""
    bar = vtkScalarBarActor()
    bar.SetLookupTable(lut)
    bar.SetNumberOfLabels(5)
    bar.SetOrientationToHorizontal()
    bar.SetTextPositionToPrecedeScalarBar()
    bar.SetPosition(0.2, 0.01)
    bar.SetWidth(0.6)
    bar.SetHeight(0.09)
    bar.UnconstrainedFontSizeOn()
    _dark_text(bar.GetLabelTextProperty(), 14)
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
    text.SetFontSize(points)
    text.SetColor(0.1, 0.1, 0.1)
    text.ShadowOff()
    text.ItalicOff()
    text.BoldOff()


def _place_camera(renderer: vtkRenderer) -> None:
    """Look at the scene from the front-left and above, z up, the whole scene in view."""
    renderer.ResetCamera()
    camera = renderer.GetActiveCamera()
    camera.Elevation(-40.0)
    camera.Azimuth(-30.0)
    camera.SetViewUp(0.0, 0.0, 1.0)
    camera.OrthogonalizeViewUp()
    renderer.ResetCamera()
    camera.Zoom(1.15)
    camera.SetWindowCenter(0.0, -0.04)  # lift the scene clear of the colour bar
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
