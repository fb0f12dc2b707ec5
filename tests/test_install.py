"""Installing the project: the registry goes in as ``mpi_landscape_models`` (a user's own
``models`` package neither shadows it nor is shadowed), and a machine with its own torch (a
CPU-only build, a cluster module) installs the project beside it with ``--no-deps``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mpi_landscape_models as models
import torch

from venvs import ROOT, copy_source, pip, site_packages, venv_env, venv_over_site_torch

USERS_MODELS = '''"""A user's own models package, which knows nothing of the landscape engine."""
def my_net():
    raise RuntimeError("the user's models package was imported by the engine")
'''


def test_no_deps_install_beside_a_sites_torch_and_a_users_models_package(tmp_path):
    python = venv_over_site_torch(tmp_path / "venv")
    source = copy_source(tmp_path / "source")
    proc = pip(python, "install", "--no-deps", "--no-build-isolation", "--ignore-installed", str(source))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Successfully installed mpi_landscape" in proc.stdout.replace("-", "_")
    installed = site_packages(tmp_path / "venv")
    assert (installed / "mpi_landscape_models" / "registry.py").is_file()
    assert not (installed / "models").exists()

    project = tmp_path / "my_project"  # a user's folder with a models package of its own
    (project / "models").mkdir(parents=True)
    (project / "models" / "__init__.py").write_text(USERS_MODELS)
    where = subprocess.run(
        [str(python), "-c", "import torch, mpi_landscape, mpi_landscape_models, models; "
         "print(torch.__file__); print(mpi_landscape.__file__); print(models.__file__)"],
        cwd=project, env=venv_env(), capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    torch_file, package_file, users_file = where.stdout.split()
    assert torch_file == torch.__file__  # the site's torch, not a downloaded one
    assert package_file.startswith(str(installed))
    assert users_file == str(project / "models" / "__init__.py")

    checkpoint = project / "demo.t7"
    models.save_checkpoint(str(checkpoint), models.build_model("demo_mlp"))
    # the site's MPI library, found the way a site's module system makes it found
    site_mpi = venv_env(LD_LIBRARY_PATH=os.pathsep.join(filter(None, [str(Path(sys.prefix) / "lib"),
                                                                         os.environ.get("LD_LIBRARY_PATH")])))
    run = subprocess.run([str(python), "-m", "mpi_landscape.surface", "--model", "demo_mlp", "--model_file",
                          str(checkpoint), "--dataset", "demo", "--data_split", "20", "--x=-1:1:3",
                          "--surf_file", "s.h5"], cwd=project, env=site_mpi, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (project / "s.h5").is_file()


def test_the_pins_are_what_the_test_environment_runs():
    """requirements.txt pins torch and torchvision to the versions this suite runs with, so a site's
    own build of the same versions (e.g. a +cpu wheel) satisfies it."""
    import torchvision

    pins = dict(line.split("==") for line in
                (ROOT / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert pins["torch"] == torch.__version__.split("+")[0]
    assert pins["torchvision"] == torchvision.__version__.split("+")[0]
    assert sys.version_info >= (3, 10)
