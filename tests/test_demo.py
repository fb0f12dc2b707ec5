"""The embedded demo, run as a user runs it: train, surface under mpirun, then a rerun that reuses both."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import h5py
import numpy as np
from vtkmodules.vtkIOXML import vtkXMLPolyDataReader

from conftest import run_module

ROOT = Path(__file__).resolve().parent.parent

GRID = ("--x=-1:1:7", "--y=-1:1:7")


def test_demo_trains_and_writes_a_surface_then_reuses_them(tmp_path):
    first = run_module("mpi_landscape.demo", "--workdir", "tmp", *GRID, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    surf_file = tmp_path / "tmp" / "demo_surface.h5"
    assert f"demo surface written to {surf_file}" in first.stdout
    assert "mpirun" in first.stdout
    assert f"{sys.executable} -m mpi_landscape.plot" in first.stdout  # the Python that has the project
    pictures = printed_pictures(first.stdout)
    names = {os.path.basename(p) for p in pictures}
    assert {"demo_surface_train_loss_2dcontour.png", "demo_surface_train_loss_3dsurface.png",
            "demo_surface_vtk.png"} <= names, names
    assert all(os.path.getsize(p) > 10_000 for p in pictures if p.endswith(".png"))
    reader = vtkXMLPolyDataReader()
    reader.SetFileName(next(p for p in pictures if p.endswith(".vtp")))
    reader.Update()
    assert reader.GetOutput().GetNumberOfPoints() == 49
    readme_images_are_the_demos(names)

    with h5py.File(surf_file, "r") as f:
        assert f["train_loss"].shape == (7, 7) and f["test_loss"].shape == (7, 7)
        assert f["done"][:].all()
        train_loss = f["train_loss"][:]
        centre_acc = f["train_acc"][3, 3]
    assert np.isfinite(train_loss).all()
    lowest = np.unravel_index(np.argmin(train_loss), train_loss.shape)
    assert max(abs(lowest[0] - 3), abs(lowest[1] - 3)) <= 1, lowest
    assert train_loss[3, 3] < 0.5 * np.median(train_loss)
    assert centre_acc > 90

    log = (tmp_path / "tmp" / "log.csv").read_text().splitlines()
    assert log[0] == "epoch,lr,train_loss,train_acc,test_loss,test_acc" and len(log) == 1 + 21
    checkpoint = tmp_path / "tmp" / "model_20.t7"
    trained_at = os.path.getmtime(checkpoint)

    again = run_module("mpi_landscape.demo", "--workdir", "tmp", *GRID, "--np", "1", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "using the trained network" in again.stdout
    assert f"demo surface written to {surf_file}" in again.stdout
    assert os.path.getmtime(checkpoint) == trained_at
    with h5py.File(surf_file, "r") as f:
        assert np.array_equal(f["train_loss"][:], train_loss)


def printed_pictures(stdout: str) -> list[str]:
    """The paths the demo printed after its "pictures:" line, each checked to exist."""
    paths = stdout.split("pictures:\n", 1)[1].splitlines()
    paths = [p for p in paths if os.path.isabs(p)]
    assert paths and all(os.path.isfile(p) for p in paths), paths
    return paths


def readme_images_are_the_demos(demo_writes: set[str]) -> None:
    """The README's pictures are files the demo writes, copied into docs/images by `make images`."""
    shown = re.findall(r"!\[[^]]*\]\(docs/images/([^)]+)\)", (ROOT / "README.md").read_text(encoding="utf-8"))
    assert shown and set(shown) <= demo_writes, (shown, demo_writes)
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    copied = re.search(r"^IMAGES := (.+)$", makefile, re.M)[1].split()
    assert set(shown) <= set(copied) <= demo_writes
    assert re.search(r"^images: demo\n\tcp \$\(addprefix \$\(DEMO_OUTPUT\)/,\$\(IMAGES\)\) docs/images/",
                     makefile, re.M)
    for name in shown:
        assert (ROOT / "docs" / "images" / name).is_file()
