"""Virtual environments for the install tests: a fresh venv that sees the packages of the one
running the tests, as a site's own torch (a module, a system Python) would be seen."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ("setup.py", "README.md", "requirements.txt", "mpi_landscape", "models")


def site_packages(venv: Path) -> Path:
    """The venv's own site-packages folder."""
    return Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))


def venv_over_site_torch(venv: Path) -> Path:
    """A venv without pip of its own whose Python also finds the test runner's packages (torch,
    pip, setuptools, ...) the way it would find a site's; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site_torch = Path(torch.__file__).resolve().parent.parent
    (site_packages(venv) / "site_torch.pth").write_text(f"{site_torch}\n")
    return venv / "bin" / "python"


def copy_source(to: Path) -> Path:
    """The project's installable files (as they are in this checkout) copied to ``to``."""
    to.mkdir(parents=True)
    for name in SOURCE:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, to / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, to / name)
    return to


def venv_env(**extra: str) -> dict[str, str]:
    """The environment for a venv's commands: this one without PYTHONPATH (which would put a
    checkout ahead of what the venv installed)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, **extra}


def pip(python: Path, *args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m pip args`` offline (no index), without build isolation (its setuptools is the site's)."""
    env = venv_env(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return subprocess.run([str(python), "-m", "pip", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def give_clone_its_venv(clone: Path) -> Path:
    """What `make install` leaves in a fresh clone, without downloading the pinned wheels again:
    ``.venv`` over the test runner's packages, the clone installed editable into it, the MPICH
    wheel's programs and library where the wheel puts them, and the stamp that tells make the install is done."""
    venv = clone / ".venv"
    python = venv_over_site_torch(venv)
    proc = pip(python, "install", "--no-deps", "--no-build-isolation", "--ignore-installed", "-e", str(clone))
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout + proc.stderr)
    runner = Path(sys.prefix)
    wheel_files = [*(p for p in (runner / "bin").iterdir() if p.name.startswith(("mpi", "hydra"))),
                   *(p for p in (runner / "lib").iterdir() if not p.name.startswith("python"))]
    for path in wheel_files:  # mpirun, its proxy, and the libmpi that mpi4py looks for under sys.prefix
        link = venv / path.parent.name / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
    (venv / ".installed").touch()
    return python
