"""Seconds per grid point: this engine's ``PointEvaluator``, mode by mode, against a reference-style evaluator.

A grid point's cost is what a surface's run time is made of, and on a GPU
the reference code spends most of it outside the network: a DataLoader with
per-image transforms restarted at every point, weights rebuilt on the host,
a host sync per batch. This script measures both evaluators on the same
model, the same data, the same directions and the same points, in one
process, and reports the median seconds per point and their ratio. The
engine is measured once per evaluation mode (``--modes``: precision, whether
the model is compiled, and its memory layout), each mode against the same reference-style
timing, which is taken once per model. Every mode must give the reference's
loss at every point it shares with it, to a tolerance that suits the mode's
precision, so the comparison is of equal work.

Models: on the CPU, the demo MLP on the demo's 2-D points (the reference-style
loader then reads a TensorDataset sample by sample), ResNet-20 and ResNet-56
on a few hundred CIFAR-shaped images; on a GPU (``--device cuda``), ResNet-56
on 50,000 CIFAR-shaped images, a full CIFAR-10 training split. The images are
synthetic uint8 pixels: speed does not depend on what they show. The networks
are freshly initialised with BatchNorm statistics taken from the data, so
their losses are in the range of a real network's.

    python bench/point_speed.py                         # CPU table, fp32, a few minutes at most
    python bench/point_speed.py --modes fp32,bf16       # and autocast bf16
    python bench/point_speed.py --device cuda           # ResNet-56, 50,000 images, fp32 and bf16, eager and compiled
    python bench/point_speed.py --models tiny_gpt2      # the language-model row alone

The language-model row (``tiny_gpt2``, with ``transformers`` installed) is a
two-layer GPT-2 built from a config (no download) on random byte tokens,
evaluated with ``--task language_model`` against a naive per-batch loop
around ``model(**batch).loss``; it reports tokens per second per point.
"""

from __future__ import annotations

import argparse
import copy
import gc
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import update_bn
from torch.utils.data import Dataset, TensorDataset

from machine import environment, machine_name, write_result
from mpi_landscape_models import build_model
from mpi_landscape.data import CIFAR10_MEAN, CIFAR10_STD, cifar_inputs, demo_split
from mpi_landscape.directions import DirectionSpec, create_directions
from mpi_landscape.evaluate import PointEvaluator, SplitData
from reference_style import (REFERENCE_BATCH_SIZE, REFERENCE_WORKERS, NaiveLanguageModelLoop,
                             ReferenceStyleEvaluator, UInt8Images)

CPU_MODELS = ("demo_mlp", "resnet20", "resnet56", "tiny_gpt2")
GPU_MODELS = ("resnet56", "tiny_gpt2")
LANGUAGE_MODEL = "tiny_gpt2"
LM_SEQUENCES = {"cpu": 128, "cuda": 4096}  # sequences of LM_LENGTH random byte tokens per point
LM_LENGTH = 64
CPU_MODES = ("fp32",)
GPU_MODES = ("fp32", "fp32+unfolded", "fp32+compile", "bf16", "bf16+compile")
PRECISIONS = ("fp32", "bf16", "fp16")
# torch.compile; the NCHW layout instead of the engine's NHWC; BatchNorm modules run as they are (not folded)
MODE_OPTIONS = ("compile", "nchw", "unfolded")
CPU_IMAGES = 512
GPU_IMAGES = 50_000
BN_CALIBRATION_IMAGES = 64
MAX_POINTS = 50
# Largest loss difference from the reference, relative to max(1, |loss|), that still counts as
# the same computation. fp32 sums over different batch sizes differ in the last bits; TF32
# convolutions (PyTorch's default on GPUs) round their operands to 10-bit mantissas; bf16 and
# fp16 forward passes keep 8 and 11 bits.
FP32_TOLERANCE = 1e-4
TF32_TOLERANCE = 2e-3
REDUCED_TOLERANCE = 5e-2

Evaluator = Callable[[float, float], dict]


@dataclass
class Workload:
    """One model's network (θ*), directions and data, shared by every evaluator of the model."""

    model: str
    net: nn.Module
    x_dir: list[torch.Tensor]
    y_dir: list[torch.Tensor]
    inputs: torch.Tensor
    targets: torch.Tensor
    reference_data: Dataset

    @property
    def samples(self) -> int:
        return len(self.targets)


@dataclass
class Timing:
    """Seconds and metrics of one evaluator over the first ``len(seconds)`` timed points."""

    seconds: list[float]
    metrics: list[dict]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def calibrate_batchnorm(net: nn.Module, inputs: torch.Tensor) -> None:
    """Set BatchNorm running statistics to those of ``inputs``, as training would have.

    A freshly initialised residual network evaluated with unit running
    variances has exploding activations and losses in the thousands; with
    statistics from the data its loss is that of an untrained real network.
    """
    update_bn([inputs], net)  # a cumulative average: one batch gives exactly its statistics
    net.eval()


def workload(model: str, inputs: torch.Tensor, targets: torch.Tensor, reference_data: Dataset) -> Workload:
    """A freshly initialised ``model`` (fixed seed) with data-calibrated BatchNorm, and its directions."""
    torch.manual_seed(0)
    net = build_model(model)
    calibrate_batchnorm(net, inputs[:BN_CALIBRATION_IMAGES])
    x_dir, y_dir = create_directions(net, DirectionSpec())
    return Workload(model, net, x_dir, y_dir, inputs, targets, reference_data)


def mlp_workload() -> Workload:
    """The demo MLP on the demo's training points; the reference reads them sample by sample."""
    data = demo_split("train")
    return workload("demo_mlp", data.inputs, data.targets, TensorDataset(data.inputs, data.targets))


def synthetic_cifar(images: int) -> tuple[np.ndarray, np.ndarray]:
    """``images`` random CIFAR-shaped uint8 HWC images and labels, the same at every call (seed 0)."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(images, 32, 32, 3), dtype=np.uint8)
    return pixels, rng.integers(0, 10, size=images)


def image_workload(model: str, images: int) -> Workload:
    """A CIFAR network on synthetic CIFAR-shaped uint8 images, normalized as for evaluation.

    The engine gets the whole split as one normalized tensor, as
    ``mpi_landscape.data`` makes it for CIFAR-10; the reference transforms
    each image when it is read.
    """
    pixels, labels = synthetic_cifar(images)
    return workload(model, cifar_inputs(pixels), torch.from_numpy(labels).long(),
                    UInt8Images(pixels, labels, CIFAR10_MEAN, CIFAR10_STD))


def tiny_gpt2(device: str) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A two-layer GPT-2 (seed 0) and random byte-token sequences (seed 0) without padding."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_head=4, n_embd=128, n_positions=LM_LENGTH, vocab_size=256,
                        bos_token_id=0, eos_token_id=0)
    net = GPT2LMHeadModel(config).eval()
    gen = torch.Generator().manual_seed(0)
    sequences = LM_SEQUENCES["cuda" if device.startswith("cuda") else "cpu"]
    ids = torch.randint(0, 256, (sequences, LM_LENGTH), generator=gen)
    return net, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


class TokenBatches(Dataset):
    """Dict items of a token split, as a user's Hugging Face dataset gives them."""

    def __init__(self, columns: dict[str, torch.Tensor]):
        self.columns = columns

    def __len__(self) -> int:
        return len(self.columns["input_ids"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.columns.items()}


def measure_language_model(points: list[tuple[float, float]], args: argparse.Namespace) -> dict:
    """The engine's ``language_model`` task against the naive loop, on the same GPT-2, tokens and points."""
    device = torch.device(args.device)
    net, columns = tiny_gpt2(args.device)
    x_dir, y_dir = create_directions(net, DirectionSpec())
    tokens = columns["input_ids"][:, 1:].numel()
    naive = NaiveLanguageModelLoop(copy.deepcopy(net), x_dir, y_dir, TokenBatches(columns),
                                   REFERENCE_BATCH_SIZE // 4, 0, device)
    naive(0.0, 0.0)
    naive_timing = run_points(naive, points, args.repeats, args.min_seconds)
    del naive
    free_memory(device)
    engine = PointEvaluator(copy.deepcopy(net), "weights", x_dir, y_dir,
                            {"train": SplitData(columns, columns["input_ids"])}, batch_size=args.batch_size,
                            device=device, task="language_model")
    engine.warm_up()
    timing = run_points(engine, points, max(args.repeats, len(naive_timing.seconds)), args.min_seconds)
    batch_size = engine.batch_size
    del engine
    free_memory(device)
    rel = [abs(m["train_loss"] - n["train_loss"]) / max(1.0, abs(n["train_loss"]))
           for m, n in zip(timing.metrics, naive_timing.metrics)]
    tol = tolerance("fp32", device)
    return {"model": LANGUAGE_MODEL, "tokens": tokens, "batch_size": batch_size,
            "naive_s_per_point": naive_timing.median, "s_per_point": timing.median,
            "naive_tokens_per_s": tokens / naive_timing.median, "tokens_per_s": tokens / timing.median,
            "ratio": naive_timing.median / timing.median, "max_rel_loss_diff": max(rel),
            "loss_tolerance": tol, "losses_agree": max(rel) <= tol,
            "naive_seconds": naive_timing.seconds, "seconds": timing.seconds}


def print_language_model(r: dict) -> None:
    print(f"\n{r['model']}: {r['tokens']} scored tokens per point; naive model(**batch).loss loop "
          f"{r['naive_s_per_point']:.4f} s/point ({r['naive_tokens_per_s']:,.0f} tokens/s), engine "
          f"--task language_model {r['s_per_point']:.4f} s/point ({r['tokens_per_s']:,.0f} tokens/s, batch "
          f"{r['batch_size']}): {r['ratio']:.1f}x; max rel dloss {r['max_rel_loss_diff']:.1e} "
          f"(tol {r['loss_tolerance']:.0e})", flush=True)


def parse_mode(mode: str) -> tuple[str, bool, bool, bool]:
    """``"bf16+compile"`` -> ``("bf16", True, True, True)``: precision, compiled, channels_last, folded.

    A mode is a precision followed by any of ``+compile``, ``+nchw`` and
    ``+unfolded``; ``+nchw`` keeps conv nets in PyTorch's default NCHW layout,
    to measure what the engine's channels_last default gains, and
    ``+unfolded`` runs each BatchNorm module as it is, to measure what folding
    it into the layer before it gains.
    """
    precision, *options = mode.split("+")
    if precision not in PRECISIONS or len(set(options)) < len(options) or not set(options) <= set(MODE_OPTIONS):
        raise ValueError(f"{mode!r}: a mode is one of {', '.join(PRECISIONS)}, then any of "
                         f"{', '.join('+' + o for o in MODE_OPTIONS)}")
    return precision, "compile" in options, "nchw" not in options, "unfolded" not in options


def tolerance(mode: str, device: torch.device) -> float:
    """The loss tolerance of ``mode`` (see the constants above) on ``device``."""
    precision = parse_mode(mode)[0]
    if precision != "fp32":
        return REDUCED_TOLERANCE
    if device.type == "cuda" and torch.backends.cudnn.allow_tf32:
        return TF32_TOLERANCE
    return FP32_TOLERANCE


def run_points(evaluate: Evaluator, points: list[tuple[float, float]], least: int, min_seconds: float) -> Timing:
    """Time ``evaluate`` over ``points`` in order: at least ``least`` points, then more while under ``min_seconds``.

    Both evaluators return host floats, so each point's time includes its
    device work.
    """
    seconds, metrics = [], []
    for alpha, beta in points:
        if len(seconds) >= least and sum(seconds) >= min_seconds:
            break
        start = time.perf_counter()
        metrics.append(evaluate(alpha, beta))
        seconds.append(time.perf_counter() - start)
    return Timing(seconds, metrics)


def free_memory(device: torch.device, compiled: bool = False) -> None:
    """Release what the last evaluator left: its tensors, compiled graphs and cached device blocks."""
    gc.collect()
    if compiled:
        torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def measure_reference(w: Workload, points: list[tuple[float, float]], args: argparse.Namespace) -> dict:
    """The reference-style evaluator: one untimed point at θ*, then the timed points."""
    device = torch.device(args.device)
    reference = ReferenceStyleEvaluator(copy.deepcopy(w.net), w.x_dir, w.y_dir, w.reference_data,
                                        REFERENCE_BATCH_SIZE, args.ref_workers, device)
    start = time.perf_counter()
    reference(0.0, 0.0)
    warmup = time.perf_counter() - start
    timing = run_points(reference, points, args.repeats, args.min_seconds)
    del reference
    free_memory(device)
    return {
        "s_per_point": timing.median,
        "warmup_seconds": warmup,
        "batch_size": REFERENCE_BATCH_SIZE,
        "seconds": timing.seconds,
        "losses": [m["train_loss"] for m in timing.metrics],
        "accuracies": [m["train_acc"] for m in timing.metrics],
    }


def measure_mode(w: Workload, mode: str, points: list[tuple[float, float]], reference: dict,
                 args: argparse.Namespace) -> dict:
    """The engine in ``mode``, on at least the reference's points, compared with it point by point.

    ``warmup_seconds`` runs from building the evaluator (data to the device,
    batch search, which on a GPU is where a compiled model is first compiled)
    to the end of its first point at θ* (untimed otherwise); it is kept out
    of the seconds per point. On a GPU the peak memory is that of this mode
    alone: the previous evaluator is freed and the peak counter reset first.
    """
    device = torch.device(args.device)
    precision, compiled, channels_last, folded = parse_mode(mode)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    engine = PointEvaluator(copy.deepcopy(w.net), "weights", w.x_dir, w.y_dir,
                            {"train": SplitData(w.inputs, w.targets)}, "crossentropy",
                            args.batch_size, device, precision, compiled,
                            channels_last=None if channels_last else False, fold_bn=folded)
    setup = time.perf_counter() - start
    first_point = engine.warm_up()
    least = max(args.repeats, len(reference["seconds"]))
    timing = run_points(engine, points, least, args.min_seconds)
    batch_size, engine_layout = engine.batch_size, engine.flat.channels_last
    folded_batchnorms = len(engine.folded.pairs) if engine.folded else 0
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    del engine
    free_memory(device, compiled)

    loss_diffs, rel_diffs, acc_diffs = [], [], []
    for metrics, loss, acc in zip(timing.metrics, reference["losses"], reference["accuracies"]):
        loss_diffs.append(abs(metrics["train_loss"] - loss))
        rel_diffs.append(loss_diffs[-1] / max(1.0, abs(loss)))
        acc_diffs.append(abs(metrics["train_acc"] - acc))
    tol = tolerance(mode, device)
    return {
        "mode": mode,
        "precision": precision,
        "compile": compiled,
        "channels_last": engine_layout,
        "folded_batchnorms": folded_batchnorms,
        "s_per_point": timing.median,
        "ratio": reference["s_per_point"] / timing.median,
        "warmup_seconds": setup + first_point,
        "setup_seconds": setup,
        "first_point_seconds": first_point,
        "batch_size": batch_size,
        "peak_memory_bytes": peak,
        "seconds": timing.seconds,
        "losses": [m["train_loss"] for m in timing.metrics],
        "compared_points": len(rel_diffs),
        "max_abs_loss_diff": float(np.max(loss_diffs)),  # np.max: a NaN loss shows as NaN
        "max_rel_loss_diff": float(np.max(rel_diffs)),
        "max_abs_acc_diff": float(np.max(acc_diffs)),
        "loss_tolerance": tol,
        "losses_agree": all(d <= tol for d in rel_diffs),
    }


TABLE = "{:<10} {:<14} {:>7} {:>6} {:>10} {:>10} {:>7} {:>14} {:>7} {:>13}"


def print_header(on_gpu: bool) -> None:
    print(TABLE.format("model", "mode", "samples", "batch", "warm-up s", "s/point", "ratio",
                       "max rel dloss", "tol", "max |dacc| %") + (f" {'peak GPU MB':>12}" if on_gpu else ""))


def print_reference(model: str, samples: int, r: dict) -> None:
    print(TABLE.format(model, "reference", samples, r["batch_size"], f"{r['warmup_seconds']:.2f}",
                       f"{r['s_per_point']:.4f}", "", "", "", ""), flush=True)


def print_mode(model: str, samples: int, r: dict) -> None:
    peak = r["peak_memory_bytes"]
    print(TABLE.format(model, r["mode"], samples, r["batch_size"], f"{r['warmup_seconds']:.2f}",
                       f"{r['s_per_point']:.4f}", f"{r['ratio']:.1f}x", f"{r['max_rel_loss_diff']:.1e}",
                       f"{r['loss_tolerance']:.0e}", f"{r['max_abs_acc_diff']:.2f}")
          + (f" {peak / 2**20:>12.0f}" if peak is not None else ""), flush=True)


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:n]")
    parser.add_argument("--models", help=f"comma-separated; default {','.join(CPU_MODELS)} on the CPU, "
                                         f"{','.join(GPU_MODELS)} on a GPU")
    parser.add_argument("--modes", help=f"the engine's evaluation modes, comma-separated: a precision "
                                        f"({', '.join(PRECISIONS)}) then any of +compile, +nchw, +unfolded "
                                        f"(e.g. bf16+compile, fp32+nchw, fp32+unfolded); default {','.join(CPU_MODES)} on the "
                                        f"CPU, {','.join(GPU_MODES)} on a GPU")
    parser.add_argument("--images", type=int, help=f"CIFAR-shaped images per point; default {CPU_IMAGES} "
                                                    f"on the CPU, {GPU_IMAGES} on a GPU")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="the engine's batch size (default: the engine's own choice)")
    parser.add_argument("--ref_workers", type=int, default=REFERENCE_WORKERS,
                        help="DataLoader workers of the reference-style evaluator (the reference's --threads)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="least timed points per evaluator and model (each mode also times every "
                             "point the reference timed)")
    parser.add_argument("--min_seconds", type=float, default=10.0,
                        help=f"time more points (up to {MAX_POINTS}) until each evaluator's timed points "
                             f"took this long")
    args = parser.parse_args(argv)
    on_gpu = args.device.startswith("cuda")
    args.models = args.models.split(",") if args.models else list(GPU_MODELS if on_gpu else CPU_MODELS)
    args.modes = args.modes.split(",") if args.modes else list(GPU_MODES if on_gpu else CPU_MODES)
    for mode in args.modes:
        try:
            parse_mode(mode)
        except ValueError as bad:
            parser.error(f"--modes: {bad}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    args.images = args.images or (GPU_IMAGES if on_gpu else CPU_IMAGES)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    on_gpu = args.device.startswith("cuda")
    if on_gpu and not torch.cuda.is_available():
        sys.exit("--device cuda: no GPU is visible to torch")
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = machine_name(args.device)
    print(f"{machine}: median over at least {args.repeats} points and {args.min_seconds:g} s per evaluator, "
          f"engine batch {args.batch_size or 'auto'}, reference batch {REFERENCE_BATCH_SIZE} with "
          f"{args.ref_workers} loader workers; ratio = reference s/point / mode s/point; max rel dloss = "
          f"largest |loss - reference loss| / max(1, |reference loss|) over the shared points"
          + ("; TF32 convolutions on" if on_gpu and torch.backends.cudnn.allow_tf32 else ""))
    print_header(on_gpu)
    rng = np.random.default_rng(1)
    points = [tuple(p) for p in rng.uniform(-0.25, 0.25, (MAX_POINTS, 2)).tolist()]
    results, language_model = [], None
    for model in args.models:
        if model == LANGUAGE_MODEL:
            continue
        w = mlp_workload() if model == "demo_mlp" else image_workload(model, args.images)
        reference = measure_reference(w, points, args)
        print_reference(model, w.samples, reference)
        modes = []
        for mode in args.modes:
            modes.append(measure_mode(w, mode, points, reference, args))
            print_mode(model, w.samples, modes[-1])
        timed = max(len(r["seconds"]) for r in (reference, *modes))
        results.append({"model": model, "samples": w.samples, "points": [list(p) for p in points[:timed]],
                        "reference": reference, "modes": modes})
    if LANGUAGE_MODEL in args.models:
        language_model = measure_language_model(points, args)
        print_language_model(language_model)
    rss = peak_rss_bytes()
    print(f"\npeak resident memory of this process over the whole run (all models and modes; "
          f"loader workers not included): {rss / 2**20:.0f} MB")
    bad = [f"{r['model']} {m['mode']}" for r in results for m in r["modes"] if not m["losses_agree"]]
    bad += [LANGUAGE_MODEL] if language_model and not language_model["losses_agree"] else []
    if bad:
        print(f"the engine and the reference disagree on the loss beyond the tolerance for {', '.join(bad)}: "
              f"the timings compare unequal work; nothing written", file=sys.stderr)
        return 1
    path = write_result("point_speed", machine, {
        "benchmark": "point_speed",
        "machine": machine,
        "device": args.device,
        **environment(args.device),
        **({"cudnn_allow_tf32": torch.backends.cudnn.allow_tf32} if on_gpu else {}),
        "torch_threads": torch.get_num_threads(),
        "modes": args.modes,
        "engine_batch_size": args.batch_size,
        "reference_batch_size": REFERENCE_BATCH_SIZE,
        "reference_workers": args.ref_workers,
        "repeats": args.repeats,
        "min_seconds": args.min_seconds,
        "images": args.images,
        "process_peak_rss_bytes": rss,
        "results": results,
        "language_model": language_model,
    })
    print(f"wrote {path.relative_to(path.parents[2])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
