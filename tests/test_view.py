"""``python -m mpi_landscape.view``: the self-contained page, driven in a real (headless) Chromium.

A real surface of the trained demo network (``mpirun -n 2``) and files with
known values (curvature metrics, a diverged point, a trajectory, frames) are
written, the page is opened from disk, and what a reader sees is checked:
no JavaScript error, no request but the page itself, a drawn basin, the
file's own values under a real mouse, metric and frame switches.
"""

from __future__ import annotations

import contextlib
import io
import os
import re

import h5py
import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from browser import (chromium, draws, hover, javascript_errors, open_page, pixel, requested_urls,
                     screenshot, wait_for_draws)
from conftest import run_module
from mpi_landscape import view
from surface_files import bowl, write_projection, write_surface

EMAIL_BYTES = 10 * 2 ** 20  # a 51×51 page stays well under common attachment limits (~20-25 MB)
VIRIDIS_LOW = np.array([68, 1, 84])  # the colour of the basin's bottom


@pytest.fixture(scope="module")
def browser():
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def real_surface(tmp_path_factory, demo_checkpoint) -> str:
    """A 7×7 train+test surface of the trained demo network, computed under mpirun -n 2."""
    folder = tmp_path_factory.mktemp("view_run")
    result = run_module("mpi_landscape.surface", "--model", "demo_mlp", "--model_file", demo_checkpoint,
                        "--dataset", "demo", "--x=-1:1:7", "--y=-1:1:7", "--splits", "train,test",
                        "--surf_file", "demo.h5", ranks=2, cwd=folder)
    assert result.returncode == 0, result.stderr
    return str(folder / "demo.h5")


def curvature_surface(path, diverged=(0, 0)) -> str:
    """An 11×11 file with loss, accuracy, Hessian metrics and one diverged point."""
    x = y = np.linspace(-1, 1, 11)
    z = bowl(x, y)
    metrics = {"train_loss": z.copy(), "train_acc": 100 - 10 * z, "test_loss": 1.1 * z, "test_acc": 95 - 10 * z,
               "train_nonfinite": np.zeros_like(z), "max_eig": 5 + z, "min_eig": z - 1, "eig_ratio": 0.1 * z}
    metrics["train_loss"][diverged] = np.inf
    metrics["train_nonfinite"][diverged] = 0.25
    return write_surface(path, x, y, metrics=metrics)


def make_page(*args: str) -> str:
    """Run the view command in this process (the page is what it writes); the page's path."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert view.main(list(args)) == 0
    page = out.getvalue().strip()
    assert os.path.isfile(page)
    return page


def value_in(text: str, metric: str) -> float:
    found = re.search(rf"{metric} = (-?[\d.]+(?:e[-+]?\d+)?)", text)
    assert found, f"no value of {metric} in the hover label {text!r}"
    return float(found[1])


def choose_metric(driver, metric: str) -> None:
    before = draws(driver)
    Select(driver.find_element(By.ID, "metric")).select_by_value(metric)
    wait_for_draws(driver, before + 1)


def test_page_of_a_real_run_is_offline_draws_the_basin_and_shows_the_files_values(browser, real_surface,
                                                                                 tmp_path):
    page = make_page(real_surface, "--out", str(tmp_path / "demo.html"))
    url = f"file://{page}"
    open_page(browser, url)
    assert javascript_errors(browser) == []
    assert [u for u in requested_urls(browser) if u != url and not u.startswith(("data:", "about:"))] == []
    buttons = browser.execute_script("return [...document.querySelectorAll('.modebar-btn')]"
                                     ".map(b => b.getAttribute('data-title'))")
    assert "Download plot as a PNG" in buttons and not [b for b in buttons if "Share" in b or "Cloud" in b]
    with h5py.File(real_surface, "r") as f:  # the file's own values, read plainly
        x, y = f["xcoordinates"][()], f["ycoordinates"][()]
        centre = (int(np.argmin(abs(y))), int(np.argmin(abs(x))))
        train_loss, test_acc = f["train_loss"][centre], f["test_acc"][centre]
        corner_loss = f["train_loss"][0, 0]
    assert corner_loss > 2 * train_loss  # a basin: the picture below has something to show
    bottom, rim = pixel(browser, "contour-0", 0.0, 0.0), pixel(browser, "contour-0", -0.95, -0.95)
    assert np.abs(bottom - VIRIDIS_LOW).max() < 60, bottom  # the basin's dark purple at the centre
    assert rim[1] > bottom[1] + 80, (bottom, rim)  # towards the rim: green to yellow
    scene = np.asarray(Image.open(io.BytesIO(browser.find_element(By.ID, "surface-0").screenshot_as_png))
                       .convert("RGB"), dtype=int)
    assert (np.abs(scene - VIRIDIS_LOW).max(axis=2) < 40).sum() > 50  # the 3D scene (WebGL) has its basin too
    text = hover(browser, "contour-0", 0.0, 0.0)
    assert "α = 0" in text and "β = 0" in text
    assert value_in(text, "train_loss") == pytest.approx(train_loss, rel=1e-5)
    screenshot(browser, "page")
    choose_metric(browser, "test_acc")
    assert value_in(hover(browser, "contour-0", 0.0, 0.0), "test_acc") == pytest.approx(test_acc, rel=1e-5)
    assert javascript_errors(browser) == []


def test_curvature_metrics_trajectory_and_a_diverged_point(browser, tmp_path):
    surf = curvature_surface(tmp_path / "curv.h5")
    proj = write_projection(tmp_path / "proj.h5", np.linspace(0.9, 0.3, 7), np.linspace(0.9, 0.5, 7),
                            epochs=np.arange(0, 70, 10), drops=[20, 40])
    open_page(browser, f"file://{make_page(surf, '--proj_file', proj)}#view=contour")
    traces = browser.execute_script("return document.getElementById('contour-0').data"
                                    ".map(t => [t.name, t.x ? t.x.length : 0])")
    assert dict(traces)["trajectory"] == 7 and dict(traces)["start"] == 1 and dict(traces)["end"] == 1
    assert dict(traces)["lr drop"] == 2
    drawn = browser.execute_script("return document.querySelectorAll('#contour-0 .scatterlayer .point').length")
    assert drawn >= 7 + 1 + 1 + 2  # the path's markers, start, end, the drops (and the × of the diverged point)
    assert "diverged" in hover(browser, "contour-0", -1.0, -1.0)
    assert "epoch 60" in hover(browser, "contour-0", 0.3, 0.5)
    screenshot(browser, "trajectory")
    with h5py.File(surf, "r") as f:
        max_eig, min_eig = f["max_eig"][5, 5], f["min_eig"][5, 5]
    choose_metric(browser, "max_eig")
    assert value_in(hover(browser, "contour-0", 0.0, 0.0), "max_eig") == pytest.approx(max_eig, rel=1e-5)
    choose_metric(browser, "min_eig")
    assert value_in(hover(browser, "contour-0", 0.0, 0.0), "min_eig") == pytest.approx(min_eig, rel=1e-5)
    colours = browser.execute_script("return document.getElementById('contour-0').data[0].zmid")
    assert colours == 0  # a signed curvature's colours diverge from zero
    assert javascript_errors(browser) == []


def test_frames_slider_moves_between_files_on_one_colour_scale(browser, tmp_path):
    x = y = np.linspace(-1, 1, 9)
    files = [write_surface(tmp_path / f"epoch{k}.h5", x, y,
                           metrics={"train_loss": scale * bowl(x, y), "train_acc": 100 - 10 * bowl(x, y)})
             for k, scale in ((1, 1.0), (2, 3.0))]
    page = make_page(*files, "--frames", "--labels", "epoch 1,epoch 2", "--out", str(tmp_path / "f.html"))
    open_page(browser, f"file://{page}#view=both")
    assert value_in(hover(browser, "contour-0", 0.0, 0.0), "train_loss") == pytest.approx(0.2)
    first_range = browser.execute_script("const t = document.getElementById('contour-0').data[0]; return [t.zmin, t.zmax]")
    before = draws(browser)
    browser.find_element(By.ID, "frame").send_keys(Keys.ARROW_RIGHT)
    wait_for_draws(browser, before + 1)
    assert browser.find_element(By.ID, "frame-name").text == "2/2: epoch 2"
    assert value_in(hover(browser, "contour-0", 0.0, 0.0), "train_loss") == pytest.approx(0.6)
    second_range = browser.execute_script("const t = document.getElementById('contour-0').data[0]; return [t.zmin, t.zmax]")
    assert first_range == second_range  # one scale over the frames
    assert browser.execute_script("return location.hash") == "#metric=train_loss&view=both&height=auto&frame=2"
    open_page(browser, f"file://{page}#view=contour&frame=2&height=linear")  # a shared link opens its view
    assert browser.find_element(By.ID, "frame-name").text == "2/2: epoch 2"
    assert not browser.find_element(By.ID, "surface-0").is_displayed()
    assert browser.execute_script("return document.getElementById('contour-0').data[0].zmax") == pytest.approx(
        3 * bowl(x, y).max())
    screenshot(browser, "frames")
    assert javascript_errors(browser) == []


def test_compare_panels_share_one_colour_scale(browser, tmp_path):
    x = y = np.linspace(-1, 1, 9)
    low = write_surface(tmp_path / "low.h5", x, y, metrics={"train_loss": bowl(x, y)})
    high = write_surface(tmp_path / "high.h5", x, y, metrics={"train_loss": 2 + bowl(x, y)})
    open_page(browser, f"file://{make_page(low, high, '--labels', 'SGD,Adam', '--out', str(tmp_path / 'c.html'))}")
    ranges = browser.execute_script("return [0, 1].map(i => { const t = document.getElementById("
                                    "`contour-${i}`).data[0]; return [t.zmin, t.zmax, t.showscale]; })")
    assert ranges[0][:2] == ranges[1][:2]
    assert ranges[0][:2] == pytest.approx(np.log10([bowl(x, y).min(), 2 + bowl(x, y).max()]))  # a log height
    assert [r[2] for r in ranges] == [False, True]  # one colour bar for both
    before = draws(browser)
    browser.find_element(By.CSS_SELECTOR, 'input[name="height"][value="linear"]').click()
    wait_for_draws(browser, before + 1)
    linear = browser.execute_script("const t = document.getElementById('contour-1').data[0]; return [t.zmin, t.zmax]")
    assert linear == pytest.approx([bowl(x, y).min(), 2 + bowl(x, y).max()])
    assert "SGD" in browser.find_element(By.ID, "name-0").text
    assert javascript_errors(browser) == []


def test_page_of_a_51x51_surface_is_small_enough_to_mail(tmp_path):
    x = y = np.linspace(-1, 1, 51)
    page = make_page(write_surface(tmp_path / "s.h5", x, y))
    assert os.path.getsize(page) < EMAIL_BYTES
    text = open(page, encoding="utf-8").read()
    assert "<script src" not in text  # plotly.js and the data are inline


@pytest.mark.parametrize("problem, expected", [
    ("1d", "1D surface"),
    ("missing", "does not exist"),
    ("labels", "--labels gives 1 labels for 2 files"),
    ("frames", "--frames makes a slider over several files"),
])
def test_bad_input_is_one_error_line(tmp_path, capsys, problem, expected):
    two_d = write_surface(tmp_path / "s.h5", np.linspace(-1, 1, 5), np.linspace(-1, 1, 5))
    args = {"1d": [write_surface(tmp_path / "line.h5", np.linspace(-1, 1, 5))],
            "missing": [str(tmp_path / "nope.h5")],
            "labels": [two_d, two_d, "--labels", "one"],
            "frames": [two_d, "--frames"]}[problem]
    with pytest.raises(SystemExit) as stopped:
        view.main(args)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err
    assert len(err.strip().splitlines()) == 1


def test_library_view_returns_the_page_and_shows_it_inline_in_ipython(browser, tmp_path):
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from conftest import train_demo_net
    from mpi_landscape import compute_surface
    from mpi_landscape.data import demo_split

    data = demo_split("train", n=200)
    surface = compute_surface(train_demo_net(steps=20), (data.inputs, data.targets), x="-1:1:5", y="-1:1:5",
                              progress=False)
    page = surface.view("--out", str(tmp_path / "plain.html"))  # outside IPython: the path, nothing shown
    assert page == str(tmp_path / "plain.html") and os.path.isfile(page)
    InteractiveShell.instance()
    try:
        with capture_output() as shown:
            inline = surface.view("--out", str(tmp_path / "inline.html"))
    finally:
        InteractiveShell.clear_instance()
    assert inline == str(tmp_path / "inline.html")
    (output,) = shown.outputs
    cell = output.data["text/html"]
    assert cell.startswith("<div><iframe srcdoc=")
    (tmp_path / "cell.html").write_text(cell)  # the notebook's output cell, opened as the browser would
    browser.get(f"file://{tmp_path / 'cell.html'}")
    browser.switch_to.frame(browser.find_element(By.TAG_NAME, "iframe"))
    try:
        wait_for_draws(browser, 1)
        assert value_in(hover(browser, "contour-0", 0.0, 0.0), "train_loss") == pytest.approx(
            surface.metrics["train_loss"][2, 2], rel=1e-5)
    finally:
        browser.switch_to.default_content()
    assert javascript_errors(browser) == []


def test_partial_file_is_its_finest_complete_lattice_with_gaps_named(tmp_path):
    from mpi_landscape.grid import refinement_levels
    from mpi_landscape.store import read_surface
    from mpi_landscape.views.web_page import PageItem, page_data

    x = y = np.linspace(-1, 1, 9)
    level = refinement_levels(9)
    done = (level[None, :] <= 2) & (level[:, None] <= 2)  # the 5×5 lattice ...
    done[0, 1] = True  # ... and one point of the next level
    path = write_surface(tmp_path / "partial.h5", x, y, done=done)
    data = page_data([PageItem(path, read_surface(path))])
    (panel,) = data["panels"]
    assert panel["x"] == pytest.approx(np.linspace(-1, 1, 5)) and panel["grid"] == [9, 9]
    assert panel["fraction_done"] == pytest.approx(26 / 81) and panel["progress"] == "32% done, shown at 5×5"
    assert all(v is not None for row in panel["metrics"]["train_loss"]["values"] for v in row)
    curvature = curvature_surface(tmp_path / "curv.h5")
    data = page_data([PageItem(curvature, read_surface(curvature))])
    train_loss = data["panels"][0]["metrics"]["train_loss"]
    assert train_loss["values"][0][0] is None and train_loss["diverged"] == [0]
    assert data["panels"][0]["metrics"]["train_acc"]["diverged"] == [0]  # a diverged point has no accuracy
    assert data["panels"][0]["metrics"]["test_loss"]["diverged"] == []  # the test split did not diverge
    assert data["scales"]["min_eig"]["signed"] and not data["scales"]["train_acc"]["log"]
