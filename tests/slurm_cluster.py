"""Helpers for tests that submit real Slurm jobs to the one-node test cluster.

``.ci/slurm.sh`` installs Debian's ``slurm-wlm`` and ``munge`` and starts
munged, slurmctld and slurmd with a generated ``slurm.conf``.  Tests use:

    from slurm_cluster import require_slurm, sbatch_wait

    def test_something(tmp_path):
        slurm = require_slurm()          # skips if Slurm cannot exist here
        rc, job_id, out = sbatch_wait(script, env=slurm.env, cwd=tmp_path)

``ensure_slurm()`` starts the cluster when needed and returns a
:class:`SlurmInfo`; a cluster it started is stopped again by
``stop_started_cluster()`` (the suite calls it when the session ends), one
that was already up is left running, and the system's ``/etc/slurm`` is never
touched (every command gets ``SLURM_CONF``). It raises :class:`SlurmUnavailable` when Slurm cannot be
installed or started on this machine at all (not root, no apt-get, no
package mirror).  Any other failure to bring the cluster up is a real error
and raises :class:`SlurmError` with the daemon logs.  Set
``MPI_LANDSCAPE_REQUIRE_SLURM=1`` (e.g. in CI) to turn the skip into a failure.

Inside a job, MPI programs start either with ``srun --mpi=pmi2 PYTHON prog.py``
(Slurm's PMI2 server; the MPICH wheel's libmpi speaks it with no extra
settings) or with ``MPIRUN -n $SLURM_NTASKS PYTHON prog.py`` (Hydra detects the
allocation and starts one proxy per node through ``srun``).  ``SlurmInfo``
carries the absolute paths of the interpreter running the tests and of the
``mpirun`` the commands use (``mpi_landscape.demo.find_mpirun``: next to it, else on PATH).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

from mpi_landscape.demo import find_mpirun

REPO_ROOT = Path(__file__).resolve().parent.parent
SLURM_SH = REPO_ROOT / ".ci" / "slurm.sh"
DEFAULT_STATE_DIR = "/tmp/mpi_landscape_slurm"
REQUIRE_ENV = "MPI_LANDSCAPE_REQUIRE_SLURM"
UNAVAILABLE_EXIT = 3  # .ci/slurm.sh: Slurm cannot be installed/started here

_READY_STATES = ("idle", "mixed", "allocated", "completing")
_started_here: list[str] = []  # state dirs of clusters this process started (and so must stop)


class SlurmUnavailable(RuntimeError):
    """Slurm cannot be installed or started on this machine; tests should skip."""


class SlurmError(RuntimeError):
    """Slurm should work here but the cluster did not come up, or a job misbehaved."""


@dataclass(frozen=True)
class SlurmInfo:
    conf: str  # the slurm.conf to use (exported as SLURM_CONF)
    state_dir: str
    node: str
    partition: str
    cpus: int
    bin_dir: str  # directory of the interpreter running the tests (the venv's bin)
    python: str
    mpirun: str | None
    env: dict[str, str] = field(repr=False)  # os.environ + SLURM_CONF + venv bin on PATH

    def job_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for sbatch (``--export=ALL`` hands it to the job)."""
        env = dict(self.env)
        if extra:
            env.update(extra)
        return env


def _state_dir() -> str:
    return os.environ.get("MPI_LANDSCAPE_SLURM_DIR", DEFAULT_STATE_DIR)


def _base_env(conf: str) -> dict[str, str]:
    env = dict(os.environ)
    env["SLURM_CONF"] = conf
    bin_dir = os.path.dirname(sys.executable)
    path = env.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        env["PATH"] = bin_dir + (os.pathsep + path if path else "")
    return env


def _node_state(conf: str) -> tuple[str, str, int, str] | None:
    """(node, state, cpus, partition) of the first node, or None if sinfo fails."""
    sinfo = shutil.which("sinfo")
    if sinfo is None or not os.path.exists(conf):
        return None
    try:
        proc = subprocess.run(
            [sinfo, "-h", "-N", "-o", "%N|%T|%c|%P"],
            env=_base_env(conf),
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    for line in proc.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4:
            node, state, cpus, partition = parts
            return node, state, int(cpus), partition.rstrip("*")
    return None


def _daemons_running(state_dir: str) -> bool:
    """slurmctld and slurmd of the test cluster are alive (cheap; sinfo against
    a dead slurmctld retries for MessageTimeout seconds)."""
    for name in ("slurmctld", "slurmd"):
        try:
            pid = int(Path(state_dir, f"{name}.pid").read_text().strip())
            os.kill(pid, 0)
        except PermissionError:
            continue
        except (OSError, ValueError):
            return False
    return True


def _info(conf: str, state_dir: str) -> SlurmInfo | None:
    if not _daemons_running(state_dir):
        return None
    st = _node_state(conf)
    if st is None:
        return None
    node, state, cpus, partition = st
    if state.lower() not in _READY_STATES:  # "idle*" = not responding
        return None
    bin_dir = os.path.dirname(sys.executable)
    return SlurmInfo(
        conf=conf,
        state_dir=state_dir,
        node=node,
        partition=partition,
        cpus=cpus,
        bin_dir=bin_dir,
        python=sys.executable,
        mpirun=find_mpirun(),
        env=_base_env(conf),
    )


@functools.lru_cache(maxsize=None)
def _ensure(timeout: float) -> SlurmInfo | str:
    state_dir = _state_dir()
    conf = os.path.join(state_dir, "slurm.conf")
    info = _info(conf, state_dir)
    if info is not None:
        return info
    if not sys.platform.startswith("linux"):
        return f"the test Slurm cluster needs Linux (this is {sys.platform})"
    if not SLURM_SH.exists():
        return f"{SLURM_SH} is missing"
    env = _script_env(state_dir)
    _started_here.append(state_dir)  # even a half-started cluster is ours to stop
    try:
        proc = subprocess.run(
            ["bash", str(SLURM_SH), "start"],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise SlurmError(
            f"{SLURM_SH} did not finish in {timeout:.0f}s\n{_text(exc.stdout)}{_text(exc.stderr)}"
        ) from None
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode == UNAVAILABLE_EXIT:
        reasons = [
            ln.split("UNAVAILABLE:", 1)[1].strip() for ln in output.splitlines() if "UNAVAILABLE:" in ln
        ]
        return "Slurm cannot run here: " + ("; ".join(reasons) or output[-500:])
    if proc.returncode != 0:
        raise SlurmError(f"{SLURM_SH} failed (exit {proc.returncode}):\n{output}")
    m = re.search(r"SLURM_CONF=(\S+)", proc.stdout)
    if m:
        conf = m.group(1)
    info = _info(conf, state_dir)
    if info is None:
        raise SlurmError(f"{SLURM_SH} reported ready but sinfo disagrees:\n{output}")
    return info


def _script_env(state_dir: str) -> dict[str, str]:
    """The environment .ci/slurm.sh runs with: our state dir, and /etc/slurm left alone."""
    return {**os.environ, "MPI_LANDSCAPE_SLURM_DIR": state_dir, "MPI_LANDSCAPE_SLURM_LINK_ETC": "0"}


def stop_started_cluster() -> None:
    """Stop munged, slurmctld and slurmd if this process started them; a cluster that was
    already running when the tests began is left as it was."""
    while _started_here:
        state_dir = _started_here.pop()
        subprocess.run(["bash", str(SLURM_SH), "stop"], env=_script_env(state_dir),
                       capture_output=True, text=True, timeout=120)
    _ensure.cache_clear()


def ensure_slurm(timeout: float = 600.0) -> SlurmInfo:
    """Start the one-node cluster if it is not up; return how to use it.

    Raises SlurmUnavailable (skip) or SlurmError (fail).  The result is cached
    for the test session.
    """
    result = _ensure(timeout)
    if isinstance(result, str):
        raise SlurmUnavailable(result)
    return result


def slurm_unavailable_reason() -> str | None:
    """None if the cluster is (or could be made) usable, else why not."""
    try:
        ensure_slurm()
    except SlurmUnavailable as exc:
        return str(exc)
    return None


def require_slurm() -> SlurmInfo:
    """ensure_slurm() for tests: skip when Slurm cannot exist on this machine,
    fail instead when MPI_LANDSCAPE_REQUIRE_SLURM=1."""
    import pytest

    try:
        return ensure_slurm()
    except SlurmUnavailable as exc:
        if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
            pytest.fail(f"{REQUIRE_ENV} is set but {exc}")
        pytest.skip(str(exc))


class SbatchResult(NamedTuple):
    returncode: int  # exit code of the job (sbatch --wait passes it on)
    job_id: str
    output: str  # the job's stdout+stderr file


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data


def sbatch_wait(
    script_path: str | os.PathLike,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    sbatch_args: Sequence[str] = (),
    cwd: str | os.PathLike | None = None,
    output_path: str | os.PathLike | None = None,
) -> SbatchResult:
    """``sbatch --wait --parsable [sbatch_args] script args...``; return
    (returncode, job_id, output_text).

    The job's stdout and stderr go to ``output_path`` (default
    ``<cwd>/slurm-<jobid>.out``, overriding any ``#SBATCH --output`` in the
    script).  ``env`` defaults to ``ensure_slurm().env`` and is exported to the
    job.  On timeout the job is cancelled and SlurmError carries what it wrote.
    """
    script_path = Path(script_path).resolve()
    cwd = Path(cwd) if cwd is not None else script_path.parent
    if env is None:
        env = ensure_slurm().env
    env = dict(env)
    if output_path is None:
        out_pattern = str(Path(cwd).resolve() / "slurm-%j.out")
    else:
        out_pattern = str(Path(output_path).resolve())
    sbatch = shutil.which("sbatch", path=env.get("PATH")) or "sbatch"
    cmd = [
        sbatch,
        "--wait",
        "--parsable",
        f"--output={out_pattern}",
        f"--chdir={Path(cwd).resolve()}",
        *sbatch_args,
        str(script_path),
        *args,
    ]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err, text=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            out.seek(0)
            job_id = _parse_job_id(out.read())
            if job_id:
                subprocess.run(["scancel", job_id], env=env, capture_output=True, timeout=30)
            proc.kill()
            proc.wait()
            text = _read_output(out_pattern, job_id, wait=2.0) if job_id else ""
            raise SlurmError(
                f"job {job_id or '?'} ({script_path.name}) did not finish in {timeout:.0f}s; "
                f"cancelled. Output so far:\n{text}"
            ) from None
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    job_id = _parse_job_id(stdout)
    if not job_id:
        raise SlurmError(f"sbatch did not submit {script_path} (exit {rc}):\n{stdout}{stderr}")
    return SbatchResult(rc, job_id, _read_output(out_pattern, job_id))


def _parse_job_id(stdout: str) -> str:
    for line in stdout.splitlines():
        line = line.strip()
        if line and line.split(";")[0].isdigit():
            return line.split(";")[0]
    return ""


def _read_output(pattern: str, job_id: str, wait: float = 5.0) -> str:
    path = Path(pattern.replace("%j", job_id).replace("%A", job_id))
    deadline = time.monotonic() + wait
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return f"<no output file {path}>"
