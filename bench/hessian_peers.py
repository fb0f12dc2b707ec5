"""Curvature against PyHessian: one Hessian-vector product, λmax, and the trace, interleaved in one process.

    python bench/hessian_peers.py                        # CPU: demo MLP (3,000 points) and ResNet-20
    python bench/hessian_peers.py --images 64 --rounds 2  # a quick look
    python bench/hessian_peers.py --device cuda --images 2048

Both get the same network (eval mode), the same data as one batch (the
split fits, so PyHessian's ``data=`` mode builds its gradient graph once,
and this engine's ``plan_products`` keeps it too), and the Hessian of the
same mean cross-entropy with respect to every parameter. Per round each
side does, in alternating order: ``--products`` Hessian-vector products on
a graph already built (median seconds per product), λmax from scratch
(graph built, then PyHessian's power iteration at tol 1e-3 against this
engine's Lanczos at ``--tol``, which finds λmin in the same run), and the
trace from scratch (PyHessian stops when its running mean changes by less
than 1e-3; this engine at ``--trace_tol`` relative standard error). The
machine's load average is taken each round: on a shared machine the ratio
of paired medians is the figure to read. Values of both are kept, so their
agreement is in the result file ``results/hessian_peers_<machine>.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

from machine import environment, machine_name, write_result
from point_speed import BN_CALIBRATION_IMAGES, calibrate_batchnorm, synthetic_cifar
from mpi_landscape.curvature import Hessian, extreme_eigenpairs, hutchinson_trace, plan_products
from mpi_landscape.data import cifar_inputs, demo_split
from mpi_landscape.task import Classification
from mpi_landscape.train import train_epoch
from mpi_landscape_models import build_model

DEMO_EPOCHS = 8  # Adam epochs of batches of 128 on the demo spirals: a trained net, λmin < 0 small


def demo_workload() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The demo MLP trained briefly (seed 0) and its 3,000 training points."""
    torch.manual_seed(0)
    net, data = build_model("demo_mlp"), demo_split("train")
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    order = torch.Generator().manual_seed(0)
    for _ in range(DEMO_EPOCHS):
        batches = torch.randperm(len(data), generator=order).split(128)
        train_epoch(net, ((data.inputs[i], data.targets[i]) for i in batches), optimizer, "crossentropy",
                    torch.device("cpu"))
    return net.eval(), data.inputs, data.targets


def resnet_workload(images: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A freshly initialised ResNet-20 (seed 0, BatchNorm statistics from the data) on random CIFAR-shaped images."""
    pixels, labels = synthetic_cifar(images)
    inputs = cifar_inputs(pixels)
    torch.manual_seed(0)
    net = build_model("resnet20")
    calibrate_batchnorm(net, inputs[:BN_CALIBRATION_IMAGES])
    return net.eval(), inputs, torch.from_numpy(labels).long()


class Engine:
    """This engine's operator on the model and data, as ``plan_products`` sets it up."""

    def __init__(self, net: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor):
        self.net, self.params = net, list(net.parameters())
        self.size, self.keep = plan_products(net, self.params, Classification(),
                                             lambda b: (inputs[:b], targets[:b]), len(targets), None, 256)
        self.batches = lambda: ((inputs[i:i + self.size], targets[i:i + self.size])
                                for i in range(0, len(targets), self.size))

    def operator(self) -> Hessian:
        return Hessian(self.net, self.params, self.batches, keep_graph=self.keep)


def their_operator(net, inputs, targets):
    """PyHessian's operator on a single batch; the model's .grad cleared first, as a fresh model has it
    (its constructor calls backward(create_graph=True), which adds to any gradient already there)."""
    from pyhessian import hessian

    net.zero_grad(set_to_none=True)
    return hessian(net, torch.nn.CrossEntropyLoss(), data=(inputs, targets), cuda=inputs.is_cuda)


def time_products(product, vectors) -> float:
    """Median seconds of ``product`` over ``vectors`` (the graph already built by a first product)."""
    product(vectors[0])
    seconds = []
    for v in vectors:
        start = time.perf_counter()
        product(v)
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # PyHessian's product returns before the GPU is done
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def timed(work):
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def measure(name: str, net, inputs, targets, rounds: int, products: int, tol: float, trace_tol: float,
            trace_max: int, device: str) -> dict:
    """Interleaved rounds of both on one workload; per-round seconds, values and load."""
    from pyhessian.utils import hessian_vector_product

    net, inputs, targets = net.to(device), inputs.to(device), targets.to(device)
    engine = Engine(net, inputs, targets)
    dim = sum(p.numel() for p in engine.params)
    gen = torch.Generator().manual_seed(1)
    flat = [torch.randn(dim, generator=gen, dtype=torch.float64).to(device) for _ in range(products)]
    rows = []
    for r in range(rounds):
        row = {"load_average": os.getloadavg()[0]}

        def ours_product():
            op = engine.operator()
            return time_products(op, flat)

        def theirs_product():
            theirs = their_operator(net, inputs, targets)
            sizes = [p.numel() for p in engine.params]
            pieces = [[c.view_as(p).to(p.dtype) for c, p in zip(v.split(sizes), engine.params)] for v in flat]
            return time_products(lambda v: hessian_vector_product(theirs.gradsH, theirs.params, v), pieces)

        def ours_eig():
            op = engine.operator()
            pairs = extreme_eigenpairs(op, dim, tol=tol, max_steps=300, device=device)
            return {"max": pairs.max_value, "min": pairs.min_value, "products": op.products}

        def theirs_eig():
            torch.manual_seed(r)
            return {"max": float(their_operator(net, inputs, targets).eigenvalues(maxIter=300, tol=1e-3)[0][0])}

        def ours_trace():
            op = engine.operator()
            trace = hutchinson_trace(op, dim, trace_max, seed=1000 + r, device=device, rel_error=trace_tol)
            return {"value": trace.value, "error": trace.error, "probes": trace.probes}

        def theirs_trace():
            torch.manual_seed(r)
            values = np.array(their_operator(net, inputs, targets).trace(maxIter=trace_max, tol=1e-3))
            return {"value": float(values.mean()), "error": float(values.std() / np.sqrt(len(values))),
                    "probes": len(values)}

        pairs = (("product", ours_product, theirs_product), ("eig", ours_eig, theirs_eig),
                 ("trace", ours_trace, theirs_trace))
        for what, ours, theirs in pairs:
            order = [("engine", ours), ("pyhessian", theirs)]
            for side, work in order if r % 2 == 0 else order[::-1]:
                seconds, value = timed(work)
                row[f"{side}_{what}"] = {"seconds": value if what == "product" else seconds,
                                         **({} if what == "product" else value)}
        rows.append(row)
        print(f"  round {r + 1}/{rounds} (load {row['load_average']:.1f}): "
              + ", ".join(f"{what} {row[f'engine_{what}']['seconds']:.3g}/{row[f'pyhessian_{what}']['seconds']:.3g} s"
                          for what, _, _ in pairs), flush=True)
    summary = {}
    for what in ("product", "eig", "trace"):
        ours = statistics.median(row[f"engine_{what}"]["seconds"] for row in rows)
        theirs = statistics.median(row[f"pyhessian_{what}"]["seconds"] for row in rows)
        paired = statistics.median(row[f"engine_{what}"]["seconds"] / row[f"pyhessian_{what}"]["seconds"]
                                   for row in rows)
        summary[what] = {"engine_median_seconds": ours, "pyhessian_median_seconds": theirs,
                         "paired_median_ratio_engine_over_pyhessian": paired}
    last = rows[-1]
    summary["agreement"] = {
        "lambda_max_relative_gap": abs(last["engine_eig"]["max"] - last["pyhessian_eig"]["max"])
        / abs(last["pyhessian_eig"]["max"]),
        "trace_gap_in_combined_errors": abs(last["engine_trace"]["value"] - last["pyhessian_trace"]["value"])
        / float(np.hypot(last["engine_trace"]["error"], last["pyhessian_trace"]["error"])),
    }
    return {"workload": name, "samples": len(targets), "parameters": dim, "engine_batch": engine.size,
            "engine_keeps_graph": engine.keep, "tol": tol, "trace_tol": trace_tol, "trace_max": trace_max,
            "summary": summary,
            "rounds": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=256, help="CIFAR-shaped images for ResNet-20")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--products", type=int, default=5, help="timed products per round")
    p.add_argument("--tol", type=float, default=1e-3, help="this engine's Lanczos tolerance")
    p.add_argument("--trace_tol", type=float, default=0.02, help="this engine's trace target relative error")
    p.add_argument("--trace_max", type=int, default=100, help="most trace probes, for both")
    p.add_argument("--workloads", default="demo_mlp,resnet20")
    args = p.parse_args(argv)
    if args.device == "cpu":
        torch.set_num_threads(min(torch.get_num_threads(), 2))
    makers = {"demo_mlp": demo_workload, "resnet20": lambda: resnet_workload(args.images)}
    results = []
    for name in args.workloads.split(","):
        print(f"{name}:", flush=True)
        results.append(measure(name, *makers[name](), args.rounds, args.products, args.tol, args.trace_tol,
                               args.trace_max, args.device))
        for what, s in results[-1]["summary"].items():
            print(f"  {what}: {s}", flush=True)
        machine = machine_name(args.device)  # written after each workload: a stopped run keeps what it measured
        path = write_result("hessian_peers", machine, {"benchmark": "hessian_peers", "machine": machine,
                                                       **environment(args.device), "results": results})
        print(f"wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
