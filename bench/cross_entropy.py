"""Per-sample cross-entropy on a CPU: PyTorch's row layout against the engine's ``per_sample_loss``.

    python bench/cross_entropy.py                # batches of 3,000 and 50,000, 2 to 1,000 classes
    python bench/cross_entropy.py --classes 3,10 --batches 50000

For fewer than ``CPU_ROW_KERNEL_MIN_CLASSES`` classes the engine computes the
same loss with the classes as dim 1 of a (1, classes, batch) view, where
PyTorch's kernel vectorizes along the batch; at 16 classes and more it uses
the plain (batch, classes) call. Both run on one thread, interleaved, on the
same logits; the median of the rounds is printed with the largest difference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from machine import environment, machine_name, write_result
from mpi_landscape.task import CPU_ROW_KERNEL_MIN_CLASSES, per_sample_loss


def seconds_per_call(run, calls: int) -> float:
    """Seconds of one ``run()``, averaged over ``calls`` back-to-back calls (after one untimed)."""
    run()
    began = time.perf_counter()
    for _ in range(calls):
        run()
    return (time.perf_counter() - began) / calls


def measure(batch: int, classes: int, rounds: int) -> dict:
    """Interleaved rounds of both layouts on one (batch, classes) set of logits."""
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(batch, classes, generator=gen)
    targets = torch.randint(0, classes, (batch,), generator=gen)
    row = lambda: F.cross_entropy(logits, targets, reduction="none")  # noqa: E731
    engine = lambda: per_sample_loss(logits, targets, "crossentropy")  # noqa: E731
    calls = max(3, int(3e6 // (batch * classes)))
    times = {"row": [], "engine": []}
    with torch.inference_mode():
        for _ in range(rounds):
            times["row"].append(seconds_per_call(row, calls))
            times["engine"].append(seconds_per_call(engine, calls))
        gap = float((row() - engine()).abs().max())
    median = {k: statistics.median(v) for k, v in times.items()}
    return {"batch": batch, "classes": classes, "row_s": median["row"], "engine_s": median["engine"],
            "speedup": median["row"] / median["engine"], "max_abs_diff": gap}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", default="3000,50000", help="comma list of batch sizes")
    p.add_argument("--classes", default="2,3,10,15,16,100,1000", help="comma list of class counts")
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    print(f"one thread; the engine's layout below {CPU_ROW_KERNEL_MIN_CLASSES} classes")
    print(f"{'batch':>6} {'classes':>7} {'row us':>9} {'engine us':>9} {'speed-up':>8} {'max diff':>9}")
    for batch in map(int, args.batches.split(",")):
        for classes in map(int, args.classes.split(",")):
            r = measure(batch, classes, args.rounds)
            rows.append(r)
            print(f"{batch:>6} {classes:>7} {r['row_s'] * 1e6:>9.1f} {r['engine_s'] * 1e6:>9.1f} "
                  f"{r['speedup']:>7.1f}x {r['max_abs_diff']:>9.1e}", flush=True)
    path = write_result("cross_entropy", machine_name(), {"environment": environment(), "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
