"""Write small surface and projection files with known values, for the plot and vtk tests.

``write_surface`` writes the way a run does (``SurfaceWriter``), ``write_reference_surface``
and ``write_projection`` the way the reference's scripts do (plain h5py); the heights are
``bowl``, an analytic function whose orientation on the grid is easy to check.
"""

from __future__ import annotations

import h5py
import numpy as np

from mpi_landscape.store import SurfaceWriter

DEMO_CONFIG = {"model": "demo_mlp", "model_file": "demo.t7", "xnorm": "filter", "ynorm": "filter",
               "dir_type": "weights", "loss_name": "crossentropy"}


def bowl(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """An asymmetric bowl: Z[iy, ix] = f(x[ix], y[iy]) tells a transposed grid from a right one."""
    xx, yy = np.meshgrid(x, y)
    return 0.2 + xx ** 2 + 3 * yy ** 2 + 0.5 * xx


def write_surface(path, x, y=None, done=None, metrics=None, config=DEMO_CONFIG, dir_file="dirs.h5"):
    """A surface file written the way a run writes it; ``done`` (bool, grid shape) marks what is finished."""
    shape = (len(y), len(x)) if y is not None else (len(x),)
    if metrics is None:
        z = bowl(x, y) if y is not None else 0.2 + x ** 2
        metrics = {"train_loss": z, "train_acc": 100 - 10 * z, "test_loss": 1.1 * z, "test_acc": 95 - 10 * z}
    done = np.ones(shape, dtype=bool) if done is None else done
    writer = SurfaceWriter.open(str(path), x, y, dir_file, list(metrics), identity={"model": "test"},
                                attrs={"config": config}, flush_seconds=3600)
    for index in np.flatnonzero(done.ravel()):
        writer.record(int(index), {k: float(v.ravel()[index]) for k, v in metrics.items()})
    writer.close()
    return str(path)


def leave_as_killed(writer: SurfaceWriter) -> None:
    """Leave a writer's files as a killed job would (snapshot, journal, no close); the OS frees its lock."""
    writer._journal.close()
    writer._lock.release()


def write_reference_surface(path, x, y, unfinished=()):
    """A file as the reference's plot_surface.py leaves it: (nx, ny) arrays in (ny, nx) order, -1 unfinished."""
    z = bowl(x, y)
    for iy, ix in unfinished:
        z[iy, ix] = -1
    with h5py.File(path, "w") as f:
        f["dir_file"] = "ref_dirs.h5"
        f["xcoordinates"] = x
        f["ycoordinates"] = y
        f["train_loss"] = z.ravel().reshape(len(x), len(y))
        f["train_acc"] = np.where(z == -1, -1, 100 - 10 * z).ravel().reshape(len(x), len(y))
    return str(path)


def write_projection(path, x, y, epochs=None, drops=None):
    """A projection file in the reference's layout: the trajectory's coordinates, optional epochs and lr drops."""
    with h5py.File(path, "w") as f:
        f["proj_xcoord"], f["proj_ycoord"] = x, y
        if epochs is not None:
            f["epochs"] = epochs
        if drops is not None:
            f["lr_drop_epochs"] = drops
    return str(path)


def basin(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A trained network's loss: 0.02 at the minimum, rising over two decades to the grid's corners."""
    xx, yy = np.meshgrid(x, y)
    return 0.02 + 4 * (xx ** 2 + 2 * yy ** 2) + 0.3 * xx


def curvature_metrics(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Hessian maps as a curvature run leaves them: λmax from about 1 in the basin to 190 at the
    corners, λmin of either sign near zero in the centre (down to −6), their ratio, and the loss."""
    xx, yy = np.meshgrid(x, y)
    r2 = (xx ** 2 + yy ** 2) / 2
    max_eig = 1 + 189 * r2 ** 1.5
    min_eig = -0.011 + 0.2 * xx - 6 * r2 ** 2
    return {"train_loss": basin(x, y), "max_eig": max_eig, "min_eig": min_eig,
            "eig_ratio": np.abs(min_eig) / max_eig}


def write_spectrum_file(path) -> str:
    """A Hessian spectrum file as the hessian command writes it (one SLQ run), with a known density."""
    from mpi_landscape.store import Spectrum, write_spectrum

    grid = np.linspace(-2, 60, 400)
    density = np.exp(-0.5 * (grid / 0.4) ** 2) + 1e-3 * np.exp(-0.5 * ((grid - 45) / 2) ** 2)
    spectrum = Spectrum(top_eigenvalues=np.array([47.81234, 30.1]), min_eigenvalue=-1.23456789,
                        trace=812.345, trace_error=12.3, slq_nodes=np.zeros((1, 40)),
                        slq_weights=np.zeros((1, 40)), density_grid=grid, density=density / density.sum(),
                        attrs={"model": "demo_mlp", "split": "train"})
    write_spectrum(str(path), spectrum)
    return str(path)
