"""compute_surface as a notebook user calls it: the data in whatever form they have, the network
given back as it came, the directions returned for a second call, and the surface plotted and
saved with the command line's own figure and file code."""

from __future__ import annotations

import os

import re

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from vtkmodules.vtkIOXML import vtkXMLPolyDataReader

from conftest import run_module, train_demo_net
from mpi_landscape import compute_surface
from mpi_landscape.data import demo_split
from mpi_landscape.errors import LandscapeError
from mpi_landscape.store import read_surface
from mpi_landscape.task import Classification

GRID = {"x": "-1:1:3", "y": "-1:1:3"}


@pytest.fixture(scope="module")
def trained():
    return train_demo_net(steps=60)


@pytest.fixture(scope="module")
def spirals():
    data = demo_split("train", n=300)
    return data.inputs, data.targets


@pytest.fixture(scope="module")
def reference(trained, spirals):
    return compute_surface(trained, spirals, **GRID, progress=False)


def test_numpy_dataset_and_dataloader_give_the_tensors_surface(trained, spirals, reference):
    inputs, targets = spirals
    forms = {"numpy": (inputs.double().numpy(), targets.numpy()),
             "dataset": TensorDataset(inputs, targets),
             "dataloader": DataLoader(TensorDataset(inputs, targets), batch_size=64, shuffle=True)}
    for name, data in forms.items():
        surface = compute_surface(trained, data, **GRID, progress=False)
        np.testing.assert_allclose(surface.metrics["train_loss"], reference.metrics["train_loss"],
                                   rtol=1e-5, err_msg=name)
        np.testing.assert_array_equal(surface.metrics["train_acc"], reference.metrics["train_acc"], err_msg=name)


def test_bad_data_is_one_clear_error(trained):
    with pytest.raises(LandscapeError, match="inputs, targets"):
        compute_surface(trained, torch.zeros(10, 2), **GRID, progress=False)


def test_returned_directions_evaluate_the_same_plane_again(trained, spirals, reference):
    dx, dy = reference.directions
    assert len(dx) == len(list(trained.parameters())) and dy is not None
    again = compute_surface(trained, {"train": spirals, "test": spirals}, **GRID,
                            directions=reference.directions, progress=False)
    np.testing.assert_allclose(again.metrics["train_loss"], reference.metrics["train_loss"], rtol=1e-6)
    np.testing.assert_allclose(again.metrics["test_loss"], reference.metrics["train_loss"], rtol=1e-6)
    other = compute_surface(train_demo_net(steps=1), spirals, **GRID, progress=False)
    with pytest.raises(LandscapeError, match="does not fit"):
        compute_surface(torch.nn.Sequential(torch.nn.Linear(2, 3)), spirals, **GRID,
                        directions=other.directions, progress=False)


def test_network_mode_weights_forwards_and_threads_are_restored(trained, spirals):
    trained.train()
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    threads = torch.get_num_threads()
    surface = compute_surface(trained, spirals, **GRID, progress=False)
    assert surface.metrics["train_loss"].min() > 0
    assert trained.training and all(m.training for m in trained.modules())
    assert all("forward" not in m.__dict__ for m in trained.modules())  # folded BatchNorm's forwards are gone
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())
    assert torch.get_num_threads() == threads
    trained.eval()


class Interrupting(Classification):
    """Classification that records torch's threads at every batch of every point, and is
    interrupted (as by Ctrl-C) at batch ``interrupt_at``."""

    def __init__(self, interrupt_at: int | None = None):
        super().__init__()
        self.interrupt_at, self.threads = interrupt_at, []

    def sums(self, outputs, inputs, targets):
        self.threads.append(torch.get_num_threads())
        if len(self.threads) == self.interrupt_at:
            raise KeyboardInterrupt
        return super().sums(outputs, inputs, targets)


def test_interrupted_call_restores_the_network(trained, spirals):
    net = train_demo_net(steps=5).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    task = Interrupting(interrupt_at=4)
    with pytest.raises(KeyboardInterrupt):
        compute_surface(net, spirals, **GRID, batch_size=1000, task=task, progress=False)
    assert len(task.threads) == 4  # the check of a first batch, then interrupted at the third point of the grid
    assert all(m.training for m in net.modules())
    assert all("forward" not in m.__dict__ for m in net.modules())  # folded BatchNorm's forwards are gone
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_a_small_network_runs_on_one_thread(spirals):
    task = Interrupting()
    compute_surface(train_demo_net(steps=5), spirals, x="-1:1:2", batch_size=100, task=task, progress=False)
    # the check of a first batch before the grid, then two points of three batches each
    assert len(task.threads) == 1 + 2 * 3 and set(task.threads[1:]) == {1}


def test_progress_bar_is_shown_unless_turned_off(trained, spirals, capsys):
    compute_surface(trained, spirals, x="-1:1:4", progress=True)
    assert "4/4" in capsys.readouterr().err
    compute_surface(trained, spirals, x="-1:1:4", progress=False)
    assert "4/4" not in capsys.readouterr().err


def test_saved_surface_is_read_by_h5py_plot_and_vtk(reference, tmp_path):
    path = reference.save(str(tmp_path / "mine.h5"))
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["train_loss"][:], reference.metrics["train_loss"])
        assert f["done"][:].all() and list(f["xcoordinates"][:]) == [-1, 0, 1]
        dir_file = f["dir_file"][()].decode()
    with h5py.File(dir_file, "r") as f:
        assert len(f["xdirection"]) == len(reference.directions[0])
    assert read_surface(path).metrics["train_acc"].shape == (3, 3)
    with pytest.raises(LandscapeError, match="exists"):
        reference.save(path)

    figures = reference.plot("--format", "png")
    assert figures and all(p.endswith(".png") and p.startswith(str(tmp_path)) for p in figures)
    vtp = [p for p in reference.vtk() if p.endswith(".vtp")]
    reader = vtkXMLPolyDataReader()
    reader.SetFileName(vtp[0])
    reader.Update()
    assert reader.GetOutput().GetNumberOfPoints() == 9

    proc = run_module("mpi_landscape.plot", path, "--format", "png", "--kinds", "contour", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_unsaved_surface_plots_into_the_current_folder(trained, spirals, tmp_path, monkeypatch):
    """The README's order, plot() before save(): the figures land where the user works (not in the
    temporary folder the surface file is put in for the plot command to read)."""
    monkeypatch.chdir(tmp_path)
    surface = compute_surface(trained, spirals, **GRID, progress=False)
    figures = surface.plot("--format", "png", "--kinds", "contour")
    assert figures == [str(tmp_path / "surface_train_loss_2dcontour.png")] and os.path.isfile(figures[0])
    assert surface.plot("--format", "png", "--kinds", "heat") == [str(tmp_path / "surface_train_loss_2dheat.png")]
    assert surface.save("net.h5") == "net.h5" and os.path.isfile(tmp_path / "net.h5")
    elsewhere = surface.plot("--format", "png", "--kinds", "heat", "--out", str(tmp_path / "fig"))
    assert elsewhere == [str(tmp_path / "fig_train_loss_2dheat.png")]


def test_library_page_documents_every_parameter_and_field():
    import dataclasses
    import inspect
    from pathlib import Path

    from mpi_landscape.api import ComputedSurface

    page = (Path(__file__).resolve().parent.parent / "docs" / "library.md").read_text(encoding="utf-8")
    parameters = set(inspect.signature(compute_surface).parameters)
    fields = {f.name for f in dataclasses.fields(ComputedSurface) if not f.name.startswith("_")}
    public = {"save", "plot", "vtk", "shape", "fraction_done"}
    missing = sorted(name for name in parameters | fields | public if not re.search(rf"^\| `{name}\b", page, re.M)
                     and not re.search(rf"^\| `\w+`, `{name}`", page, re.M))
    assert not missing, missing
