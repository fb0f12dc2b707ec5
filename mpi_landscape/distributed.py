"""Everything MPI: ranks, device binding, the coordinator and its workers.

The only module that imports mpi4py, and lazily: without MPI (a laptop, a
notebook, mpi4py missing) the same code runs as a world of one rank.

Rank 0 coordinates. It hands out chunks of flat grid indices on request, in
the order it was given (coarse to fine), and evaluates single points itself in
between (in a helper thread) unless told not to. A worker asks for its next
chunk as soon as it starts the current one; the coordinator answers while the
worker computes that chunk's last point, so its next work is there when it
finishes, and near the end only when it is idle, so the last points go to
whichever rank is free first.
A worker sends back each point's metrics the moment they exist: a few numbers,
never the grid. No collective call is made per point.

SIGUSR1, SIGTERM, SIGINT (Ctrl-C) or SIGHUP (a closed terminal) on any rank (a
scheduler's warning before the time limit) stops the handing out of work: the
rank that got it tells rank 0, rank 0 tells every worker, every rank finishes
the point it is on, rank 0 keeps every result, and the job ends so a rerun
continues from the file. Once a rank's work is over, further stop signals are
ignored until it exits.

An error ends the whole job, printed once. Before the grid every rank runs the
same steps (``on_every_rank``) and a failure on any of them is raised on all
of them, so the entry point prints one line and every rank exits normally.
During the grid a worker's failure travels to rank 0 as a message; rank 0
prints it and ends the job (``end_job``): MPI_Abort, which under MPICH can
return to Python, then ``os._exit`` so nothing goes on.

Groups (``--ranks_per_point K``): the ranks that evaluate are split into
groups of K consecutive ranks, each holding a 1/K shard of the data. The
coordinator sees only the group leaders (rank 0 leads group 0 when it
evaluates). A leader passes each point to its members (a broadcast on the
group's communicator), every member evaluates its shard into named sums, and
the sums are reduced in float64 to the leader, which turns them into the
point's metrics and reports them like any worker. A signal on a member rides
on that reduction to its leader; a member's failure goes straight to rank 0,
which ends the job while the leader waits in the reduction.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

import numpy as np

from .errors import LandscapeError

TAG_TO_COORDINATOR = 11
TAG_WORK = 12
TAG_STOP = 13  # rank 0 to a worker: STOP (finish the point you are on), then FAREWELL after its "bye"
STOP, FAREWELL = "stop", "farewell"
IDLE_SLEEP = 0.0005  # seconds between polls while waiting; keeps oversubscribed ranks polite
CHUNKS_PER_RANK = 4  # aim for this many chunks per evaluating rank, for balance at the end
MAX_CHUNK = 16
NO_POINT = -1  # a leader's "no more points" to its members

FAILED_WORKER_GRACE = 30  # seconds a failed worker waits for rank 0 to end the job before it does
ABORT_FORWARD_SECONDS = 1.0  # what the launcher gets to forward the last words before an abort
EXIT_USER_ERROR, EXIT_BUG = 2, 1

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_stop = threading.Event()  # signals are per process, so is the stop request

PointFn = Callable[[int], Mapping[str, float]]
ResultFn = Callable[[int, Mapping[str, float]], None]
FinishFn = Callable[[Mapping[str, float]], Mapping[str, float]]


@dataclass
class RunStats:
    """What a run did, as seen by rank 0."""

    points: int = 0
    wall_seconds: float = 0.0
    coordinator_seconds: float = 0.0  # rank 0's time spent serving messages
    points_by_rank: dict[int, int] = field(default_factory=dict)
    stopped_early: bool = False


@dataclass(frozen=True)
class GroupLayout:
    """How ``size`` ranks form groups of ``ranks_per_point`` consecutive ranks.

    With ``coordinator_only`` rank 0 belongs to no group and ranks 1.. form
    the groups; otherwise rank 0 leads group 0. Consecutive ranks share a
    node when the launcher places ranks node by node (mpirun and srun's
    default block distribution) and K divides the ranks per node.
    """

    size: int
    ranks_per_point: int = 1
    coordinator_only: bool = False

    def __post_init__(self) -> None:
        k, evaluating = self.ranks_per_point, self.size - self.first
        if k < 1:
            raise LandscapeError(f"--ranks_per_point must be at least 1, got {k}")
        if evaluating < 1 or evaluating % k:
            whom = "ranks 1.. (rank 0 only coordinates)" if self.coordinator_only else "the ranks"
            raise LandscapeError(f"--ranks_per_point {k} must divide the number of {whom}, "
                                 f"{evaluating} here: launch {self.first + k * max(1, -(-evaluating // k))} "
                                 f"ranks, or choose another K")

    @property
    def first(self) -> int:
        """The lowest rank that evaluates points."""
        return 1 if self.coordinator_only and self.size > 1 else 0

    @property
    def groups(self) -> int:
        return (self.size - self.first) // self.ranks_per_point

    @property
    def leaders(self) -> list[int]:
        return [self.first + g * self.ranks_per_point for g in range(self.groups)]

    def group_of(self, rank: int) -> int | None:
        """The group ``rank`` evaluates in, or None for a coordinator that only coordinates."""
        return None if rank < self.first else (rank - self.first) // self.ranks_per_point

    def shard_of(self, rank: int) -> int:
        """Which 1/K of the data ``rank`` holds (a lone coordinator holds the first, for its checks)."""
        return 0 if rank < self.first else (rank - self.first) % self.ranks_per_point


class Group:
    """This rank's group: its shard of the data, and the point-by-point protocol inside it.

    The leader drives: ``reduced`` wraps the shard's sums into a point
    function for the coordinator's protocol; members run ``follow``. With
    K = 1 there is no communicator and a point is its own shard.
    """

    def __init__(self, ctx: "Context", layout: GroupLayout):
        self.ctx, self.layout = ctx, layout
        self.index = layout.group_of(ctx.rank)
        self.shard, self.shards = layout.shard_of(ctx.rank), layout.ranks_per_point
        self.comm = None
        if ctx.comm is not None and ctx.size > 1 and layout.ranks_per_point > 1:
            from mpi4py import MPI

            color = MPI.UNDEFINED if self.index is None else self.index
            comm = ctx.comm.Split(color, key=ctx.rank)
            self.comm = None if comm == MPI.COMM_NULL else comm

    @property
    def is_leader(self) -> bool:
        """Whether this rank talks to the coordinator for its group (rank 0 always does)."""
        return self.ctx.rank == 0 or self.shard == 0

    def reduced(self, shard_sums: PointFn, finish: FinishFn) -> PointFn:
        """The leader's point function: members evaluate the same point, sums are added in float64."""
        if self.comm is None:
            return lambda index: finish(shard_sums(index))

        def point(index: int) -> Mapping[str, float]:
            self._pass_on(index)
            return finish(self._reduce(shard_sums(index)))

        return point

    def follow(self, shard_sums: PointFn) -> None:
        """A member's loop: evaluate each point the leader passes on, until it passes None."""
        while (index := self._pass_on(None)) is not None:
            try:
                sums = shard_sums(index)
            except Exception as exc:
                _report_failure(self.ctx, exc)
            self._reduce(sums)

    def close(self) -> None:
        """The leader: tell the members there are no more points. Every member: free the group's
        communicator together, once its points are done.

        Left to the garbage collector at exit, a member could wait there for
        a leader that has already gone.
        """
        if self.comm is not None:
            if self.is_leader:
                self._pass_on(None)
            _wait_politely(self.comm.Ibarrier())
            self.comm.Free()
            self.comm = None

    def _pass_on(self, index: int | None) -> int | None:
        """The leader's next point (None: no more) at every member of the group."""
        buffer = np.array([NO_POINT if index is None else index], dtype=np.int64)
        _wait_politely(self.comm.Ibcast(buffer, root=0))
        return None if buffer[0] == NO_POINT else int(buffer[0])

    def _reduce(self, sums: Mapping[str, float]) -> dict[str, float]:
        """The group's sums at its leader, in float64, and the stop request of any member with them."""
        from mpi4py import MPI

        names = sorted(sums)
        mine = np.array([sums[n] for n in names] + [float(self.ctx.stop_requested)], dtype=np.float64)
        total = np.empty_like(mine)
        _wait_politely(self.comm.Ireduce(mine, total, op=MPI.SUM, root=0))
        if self.comm.Get_rank() != 0:
            return {}
        if total[-1]:
            self.ctx.request_stop()
        return dict(zip(names, total[:-1].tolist()))


def _wait_politely(request) -> None:
    """Wait for a nonblocking MPI operation, polling: a blocking one would spin a core meanwhile."""
    while not request.Test():
        time.sleep(IDLE_SLEEP)


class Context:
    """This process's place in the job: rank, size, node-local rank, and the stop flag."""

    def __init__(self, comm=None):
        self.comm = comm if comm is not None else _world()
        self.rank = self.comm.Get_rank() if self.comm is not None else 0
        self.size = self.comm.Get_size() if self.comm is not None else 1
        self.local_rank, self.local_size = self._node_local()

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def _node_local(self) -> tuple[int, int]:
        if self.comm is None or self.size == 1:
            return 0, 1
        from mpi4py import MPI

        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        try:
            return node.Get_rank(), node.Get_size()
        finally:
            node.Free()

    def device(self):
        """The device of this rank: GPU number local_rank (mod the count), else the CPU.

        On the CPU the cores are shared among the ranks of the node so that
        oversubscription does not thrash.
        """
        import torch

        if torch.cuda.is_available():
            device = torch.device("cuda", self.local_rank % torch.cuda.device_count())
            torch.cuda.set_device(device)
            return device
        from .threads import cores_per_process

        torch.set_num_threads(cores_per_process(self.local_size))
        return torch.device("cpu")

    def from_root(self, make: Callable[[], object]) -> object:
        """Run ``make`` on rank 0 and hand its value -- or its failure -- to every rank.

        Used for the checks before any work starts, so a refused request ends
        every rank with the same error (printed once) instead of leaving some waiting.
        """
        if self.size == 1:
            return make()
        outcome: tuple[bool, object] = (True, None)
        if self.is_root:
            try:
                outcome = (True, make())
            except Exception as exc:  # raised on every rank below
                outcome = (False, describe_failure(0, exc))
        ok, value = self.comm.bcast(outcome, root=0)
        if not ok:
            raise JobFailed(*value)
        return value

    def on_every_rank(self, step: Callable[[], object]) -> object:
        """Run ``step`` on every rank; if it fails on any, raise that failure on all of them.

        The failure of the lowest rank wins, so an error every rank meets (a
        batch size of 0) is printed once, and an error one rank alone meets
        (its data) names that rank.
        """
        if self.size == 1:
            return step()
        value, failure = None, None
        try:
            value = step()
        except Exception as exc:
            failure = describe_failure(self.rank, exc)
        first = next((f for f in self.comm.allgather(failure) if f is not None), None)
        if first is not None:
            raise JobFailed(*first)
        return value

    def sum_over_ranks(self, values: np.ndarray) -> np.ndarray:
        """The elementwise sum of ``values`` over all ranks, on every rank (one Allreduce)."""
        if self.size == 1:
            return values
        from mpi4py import MPI

        total = np.empty_like(values)
        self.comm.Allreduce(np.ascontiguousarray(values), total, op=MPI.SUM)
        return total

    @contextmanager
    def stop_on_signals(self) -> Iterator[None]:
        """While inside, the stop signals request a clean stop instead of killing the process.

        A stop requested before (see ``catch_stop_signals``) holds; on the way
        out the request is cleared and the previous handlers come back. Set
        again here, after MPI has started: its transport may have taken a
        signal for its own use meanwhile (UCX turns on its debug log on SIGHUP).
        """
        with stop_signals_caught():
            yield

    def request_stop(self) -> None:
        """Hand out no more work; every rank finishes the point it is on."""
        _stop.set()

    @property
    def stop_requested(self) -> bool:
        return _stop.is_set()

    @contextmanager
    def abort_on_error(self) -> Iterator[None]:
        """An exception on any rank ends the whole job at once, its report printed once.

        A failure every rank already agreed on (``JobFailed``) passes through:
        each rank leaves normally and the entry point prints it on rank 0.
        """
        try:
            yield
        except _WorkerFailed as exc:
            self.end_job(exc.code, exc.text)
        except JobFailed:
            raise
        except Exception as exc:
            if self.size == 1:
                raise
            self.end_job(*describe_failure(self.rank, exc))

    def end_job(self, code: int, text: str) -> None:
        """Print ``text`` and end every rank of the job with exit status ``code``; never returns.

        MPI's own notice of the abort would only repeat the text, so this
        rank's stderr is closed before MPI_Abort; under MPICH MPI_Abort may
        return, and ``os._exit`` makes sure this rank ends even so. The
        launcher forwards a rank's output from a pipe on its own time and an
        abort tears that down, so the rank first gives it ABORT_FORWARD_SECONDS
        to pass the text on (on a loaded machine it was otherwise lost).
        """
        sys.stderr.write(text.rstrip("\n") + "\n")
        sys.stderr.flush()
        sys.stdout.flush()
        time.sleep(ABORT_FORWARD_SECONDS)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
        try:
            self.comm.Abort(code)
        finally:
            os._exit(code)

    def groups(self, ranks_per_point: int = 1, coordinator_only: bool = False) -> Group:
        """This rank's group of ``ranks_per_point`` ranks (collective: every rank calls it)."""
        group = Group(self, GroupLayout(self.size, ranks_per_point, coordinator_only))
        if group.comm is not None and self.is_root:
            from mpi4py import MPI

            if MPI.Query_thread() < MPI.THREAD_MULTIPLE:
                raise LandscapeError("--ranks_per_point > 1 with rank 0 evaluating needs an MPI with "
                                     "MPI_THREAD_MULTIPLE; add --coordinator_only (and one rank more)")
        return group

    def run_grid(self, todo: np.ndarray, evaluate_point: PointFn, on_result: ResultFn,
                 coordinator_evaluates: bool = True, group: Group | None = None) -> RunStats:
        """Evaluate every flat index of ``todo`` somewhere; ``on_result`` runs on rank 0.

        Called by rank 0 and the group leaders (every rank without ``group``);
        a leader's ``evaluate_point`` is its group's (``Group.reduced``).
        """
        if self.size == 1:
            return self._run_alone(todo, evaluate_point, on_result)
        leaders = group.layout.leaders if group else list(range(self.size))
        leave_group = group.close if group else lambda: None
        if self.is_root:
            return _Coordinator(self, todo, evaluate_point, on_result, coordinator_evaluates,
                                [r for r in leaders if r != 0], leave_group).run()
        _work(self, evaluate_point, leave_group)
        return RunStats()

    def _run_alone(self, todo, evaluate_point, on_result) -> RunStats:
        start, stats = time.perf_counter(), RunStats(points_by_rank={0: 0})
        for index in todo:
            if self.stop_requested:
                stats.stopped_early = True
                break
            on_result(int(index), evaluate_point(int(index)))
            stats.points += 1
        stats.points_by_rank[0] = stats.points
        stats.wall_seconds = time.perf_counter() - start
        return stats


class _Coordinator:
    """Rank 0's loop: serve requests and results; its own points run in a helper thread.

    Evaluating in a thread keeps the coordinator answering within a poll
    interval even while rank 0 computes, so no worker waits for its first or
    its next chunk. Only this (main) thread makes MPI calls.
    """

    def __init__(self, ctx: Context, todo, evaluate_point, on_result, evaluates: bool,
                 workers: list[int], release: Callable[[], None]):
        self.ctx, self.comm = ctx, ctx.comm
        self.queue = deque(int(i) for i in todo)
        self.evaluate_point, self.on_result = evaluate_point, on_result
        self.evaluates, self.release = evaluates, release
        self.active = set(workers)
        self.outstanding = {r: 0 for r in self.active}  # points handed out, not yet returned
        self.held: set[int] = set()  # workers whose request for more waits (see _answer_held)
        self.told_to_stop: set[int] = set()
        self.stats = RunStats(points_by_rank={r: 0 for r in range(ctx.size)})

    def run(self) -> RunStats:
        start = time.perf_counter()
        local = _LocalEvaluator(self.evaluate_point, self.release) if self.evaluates else None
        try:
            while self.active or (local and local.busy) or (local and self.queue and not self.stopping):
                self._serve_messages()
                self._tell_workers_to_stop()
                self._answer_held()
                if local and not local.busy and self.queue and not self.stopping:
                    local.submit(self.queue.popleft())
                elif local and not local.busy:
                    local.close(wait=False)  # nothing more for rank 0: its group's members leave now
                finished = local.result(timeout=IDLE_SLEEP) if local and local.busy else None
                if finished is not None:
                    self._record(0, *finished)
                elif not local or not local.busy:
                    time.sleep(IDLE_SLEEP)
        except BaseException:
            if local:
                local.close(wait=False)  # its thread may wait on a failed member: do not join it
            raise
        if local:
            local.close()
        self.stats.wall_seconds = time.perf_counter() - start
        self.stats.stopped_early = self.stopping
        return self.stats

    @property
    def stopping(self) -> bool:
        return self.ctx.stop_requested

    @property
    def _evaluators(self) -> int:
        """Ranks still evaluating points: the active workers, and rank 0 when it evaluates."""
        return len(self.active) + (1 if self.evaluates else 0)

    def _serve_messages(self) -> None:
        from mpi4py import MPI

        status, t0 = MPI.Status(), time.perf_counter()
        while self.comm.iprobe(source=MPI.ANY_SOURCE, tag=TAG_TO_COORDINATOR, status=status):
            source = status.Get_source()
            kind, *payload = self.comm.recv(source=source, tag=TAG_TO_COORDINATOR)
            if kind == "result":  # ("result", index, metrics)
                self._record(source, *payload)
                self.outstanding[source] -= 1
            elif kind == "request":  # ("request", stop_requested): answered by _answer_held
                if payload[0]:
                    self.ctx.request_stop()
                self.held.add(source)
            elif kind == "stopping":  # ("stopping",): a signal reached that worker
                self.ctx.request_stop()
            elif kind == "failed":  # ("failed", exit status, report): a point of that worker failed
                raise _WorkerFailed(*payload)
            elif kind == "bye":  # ("bye", stop_requested)
                if payload[0]:
                    self.ctx.request_stop()
                self.active.discard(source)
                self.comm.send(FAREWELL, dest=source, tag=TAG_STOP)  # after any STOP: none left unread
        self.stats.coordinator_seconds += time.perf_counter() - t0

    def _tell_workers_to_stop(self) -> None:
        """Once a stop is requested, ask every working rank to stop after the point it is on."""
        if not self.stopping:
            return
        for worker in self.active - self.told_to_stop:
            self.comm.send(STOP, dest=worker, tag=TAG_STOP)
            self.told_to_stop.add(worker)

    def _answer_held(self) -> None:
        """Send waiting workers their next chunk when they are about to need it.

        A request is answered while the worker computes the last point of its
        chunk (so the next chunk is there when it finishes), and in the end
        game -- fewer points left than evaluators -- only once it is idle, so
        the last points go to whichever rank is free first rather than queue
        behind a slow one. Stopping, or an empty queue, answers at once.
        """
        endgame = len(self.queue) <= self._evaluators
        for worker in list(self.held):
            if self.stopping or not self.queue or self.outstanding[worker] <= (0 if endgame else 1):
                chunk = self._next_chunk()
                self.outstanding[worker] += len(chunk)
                self.comm.send(chunk, dest=worker, tag=TAG_WORK)
                self.held.discard(worker)

    def _next_chunk(self) -> np.ndarray:
        if self.stopping or not self.queue:
            return np.empty(0, dtype=np.int64)
        size = len(self.queue) // (CHUNKS_PER_RANK * max(self._evaluators, 1))
        size = min(max(size, 1), MAX_CHUNK, len(self.queue))
        return np.array([self.queue.popleft() for _ in range(size)], dtype=np.int64)

    def _record(self, rank: int, index: int, values: Mapping[str, float]) -> None:
        self.on_result(int(index), values)
        self.stats.points += 1
        self.stats.points_by_rank[rank] += 1


class _LocalEvaluator:
    """Rank 0's own evaluation: one point at a time in a thread, results handed back in order.

    When rank 0 leads a group, the thread also makes the group's MPI calls
    (MPI_THREAD_MULTIPLE) and releases its members once closed.
    """

    def __init__(self, evaluate_point: PointFn, release: Callable[[], None]):
        self._inbox: queue.Queue = queue.Queue()
        self._outbox: queue.Queue = queue.Queue()
        self.busy = self._closed = False
        self._thread = threading.Thread(target=self._loop, args=(evaluate_point, release),
                                        name="rank0-evaluator", daemon=True)
        self._thread.start()

    def _loop(self, evaluate_point: PointFn, release: Callable[[], None]) -> None:
        while (index := self._inbox.get()) is not None:
            try:
                self._outbox.put((index, evaluate_point(index), None))
            except BaseException as exc:  # handed to the coordinator, which re-raises it
                self._outbox.put((index, None, exc))
                return
        release()

    def submit(self, index: int) -> None:
        self.busy = True
        self._inbox.put(index)

    def result(self, timeout: float) -> tuple[int, Mapping[str, float]] | None:
        """The finished point, or None if it is still running after ``timeout`` seconds."""
        try:
            index, values, error = self._outbox.get(timeout=timeout)
        except queue.Empty:
            return None
        self.busy = False
        if error is not None:
            raise error
        return index, values

    def close(self, wait: bool = True) -> None:
        """No more points; with ``wait``, return once the group's members are released."""
        if not self._closed:
            self._closed = True
            self._inbox.put(None)
        if wait:
            self._thread.join()


def _work(ctx: Context, evaluate_point: PointFn, leave_group: Callable[[], None]) -> None:
    """A worker's loop: keep one chunk in hand and the next one on its way.

    A group's leader lets its members go (``leave_group``) before it says
    goodbye, so that they have left before rank 0 ends the job.
    """
    comm = ctx.comm

    def request() -> None:
        comm.send(("request", ctx.stop_requested), dest=0, tag=TAG_TO_COORDINATOR)

    def receive_chunk() -> np.ndarray:
        while not comm.iprobe(source=0, tag=TAG_WORK):
            time.sleep(IDLE_SLEEP)
        return comm.recv(source=0, tag=TAG_WORK)

    def stop_asked() -> bool:
        """Whether a signal reached this rank or rank 0 asked every rank to stop."""
        if comm.iprobe(source=0, tag=TAG_STOP):
            comm.recv(source=0, tag=TAG_STOP)
            ctx.request_stop()
        return ctx.stop_requested

    request()
    chunk = receive_chunk()
    while len(chunk) and not stop_asked():
        request()  # prefetch: answered while the last point of this chunk is computed
        for index in chunk:
            if stop_asked():
                comm.send(("stopping",), dest=0, tag=TAG_TO_COORDINATOR)  # releases our request
                break
            comm.send(("result", int(index), _evaluate_or_report(ctx, evaluate_point, int(index))),
                      dest=0, tag=TAG_TO_COORDINATOR)
        chunk = receive_chunk()
    leave_group()
    comm.send(("bye", ctx.stop_requested), dest=0, tag=TAG_TO_COORDINATOR)
    while comm.recv(source=0, tag=TAG_STOP) != FAREWELL:
        pass  # a STOP sent while we finished


def _evaluate_or_report(ctx: Context, evaluate_point: PointFn, index: int) -> dict[str, float]:
    """A worker's point; if it fails, rank 0 gets the report to print and ends the job."""
    try:
        return dict(evaluate_point(index))
    except Exception as exc:
        _report_failure(ctx, exc)


def _report_failure(ctx: Context, exc: Exception) -> None:
    """Send rank 0 the report of ``exc`` to print, and wait for it to end the job; never returns."""
    code, text = describe_failure(ctx.rank, exc)
    ctx.comm.send(("failed", code, text), dest=0, tag=TAG_TO_COORDINATOR)
    time.sleep(FAILED_WORKER_GRACE)  # rank 0 ends the job meanwhile
    ctx.end_job(code, text)


class JobFailed(Exception):
    """A failure raised on every rank alike: ``text`` is printed once (on rank 0), ``code`` is the exit status."""

    def __init__(self, code: int, text: str):
        super().__init__(text)
        self.code, self.text = code, text


class _WorkerFailed(JobFailed):
    """Raised on rank 0 alone when a worker reports a failure: rank 0 prints it and ends the job."""


def describe_failure(rank: int, exc: BaseException) -> tuple[int, str]:
    """The exit status and the report of ``exc`` raised on ``rank``.

    A user's error is one ``error:`` line (naming the rank unless it is 0), exit 2;
    anything else is a bug and keeps its traceback, exit 1.
    """
    where = f"rank {rank}: " if rank else ""
    if isinstance(exc, LandscapeError):
        return EXIT_USER_ERROR, f"error: {where}{exc}"
    return EXIT_BUG, where + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _world():
    """MPI.COMM_WORLD, or None when mpi4py is not installed (a world of one)."""
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI.COMM_WORLD


def world_rank() -> int:
    """This process's rank in MPI.COMM_WORLD if MPI is already up, else 0 (for printing once)."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is None or not mpi.Is_initialized() or mpi.Is_finalized():
        return 0
    return mpi.COMM_WORLD.Get_rank()


def finalize_together() -> None:
    """Before a command's process exits: every rank meets, then MPI ends on all of them.

    Under mpirun a rank that exits with a non-zero status (a stopped run's 75)
    while another has not reached MPI_Finalize yet gets that one killed; so
    all ranks finalize at the same moment, and exit in any order after.
    From here on the stop signals are ignored: there is nothing left to stop,
    and Python's own teardown would give them back their default action, so
    a second SIGTERM during it (sent 0.2 s after the first) killed the rank.
    """
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is None or not mpi.Is_initialized() or mpi.Is_finalized() or mpi.COMM_WORLD.Get_size() == 1:
        return
    mpi.COMM_WORLD.Barrier()
    mpi.Finalize()


LAUNCHER_RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID")


def launch_rank() -> int:
    """This process's rank as its launcher (mpirun, srun) set it, before MPI starts; 0 alone."""
    for name in LAUNCHER_RANK_VARIABLES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


@contextmanager
def stop_signals_caught(give_back: bool = True) -> Iterator[None]:
    """While inside, the stop signals request a clean stop (``catch_stop_signals``).

    With ``give_back`` the request is cleared on the way out and the previous
    handlers come back, so a run called from Python leaves its caller's own
    Ctrl-C as it was. A command line that is about to exit passes False: it
    keeps what ``finalize_together`` set until the process is gone.
    """
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    catch_stop_signals()
    try:
        yield
    finally:
        if give_back:
            for s, h in previous.items():
                signal.signal(s, h)
            _stop.clear()


def catch_stop_signals() -> None:
    """From now on the stop signals (STOP_SIGNALS) request a clean stop instead of killing the process.

    A scheduler's warning before the time limit reaches every rank at any
    moment: while the model loads, during the grid, or on a rank that has
    finished its share and waits to exit. The command-line entry points call
    this first thing, so a warning at any of those moments stops the job
    cleanly (or is harmless) rather than killing a rank.
    """
    for s in STOP_SIGNALS:
        signal.signal(s, lambda signum, frame: _stop.set())
