"""The one-node Slurm test cluster runs mpi4py jobs both ways the launch
scripts use: ``srun --mpi=pmi2`` and ``mpirun`` inside the allocation; and a
test session that starts the cluster stops it again, without touching /etc."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from slurm_cluster import REPO_ROOT, require_slurm, sbatch_wait

NTASKS = 2

PROG = textwrap.dedent(
    """\
    import sys

    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    total = comm.allreduce(comm.rank + 1, op=MPI.SUM)
    # one write per line: with PYTHONUNBUFFERED print() writes text and "\\n"
    # separately and Hydra may interleave the ranks' pieces
    sys.stdout.write(f"RANK {comm.rank} SIZE {comm.size} SUM {total}\\n")
    sys.stdout.flush()
    """
)

JOB = textwrap.dedent(
    """\
    #!/bin/bash
    #SBATCH --job-name=harness-{name}
    #SBATCH --nodes=1
    #SBATCH --ntasks={ntasks}
    #SBATCH --time=00:02:00
    set -euo pipefail
    echo "nodes=$SLURM_JOB_NODELIST ntasks=$SLURM_NTASKS"
    {launch}
    """
)

LAUNCH = {
    # Slurm's PMI2 server; MPICH's libmpi picks up PMI_FD without extra settings.
    "srun_pmi2": "srun --mpi=pmi2 {python} {prog}",
    # Hydra sees the allocation (SLURM_* env) and starts its proxy via srun.
    "mpirun": "{mpirun} -n $SLURM_NTASKS {python} {prog}",
}


@pytest.mark.parametrize("variant", sorted(LAUNCH))
def test_mpi4py_job_through_sbatch(tmp_path, variant):
    slurm = require_slurm()
    if variant == "mpirun" and not slurm.mpirun:
        pytest.fail(f"no mpirun next to {slurm.python} or on PATH")
    prog = tmp_path / "prog.py"
    prog.write_text(PROG)
    launch = LAUNCH[variant].format(python=slurm.python, prog=prog, mpirun=slurm.mpirun)
    job = tmp_path / f"{variant}.sbatch"
    job.write_text(JOB.format(name=variant, ntasks=NTASKS, launch=launch))

    rc, job_id, out = sbatch_wait(job, env=slurm.env, cwd=tmp_path, timeout=90)

    assert rc == 0, f"job {job_id} ({variant}) exited {rc}:\n{out}"
    found = {
        int(m.group(1)): (int(m.group(2)), int(m.group(3)))
        for m in re.finditer(r"RANK (\d+) SIZE (\d+) SUM (\d+)", out)
    }
    expected_sum = NTASKS * (NTASKS + 1) // 2
    assert found == {r: (NTASKS, expected_sum) for r in range(NTASKS)}, out


def test_a_session_that_starts_the_cluster_stops_it_and_leaves_etc_alone(tmp_path):
    """A pytest session of its own, on a cluster of its own (state dir, ports), runs one job;
    afterwards none of the daemons it started is alive and no /etc/slurm/slurm.conf appeared."""
    require_slurm()  # skips (or fails under MPI_LANDSCAPE_REQUIRE_SLURM) where Slurm cannot run
    etc_conf = Path("/etc/slurm/slurm.conf")
    etc_before = etc_conf.exists() or etc_conf.is_symlink()
    state_dir = tmp_path / "cluster"
    env = {**os.environ, "MPI_LANDSCAPE_SLURM_DIR": str(state_dir), "MPI_LANDSCAPE_REQUIRE_SLURM": "1",
           "MPI_LANDSCAPE_SLURM_CTLD_PORT": "6837", "MPI_LANDSCAPE_SLURM_SLURMD_PORT": "6838"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_slurm_harness.py::test_mpi4py_job_through_sbatch[srun_pmi2]"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    started = {name: (state_dir / path) for name, path in
               (("munged", "munge/munged.pid"), ("slurmctld", "slurmctld.pid"), ("slurmd", "slurmd.pid"))}
    assert (state_dir / "log" / "slurmd.log").exists()  # the inner session did start its cluster
    alive = [name for name, pidfile in started.items() if pidfile.exists() and _alive(pidfile, name)]
    assert not alive, f"left running: {alive}"
    assert (etc_conf.exists() or etc_conf.is_symlink()) == etc_before


def _alive(pidfile: Path, name: str) -> bool:
    pid = pidfile.read_text().strip()
    comm = Path("/proc", pid, "comm")
    return pid.isdigit() and comm.exists() and comm.read_text().startswith(name)
