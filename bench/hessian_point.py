"""Seconds per Hessian point (loss, λmax and λmin): this engine against a reference-style evaluator.

    python bench/hessian_point.py                      # CPU: demo MLP on 1,024 points; a few minutes
    python bench/hessian_point.py --device cuda --models demo_mlp,resnet56 --samples 4096

Both evaluators get the same network, directions, data, points and
tolerance, and take the Hessian with respect to every parameter (the
reference's choice: ``--xignore none`` here). The engine is
``PointEvaluator`` plus ``PointCurvature``: data resident on the device, one
pass per Hessian-vector product summed in float64, Lanczos on the device.
The reference style (``reference_style.ReferenceStyleHessian``) iterates a
DataLoader anew per product, sums batch products and runs scipy's ``eigsh``
twice (λmax, then λmin shifted). Points alternate between the two in one
process, so machine noise hits both alike; the ratio of median seconds is
printed and written to ``results/hessian_point_<machine>.json``, with the
eigenvalues of both (the reference's divided by its number of batches, which
its summing multiplies them by). Then the engine alone times every point of
a small grid, to show how unequal Hessian points are and what that costs a
static split of the grid against dynamic scheduling (``point_cost_spread``).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import numpy as np
import torch

from machine import environment, machine_name, write_result
from point_speed import image_workload, mlp_workload
from reference_style import REFERENCE_BATCH_SIZE, ReferenceStyleHessian
from mpi_landscape.curvature import PointCurvature
from mpi_landscape.evaluate import PointEvaluator, SplitData


def measure(model: str, samples: int, points: int, tol: float, workers: int, device: str) -> dict:
    """Interleaved timings of both evaluators at ``points`` points of one model."""
    w = mlp_workload() if model == "demo_mlp" else image_workload(model, samples)
    inputs, targets = w.inputs[:samples], w.targets[:samples]
    reference_data = torch.utils.data.Subset(w.reference_data, range(samples))
    engine = PointEvaluator(copy.deepcopy(w.net), "weights", w.x_dir, w.y_dir,
                            {"train": SplitData(inputs, targets)}, device=device)
    curvature = PointCurvature.of_evaluator(engine, "train", "none", tol, 300, seed=0)
    reference = ReferenceStyleHessian(copy.deepcopy(w.net), w.x_dir, w.y_dir, reference_data,
                                      num_workers=workers, device=device, tol=tol)
    batches = -(-samples // REFERENCE_BATCH_SIZE)
    rng = np.random.default_rng(0)
    coords = [(0.0, 0.0)] + [tuple(rng.uniform(-0.25, 0.25, 2)) for _ in range(points - 1)]
    rows = []
    for alpha, beta in coords:
        start = time.perf_counter()
        ours = {**engine(alpha, beta), **curvature()}
        engine_seconds = time.perf_counter() - start
        products_before = reference.products
        start = time.perf_counter()
        theirs = {**reference(alpha, beta), **reference.eigenvalues(alpha, beta)}
        reference_seconds = time.perf_counter() - start
        rows.append({"alpha": alpha, "beta": beta, "engine_seconds": engine_seconds,
                     "reference_seconds": reference_seconds,
                     "engine": ours, "reference": {k: v / batches if k.endswith("_eig") else v
                                                   for k, v in theirs.items()},
                     "reference_products": reference.products - products_before})
    engine_median = statistics.median(r["engine_seconds"] for r in rows)
    reference_median = statistics.median(r["reference_seconds"] for r in rows)
    return {"model": model, "samples": samples, "parameters": curvature.hessian.dim, "tol": tol,
            "engine_median_seconds": engine_median, "reference_median_seconds": reference_median,
            "ratio": reference_median / engine_median, "points": rows}


def point_cost_spread(model: str, samples: int, side: int, tol: float, device: str) -> dict:
    """Engine seconds and Lanczos steps at every point of a side × side grid on [-1, 1]².

    Hessian points differ in cost (Lanczos needs more steps where the spectrum
    is crowded), so a static split of the grid waits for its dearest share.
    From these measured costs, the wall time of the reference's static
    schedule (a contiguous 1/N per rank) and of a dynamic one (each point to
    the first free rank, as the coordinator hands them out) are worked out
    for N ranks: a replay of the measured costs, not an MPI run (``scaling.py``
    measures the coordinator itself).
    """
    w = mlp_workload() if model == "demo_mlp" else image_workload(model, samples)
    engine = PointEvaluator(copy.deepcopy(w.net), "weights", w.x_dir, w.y_dir,
                            {"train": SplitData(w.inputs[:samples], w.targets[:samples])}, device=device)
    curvature = PointCurvature.of_evaluator(engine, "train", "none", tol, 300, seed=0)
    seconds, steps = [], []
    for beta in np.linspace(-1, 1, side):
        for alpha in np.linspace(-1, 1, side):
            before, start = curvature.hessian.products, time.perf_counter()
            engine(alpha, beta)
            curvature()
            seconds.append(time.perf_counter() - start)
            steps.append(curvature.hessian.products - before)
    schedules = {}
    for ranks in (2, 4, 8):
        static = max(sum(part) for part in np.array_split(np.array(seconds), ranks))
        free = [0.0] * ranks
        for cost in seconds:
            free[free.index(min(free))] += cost
        schedules[str(ranks)] = {"static_seconds": static, "dynamic_seconds": max(free),
                                 "gain": static / max(free)}
    return {"grid": side, "seconds": seconds, "lanczos_steps": steps, "schedules": schedules}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="demo_mlp", help="comma list: demo_mlp, resnet20, resnet56, ...")
    p.add_argument("--samples", type=int, default=1024, help="data points (a multiple of 128 keeps the "
                                                              "reference's sum an exact multiple of the mean)")
    p.add_argument("--points", type=int, default=3, help="grid points timed per evaluator (θ* first)")
    p.add_argument("--tol", type=float, default=1e-3, help="eigenvalue tolerance of both")
    p.add_argument("--ref_workers", type=int, default=2, help="DataLoader workers of the reference style")
    p.add_argument("--grid", type=int, default=5, help="side of the grid whose per-point costs are replayed")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = []
    print(f"{'model':<10} {'params':>7} {'samples':>7} {'engine s/pt':>11} {'ref s/pt':>9} {'ratio':>6} "
          f"{'λmax engine':>12} {'λmax ref':>12} {'λmin engine':>12} {'λmin ref':>12}")
    for model in args.models.split(","):
        r = measure(model, args.samples, args.points, args.tol, args.ref_workers, args.device)
        centre = r["points"][0]
        print(f"{model:<10} {r['parameters']:>7} {r['samples']:>7} {r['engine_median_seconds']:>11.3g} "
              f"{r['reference_median_seconds']:>9.3g} {r['ratio']:>6.1f} "
              f"{centre['engine']['max_eig']:>12.6g} {centre['reference']['max_eig']:>12.6g} "
              f"{centre['engine']['min_eig']:>12.6g} {centre['reference']['min_eig']:>12.6g}", flush=True)
        spread = point_cost_spread(model, args.samples, args.grid, args.tol, args.device)
        r["cost_spread"] = spread
        print(f"  {args.grid}x{args.grid} grid: {min(spread['lanczos_steps'])}-{max(spread['lanczos_steps'])} "
              f"Lanczos steps a point, {min(spread['seconds']):.3g}-{max(spread['seconds']):.3g} s; "
              + ", ".join(f"{n} ranks: static {v['static_seconds']:.3g} s, dynamic {v['dynamic_seconds']:.3g} s "
                          f"({v['gain']:.2f}x)" for n, v in spread["schedules"].items()), flush=True)
        results.append(r)
    path = write_result("hessian_point", machine_name(args.device),
                        {"environment": environment(args.device), "results": results})
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
