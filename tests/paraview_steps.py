"""docs/paraview.md's steps, scripted for ParaView's ``pvbatch`` (run by tests/test_vtk.py).

    pvbatch paraview_steps.py SURFACE.vtp FLAT.vtp FLAT_TRAJECTORY.vtp OUT_FOLDER

Opens the exported (log-height) surface coloured by ``height`` (Cool to Warm),
the quantity it is lifted by, and turns the camera as the page says (view
direction +Y, then Elevation and Azimuth: ParaView's own camera looks straight
down); lifts the flat export with Warp By Scalar on ``height``, coloured by the
same array; lifts the flat path by the same warp onto it and marks its
learning-rate drops with Threshold on ``lr_drop`` then Glyph (Sphere). Saves one screenshot per step into OUT_FOLDER
and prints, as JSON, how many points Threshold kept and where each step's
camera looked from. Runs under ParaView's own Python, not the project's.
"""

import json
import os
import sys

from paraview import servermanager
from paraview.simple import (ColorBy, GetActiveCamera, GetActiveViewOrCreate, GetColorTransferFunction, Glyph, Hide,
                             OpenDataFile, ResetCamera, SaveScreenshot, Show, Threshold, Tube,
                             WarpByScalar)

SIZE = [480, 360]
MARK = [1.0, 0.0, 0.0]  # the drops' spheres: pure red, found again in the picture
ELEVATION, AZIMUTH = 35.0, -50.0  # degrees, as docs/paraview.md gives them
RELIEF = 0.4  # the warped relief's height, in plane widths


def fresh_view():
    view = GetActiveViewOrCreate("RenderView")
    view.ViewSize = SIZE
    view.UseColorPaletteForBackground = 0
    view.Background = [1.0, 1.0, 1.0]
    view.OrientationAxesVisibility = 0
    return view


def documented_camera(view):
    """The page's camera: **Set view direction to +Y** (from the front), then Adjust Camera's
    Elevation and Azimuth, then Reset Camera."""
    view.CameraPosition = [0.0, -1.0, 0.0]
    view.CameraFocalPoint = [0.0, 0.0, 0.0]
    view.CameraViewUp = [0.0, 0.0, 1.0]
    ResetCamera(view)
    camera = GetActiveCamera()
    camera.Elevation(ELEVATION)
    camera.Azimuth(AZIMUTH)
    ResetCamera(view)
    return {"position": list(view.CameraPosition), "focal_point": list(view.CameraFocalPoint)}


def coloured(source, view, array):
    display = Show(source, view)
    ColorBy(display, ("POINTS", array))
    lut = GetColorTransferFunction(array)
    lut.ApplyPreset("Cool to Warm", True)
    display.RescaleTransferFunctionToDataRange(True, False)
    return display


def main(surface_vtp, flat_vtp, trajectory_vtp, out):
    view = fresh_view()
    cameras = {}
    # Open it and colour it: by height, the quantity the relief is made of.
    surface = OpenDataFile(surface_vtp)
    coloured(surface, view, "height")
    cameras["surface"] = documented_camera(view)
    SaveScreenshot(os.path.join(out, "surface.png"), view, ImageResolution=SIZE)
    Hide(surface, view)

    # Warp By Scalar: lift the flat export by height, and colour it by the same array.
    flat = OpenDataFile(flat_vtp)
    flat.UpdatePipeline()
    x0, x1, y0, y1, _, _ = flat.GetDataInformation().GetBounds()
    width = max(x1 - x0, y1 - y0)
    low, high = flat.PointData["height"].GetRange()
    warp = WarpByScalar(Input=flat)
    warp.Scalars = ["POINTS", "height"]
    warp.ScaleFactor = RELIEF * width / (high - low)  # a relief 0.4 of the plane's width tall
    warp.Normal = [0.0, 0.0, 1.0]
    warp.UseNormal = 1
    coloured(warp, view, "height")
    cameras["warped"] = documented_camera(view)
    SaveScreenshot(os.path.join(out, "warped.png"), view, ImageResolution=SIZE)

    # The optimizer path, flat as the surface, lifted by the same Warp By Scalar onto the warped
    # surface: Tube coloured by epoch; Threshold on lr_drop, then Glyph (Sphere).
    path = WarpByScalar(Input=OpenDataFile(trajectory_vtp))
    path.Scalars = ["POINTS", "height"]
    path.ScaleFactor = warp.ScaleFactor
    path.Normal = [0.0, 0.0, 1.0]
    path.UseNormal = 1
    tube = Tube(Input=path)
    tube.Radius = 0.01 * width
    coloured(tube, view, "epoch")
    drops = Threshold(Input=path)
    drops.Scalars = ["POINTS", "lr_drop"]
    drops.LowerThreshold = 1
    drops.UpperThreshold = 1
    glyph = Glyph(Input=drops, GlyphType="Sphere")
    glyph.GlyphMode = "All Points"
    glyph.ScaleArray = ["POINTS", "No scale array"]
    glyph.ScaleFactor = 0.06 * width
    marks = Show(glyph, view)
    marks.ColorArrayName = [None, ""]  # solid colour
    marks.AmbientColor = marks.DiffuseColor = MARK
    marks.Ambient, marks.Diffuse = 1.0, 0.0  # flat red, whatever the light
    cameras["path"] = documented_camera(view)
    SaveScreenshot(os.path.join(out, "path.png"), view, ImageResolution=SIZE)

    kept = servermanager.Fetch(drops).GetNumberOfPoints()
    print(json.dumps({"threshold_points": int(kept), "cameras": cameras}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
