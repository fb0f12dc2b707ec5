"""Seconds per grid point with eval-mode BatchNorm folded into the layer before it, and without.

    python bench/folding.py                                   # demo MLP, ResNet-20, ResNet-56 on 512 images
    python bench/folding.py --models resnet56 --images 2000 --rounds 5

Two ``PointEvaluator``s of the same network, directions and data, one with
``fold_bn=True`` (the default) and one with ``fold_bn=False`` (the BatchNorm
modules as they are), evaluate the same random points of [-0.25, 0.25]² in
interleaved rounds (the order swapped every round), by CPU time on a CPU and
by wall time on a GPU; the medians over the rounds, their ratio and the
largest loss difference between the two are printed; on a shared machine
the median of each round's own ratio (both timed back to back) is the
steadier figure.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch

from machine import environment, machine_name, write_result
from mpi_landscape.evaluate import PointEvaluator, SplitData
from point_speed import Workload, image_workload, mlp_workload


def seconds_per_point(evaluator: PointEvaluator, points: list[list[float]], device: torch.device) -> float:
    """Seconds per point over ``points``: CPU time on a CPU, wall time (synchronized) on a GPU."""
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    began = clock()
    for alpha, beta in points:
        evaluator(alpha, beta)  # reads its totals back: each point ends synchronized
    return (clock() - began) / len(points)


def measure(w: Workload, device: torch.device, points: int, rounds: int) -> dict:
    """Interleaved rounds of the folded and the unfolded evaluator on ``w``."""
    gen = torch.Generator().manual_seed(0)
    grid = (torch.rand(points, 2, generator=gen) * 0.5 - 0.25).tolist()
    split = {"train": SplitData(w.inputs, w.targets)}
    evaluators = {name: PointEvaluator(copy.deepcopy(w.net), "weights", w.x_dir, w.y_dir, split,
                                       device=device, fold_bn=name == "folded") for name in ("folded", "unfolded")}
    gap = max(abs(evaluators["folded"](a, b)["train_loss"] - evaluators["unfolded"](a, b)["train_loss"])
              for a, b in grid[:3])  # also the untimed first points
    times: dict[str, list[float]] = {name: [] for name in evaluators}
    for r in range(rounds):
        for name in (list(evaluators) if r % 2 == 0 else list(evaluators)[::-1]):
            times[name].append(seconds_per_point(evaluators[name], grid, device))
    folded, unfolded = (statistics.median(times[k]) for k in ("folded", "unfolded"))
    paired = statistics.median(u / f for f, u in zip(times["folded"], times["unfolded"]))
    return {"model": w.model, "samples": len(w.inputs), "points": points, "rounds": rounds,
            "batch_size": evaluators["folded"].batch_size,
            "folded_batchnorms": len(evaluators["folded"].folded.pairs) if evaluators["folded"].folded else 0,
            "folded_s_per_point": folded, "unfolded_s_per_point": unfolded, "speedup": unfolded / folded,
            "median_round_speedup": paired,
            "max_abs_loss_diff": gap, "seconds": times}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda[:n]")
    p.add_argument("--models", default="demo_mlp,resnet20,resnet56", help="comma list of registered models")
    p.add_argument("--images", type=int, default=512, help="CIFAR-shaped images for the conv nets")
    p.add_argument("--points", type=int, default=0, help="points per round (0: 20 for the MLP, 2 for conv nets)")
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    rows = []
    print(f"{'model':<10} {'samples':>7} {'BNs':>4} {'folded s/pt':>12} {'unfolded s/pt':>13} {'speed-up':>8} "
          f"{'paired':>7} {'max |dloss|':>11}")
    for model in args.models.split(","):
        w = mlp_workload() if model == "demo_mlp" else image_workload(model, args.images)
        row = measure(w, device, args.points or (20 if model == "demo_mlp" else 2), args.rounds)
        rows.append(row)
        print(f"{model:<10} {row['samples']:>7} {row['folded_batchnorms']:>4} {row['folded_s_per_point']:>12.5f} "
              f"{row['unfolded_s_per_point']:>13.5f} {row['speedup']:>7.2f}x {row['median_round_speedup']:>6.2f}x "
              f"{row['max_abs_loss_diff']:>11.1e}", flush=True)
    print("speed-up = unfolded time / folded time per point, from the medians; paired = the median of the "
          "rounds' own ratios")
    path = write_result("folding", machine_name(args.device),
                        {"environment": environment(args.device), "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
