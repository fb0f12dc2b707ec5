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
import contextlib
import importlib
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

from machine import RESULTS_DIR, environment, machine_name, write_result
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


@contextlib.contextmanager
def counted_pyhessian_products():
    """Count the Hessian-vector products PyHessian's methods make (its power iteration reports no count)."""
    module = importlib.import_module("pyhessian.hessian")  # the module: the package names its class the same

    count, product = [0], module.hessian_vector_product

    def counting(*args):
        count[0] += 1
        return product(*args)

    module.hessian_vector_product = counting
    try:
        yield count
    finally:
        module.hessian_vector_product = product


def time_products_in_turns(ours, theirs, vectors, pieces) -> dict:
    """Both products over the same vectors in turns (A B, then B A), each graph built by a first product:
    the median seconds of each, and the median of the pairs' own ratios (engine / PyHessian)."""
    ours(vectors[0]), theirs(pieces[0])
    seconds = {"engine": [], "pyhessian": []}
    for i, (v, piece) in enumerate(zip(vectors, pieces)):
        turns = [("engine", ours, v), ("pyhessian", theirs, piece)]
        for side, product, vector in turns if i % 2 == 0 else turns[::-1]:
            start = time.perf_counter()
            product(vector)
            if torch.cuda.is_available():
                torch.cuda.synchronize()  # PyHessian's product returns before the GPU is done
            seconds[side].append(time.perf_counter() - start)
    return {"engine": statistics.median(seconds["engine"]), "pyhessian": statistics.median(seconds["pyhessian"]),
            "paired": statistics.median(a / b for a, b in zip(seconds["engine"], seconds["pyhessian"]))}


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

        def products_in_turns():
            theirs = their_operator(net, inputs, targets)
            sizes = [p.numel() for p in engine.params]
            pieces = [[c.view_as(p).to(p.dtype) for c, p in zip(v.split(sizes), engine.params)] for v in flat]
            return time_products_in_turns(engine.operator(), lambda v: hessian_vector_product(
                theirs.gradsH, theirs.params, v), flat, pieces)

        def ours_eig():
            op = engine.operator()
            pairs = extreme_eigenpairs(op, dim, tol=tol, max_steps=300, device=device)
            return {"max": pairs.max_value, "min": pairs.min_value, "products": op.products}

        def theirs_eig():
            torch.manual_seed(r)
            with counted_pyhessian_products() as count:
                value = float(their_operator(net, inputs, targets).eigenvalues(maxIter=300, tol=1e-3)[0][0])
            return {"max": value, "products": count[0]}

        def ours_trace():
            op = engine.operator()
            trace = hutchinson_trace(op, dim, trace_max, seed=1000 + r, device=device, rel_error=trace_tol)
            return {"value": trace.value, "error": trace.error, "probes": trace.probes}

        def theirs_trace():
            torch.manual_seed(r)
            values = np.array(their_operator(net, inputs, targets).trace(maxIter=trace_max, tol=1e-3))
            return {"value": float(values.mean()), "error": float(values.std() / np.sqrt(len(values))),
                    "probes": len(values)}

        turns = products_in_turns()
        row.update({"engine_product": {"seconds": turns["engine"]}, "pyhessian_product": {"seconds": turns["pyhessian"]},
                    "product_paired_ratio": turns["paired"]})
        pairs = (("eig", ours_eig, theirs_eig), ("trace", ours_trace, theirs_trace))
        for what, ours, theirs in pairs:
            order = [("engine", ours), ("pyhessian", theirs)]
            for side, work in order if r % 2 == 0 else order[::-1]:
                seconds, value = timed(work)
                row[f"{side}_{what}"] = {"seconds": seconds, **value}
        rows.append(row)
        print(f"  round {r + 1}/{rounds} (load {row['load_average']:.1f}): "
              + ", ".join(f"{what} {row[f'engine_{what}']['seconds']:.3g}/{row[f'pyhessian_{what}']['seconds']:.3g} s"
                          for what in ("product", "eig", "trace")), flush=True)
    summary = {}
    for what in ("product", "eig", "trace"):
        ours = statistics.median(row[f"engine_{what}"]["seconds"] for row in rows)
        theirs = statistics.median(row[f"pyhessian_{what}"]["seconds"] for row in rows)
        paired = statistics.median(row["product_paired_ratio"] if what == "product" else
                                   row[f"engine_{what}"]["seconds"] / row[f"pyhessian_{what}"]["seconds"]
                                   for row in rows)
        summary[what] = {"engine_median_seconds": ours, "pyhessian_median_seconds": theirs,
                         "paired_median_ratio_engine_over_pyhessian": paired}
        if what != "product":  # the cost of one product inside the method: the iteration's own overhead
            count = "products" if what == "eig" else "probes"
            summary[what].update({f"{side}_median_{count}": statistics.median(row[f"{side}_{what}"][count]
                                                                             for row in rows)
                                  for side in ("engine", "pyhessian")})
            summary[what]["paired_median_per_product_ratio"] = statistics.median(
                (row[f"engine_{what}"]["seconds"] / row[f"engine_{what}"][count])
                / (row[f"pyhessian_{what}"]["seconds"] / row[f"pyhessian_{what}"][count]) for row in rows)
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


def kept_results(machine: str, results: list[dict], append: bool) -> list[dict]:
    """``results``, after the machine's earlier results for other workloads when ``append`` (each with its argv)."""
    path = RESULTS_DIR / f"hessian_peers_{machine}.json"
    if not (append and path.exists()):
        return results
    earlier = json.loads(path.read_text())
    measured = {result["workload"] for result in results}
    return [{"argv": earlier.get("argv"), **result} for result in earlier["results"]
            if result["workload"] not in measured] + results


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
    p.add_argument("--append", action="store_true",
                   help="keep the machine's earlier results for the other workloads (a run in parts)")
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
                                                       **environment(args.device),
                                                       "results": kept_results(machine, results, args.append)})
        print(f"wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
