"""``python -m mpi_landscape.view``: surface files as one interactive HTML page, or a live page.

    python -m mpi_landscape.view resnet56.h5 --out resnet56.html
    python -m mpi_landscape.view surf.h5 --proj_file proj.h5 --out path.html
    python -m mpi_landscape.view sgd.h5 adam.h5 sam.h5 --labels "SGD,Adam,SAM" --out compare.html
    python -m mpi_landscape.view epoch_*.h5 --frames --out evolution.html
    python -m mpi_landscape.view --serve resnet56.h5 --port 8050     # while the job writes it

The page works offline (plotly.js is inside it): a 3D surface to rotate and
zoom, with log or linear height, and a contour view; a switch between every
metric the files hold and between train and test; the value under the cursor
with α and β (and the epoch on a trajectory); diverged points as named gaps;
the file's provenance and the summary command's numbers beside the plot.
Several files are panels on one colour scale, or with ``--frames`` one
slider over them. ``--serve`` serves the page on 127.0.0.1 and refreshes it as
a running job fills the file, until Ctrl-C. The path written is printed.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import dataclass

from .cli import add_flag, config_from_files, exit_on_user_error, file_labels, new_parser
from .errors import LandscapeError
from .store import Surface, read_projection, read_surface
from .views.plot_data import default_prefix
from .views.web_page import PageItem, page_data, write_page
from .views.web_serve import LiveFiles, serve

LOCALHOST = "127.0.0.1"


@dataclass(frozen=True)
class ViewConfig:
    """Which files to show, how, and where the page goes (or where it is served)."""

    surf_files: tuple[str, ...] = ()
    out: str | None = None
    proj_file: str | None = None
    dir_file: str | None = None
    frames: bool = False
    labels: str | None = None
    title: str | None = None
    serve: bool = False
    host: str = LOCALHOST
    port: int = 8050
    refresh: float = 2.0

    @property
    def label_list(self) -> list[str | None]:
        """``--labels``: one per file, in order (None each when not given)."""
        return file_labels(self.labels, self.surf_files) or [None] * len(self.surf_files)

    @property
    def mode(self) -> str:
        if self.frames:
            return "frames"
        return "compare" if len(self.surf_files) > 1 else "single"

    @property
    def out_path(self) -> str:
        return self.out or default_prefix(self.surf_files[0]) + ".html"

    def __post_init__(self) -> None:
        _ = self.label_list  # a bad --labels is refused before any file is read
        if self.frames and len(self.surf_files) < 2:
            raise LandscapeError("--frames makes a slider over several files; give two or more")
        if not 0 <= self.port <= 65535:
            raise LandscapeError(f"--port {self.port}: give a TCP port, 1 to 65535 (0: any free one)")
        if not self.refresh > 0:
            raise LandscapeError(f"--refresh {self.refresh:g}: give seconds, e.g. 2")
        if self.serve and self.out:
            raise LandscapeError("--serve serves the page; --out writes it: choose one")


def build_parser() -> argparse.ArgumentParser:
    """The view command's flags."""
    p = new_parser("mpi_landscape.view", ViewConfig,
                   "One self-contained interactive HTML page of 2D surface files, or a live page of a "
                   "running job (--serve).")
    p.add_argument("surf_files", nargs="*", metavar="FILE", default=argparse.SUPPRESS,
                   help="surface files (.h5)")
    add_flag(p, "--out", help="the page to write; None: the first file with .html for .h5")
    add_flag(p, "--proj_file", help="projected trajectory (proj_xcoord, proj_ycoord) drawn on every surface")
    add_flag(p, "--dir_file", help="direction file for PCA axis labels; None: the one each surface names")
    add_flag(p, "--frames", action="store_true",
             help="one panel with a slider over the files (e.g. one surface per checkpoint along "
                  "shared directions) instead of one panel per file")
    add_flag(p, "--labels", help="comma-separated names, one per file: panel and frame names")
    add_flag(p, "--title", help="page title; None: the model and checkpoint")
    add_flag(p, "--serve", action="store_true",
             help="serve a live page that refreshes as a running job fills the files, until Ctrl-C")
    add_flag(p, "--host", help="address --serve listens on; only this machine can connect to the default "
                               "(reach it from elsewhere through an SSH tunnel, see docs/clusters.md)")
    add_flag(p, "--port", type=int, help="TCP port of --serve (0: any free port)")
    add_flag(p, "--refresh", type=float, metavar="SECONDS", help="how often the live page polls for new points")
    return p


def parse_view_config(argv: list[str]) -> ViewConfig:
    """Parse ``argv``; at least one surface file is required."""
    return config_from_files(build_parser(), ViewConfig, argv)


def main(argv: list[str] | None = None) -> int:
    """Write the page and print its path; with ``--serve``, serve it until Ctrl-C."""
    with exit_on_user_error():
        config = parse_view_config(sys.argv[1:] if argv is None else argv)
        if config.serve:
            return serve_live(config)
        surfaces = {path: read_surface(path) for path in config.surf_files}
        data = page_data(page_items(config, surfaces), config.mode, config.title)
        print(write_page(config.out_path, data), flush=True)
    return 0


def page_items(config: ViewConfig, surfaces: dict[str, Surface]) -> list[PageItem]:
    """The files as the page shows them, each with the trajectory and its label."""
    projection = read_projection(config.proj_file) if config.proj_file else None
    return [PageItem(path, surfaces[path], projection, label, config.dir_file)
            for path, label in zip(config.surf_files, config.label_list)]


def serve_live(config: ViewConfig) -> int:
    """Serve the live page; Ctrl-C (or SIGTERM) stops the server and returns 130, as ``plot --watch`` does."""
    if config.proj_file and not os.path.isfile(config.proj_file):
        raise LandscapeError(f"projection file {config.proj_file} does not exist")
    files = LiveFiles(list(config.surf_files), lambda surfaces: page_items(config, surfaces), config.mode,
                      config.title, config.refresh)

    def ready(url: str) -> None:
        print(f"serving {url} (Ctrl-C to stop)", flush=True)

    previous = signal.signal(signal.SIGTERM, _interrupt)  # kill and schedulers stop it as Ctrl-C does
    try:
        serve(files, config.host, config.port, ready)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr, flush=True)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
