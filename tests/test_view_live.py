"""``python -m mpi_landscape.view --serve``: the live page of a running ``mpirun -n 2`` job.

The job is slowed (the slow test model) so that the page is seen while the
file fills; the browser reads the done share the page shows until it says
100 %. The server must listen on 127.0.0.1 only, refuse this host's other
addresses, and stop on Ctrl-C without a traceback.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time

import pytest
from selenium.webdriver.common.by import By

from browser import chromium, javascript_errors, open_page, screenshot
from conftest import module_command, start_surface_job

LOOPBACK_HEX = "0100007F"  # 127.0.0.1 as /proc/net/tcp writes it


def start_server(*args: str, cwd) -> tuple[subprocess.Popen, str]:
    """``python -m mpi_landscape.view --serve args --port 0``; the process and the URL it printed."""
    server = subprocess.Popen(module_command("mpi_landscape.view", "--serve", *args, "--port", "0"), cwd=cwd,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONFAULTHANDLER": "1"})  # SIGABRT: its stacks
    line = server.stdout.readline()
    found = re.search(r"serving (http://\S+)", line)
    assert found, line + server.stderr.read()
    return server, found[1]


def listening_addresses(port: int) -> list[str]:
    """The local addresses (hex, as the kernel lists them) of sockets listening on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if int(hex_port, 16) == port and state == "0A":  # 0A: LISTEN
                found.append(address)
    return found


def other_addresses() -> list[str]:
    """This host's own IPv4 addresses other than loopback, from the kernel's local routing table
    (a connection to them never leaves this host)."""
    try:
        lines = open("/proc/net/fib_trie").read().splitlines()
    except OSError:
        return []
    local = {lines[i - 1].split()[-1] for i, line in enumerate(lines) if "/32 host LOCAL" in line and i}
    return sorted(a for a in local if not a.startswith("127."))


def test_live_page_follows_a_running_job_to_100_percent_and_listens_on_localhost_only(
        tmp_path, slow_model, demo_checkpoint):
    out = tmp_path / "s.h5"
    args = ["--model", slow_model, "--dataset", "demo", "--model_file", demo_checkpoint, "--surf_file",
            str(out), "--x=-1:1:9", "--y=-1:1:9", "--batch_size", "1000", "--flush_seconds", "0.2"]
    job = start_surface_job(args, tmp_path, {**os.environ, "SLOW_SECONDS": "0.1"})
    server = None
    try:
        server, url = start_server(str(out), "--refresh", "0.3", cwd=tmp_path)
        port = int(url.rsplit(":", 1)[1].strip("/"))
        assert listening_addresses(port) == [LOOPBACK_HEX]
        for address in other_addresses():
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((address, port), timeout=5).close()
        with chromium() as browser:
            open_page(browser, url)
            seen, shot = [], False
            deadline = time.time() + 180
            while time.time() < deadline:
                fraction = browser.find_element(By.ID, "progress").get_attribute("data-fraction")
                if fraction is not None:
                    if not seen or float(fraction) != seen[-1]:
                        seen.append(float(fraction))
                        if 0.3 < seen[-1] < 0.9 and not shot:
                            screenshot(browser, "live")
                            shot = True
                    if seen[-1] >= 1:
                        break
                time.sleep(0.3)
            text = browser.find_element(By.ID, "progress").text
            assert javascript_errors(browser) == []
        assert len([f for f in seen if 0 < f < 1]) >= 2, seen  # the share grew while the job ran
        assert seen == sorted(seen) and seen[-1] == 1.0, seen
        assert text.startswith("100% done (81/81 points)"), text
        assert job.wait(timeout=60) == 0, job.stderr.read()
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.send_signal(signal.SIGABRT)
            pytest.fail("the server did not stop on Ctrl-C; where it was:\n" + server.communicate()[1])
        assert server.returncode == 130
        stderr = server.stderr.read()
        assert "Traceback" not in stderr and "stopped" in stderr
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)  # the job has its own process group: mpirun and its ranks
        job.wait()
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()


def test_live_data_tells_rate_and_eta_from_the_files_changes_and_waits_for_a_missing_file(tmp_path):
    import numpy as np

    from mpi_landscape.views.web_page import PageItem
    from mpi_landscape.views.web_serve import LiveFiles
    from surface_files import write_surface

    path = str(tmp_path / "s.h5")
    files = LiveFiles([path], lambda surfaces: [PageItem(p, s) for p, s in surfaces.items()], "single", None, 1.0)
    waiting = files.snapshot()
    assert waiting["panels"] == [] and waiting["live"]["error"] == f"waiting for {path} to appear"
    x = y = np.linspace(-1, 1, 5)
    done = np.zeros((5, 5), dtype=bool)
    for count, fraction in ((5, 0.2), (15, 0.6), (25, 1.0)):
        done.ravel()[:count] = True
        write_surface(path + ".new", x, y, done=done)
        os.replace(path + ".new", path)  # as the job's writer replaces it
        time.sleep(0.05)
        live = files.snapshot()["live"]
        assert live["points_done"] == count and live["fraction"] == fraction
        if count == 15:
            assert live["points_per_second"] > 0 and live["eta_seconds"] == (25 - 15) / live["points_per_second"]
    assert live["complete"] and live["eta_seconds"] is None
    assert files.snapshot() is files.snapshot()  # an unchanged file is not read again
