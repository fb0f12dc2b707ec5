"""What machine a benchmark ran on, and where its figures are written.

Benchmark figures only mean something next to the machine, library versions
and settings that produced them, so every result file carries them, and its
name says which machine it came from (``point_speed_cpu-xeon-2.50ghz-2c.json``,
``point_speed_cuda-nvidia-h100-80gb-hbm3.json``): rerunning on the same kind of
machine replaces that machine's figures and leaves the others'.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import sys
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Vendor words that make CPU model strings long without telling machines apart.
_CPU_NOISE = r"\((r|tm)\)|\bintel\b|\bamd\b|\bcpu\b|\bprocessor\b|\bcore\b|\b\d+-core\b|@"


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers and SLURM narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's marketing name as the OS reports it, or the architecture when it does not."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


def machine_name(device: str = "cpu") -> str:
    """A short file-name-safe label: ``cpu-<model>-<n>c`` or ``cuda-<gpu name>``."""
    if device.startswith("cuda"):
        import torch

        return "cuda-" + _slug(torch.cuda.get_device_name(torch.device(device)))
    model = _slug(re.sub(_CPU_NOISE, " ", cpu_model(), flags=re.IGNORECASE)) or "unknown"
    return f"cpu-{model}-{cpu_cores()}c"


def environment(device: str = "cpu") -> dict:
    """Versions and hardware that a reader needs to judge the figures."""
    import numpy
    import torch

    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_cores": cpu_cores(),
        "argv": sys.argv[1:],
    }
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
    return env


def load_average() -> float:
    """The machine's one-minute load average: how many processes shared its cores meanwhile."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def write_result(benchmark: str, machine: str, payload: dict) -> Path:
    """Write ``payload`` as ``results/<benchmark>_<machine>.json`` and return the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{benchmark}_{machine}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
