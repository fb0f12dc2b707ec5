"""``python -m mpi_landscape.vtk``: a 2D surface file as a VTK file for ParaView.

    python -m mpi_landscape.vtk surf.h5 --metric train_loss --zmax 10 --log
    python -m mpi_landscape.vtk surf.h5 --interp 200 --proj_file proj.h5 --png surf.png

Writes the surface as a quad mesh (``--format vtp``, the reference's
h52vtp) or a structured grid (``vts``), height = one metric, every metric as
point data; ``--proj_file`` adds the trajectory as a polyline on the surface
(``<out>_trajectory.vtp``) and ``--png`` renders the result off-screen. The
paths written are printed, one per line. docs/paraview.md shows what to do
with them in ParaView.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

from .cli import add_flag, config_from, exit_on_user_error, new_parser
from .errors import LandscapeError
from .views.plot_data import axis_label, default_prefix, done_text, explained_variance, metric_label
from .store import read_projection, read_surface
from .views.vtk_export import (FORMATS, resample, surface_grid, to_polydata, to_structured_grid,
                         trajectory_polydata, write)


@dataclass(frozen=True)
class VtkConfig:
    """Which surface to export, how to shape its height, and where to write."""

    surf_file: str | None = None
    metric: str = "train_loss"
    log: bool = False
    zmax: float | None = None
    interp: int = 0
    format: str = "vtp"
    out: str | None = None
    proj_file: str | None = None
    flat: bool = False
    png: str | None = None

    def output_path(self) -> str:
        """``--out``, or the reference's name: the surface file, metric and height options."""
        if self.out:
            return self.out
        name = f"{default_prefix(self.surf_file)}_{self.metric}"
        name += f"_zmax={self.zmax:g}" if self.zmax is not None else ""
        name += "_log" if self.log else ""
        name += f"_interp={self.interp}" if self.interp else ""
        name += "_flat" if self.flat else ""
        return f"{name}.{self.format}"


def build_parser() -> argparse.ArgumentParser:
    """The vtk command's flags (the reference's h52vtp names, with dashed aliases)."""
    p = new_parser("mpi_landscape.vtk", VtkConfig,
                   "Export a 2D surface file to VTK (.vtp quad mesh or .vts structured grid) for ParaView.")
    p.add_argument("file", nargs="?", metavar="FILE", default=argparse.SUPPRESS, help="surface file (.h5)")
    add_flag(p, "--surf_file", help="the surface file, as the reference passes it")
    p.add_argument("--metric", "--surf_name", "--surf-name", dest="metric",
                   help="array giving the height, e.g. train_loss (all arrays go in as point data)")
    add_flag(p, "--log", action="store_true", help="height ln(z + 0.1), as the reference")
    add_flag(p, "--zmax", type=float, help="clip the metric at this value before --log")
    add_flag(p, "--interp", type=int,
             help="resample bicubically to N×N points (complete surfaces only; 0: as computed)")
    add_flag(p, "--format", choices=FORMATS, help="vtp: quad mesh; vts: structured grid")
    add_flag(p, "--out", help="output path; None: named after the surface file and options")
    add_flag(p, "--proj_file", help="projected trajectory to write as a polyline on the surface")
    add_flag(p, "--flat", action="store_true",
             help="all points at z = 0, for ParaView's Warp By Scalar on any array")
    add_flag(p, "--png", help="also render the surface (and trajectory) off-screen to this PNG")
    return p


def parse_vtk_config(argv: list[str]) -> VtkConfig:
    """Parse ``argv``; the surface file comes as the positional argument or ``--surf_file``."""
    parser = build_parser()
    namespace = vars(parser.parse_args(argv))
    given = [f for f in (namespace.pop("file", None), namespace["surf_file"]) if f]
    if len(given) != 1:
        parser.error("give exactly one surface file (FILE or --surf_file)")
    namespace["surf_file"] = given[0]
    return config_from(VtkConfig, namespace)


def main(argv: list[str] | None = None) -> int:
    """Export, print the paths written, and turn a user error into one line and exit status 2."""
    with exit_on_user_error():
        config = parse_vtk_config(sys.argv[1:] if argv is None else argv)
        print("\n".join(run(config)))
    return 0


def run(config: VtkConfig) -> list[str]:
    """Write what ``config`` asks for; returns the paths written."""
    surface = read_surface(config.surf_file)
    grid = surface_grid(surface, config.metric, log=config.log, zmax=config.zmax)
    if config.interp:
        grid = resample(grid, config.interp, log=config.log, zmax=config.zmax)
    out = config.output_path()
    polydata = to_polydata(grid, flat=config.flat)
    dataset = polydata if config.format == "vtp" else to_structured_grid(grid, flat=config.flat)
    paths = [write(dataset, out)]
    path = None
    if config.proj_file:
        path = trajectory_polydata(grid, read_projection(config.proj_file), flat=config.flat)
        if path.left_out:
            print(f"note: {path.left_out} checkpoint(s) lie outside the surface or over unfinished "
                  f"points and are left out of the path", file=sys.stderr)
        paths.append(write(path.polydata, f"{os.path.splitext(out)[0]}_trajectory.vtp"))
    if config.png:
        from .views.plot_render import render_png, picture_grid  # loads OpenGL: only for a picture

        if polydata.GetNumberOfPolys() == 0:
            raise LandscapeError(f"{config.surf_file}: no finished quad to render yet "
                                 f"({done_text(surface.fraction_done)})")
        projection = read_projection(config.proj_file) if config.proj_file else None
        variance = explained_variance(config.surf_file, surface, None)
        render_png(picture_grid(grid), config.png, projection, title=metric_label(config.metric, surface),
                   axis_titles=(axis_label("x", surface, variance), axis_label("y", surface, variance),
                                metric_label(config.metric, surface).split(" (")[0]))
        paths.append(config.png)
    return paths


if __name__ == "__main__":
    sys.exit(main())
