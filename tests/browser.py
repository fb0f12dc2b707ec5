"""Debian's Chromium driven by Selenium, kept off the network, for the page tests.

``chromium()`` starts a headless browser with a fresh profile and every
background service that would reach the network turned off; it records the
browser's console and its network log (Chrome DevTools events), so a test can
assert that a page raised no JavaScript error and fetched nothing but itself.
``hover`` moves the real mouse over a point of a plot and returns the hover
label plotly shows there. ``MPI_LANDSCAPE_VIEW_SCREENSHOTS=docs/images`` makes
``screenshot`` keep the pictures for the docs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile

import numpy as np
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
QUIET_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
               "--disable-domain-reliability", "--disable-client-side-phishing-detection",
               "--metrics-recording-only", "--enable-unsafe-swiftshader", "--window-size=1400,1000")
SCREENSHOTS_ENV = "MPI_LANDSCAPE_VIEW_SCREENSHOTS"


@contextlib.contextmanager
def chromium():
    """A headless Chromium under Selenium; closed (and its profile removed) on exit."""
    profile = tempfile.mkdtemp(prefix="chromium_profile_")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in QUIET_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_page(driver, url: str) -> None:
    """Load ``url`` (the logs emptied first) and wait for the page's first drawing."""
    driver.get("about:blank")  # a new load even where only the #fragment differs
    driver.get_log("browser"), driver.get_log("performance")
    driver.get(url)
    wait_for_draws(driver, 1)


def draws(driver) -> int:
    """How many redraws the page has finished (it counts them in ``body[data-draws]``)."""
    return int(driver.execute_script("return document.body.dataset.draws || '0'"))


def wait_for_draws(driver, count: int, timeout: float = 30) -> None:
    WebDriverWait(driver, timeout).until(lambda d: draws(d) >= count)


def javascript_errors(driver) -> list[str]:
    """Console messages of level SEVERE since the last call (uncaught errors land there)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def requested_urls(driver) -> list[str]:
    """Every URL the page asked the network stack for since the last call (DevTools' log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def plot_offset(driver, div_id: str, x: float, y: float) -> tuple[int, int]:
    """Where (x, y) in data units is on a 2D plot, in pixels from the plot element's centre."""
    dx, dy = driver.execute_script(
        "const gd = document.getElementById(arguments[0]), L = gd._fullLayout;"
        "const r = gd.getBoundingClientRect();"
        "return [L._size.l + L.xaxis.l2p(arguments[1]) - r.width / 2,"
        "        L._size.t + L.yaxis.l2p(arguments[2]) - r.height / 2];", div_id, x, y)
    return round(dx), round(dy)


def hover(driver, div_id: str, x: float, y: float, timeout: float = 10) -> str:
    """Move the mouse over (x, y) of a 2D plot and return the hover label's text (lines joined by |)."""
    ActionChains(driver).move_to_element(driver.find_element(By.ID, "title")).perform()
    dx, dy = plot_offset(driver, div_id, x, y)
    ActionChains(driver).move_to_element_with_offset(driver.find_element(By.ID, div_id), dx, dy).perform()
    script = (f"return [...document.querySelectorAll('#{div_id} .hoverlayer .hovertext')]"
              ".map(e => [...e.querySelectorAll('tspan.line')].map(t => t.textContent).join('|')"
              " || e.textContent).join('||')")
    return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(script))


def pixel(driver, div_id: str, x: float, y: float) -> np.ndarray:
    """The median colour (RGB) of the 5×5 pixels around (x, y) on a 2D plot."""
    element = driver.find_element(By.ID, div_id)
    image = np.asarray(Image.open(io.BytesIO(element.screenshot_as_png)).convert("RGB"), dtype=float)
    dx, dy = plot_offset(driver, div_id, x, y)
    scale = image.shape[1] / element.size["width"]
    cx, cy = round((element.size["width"] / 2 + dx) * scale), round((element.size["height"] / 2 + dy) * scale)
    return np.median(image[cy - 2:cy + 3, cx - 2:cx + 3].reshape(-1, 3), axis=0)


def screenshot(driver, name: str) -> None:
    """Keep the page as ``view_<name>.png`` in the folder the environment names (docs/images)."""
    folder = os.environ.get(SCREENSHOTS_ENV)
    if folder:
        driver.save_screenshot(os.path.join(folder, f"view_{name}.png"))
