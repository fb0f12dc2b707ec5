"""What sizing torch's thread pool buys: training epochs and ``compute_surface`` with the
thread count ``mpi_landscape.threads`` chooses, against torch's default (one per core).

    python bench/threads.py                   # demo MLP and ResNet-20; about two minutes
    python bench/threads.py --rounds 7 --images 256

Each round runs every case both ways in turns (the order swapped every round)
in one process, so a busy machine slows both alike; the medians are compared.
"Default" is what the commands did before: ``OMP_NUM_THREADS`` set to the
core count, which the chooser respects, so torch keeps one thread per core.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Callable

import torch

from machine import environment, machine_name, write_result
from mpi_landscape import compute_surface
from mpi_landscape.threads import choose_threads, usable_cores
from mpi_landscape.train import TrainConfig, train
from point_speed import Workload, image_workload, mlp_workload


def train_epochs(model: str, epochs: int) -> Callable[[], float]:
    """Seconds per epoch of ``mpi_landscape.train`` on the demo data."""
    def run() -> float:
        with tempfile.TemporaryDirectory() as folder:
            began = time.perf_counter()
            train(TrainConfig(model=model, dataset="demo", optimizer="adam", lr=0.01, epochs=epochs,
                              save_epoch=epochs, save_dir=os.path.join(folder, "run"), lr_milestones=str(epochs)))
            return (time.perf_counter() - began) / epochs
    return run


def surface_points(w: Workload, steps: int) -> Callable[[], float]:
    """Seconds per point of ``compute_surface`` over a ``steps`` x ``steps`` plane."""
    def run() -> float:
        began = time.perf_counter()
        compute_surface(w.net, (w.inputs, w.targets), x=f"-1:1:{steps}", y=f"-1:1:{steps}", progress=False)
        return (time.perf_counter() - began) / steps ** 2
    return run


def timed(run: Callable[[], float], sized: bool) -> float:
    """``run()`` with the chosen thread count (``sized``) or with one thread per core."""
    cores = usable_cores()
    if sized:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = str(cores)
        torch.set_num_threads(cores)
    try:
        return run()
    finally:
        os.environ.pop("OMP_NUM_THREADS", None)
        torch.set_num_threads(cores)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--images", type=int, default=128, help="CIFAR-shaped images for ResNet-20's surface")
    args = p.parse_args(argv)
    mlp, resnet = mlp_workload(), image_workload("resnet20", args.images)
    cases = {"train demo_mlp, s/epoch": train_epochs("demo_mlp", 2),
             "compute_surface demo_mlp 21x21, s/point": surface_points(mlp, 21),
             f"compute_surface resnet20 {args.images} images 3x3, s/point": surface_points(resnet, 3)}
    chosen = {"demo_mlp": choose_threads(mlp.net, mlp.inputs, 128),
              "resnet20": choose_threads(resnet.net, resnet.inputs, 128)}
    times = {name: {"default": [], "sized": []} for name in cases}
    for name, run in cases.items():  # warm-up, untimed
        timed(run, True)
    for r in range(args.rounds):
        for name, run in cases.items():
            for sized in ((False, True) if r % 2 == 0 else (True, False)):
                times[name]["sized" if sized else "default"].append(timed(run, sized))
    print(f"cores {usable_cores()}; threads chosen: {chosen}")
    print(f"{'case':<52} {'default':>9} {'sized':>9} {'speed-up':>8}")
    rows = []
    for name, t in times.items():
        default, sized = statistics.median(t["default"]), statistics.median(t["sized"])
        rows.append({"case": name, "default_median": default, "sized_median": sized,
                     "speedup": default / sized, "seconds": t})
        print(f"{name:<52} {default:>9.4f} {sized:>9.4f} {default / sized:>7.2f}x")
    path = write_result("threads", machine_name(), {"environment": environment(), "cores": usable_cores(),
                                                    "threads_chosen": chosen, "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
