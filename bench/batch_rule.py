"""The CPU batch size, by measurement: seconds per point of the engine at every batch size,
over networks of several widths and sample counts, against a hand-written ``no_grad`` loop.

    python bench/batch_rule.py                 # MLPs 784-w-w-10 (w = 128, 512), the demo MLP on 1,000 and
                                               # 10,000 samples, ResNet-20 on 512 images; minutes
    python bench/batch_rule.py --widths 512 --samples 10000 --no-demo --convnets '' --threads 1 --append

For each network and sample count the engine's ``PointEvaluator`` is timed
with each candidate batch (powers of two from 32 up to the split, the whole
split, and the batch the engine's rule picks), in interleaved rounds (every
candidate once a round, at the same point, the order rotated), on the thread
count the engine picks for that batch or on ``--threads`` for all (the
batch's own effect, apart from the thread rule's), and so is a hand-written
loop: the whole split as one batch, ``cross_entropy(net(x), y).item()`` under
``no_grad`` after an in-place move of the weights (what loss-landscapes does
per point). Each row gives the per-sample sizes a rule can be written in
(input bytes, the largest activation's bytes, forward FLOPs), the fastest
batch, every candidate's median time relative to the fastest, the batch the
engine's rule picks and its time relative to the fastest and to the
hand-written loop, and the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import sys
import time
from typing import Iterator

import torch
from torch import nn

from machine import RESULTS_DIR, environment, load_average, machine_name, write_result
from mpi_landscape_models import build_model
from mpi_landscape.data import demo_split
from mpi_landscape.directions import DirectionSpec, create_directions
from mpi_landscape.evaluate import PointEvaluator, SplitData
from mpi_landscape.threads import forward_flops, largest_activation_bytes, sized_thread_pool
from point_speed import image_workload

MIN_BATCH = 32
INPUT_FEATURES = 784  # MNIST-shaped inputs
CLASSES = 10


def mlp(width: int) -> nn.Module:
    """A 784-width-width-10 ReLU MLP, freshly initialised (seed 0)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(INPUT_FEATURES, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, CLASSES)).eval()


def random_split(samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``samples`` Gaussian 784-vectors and labels (seed 0): speed does not depend on what they show."""
    gen = torch.Generator().manual_seed(0)
    return torch.randn(samples, INPUT_FEATURES, generator=gen), torch.randint(0, CLASSES, (samples,), generator=gen)


def candidates(samples: int) -> list[int]:
    """Powers of two from MIN_BATCH below ``samples``, and ``samples`` (the whole split)."""
    batches, b = [], MIN_BATCH
    while b < samples:
        batches.append(b)
        b *= 2
    return batches + [samples]


class HandWrittenLoop:
    """The whole split as one batch under ``no_grad``, weights moved in place: a peer's point."""

    def __init__(self, net: nn.Module, x_dir, y_dir, inputs: torch.Tensor, targets: torch.Tensor):
        self.net, self.inputs, self.targets = net, inputs, targets
        self.params = list(net.parameters())
        self.theta = [p.detach().clone() for p in self.params]
        self.dirs = list(zip(x_dir, y_dir))

    @torch.no_grad()
    def __call__(self, alpha: float, beta: float) -> float:
        for p, t, (dx, dy) in zip(self.params, self.theta, self.dirs):
            p.copy_(t).add_(dx, alpha=alpha).add_(dy, alpha=beta)
        return nn.functional.cross_entropy(self.net(self.inputs), self.targets).item()


@torch.no_grad()
def activation_bytes(net: nn.Module, inputs: torch.Tensor, samples: int = 8) -> int:
    """Bytes per sample of the largest tensor a module of ``net`` outputs (the inputs counted too)."""
    return max(inputs[:1].nbytes, largest_activation_bytes(net, lambda: net(inputs[:samples])) // samples)


def seconds_of(evaluate, alpha: float, beta: float) -> float:
    """Wall seconds of one point."""
    start = time.perf_counter()
    evaluate(alpha, beta)
    return time.perf_counter() - start


@contextlib.contextmanager
def thread_pool(net: nn.Module, inputs: torch.Tensor, batch: int, threads: int) -> Iterator[int]:
    """``threads`` torch threads in the block, or with 0 the count the engine picks for ``batch``."""
    if not threads:
        with sized_thread_pool(net, inputs, batch) as chosen:
            yield chosen
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


def sweep(name: str, net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, rounds: int,
          threads: int = 0) -> dict:
    """Every candidate batch and the hand-written loop on ``net`` over (inputs, targets), interleaved,
    on ``threads`` threads (0: the engine's count for each batch)."""
    x_dir, y_dir = create_directions(net, DirectionSpec())
    splits = {"train": SplitData(inputs, targets)}
    rule = PointEvaluator(copy.deepcopy(net), "weights", x_dir, y_dir, splits).batch_size  # the engine's choice
    runs = {}
    for batch in sorted({*candidates(len(inputs)), rule}):  # each evaluator moves (and folds) a copy of its own
        evaluator = PointEvaluator(copy.deepcopy(net), "weights", x_dir, y_dir, splits, batch_size=batch)
        runs[str(batch)] = (evaluator, batch)
    runs["loop"] = (HandWrittenLoop(copy.deepcopy(net), x_dir, y_dir, inputs, targets), len(inputs))
    load = [load_average()]
    used = {}
    for key, (evaluate, batch) in runs.items():  # warm: first-call allocations out of the timings
        with thread_pool(net, inputs, batch, threads) as used[key]:
            evaluate(0.0, 0.0)
    gen = torch.Generator().manual_seed(1)
    seconds: dict[str, list[float]] = {key: [] for key in runs}
    keys = list(runs)
    for r in range(rounds):
        alpha, beta = (torch.rand(2, generator=gen) - 0.5).tolist()  # one point a round, the same for all
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:
            evaluate, batch = runs[key]
            with thread_pool(net, inputs, batch, threads):
                seconds[key].append(seconds_of(evaluate, alpha, beta))
    load.append(load_average())
    median = {key: statistics.median(v) for key, v in seconds.items()}
    batches = [k for k in median if k != "loop"]
    best = min(batches, key=median.get)
    rule_seconds = median[str(rule)]
    return {"network": name, "samples": len(inputs), "fixed_threads": threads, "input_bytes": inputs[:1].nbytes,
            "activation_bytes": activation_bytes(net, inputs), "flops": forward_flops(net, inputs),
            "best_batch": int(best), "rule_batch": rule, "load_average": load, "threads": used,
            "seconds": seconds, "median": median,
            "relative_to_best": {k: median[k] / median[best] for k in median},
            "rule_over_best": rule_seconds / median[best], "rule_over_loop": rule_seconds / median["loop"]}


def workloads(args: argparse.Namespace):
    """(name, net, inputs, targets) for every network and sample count asked for."""
    samples = [int(s) for s in args.samples.split(",") if s]
    for width in (int(w) for w in args.widths.split(",") if w):
        for n in samples:
            yield f"mlp784-{width}-{width}-10", mlp(width), *random_split(n)
    if args.demo:
        for n in samples:
            data = demo_split("train", n)
            torch.manual_seed(0)
            yield "demo_mlp", build_model("demo_mlp").eval(), data.inputs, data.targets
    for model in (m for m in args.convnets.split(",") if m):
        w = image_workload(model, args.images)
        yield model, w.net, w.inputs, w.targets


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--widths", default="128,512", help="hidden widths of the 784-w-w-10 MLPs")
    p.add_argument("--samples", default="1000,10000", help="sample counts of the MLPs and the demo MLP")
    p.add_argument("--demo", action=argparse.BooleanOptionalAction, default=True, help="the demo MLP too")
    p.add_argument("--convnets", default="resnet20", help="comma list of CIFAR networks ('' for none)")
    p.add_argument("--images", type=int, default=512, help="CIFAR-shaped images for the conv nets")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads for every run (0: the engine's count for each batch)")
    p.add_argument("--append", action="store_true",
                   help="keep the other rows of this machine's result file (a sweep run in parts)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = []
    print(f"{'network':<22} {'thr':>3} {'samples':>7} {'act B':>7} {'best':>6} {'rule':>6} {'rule/best':>9} "
          f"{'rule/loop':>9} {'load':>9}  candidates (time / best)")
    for name, net, inputs, targets in workloads(args):
        row = sweep(name, net, inputs, targets, args.rounds, args.threads)
        rows.append(row)
        spread = " ".join(f"{k}:{v:.2f}" for k, v in row["relative_to_best"].items())
        threads = "/".join(str(t) for t in sorted(set(row["threads"].values())))
        print(f"{name:<22} {threads:>3} {row['samples']:>7} {row['activation_bytes']:>7} {row['best_batch']:>6} "
              f"{row['rule_batch']:>6} {row['rule_over_best']:>9.2f} {row['rule_over_loop']:>9.2f} "
              f"{'-'.join(f'{v:.1f}' for v in row['load_average']):>9}  "
              f"{spread}", flush=True)
    path = RESULTS_DIR / f"batch_rule_{machine_name()}.json"
    if args.append and path.exists():
        key = (lambda r: (r["network"], r["samples"], r.get("fixed_threads", 0)))
        ours = {key(r) for r in rows}
        rows = [r for r in json.loads(path.read_text())["rows"] if key(r) not in ours] + rows
    path = write_result("batch_rule", machine_name(), {"environment": environment(), "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
