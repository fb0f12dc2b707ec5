"""The one-node Slurm test cluster runs mpi4py jobs both ways the launch
scripts use: ``srun --mpi=pmi2`` and ``mpirun`` inside the allocation."""

from __future__ import annotations

import re
import textwrap

import pytest

from slurm_cluster import require_slurm, sbatch_wait

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
