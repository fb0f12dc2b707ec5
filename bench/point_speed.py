"""Seconds per grid point: this engine's ``PointEvaluator`` against a reference-style evaluator.

A grid point's cost is what a surface's run time is made of, and on a GPU
the reference code spends most of it outside the network: a DataLoader with
per-image transforms restarted at every point, weights rebuilt on the host,
a host sync per batch. This script measures both evaluators on the same
model, the same data, the same directions and the same points, in one
process, alternating which goes first, and reports the median seconds per
point and their ratio. Both must give the same loss at every point (to float
tolerance), so the comparison is of equal work.

Models: on the CPU, the demo MLP on the demo's 2-D points (the reference-style
loader then reads a TensorDataset sample by sample), ResNet-20 and ResNet-56
on a few hundred CIFAR-shaped images; on a GPU (``--device cuda``), ResNet-56
on 50,000 CIFAR-shaped images, a full CIFAR-10 training split. The images are
synthetic uint8 pixels: speed does not depend on what they show. The networks
are freshly initialised with BatchNorm statistics taken from the data, so
their losses are in the range of a real network's.

    python bench/point_speed.py                       # CPU table, a few minutes at most
    python bench/point_speed.py --device cuda         # ResNet-56, 50,000 images
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from machine import environment, machine_name, write_result
from models import build_model
from mpi_landscape.data import CIFAR10_MEAN, CIFAR10_STD, demo_split
from mpi_landscape.directions import DirectionSpec, create_directions
from mpi_landscape.evaluate import PointEvaluator, SplitData
from reference_style import REFERENCE_BATCH_SIZE, REFERENCE_WORKERS, ReferenceStyleEvaluator, UInt8Images

CPU_MODELS = ("demo_mlp", "resnet20", "resnet56")
GPU_MODELS = ("resnet56",)
CPU_IMAGES = 512
GPU_IMAGES = 50_000
BN_CALIBRATION_IMAGES = 64
MAX_POINTS = 50
LOSS_TOLERANCE = 1e-4  # relative to max(1, |loss|): fp32 sums over different batch sizes

Evaluator = Callable[[float, float], dict]


@dataclass
class Case:
    """One row of the table: a model, its data, and both evaluators ready to run."""

    model: str
    samples: int
    engine: Evaluator
    reference: Evaluator


def calibrate_batchnorm(net: nn.Module, inputs: torch.Tensor) -> None:
    """Set BatchNorm running statistics to those of ``inputs``, as training would have.

    A freshly initialised residual network evaluated with unit running
    variances has exploding activations and losses in the thousands; with
    statistics from the data its loss is that of an untrained real network.
    """
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one batch gives exactly its statistics
    net.train()
    with torch.no_grad():
        net(inputs)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    net.eval()


def make_case(model: str, inputs: torch.Tensor, targets: torch.Tensor, reference_data: Dataset,
              args: argparse.Namespace) -> Case:
    """Both evaluators over the same network (two copies), directions and data."""
    torch.manual_seed(0)
    net = build_model(model)
    calibrate_batchnorm(net, inputs[:BN_CALIBRATION_IMAGES])
    x_dir, y_dir = create_directions(net, DirectionSpec())
    engine = PointEvaluator(copy.deepcopy(net), "weights", x_dir, y_dir,
                            {"train": SplitData(inputs, targets)}, "crossentropy",
                            args.batch_size, args.device)
    reference = ReferenceStyleEvaluator(copy.deepcopy(net), x_dir, y_dir, reference_data,
                                        REFERENCE_BATCH_SIZE, args.ref_workers, args.device)
    return Case(model, len(targets), engine, reference)


def mlp_case(args: argparse.Namespace) -> Case:
    """The demo MLP on the demo's training points; the reference reads them sample by sample."""
    data = demo_split("train")
    return make_case("demo_mlp", data.inputs, data.targets, TensorDataset(data.inputs, data.targets), args)


def image_case(model: str, args: argparse.Namespace) -> Case:
    """A CIFAR network on synthetic CIFAR-shaped uint8 images, normalized as for evaluation.

    The engine gets the whole split as one normalized tensor, computed with
    the arithmetic of ``ToTensor`` + ``Normalize`` (as ``mpi_landscape.data``
    does for CIFAR-10); the reference transforms each image when it is read.
    """
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(args.images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=args.images)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    inputs = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).sub(mean).div(std).contiguous()
    targets = torch.from_numpy(labels).long()
    return make_case(model, inputs, targets, UInt8Images(images, labels, CIFAR10_MEAN, CIFAR10_STD), args)


def timed(evaluate: Evaluator, alpha: float, beta: float) -> tuple[float, dict]:
    """Seconds for one point, and its metrics (both evaluators return host floats, so synced)."""
    start = time.perf_counter()
    metrics = evaluate(alpha, beta)
    return time.perf_counter() - start, metrics


def measure(case: Case, repeats: int, min_seconds: float) -> dict:
    """Median seconds per point of each evaluator, alternating which runs first.

    One untimed point each first (at θ*), so one-off costs -- kernel
    selection, allocator growth -- stay out of the figures. Then at least
    ``repeats`` points each, and more while the timed points have taken less
    than ``min_seconds`` (cheap models get enough points for a steady median
    on a noisy machine). Every point's losses are compared: ``losses_agree``
    says whether they match to ``LOSS_TOLERANCE`` relative to max(1, |loss|).
    """
    rng = np.random.default_rng(1)
    points: list[tuple[float, float]] = []
    times: dict[str, list[float]] = {"engine": [], "reference": []}
    losses, loss_diffs, acc_diffs = [], [], []

    def wanted() -> bool:
        done, spent = len(times["engine"]), sum(times["engine"]) + sum(times["reference"])
        return not points or done < repeats or (spent < min_seconds and done < MAX_POINTS)

    while wanted():
        alpha, beta = rng.uniform(-0.25, 0.25, 2).tolist() if points else (0.0, 0.0)
        order = ("engine", "reference") if len(points) % 2 == 0 else ("reference", "engine")
        results = {}
        for name in order:
            seconds, results[name] = timed(getattr(case, name), alpha, beta)
            if points:
                times[name].append(seconds)
        points.append((alpha, beta))
        e, r = results["engine"], results["reference"]
        losses.append(r["train_loss"])
        loss_diffs.append(abs(e["train_loss"] - r["train_loss"]))
        acc_diffs.append(abs(e["train_acc"] - r["train_acc"]))
    engine_s, reference_s = statistics.median(times["engine"]), statistics.median(times["reference"])
    return {
        "model": case.model,
        "samples": case.samples,
        "engine_s_per_point": engine_s,
        "reference_s_per_point": reference_s,
        "ratio": reference_s / engine_s,
        "engine_seconds": times["engine"],
        "reference_seconds": times["reference"],
        "points": [list(p) for p in points],
        "reference_losses": losses,
        "max_abs_loss_diff": max(loss_diffs),
        "max_abs_acc_diff": max(acc_diffs),
        "losses_agree": all(d <= LOSS_TOLERANCE * max(1.0, abs(v)) for d, v in zip(loss_diffs, losses)),
    }


TABLE = "{:<10} {:>8} {:>12} {:>15} {:>7} {:>15} {:>13}"


def print_header() -> None:
    print(TABLE.format("model", "samples", "engine s/pt", "reference s/pt", "ratio", "max |dloss|", "max |dacc| %"))


def print_row(r: dict) -> None:
    print(TABLE.format(r["model"], r["samples"], f"{r['engine_s_per_point']:.4f}",
                       f"{r['reference_s_per_point']:.4f}", f"{r['ratio']:.1f}x",
                       f"{r['max_abs_loss_diff']:.2e}", f"{r['max_abs_acc_diff']:.2f}"), flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:n]")
    parser.add_argument("--models", help=f"comma-separated; default {','.join(CPU_MODELS)} on the CPU, "
                                         f"{','.join(GPU_MODELS)} on a GPU")
    parser.add_argument("--images", type=int, help=f"CIFAR-shaped images per point; default {CPU_IMAGES} "
                                                    f"on the CPU, {GPU_IMAGES} on a GPU")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="the engine's batch size (default: the engine's own choice)")
    parser.add_argument("--ref_workers", type=int, default=REFERENCE_WORKERS,
                        help="DataLoader workers of the reference-style evaluator (the reference's --threads)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--repeats", type=int, default=3, help="least timed points per evaluator and model")
    parser.add_argument("--min_seconds", type=float, default=20.0,
                        help=f"time more points (up to {MAX_POINTS}) until both evaluators took this long")
    args = parser.parse_args(argv)
    on_gpu = args.device.startswith("cuda")
    args.models = args.models.split(",") if args.models else list(GPU_MODELS if on_gpu else CPU_MODELS)
    args.images = args.images or (GPU_IMAGES if on_gpu else CPU_IMAGES)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("--device cuda: no GPU is visible to torch")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{machine_name(args.device)}: median over at least {args.repeats} points, engine batch {args.batch_size or 'auto'}, "
          f"reference batch {REFERENCE_BATCH_SIZE} with {args.ref_workers} loader workers")
    print_header()
    rows = []
    for model in args.models:
        case = mlp_case(args) if model == "demo_mlp" else image_case(model, args)
        rows.append({**measure(case, args.repeats, args.min_seconds),
                     "engine_batch_size": case.engine.batch_size})
        print_row(rows[-1])
    bad = [r["model"] for r in rows if not r["losses_agree"]]
    if bad:
        print(f"the evaluators disagree on the loss for {', '.join(bad)}: the timings compare unequal work",
              file=sys.stderr)
        return 1
    machine = machine_name(args.device)
    path = write_result("point_speed", machine, {
        "benchmark": "point_speed",
        "machine": machine,
        "device": args.device,
        **environment(args.device),
        "torch_threads": torch.get_num_threads(),
        "engine_batch_size": args.batch_size,
        "reference_batch_size": REFERENCE_BATCH_SIZE,
        "reference_workers": args.ref_workers,
        "repeats": args.repeats,
        "min_seconds": args.min_seconds,
        "images": args.images,
        "loss_tolerance": LOSS_TOLERANCE,
        "results": rows,
    })
    print(f"\nwrote {path.relative_to(path.parents[2])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
