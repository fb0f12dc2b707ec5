"""The suite's own contract: `make test-fast` leaves out every test that starts a process or trains,
without any test file marking itself."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def collected(*flags: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider",
                           *flags, "tests"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {line.split("[")[0] for line in proc.stdout.splitlines() if "::" in line}


def test_fast_selection_leaves_out_jobs_slurm_and_training():
    fast, slow = collected("-m", "not slow"), collected("-m", "slow")
    assert fast and slow and not fast & slow
    for expected_slow in ("tests/test_demo.py::test_demo_trains_and_writes_a_surface_then_reuses_them",
                          "tests/test_surface_mpi.py::test_exception_on_one_rank_ends_the_whole_job",
                          "tests/test_slurm_harness.py::test_mpi4py_job_through_sbatch",
                          "tests/test_cli.py::test_usage_error_under_mpirun_is_printed_once",
                          "tests/test_threads.py::test_train_runs_a_small_net_on_one_thread_and_restores_the_count",
                          "tests/test_suite.py::test_fast_selection_leaves_out_jobs_slurm_and_training"):
        assert expected_slow in slow, expected_slow
    assert "tests/test_grid.py::test_parse_reference_spec" in fast
    assert not any(name.startswith(("tests/test_grid.py", "tests/test_store.py")) for name in slow)


def test_makefile_runs_all_or_the_fast_selection():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^test: install\n\t\$\(PY\) -m pytest -q tests$", makefile, re.M)
    assert re.search(r'^test-fast: install\n\t\$\(PY\) -m pytest -q -m "not slow" tests$', makefile, re.M)
