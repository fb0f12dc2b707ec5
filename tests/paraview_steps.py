"""docs/paraview.md's steps, scripted for ParaView's ``pvbatch`` (run by tests/test_paraview.py).

    pvbatch paraview_steps.py SURFACE.vtp FLAT.vtp TRAJECTORY.vtp OUT_FOLDER

Opens the exported surface coloured by train_loss (Cool to Warm), lifts the
flat export with Warp By Scalar, and marks the path's learning-rate drops with
Threshold on ``lr_drop`` then Glyph (Sphere), as the page says; saves one
screenshot per step into OUT_FOLDER and prints, as JSON, how many points
Threshold kept. Runs under ParaView's own Python, not the project's.
"""

import json
import os
import sys

from paraview import servermanager
from paraview.simple import (ColorBy, GetActiveViewOrCreate, GetColorTransferFunction, Glyph, Hide,
                             OpenDataFile, ResetCamera, SaveScreenshot, Show, Threshold, Tube,
                             WarpByScalar)

SIZE = [480, 360]
MARK = [1.0, 0.0, 0.0]  # the drops' spheres: pure red, found again in the picture


def fresh_view():
    view = GetActiveViewOrCreate("RenderView")
    view.ViewSize = SIZE
    view.UseColorPaletteForBackground = 0
    view.Background = [1.0, 1.0, 1.0]
    view.OrientationAxesVisibility = 0
    return view


def look(view, position, up=(0.0, 0.0, 1.0)):
    """Point the camera from ``position`` at the data, which then fills the picture."""
    view.CameraPosition = list(position)
    view.CameraFocalPoint = [0.0, 0.0, 0.0]
    view.CameraViewUp = list(up)
    ResetCamera(view)


def coloured(source, view, array):
    display = Show(source, view)
    ColorBy(display, ("POINTS", array))
    lut = GetColorTransferFunction(array)
    lut.ApplyPreset("Cool to Warm", True)
    display.RescaleTransferFunctionToDataRange(True, False)
    return display


def main(surface_vtp, flat_vtp, trajectory_vtp, out):
    view = fresh_view()
    # Open it and colour it.
    surface = OpenDataFile(surface_vtp)
    coloured(surface, view, "train_loss")
    look(view, (2.5, -3.0, 3.0))
    SaveScreenshot(os.path.join(out, "surface.png"), view, ImageResolution=SIZE)
    Hide(surface, view)

    # Warp By Scalar: any metric as the relief.
    flat = OpenDataFile(flat_vtp)
    warp = WarpByScalar(Input=flat)
    warp.Scalars = ["POINTS", "train_loss"]
    warp.ScaleFactor = 0.2
    warp.Normal = [0.0, 0.0, 1.0]
    warp.UseNormal = 1
    coloured(warp, view, "train_loss")
    look(view, (2.5, -3.0, 3.0))
    SaveScreenshot(os.path.join(out, "warped.png"), view, ImageResolution=SIZE)

    # The optimizer path: Tube coloured by epoch; Threshold on lr_drop, then Glyph (Sphere).
    Hide(warp, view)
    Show(surface, view)
    path = OpenDataFile(trajectory_vtp)
    tube = Tube(Input=path)
    tube.Radius = 0.02
    coloured(tube, view, "epoch")
    drops = Threshold(Input=path)
    drops.Scalars = ["POINTS", "lr_drop"]
    drops.LowerThreshold = 1
    drops.UpperThreshold = 1
    glyph = Glyph(Input=drops, GlyphType="Sphere")
    glyph.GlyphMode = "All Points"
    glyph.ScaleArray = ["POINTS", "No scale array"]
    glyph.ScaleFactor = 0.12
    marks = Show(glyph, view)
    marks.ColorArrayName = [None, ""]  # solid colour
    marks.AmbientColor = marks.DiffuseColor = MARK
    marks.Ambient, marks.Diffuse = 1.0, 0.0  # flat red, whatever the light
    look(view, (0.0, -0.5, 10.0), up=(0.0, 1.0, 0.0))  # from above: the path lies on the surface
    SaveScreenshot(os.path.join(out, "path.png"), view, ImageResolution=SIZE)

    kept = servermanager.Fetch(drops).GetNumberOfPoints()
    print(json.dumps({"threshold_points": int(kept)}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
