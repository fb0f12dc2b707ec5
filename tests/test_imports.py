"""A surface run imports only what it uses: torchvision (whose ``models`` pull in torch's
compiler stack, seconds per rank) only for CIFAR-10 and image folders, matplotlib never.

Each case is a real ``python -m mpi_landscape.surface`` run in a subprocess, started through
``runpy`` by a small wrapper that prints, after the run, which of those packages it loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from mpi_landscape.store import read_surface

UNUSED = ("torchvision", "matplotlib")

# Runs the module as `python -m` does, then prints the loaded modules of the UNUSED packages.
WRAPPER = textwrap.dedent(f"""
    import json, runpy, sys
    sys.argv = ["mpi_landscape.surface", *sys.argv[1:]]
    try:
        runpy.run_module("mpi_landscape.surface", run_name="__main__", alter_sys=True)
    except SystemExit as exit:
        if exit.code:
            raise
    print("loaded:", json.dumps(sorted(m for m in sys.modules if m.startswith({UNUSED!r}))))
""")

USER_DATA = textwrap.dedent('''
    """A user's dataset factory: 2-D points in three classes."""
    import torch

    def points():
        gen = torch.Generator().manual_seed(0)
        return torch.randn(90, 2, generator=gen), torch.randint(0, 3, (90,), generator=gen)
''')


def loaded_after_surface(*args: str, cwd) -> list[str]:
    """The UNUSED packages' modules a finished surface run with ``args`` had imported."""
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *args], cwd=cwd, text=True, capture_output=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "surface file:" in proc.stdout
    line = next(line for line in proc.stdout.splitlines() if line.startswith("loaded:"))
    return json.loads(line.removeprefix("loaded:"))


@pytest.mark.parametrize("dataset", ["demo", "userpoints:points"])
def test_surface_run_without_images_imports_neither_torchvision_nor_matplotlib(dataset, demo_checkpoint,
                                                                               tmp_path):
    (tmp_path / "userpoints.py").write_text(USER_DATA)
    loaded = loaded_after_surface("--model", "demo_mlp", "--model_file", demo_checkpoint, "--dataset", dataset,
                                  "--x=-1:1:3", "--y=-1:1:3", "--surf_file", "s.h5", cwd=tmp_path)
    assert read_surface(str(tmp_path / "s.h5")).done.all()
    assert loaded == []
