"""Groups of ranks per point (``--ranks_per_point K``): the cost of the group's reduction, and the
time per point against K.

Inside a group the leader passes each point on (a broadcast of its index),
every member evaluates its 1/K shard into named sums, and the sums are
reduced in float64 to the leader. This benchmark runs the engine's own group
code (``Context.groups``, ``Group.reduced``/``follow``, ``Context.run_grid``)
under one ``mpirun -n N`` for each K dividing N, with a synthetic evaluator
whose cost is proportional to the shard: a member sleeps
``point_seconds * shard / n`` per point, so one rank alone (K = 1) takes
``point_seconds`` = T₁ and the ideal group takes T₁/K. With ``--uneven u``
the odd-numbered ranks sleep (1 + u) times as long, so every group of K ≥ 2
waits for a slow member: its ideal is (1 + u)·T₁/K.

Reported per K:

- ``reduction_us``: microseconds of one point's group protocol with nothing
  to evaluate (broadcast of the index + Reduce of 12 float64 sums and the
  stop flag), the median of ``--repeats`` points on the leader;
- ``seconds_per_point``: a group's time per point, wall time × groups /
  points over the grid (every group busy, rank 0 leading group 0 and
  coordinating), against the ideal T₁/K (or (1 + u)·T₁/K; for K = 1 with
  uneven ranks, the groups' harmonic mean), and the overhead = measured − ideal.

    python bench/groups.py                       # N = 8 ranks, K = 1, 2, 4, 8
    python bench/groups.py --ranks 16 --point_seconds 0.4 --uneven 0.5

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
from scaling import mpirun_command, synchronized_start

SUMS = 12  # named sums per point (train and test: loss, correct, nonfinite, count, and more metrics)
SAMPLES = 50_000  # samples of the synthetic split (a CIFAR-10 train split)
STARTUP_ALLOWANCE = 180  # seconds mpirun may take to start and end N Python processes


def member_cost(rank: int, shard: int, shards: int, point_seconds: float, uneven: float) -> float:
    """Seconds one point takes on ``rank`` for its shard: proportional to the shard's samples."""
    size = (shard + 1) * SAMPLES // shards - shard * SAMPLES // shards
    return point_seconds * size / SAMPLES * ((1.0 + uneven) if rank % 2 else 1.0)


def measure(ctx, k: int, args: argparse.Namespace) -> dict:
    """The reduction's cost and the grid's time per point for groups of ``k``; rank 0 returns them."""
    group = ctx.groups(k)
    cost = member_cost(ctx.rank, group.shard, group.shards, args.point_seconds, args.uneven)
    names = [f"sum{i}" for i in range(SUMS)]

    def free(index: int) -> dict:
        return dict.fromkeys(names, 1.0)

    def slept(index: int) -> dict:
        time.sleep(cost)
        return dict.fromkeys(names, 1.0)

    reduction = []
    if group.is_leader:
        point = group.reduced(free, lambda sums: sums)
        for i in range(args.repeats):
            t0 = time.perf_counter()
            point(i)
            reduction.append(time.perf_counter() - t0)
    else:
        group.follow(free)
    group.close()
    group = ctx.groups(k)  # a fresh group for the grid, as a run has
    groups = group.layout.groups
    points = args.points_per_group * groups
    start = synchronized_start(ctx)
    if group.is_leader:
        stats = ctx.run_grid(np.arange(points), group.reduced(slept, lambda sums: sums),
                             lambda index, values: None, group=group)
    else:
        group.follow(slept)
        group.close()
    wall = time.time() - start
    reductions = ctx.comm.gather(float(np.median(reduction)) if reduction else None, root=0)
    if not ctx.is_root:
        return {}
    layout = group.layout
    slowest = [max(member_cost(r, layout.shard_of(r), k, args.point_seconds, args.uneven)
                   for r in range(ctx.size) if layout.group_of(r) == g) for g in range(groups)]
    ideal = groups / sum(1.0 / c for c in slowest)  # each group at its slowest member's pace
    measured = wall * groups / stats.points
    return {
        "ranks_per_point": k, "groups": groups, "points": stats.points,
        "reduction_us": 1e6 * float(np.median([r for r in reductions if r is not None])),
        "seconds_per_point": measured, "ideal_seconds_per_point": ideal,
        "overhead_seconds_per_point": measured - ideal,
        "speedup_over_k1_ideal": args.point_seconds / measured,
    }


def child(args: argparse.Namespace) -> None:
    """One ``mpirun``: every K in turn; rank 0 writes the results to ``args.child``."""
    from mpi4py import MPI

    from mpi_landscape.distributed import Context

    ctx = Context()
    with ctx.abort_on_error():
        rows = [measure(ctx, k, args) for k in args.k_values if ctx.size % k == 0]
        if ctx.is_root:
            mpi = MPI.Get_library_version().strip().splitlines()[0]
            Path(args.child).write_text(json.dumps({"ranks": ctx.size, "mpi": mpi, "rows": rows}))


def launch(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [mpirun_command(args), "-n", str(args.ranks), sys.executable, str(Path(__file__).resolve()),
                   "--child", str(out), "--point_seconds", str(args.point_seconds), "--uneven", str(args.uneven),
                   "--points_per_group", str(args.points_per_group), "--repeats", str(args.repeats),
                   "--k", ",".join(map(str, args.k_values))]
        budget = STARTUP_ALLOWANCE + 2 * len(args.k_values) * args.points_per_group * args.point_seconds * (
            1 + args.uneven)
        subprocess.run(command, check=True, timeout=budget)
        return json.loads(out.read_text())


TABLE = "{:>3} {:>6} {:>13} {:>12} {:>10} {:>12} {:>9}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, default=8, help="ranks of the mpirun")
    parser.add_argument("--k", default="1,2,4,8", help="comma-separated group sizes (those dividing --ranks)")
    parser.add_argument("--point_seconds", type=float, default=0.2, help="T1: a point's cost on one fast rank")
    parser.add_argument("--uneven", type=float, default=0.0, help="odd ranks take (1 + uneven) times as long")
    parser.add_argument("--points_per_group", type=int, default=10, help="grid points per group")
    parser.add_argument("--repeats", type=int, default=200, help="points timed for the reduction's cost")
    parser.add_argument("--mpirun", help="mpirun to launch with (default: the one beside this Python)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.k_values = [int(k) for k in args.k.split(",")]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    machine = machine_name("cpu")
    results = {}
    for uneven in sorted({0.0, args.uneven}):
        run = launch(argparse.Namespace(**{**vars(args), "uneven": uneven}))
        results[f"uneven={uneven:g}"] = run
        print(f"{machine}: {args.ranks} ranks, T1 = {args.point_seconds} s, odd ranks {1 + uneven:g}x slower")
        print(TABLE.format("K", "groups", "reduction us", "s/point", "ideal s", "overhead s", "T1/s"))
        for row in run["rows"]:
            print(TABLE.format(row["ranks_per_point"], row["groups"], f"{row['reduction_us']:.0f}",
                               f"{row['seconds_per_point']:.4f}", f"{row['ideal_seconds_per_point']:.4f}",
                               f"{row['overhead_seconds_per_point']:.4f}", f"{row['speedup_over_k1_ideal']:.2f}"),
                  flush=True)
    path = write_result("groups", machine, {
        "benchmark": "groups", "machine": machine, **environment("cpu"),
        "point_seconds": args.point_seconds, "points_per_group": args.points_per_group,
        "samples": SAMPLES, "sums_per_point": SUMS, "results": results,
    })
    print(f"\nwrote {path.relative_to(path.parents[2])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
