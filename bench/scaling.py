"""Parallel efficiency of the real coordinator (``Context.run_grid``) against a static split.

A surface is only as fast as its slowest rank allows. The reference code
splits the grid into N equal contiguous parts up front, so with uneven
workers (mixed GPUs, a busy node, points that cost more than others)
everyone waits for the slowest. The engine hands out chunks on request
instead. This benchmark measures both under ``mpirun -n N`` with a
synthetic evaluator that sleeps a known cost per point, so that the figures
are about scheduling only, and the ideal is known exactly.

Speeds. Every rank evaluates (rank 0 too, as in a real run). With
``--uneven u`` the odd-numbered ranks take ``(1 + u) * point_seconds`` per
point and the even-numbered ranks (rank 0 among them) ``point_seconds``:
with the defaults, half the ranks take 1.5x as long.

Efficiency. Rank r alone would do ``1 / cost_r`` points per second, so N
ranks working without any loss do ``sum_r 1 / cost_r`` (the nominal rate;
with equal speeds this is N times the single-rank rate). Efficiency is the
measured throughput, points / wall seconds, divided by that nominal rate.
Wall seconds run on rank 0 from a start time that every rank sleeps until
(``synchronized_start``) to the moment rank 0 holds every result. A static split cannot reach 1 on uneven speeds:
its wall time is the slowest rank's share.

Each N runs three schedules in one ``mpirun``: ``dynamic`` (run_grid) and
``static`` (a fixed contiguous 1/N of the points per rank, one Reduce of the
grid at the end; the reference reduces after every point, which can only be
slower) on the uneven speeds, and ``dynamic`` on equal speeds as a control that
isolates the coordinator's own losses. Also reported: the coordinator's time
serving messages per point (``coordinator_seconds / points``), how the
points fell on the ranks, and how long the ranks stood idle before their
first point and after their last (means over ranks, dynamic uneven run).

    python bench/scaling.py                      # N = 2, 4, 8, 16, 32 on this machine
    python bench/scaling.py --ranks 16 --point_seconds 0.1 --uneven 0.5

Sleeping ranks need no cores, so N may exceed the machine's cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from machine import environment, machine_name, write_result

SCHEDULES = ("dynamic", "static", "dynamic_equal")
START_DELAY = 0.5  # seconds from rank 0 announcing the start to the start
STARTUP_ALLOWANCE = 180  # seconds mpirun may take to start and end N Python processes


def point_cost(rank: int, point_seconds: float, uneven: float) -> float:
    """Seconds one point takes on ``rank``: odd ranks are the slow ones."""
    return point_seconds * (1.0 + uneven) if rank % 2 else point_seconds


def synchronized_start(ctx) -> float:
    """A start time every rank sleeps until, so the clock starts when all are ready.

    A barrier on an oversubscribed node releases ranks up to a point's time
    apart (they busy-poll for few cores); ranks that sleep until an agreed
    moment all wake within milliseconds of it. One node's clock is assumed.
    """
    start = ctx.comm.bcast(time.time() + START_DELAY if ctx.is_root else None, root=0)
    time.sleep(max(0.0, start - time.time()))
    return start


def run_dynamic(ctx, points: int, cost: float) -> dict:
    """The engine's coordinator over ``points`` sleeping points; rank 0 returns the timings."""
    first: dict[int, float] = {}  # rank -> when its first point started (rank 0 only)
    last: dict[int, float] = {}  # rank -> when its last point ended

    def evaluate_point(index: int) -> dict:
        started = time.time()
        time.sleep(cost)
        return {"rank": float(ctx.rank), "started": started, "finished": time.time()}

    def on_result(index: int, values: dict) -> None:
        rank = int(values["rank"])
        first[rank] = min(first.get(rank, np.inf), values["started"])
        last[rank] = max(last.get(rank, -np.inf), values["finished"])

    start = synchronized_start(ctx)
    stats = ctx.run_grid(np.arange(points), evaluate_point, on_result)
    wall = time.time() - start
    if not ctx.is_root:
        return {}
    return {
        "wall_seconds": wall,
        "points": stats.points,
        "points_by_rank": [stats.points_by_rank[r] for r in range(ctx.size)],
        "first_start_by_rank": [first.get(r, np.nan) - start for r in range(ctx.size)],
        "last_finish_by_rank": [last.get(r, start) - start for r in range(ctx.size)],
        "coordinator_seconds": stats.coordinator_seconds,
    }


def run_static(ctx, points: int, cost: float) -> dict:
    """The reference's schedule: a contiguous 1/N of the points per rank, one Reduce at the end."""
    from mpi4py import MPI

    mine = np.array_split(np.arange(points), ctx.size)[ctx.rank]
    values = np.full(points, -np.inf)
    start = synchronized_start(ctx)
    began = time.time() - start
    for index in mine:
        time.sleep(cost)
        values[index] = float(ctx.rank)
    ended = time.time() - start
    merged = np.empty_like(values) if ctx.is_root else None
    ctx.comm.Reduce(values, merged, op=MPI.MAX, root=0)
    wall = time.time() - start
    spans = ctx.comm.gather((began, ended), root=0)
    if not ctx.is_root:
        return {}
    return {
        "wall_seconds": wall,
        "points": int(np.isfinite(merged).sum()),
        "points_by_rank": [int((merged == r).sum()) for r in range(ctx.size)],
        "first_start_by_rank": [b for b, _ in spans],
        "last_finish_by_rank": [e for _, e in spans],
    }


def summarize(run: dict, costs: list[float]) -> dict:
    """Efficiency against the nominal rate, and where the ranks stood idle.

    ``mean_start_idle_seconds`` is how long a rank waited, on average, before
    its first point; ``mean_end_idle_seconds`` how long it waited after its
    last one for the run to end. With equal speeds their sum over the wall
    time is nearly all of ``1 - efficiency``.
    """
    nominal = sum(1.0 / c for c in costs)
    wall = run["wall_seconds"]
    busy = sum(n * c for n, c in zip(run["points_by_rank"], costs))
    summary = {
        **run,
        "nominal_points_per_second": nominal,
        "points_per_second": run["points"] / wall,
        "efficiency": run["points"] / wall / nominal,
        "idle_fraction": 1.0 - busy / (len(costs) * wall),
        "mean_start_idle_seconds": float(np.mean(run["first_start_by_rank"])),
        "mean_end_idle_seconds": wall - float(np.mean(run["last_finish_by_rank"])),
    }
    if "coordinator_seconds" in run:
        summary["coordinator_seconds_per_point"] = run["coordinator_seconds"] / run["points"]
    return summary


def child(args: argparse.Namespace) -> None:
    """One ``mpirun``: every schedule in turn; rank 0 writes the results to ``args.child``."""
    from mpi4py import MPI

    from mpi_landscape.distributed import Context

    ctx = Context()
    points = args.points_per_rank * ctx.size
    with ctx.abort_on_error():
        results = {}
        for schedule in SCHEDULES:
            uneven = 0.0 if schedule == "dynamic_equal" else args.uneven
            costs = [point_cost(r, args.point_seconds, uneven) for r in range(ctx.size)]
            run = run_static if schedule == "static" else run_dynamic
            outcome = run(ctx, points, costs[ctx.rank])
            if ctx.is_root:
                results[schedule] = summarize(outcome, costs)
        if ctx.is_root:
            mpi = MPI.Get_library_version().strip().splitlines()[0]
            Path(args.child).write_text(json.dumps({"ranks": ctx.size, "points": points, "mpi": mpi, **results}))


def mpirun_command(args: argparse.Namespace) -> str:
    """``--mpirun``, else the mpirun of this Python's environment (the mpich wheel's) or PATH's."""
    from mpi_landscape.demo import find_mpirun  # here, not at the top: the ranks need no torch

    found = args.mpirun or find_mpirun()
    if not found:
        sys.exit("no mpirun found: install mpi4py with the mpich wheel, or give --mpirun")
    return found


def launch(args: argparse.Namespace, ranks: int) -> dict:
    """Run this script under ``mpirun -n ranks`` and return rank 0's results."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [mpirun_command(args), "-n", str(ranks), sys.executable, str(Path(__file__).resolve()),
                   "--child", str(out), "--point_seconds", str(args.point_seconds),
                   "--uneven", str(args.uneven), "--points_per_rank", str(args.points_per_rank)]
        budget = STARTUP_ALLOWANCE + len(SCHEDULES) * args.points_per_rank * args.point_seconds * (2 + args.uneven)
        subprocess.run(command, check=True, timeout=budget)
        return json.loads(out.read_text())


TABLE = "{:>5} {:>6} {:>10} {:>11} {:>10} {:>6} {:>9} {:>8} {:>7} {:>11}"


def print_header() -> None:
    print(TABLE.format("ranks", "points", "nominal/s", "dynamic eff", "static eff", "gain",
                       "equal eff", "start s", "end s", "coord ms/pt"))


def print_row(row: dict) -> None:
    dynamic, static, equal = row["dynamic"], row["static"], row["dynamic_equal"]
    print(TABLE.format(row["ranks"], row["points"], f"{dynamic['nominal_points_per_second']:.1f}",
                       f"{dynamic['efficiency']:.3f}", f"{static['efficiency']:.3f}",
                       f"{dynamic['efficiency'] / static['efficiency']:.2f}x", f"{equal['efficiency']:.3f}",
                       f"{dynamic['mean_start_idle_seconds']:.3f}", f"{dynamic['mean_end_idle_seconds']:.3f}",
                       f"{1000 * dynamic['coordinator_seconds_per_point']:.3f}"), flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", default="2,4,8,16,32", help="comma-separated rank counts")
    parser.add_argument("--point_seconds", type=float, default=0.1, help="cost of a point on a fast rank")
    parser.add_argument("--uneven", type=float, default=0.5,
                        help="odd ranks take (1 + uneven) * point_seconds per point")
    parser.add_argument("--points_per_rank", type=int, default=20, help="grid points per rank")
    parser.add_argument("--mpirun", help="mpirun to launch with (default: the one beside this Python)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    machine = machine_name("cpu")
    print(f"{machine}: {args.point_seconds} s points, odd ranks {1 + args.uneven:g}x slower, "
          f"{args.points_per_rank} points per rank")
    print_header()
    rows = []
    for ranks in (int(n) for n in args.ranks.split(",")):
        rows.append(launch(args, ranks))
        print_row(rows[-1])
    path = write_result("scaling", machine, {
        "benchmark": "scaling",
        "machine": machine,
        **environment("cpu"),
        "point_seconds": args.point_seconds,
        "uneven": args.uneven,
        "slow_ranks": "odd-numbered ranks take (1 + uneven) * point_seconds; even ones (rank 0 too) point_seconds",
        "points_per_rank": args.points_per_rank,
        "results": rows,
    })
    print(f"\nwrote {path.relative_to(path.parents[2])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
