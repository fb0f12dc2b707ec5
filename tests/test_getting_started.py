"""docs/getting_started.md followed from a fresh clone the way a user types it.

Every ```bash block of the page runs, in order, in one shell (so its `cd` and
`source` carry on), then every ```python block with the environment's python,
in the clone. Blocks fenced ```sh are shown to the reader but not run here:
the test suite itself, and commands that need the reader's own data. The one
thing that differs from a user's machine is `make install`'s download of the
pinned wheels: right after `git clone`, the clone gets the `.venv` that
install would leave (over the packages this suite runs with).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from venvs import ROOT, venv_env

DOC = ROOT / "docs" / "getting_started.md"
TESTS = Path(__file__).resolve().parent


def blocks(language: str) -> list[str]:
    """The page's fenced code blocks in ``language``, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.S | re.M)


# `git clone` as the user types it, followed by what `make install` would leave in the clone.
GIT_CLONE_THEN_VENV = f'''
git() {{
    command git "$@"
    if [ "$1" = clone ]; then
        {sys.executable} -c "import sys; sys.path.insert(0, '{TESTS}'); from pathlib import Path; \\
from venvs import give_clone_its_venv; give_clone_its_venv(Path(sys.argv[1]).resolve())" "${{@: -1}}"
    fi
}}
'''


def test_every_command_of_getting_started_runs_in_a_fresh_clone(tmp_path):
    shell, python = blocks("bash"), blocks("python")
    assert shell[0].startswith("git clone <this repository> mpi_landscape && cd mpi_landscape\nmake demo")
    assert any("source .venv/bin/activate" in block for block in shell) and python
    script = "\n".join(["set -euo pipefail", GIT_CLONE_THEN_VENV,
                        *(block.replace("<this repository>", str(ROOT)) for block in shell)])
    env = venv_env(PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    env.pop("VIRTUAL_ENV", None)
    run = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]

    clone = tmp_path / "mpi_landscape"
    pictures = [line for line in run.stdout.split("pictures:\n", 1)[1].splitlines() if line.startswith("/")]
    assert {Path(p).name for p in pictures} >= {"demo_surface_train_loss_2dcontour.png",
                                               "demo_surface_train_loss_3dsurface.png", "demo_surface_vtk.png"}
    assert all(Path(p).is_file() and Path(p).parent == clone / "demo_output" for p in pictures)
    assert str(clone / ".venv") in run.stdout  # `source .venv/bin/activate` made its python the one run
    assert (clone / "demo_output" / "zoom.h5").is_file()

    for block in python:
        ran = subprocess.run([str(clone / ".venv" / "bin" / "python"), "-c", block], cwd=clone, env=env,
                             capture_output=True, text=True, timeout=300)
        assert ran.returncode == 0, block + ran.stdout + ran.stderr
    assert (clone / "demo_output" / "in_memory.h5").is_file()
