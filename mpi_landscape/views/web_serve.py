"""The live page of a running job: the same page, served on localhost, polling its data.

A ``LiveFiles`` reads the surface files the way ``plot --watch`` does (the
writer replaces a file whole, so a read sees one complete snapshot; a partial
file is shown at its finest complete coarse-to-fine lattice), re-reading only
when a file changed, and tells the done share, the points per second and the
ETA it observes between reads. ``serve`` answers ``/`` (the page) and
``/data.json`` (what the page polls) with Python's own HTTP server, bound to
127.0.0.1 unless asked otherwise, until Ctrl-C; a stop waits for a read in
progress to end, so no thread is left inside HDF5 as the process exits.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from ..errors import LandscapeError
from ..store import read_surface
from .web_page import PageItem, page_data, render_page

RATE_WINDOW_SECONDS = 60.0  # points/s over the reads of the last minute
CLOSE_TIMEOUT_SECONDS = 30.0  # the longest a stop waits for a read of the files to end


class LiveFiles:
    """The page data of surface files that a job is still writing, re-read when they change."""

    def __init__(self, paths: list[str], make_items: Callable[[dict], list[PageItem]], mode: str,
                 title: str | None, refresh_seconds: float):
        self.paths, self.make_items = paths, make_items
        self.mode, self.title, self.refresh_seconds = mode, title, refresh_seconds
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._data: dict | None = None
        self._history: deque[tuple[float, int]] = deque()

    def snapshot(self) -> dict:
        """The page data now, with ``live`` progress: done share, points/s, ETA, or what went wrong."""
        with self._lock:
            stamp = tuple(_stamp(p) for p in self.paths)
            if stamp != self._stamp or self._data is None:
                self._data = self._read()
                self._stamp = stamp
            return self._data

    def close(self) -> None:
        """Wait for a read in progress and let no other start (request threads may still be running)."""
        self._lock.acquire(timeout=CLOSE_TIMEOUT_SECONDS)

    def _read(self) -> dict:
        missing = [p for p in self.paths if not os.path.isfile(p)]
        if missing:
            return self._empty(f"waiting for {', '.join(missing)} to appear")
        try:
            surfaces = {p: read_surface(p) for p in self.paths}
            data = page_data(self.make_items(surfaces), self.mode, self.title, self.refresh_seconds)
        except LandscapeError as exc:
            if self._data is not None and self._data["panels"]:  # keep showing the last good read
                return {**self._data, "live": {**self._data["live"], "error": str(exc)}}
            return self._empty(str(exc))
        done = sum(int(s.done.sum()) for s in surfaces.values())
        total = sum(int(s.done.size) for s in surfaces.values())
        data["live"] = self._progress(done, total, min(s.fraction_done for s in surfaces.values()))
        first = data["panels"][0]
        if [len(first["x"]), len(first["y"])] != first["grid"]:
            data["live"]["shown"] = f"{len(first['x'])}×{len(first['y'])}"
        return data

    def _progress(self, done: int, total: int, fraction: float) -> dict:
        now = time.monotonic()
        self._history.append((now, done))
        while len(self._history) > 2 and now - self._history[0][0] > RATE_WINDOW_SECONDS:
            self._history.popleft()
        then, done_then = self._history[0]
        rate = (done - done_then) / (now - then) if now > then and done > done_then else None
        complete = done >= total
        eta = (total - done) / rate if rate and not complete else None
        return {"fraction": fraction, "points_done": done, "points_total": total, "complete": complete,
                "points_per_second": rate, "eta_seconds": eta, "shown": None, "error": None}

    def _empty(self, why: str) -> dict:
        return {"title": self.title or ", ".join(os.path.basename(p) for p in self.paths), "mode": self.mode,
                "metrics": [], "labels": {}, "scales": {}, "panels": [], "refresh_seconds": self.refresh_seconds,
                "live": {"fraction": 0.0, "points_done": 0, "points_total": 0, "complete": False,
                         "points_per_second": None, "eta_seconds": None, "shown": None, "error": why}}


def serve(files: LiveFiles, host: str, port: int, ready: Callable[[str], None]) -> None:
    """Serve the live page of ``files`` on ``host:port`` until Ctrl-C; ``ready`` gets the URL
    once the socket listens (``port`` 0: a free port). Raises LandscapeError if it cannot bind."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                self._send(render_page(files.snapshot()).encode(), "text/html; charset=utf-8")
            elif path == "/data.json":
                self._send(json.dumps(files.snapshot(), allow_nan=False).encode(), "application/json")
            else:
                self.send_error(404, "the live page has / and /data.json")

        def _send(self, body: bytes, kind: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # requests are not news
            pass

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        raise LandscapeError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): "
                             f"choose another --port") from None
    server.daemon_threads = True  # a browser's idle connection must not hold up a stop
    try:
        bound_host, bound_port = server.server_address[:2]
        ready(f"http://{_url_host(bound_host)}:{bound_port}/")
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        files.close()


def _stamp(path: str) -> tuple | None:
    """What changes when the writer replaces the file (inode, size, time), or None while it is missing."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
