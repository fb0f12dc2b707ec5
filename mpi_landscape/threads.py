"""How many threads torch's CPU kernels get: the cores this process may use, shared with the
other ranks on its node, and no more than the work at hand keeps busy.

torch starts one thread per core of the machine. A small network's kernels are
over in microseconds, so on a busy or shared machine those threads spend their
time waking each other (a 10-40x slowdown for the demo MLP on two busy cores),
while a convolutional network at a real batch size uses every core it gets.
``OMP_NUM_THREADS``, when set, is the user's choice and is left alone.

The CPU batch size is sized here too, from the same kind of probe: every batch
costs a call per layer and a wake-up of the thread pool, so fewer, larger
batches are faster, until a batch's largest activation no longer fits in cache.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from typing import Callable, Iterator

import torch

# Floating-point operations one batch must cost per thread before another thread pays off:
# about 5 ms of one core's work, far above the microseconds a thread takes to wake.
FLOPS_PER_THREAD = 5e7
# A CPU batch's largest activation (one module's output for the whole batch) may take this many
# bytes: measured by bench/batch_rule.py (bench/README.md gives the sweep), where 32 MB batches
# were as fast as the fastest and batches of 1.5 MB of inputs (the rule before) up to 4x slower.
CPU_BATCH_ACTIVATION_BYTES = 32 * 2**20
MIN_CPU_BATCH = 32


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def cores_per_process(processes_on_node: int = 1) -> int:
    """This process's share of the usable cores when ``processes_on_node`` ranks share them."""
    return max(1, usable_cores() // max(1, processes_on_node))


def forward_flops(net: torch.nn.Module, inputs: torch.Tensor) -> float:
    """Floating-point operations of one eval-mode forward pass of ``net`` per sample of ``inputs``."""
    from torch.utils.flop_counter import FlopCounterMode

    sample = inputs[:2]
    was_training = net.training
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            net.eval()(sample)
    finally:
        net.train(was_training)
    return counter.get_total_flops() / max(1, len(sample))


def largest_activation_bytes(net: torch.nn.Module, forward: Callable[[], object]) -> int:
    """Bytes of the largest tensor any leaf module of ``net`` outputs while ``forward()`` runs:
    the activation a batch must hold at once."""
    largest = 0

    def record(module, args, output) -> None:
        nonlocal largest
        if isinstance(output, torch.Tensor):
            largest = max(largest, output.nbytes)

    hooks = [m.register_forward_hook(record) for m in net.modules() if not any(m.children())]
    try:
        forward()
    finally:
        for hook in hooks:
            hook.remove()
    return largest


def cpu_batch_size(samples: int, sample_bytes: int) -> int:
    """The CPU batch for ``samples`` samples whose largest activation takes ``sample_bytes`` each.

    The whole split when a batch of it keeps its largest activation within
    CPU_BATCH_ACTIVATION_BYTES, else the fewest equal batches that do (at
    least MIN_CPU_BATCH samples each). Measured by bench/batch_rule.py: fewer
    batches mean fewer calls and fewer thread wake-ups per point, which pays
    until a batch's activations fall out of the cache.
    """
    most = max(MIN_CPU_BATCH, CPU_BATCH_ACTIVATION_BYTES // max(1, sample_bytes))
    batches = -(-samples // most)
    return -(-samples // batches)


def threads_for(flops_per_batch: float, cores: int) -> int:
    """Threads for batches of ``flops_per_batch`` operations on ``cores`` cores: one per
    ``FLOPS_PER_THREAD``, at least one, at most ``cores``."""
    return max(1, min(cores, int(flops_per_batch // FLOPS_PER_THREAD)))


def choose_threads(net: torch.nn.Module, inputs: torch.Tensor, batch_size: int,
                   processes_on_node: int = 1) -> int:
    """The thread count for running ``net`` on batches of ``batch_size`` samples like ``inputs``."""
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    flops = forward_flops(net, inputs) * batch_size
    return threads_for(flops, cores_per_process(processes_on_node))


@contextmanager
def sized_thread_pool(net: torch.nn.Module, inputs: torch.Tensor, batch_size: int,
                      device: torch.device | str = "cpu", processes_on_node: int = 1) -> Iterator[int]:
    """Within the block torch uses ``choose_threads(...)`` threads (on a CPU ``device``);
    the previous count is restored after it. Yields the count in use."""
    before = torch.get_num_threads()
    if torch.device(device).type != "cpu":
        yield before
        return
    threads = choose_threads(net, inputs.to("cpu"), batch_size, processes_on_node)
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)
