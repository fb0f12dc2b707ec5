"""Seconds per grid point: ``compute_surface`` against loss-landscapes' ``random_plane``.

    pip install -r bench/requirements.txt
    python bench/peer_speed.py       # logistic regression and the demo MLP on 3,000 points, a 784-512-512-10 MLP
                                     # on 10,000, ResNet-20 on 500 images
    python bench/peer_speed.py --models resnet20 --images 2000 --steps 5 --rounds 3

Both evaluate a 2D filter-normalized plane of the same network, over the same
data held in memory, on the same number of torch threads (the count the engine
chooses for that network), in one process: each round runs both, in turns
(the order swapped every round), and the medians over the rounds are compared;
on a loaded machine the median of each round's own ratio (both tools timed
back to back) is the steadier figure, and by CPU time (the process's, all
threads) more so: time the process spent waiting for a core does not count.
The engine computes loss and accuracy per point, loss-landscapes the loss only.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib.metadata
import statistics
import sys
import time

import torch

import loss_landscapes
import loss_landscapes.metrics
from batch_rule import mlp, random_split
from machine import environment, load_average, machine_name, write_result
from mpi_landscape import compute_surface
from mpi_landscape.data import demo_split
from mpi_landscape.directions import DirectionSpec, create_directions
from mpi_landscape.threads import choose_threads
from point_speed import Workload, image_workload, mlp_workload

def linear_workload() -> Workload:
    """Logistic regression, one Linear(2->3), on the demo's 3,000 points: the smallest model,
    whose point is almost all fixed cost."""
    data = demo_split("train")
    torch.manual_seed(0)
    net = torch.nn.Linear(2, 3)
    x_dir, y_dir = create_directions(net, DirectionSpec())
    return Workload("linear", net, x_dir, y_dir, data.inputs, data.targets, None)


def wide_mlp_workload(width: int = 512, samples: int = 10_000) -> Workload:
    """A 784-width-width-10 MLP on ``samples`` MNIST-shaped random vectors: a network whose point
    is a few large matrix products, where batching decides the speed."""
    net = mlp(width)
    inputs, targets = random_split(samples)
    x_dir, y_dir = create_directions(net, DirectionSpec())
    return Workload(f"mlp784-{width}", net, x_dir, y_dir, inputs, targets, None)


WIDE_MLP = "mlp784"
STEPS = {"linear": 21, "demo_mlp": 21, WIDE_MLP: 7}  # points per axis by default; conv nets 3


def workload_named(model: str, images: int) -> Workload:
    """The benchmark's workload for ``model``."""
    if model == "linear":
        return linear_workload()
    if model == WIDE_MLP:
        return wide_mlp_workload()
    return mlp_workload() if model == "demo_mlp" else image_workload(model, images)


def timed(run) -> tuple[float, float]:
    """Wall and CPU seconds (this process's, all threads) of ``run()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def engine_seconds(w: Workload, steps: int) -> tuple[float, float]:
    """Wall and CPU seconds of one ``compute_surface`` call over a ``steps`` x ``steps`` plane."""
    return timed(lambda: compute_surface(w.net, (w.inputs, w.targets), x=f"-1:1:{steps}", y=f"-1:1:{steps}",
                                         device=w.inputs.device, progress=False))


def peer_seconds(w: Workload, steps: int) -> tuple[float, float]:
    """Wall and CPU seconds of one loss-landscapes ``random_plane`` over the same plane size."""
    metric = loss_landscapes.metrics.Loss(torch.nn.functional.cross_entropy, w.inputs, w.targets)
    net = copy.deepcopy(w.net).eval()
    with torch.no_grad():
        return timed(lambda: loss_landscapes.random_plane(net, metric, distance=1, steps=steps,
                                                          normalization="filter"))


def nudge_zero_tensors(net: torch.nn.Module) -> None:
    """Give all-zero parameter tensors (a fresh network's BatchNorm shifts) small random values:
    loss-landscapes' filter normalization divides by their norm. Both tools see the same net."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.add_(1e-3 * torch.randn(p.shape, generator=gen))


def measure(w: Workload, steps: int, rounds: int, device: str = "cpu") -> dict:
    """Interleaved rounds of both tools on ``w`` (moved to ``device``); per-point medians and their
    ratios, by wall and CPU time, and the machine's load before and after."""
    nudge_zero_tensors(w.net)
    w = dataclasses.replace(w, net=w.net.to(device), inputs=w.inputs.to(device), targets=w.targets.to(device))
    load = [load_average()]
    threads = choose_threads(w.net, w.inputs, batch_size=len(w.inputs))
    torch.set_num_threads(threads)  # the peer runs on the count the engine picks for itself
    engine_seconds(w, 2), peer_seconds(w, 2)  # warm-up: first-call costs out of the figures
    wall: dict[str, list[float]] = {"engine": [], "loss_landscapes": []}
    cpu: dict[str, list[float]] = {"engine": [], "loss_landscapes": []}
    for r in range(rounds):
        order = [("engine", engine_seconds), ("loss_landscapes", peer_seconds)]
        for name, run in (order if r % 2 == 0 else order[::-1]):
            seconds = run(w, steps)
            wall[name].append(seconds[0] / steps ** 2)
            cpu[name].append(seconds[1] / steps ** 2)
    load.append(load_average())
    engine, peer = (statistics.median(wall[k]) for k in ("engine", "loss_landscapes"))
    paired = statistics.median(e / p for e, p in zip(wall["engine"], wall["loss_landscapes"]))
    cpu_paired = statistics.median(e / p for e, p in zip(cpu["engine"], cpu["loss_landscapes"]))
    return {"model": w.model, "samples": len(w.inputs), "grid": f"{steps}x{steps}", "threads": threads,
            "rounds": rounds, "engine_s_per_point": engine, "loss_landscapes_s_per_point": peer,
            "engine_time_over_peer_time": engine / peer, "median_round_ratio": paired,
            "median_round_cpu_ratio": cpu_paired, "load_average": load, "device": device,
            "seconds": wall, "cpu_seconds": cpu}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=f"linear,demo_mlp,{WIDE_MLP},resnet20",
                   help=f"comma list: linear, demo_mlp, {WIDE_MLP} (784-512-512-10 on 10,000 samples), "
                        "resnet20, resnet56")
    p.add_argument("--images", type=int, default=500, help="CIFAR-shaped images for the conv nets")
    p.add_argument("--steps", type=int, default=0,
                   help="points per axis (0: 21 for linear and the demo MLP, 7 for the 784-input MLP, "
                        "3 for conv nets)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per model")
    p.add_argument("--device", default="cpu", help="where both tools run: cpu or cuda")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = []
    print(f"{'model':<10} {'samples':>7} {'grid':>6} {'thr':>3} {'engine s/pt':>12} {'peer s/pt':>10} {'ratio':>6} "
          f"{'paired':>6} {'cpu':>6} {'load':>9}")
    for model in args.models.split(","):
        w = workload_named(model, args.images)
        steps = args.steps or STEPS.get(model, 3)
        row = measure(w, steps, args.rounds, args.device)
        rows.append(row)
        print(f"{model:<10} {row['samples']:>7} {row['grid']:>6} {row['threads']:>3} "
              f"{row['engine_s_per_point']:>12.5f} {row['loss_landscapes_s_per_point']:>10.5f} "
              f"{row['engine_time_over_peer_time']:>6.2f} {row['median_round_ratio']:>6.2f} "
              f"{row['median_round_cpu_ratio']:>6.2f} {'-'.join(f'{v:.1f}' for v in row['load_average']):>9}",
              flush=True)
    print("ratio = engine time / loss-landscapes time per point (below 1: the engine is faster); "
          "paired = the median of the rounds' own ratios; cpu = the same by CPU time; "
          "load = the load average before-after")
    env = {**environment(args.device), "loss_landscapes": importlib.metadata.version("loss-landscapes")}
    path = write_result("peer_speed", machine_name(args.device), {"environment": env, "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
