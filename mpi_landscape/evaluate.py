"""Evaluate a network at points θ* + α·δ + β·η of weight space, on one device.

This is the numerical core of a surface: no MPI, no files. A ``PointEvaluator``
holds θ*, the directions and the data on its device for the whole run. Moving
to a point rewrites the model's tensors in place through one flat buffer (the
model's parameters are views into it), so a point costs two fused vector ops
plus the forward passes -- nothing is copied from the host or read from disk.

What a batch means is a ``Task`` (task.py; classification by default): the
network runs in eval mode (BatchNorm uses its running statistics), all
requested splits are stacked and streamed through the model in one pass of
full batches, and each sample's sums (loss, count, metric numerators) are
added to its own split's totals on the device; the task turns each split's
totals into its metrics once per point. A point yields a small mapping of
named floats (``train_loss``, ``train_acc``, ``train_nonfinite``,
``test_loss``, ...): callers pass them on without knowing what they mean.
Inputs may be one tensor, a dict of tensors or a tuple of tensors.

Evaluation modes: ``precision`` runs the forward pass under autocast in bf16
or fp16 (losses are still summed in float64); ``compile`` wraps the model in
``torch.compile``; ``bn="recompute"`` re-estimates BatchNorm running
statistics from the training split at every point before evaluating it.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import itertools
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

import torch
from torch.optim.swa_utils import update_bn

from .directions import Direction, model_tensors
from .errors import LandscapeError, check_choice
from .folding import fold_batchnorm
from .task import Inputs, Task, check_first_batch, make_task, map_tensors, tensors_of
from .threads import cpu_batch_size, largest_activation_bytes

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
BN_MODES = ("eval", "recompute")
DEVICE_DATA_FRACTION = 0.5  # share of free device memory the data may take
MAX_AUTO_BATCH = 16384  # the largest batch tried on a GPU
PREFLIGHT_SAMPLES = 8  # the batch of the check before the first point
STREAM_CHUNK_BYTES = 256 * 2**20  # the most a streamed chunk holds (two are on the device at once)
SAMPLES_TOTAL = "samples"  # the total of a point's sums that counts the samples evaluated
MIN_STREAM_CHUNKS = 4  # a streamed split comes in this many chunks at least, so copies overlap compute


@dataclass(frozen=True)
class PixelNorm:
    """How uint8 images become a network's inputs: ToTensor() (x/255), then Normalize(mean, std).

    Images are kept as uint8 (4× less memory than float32) and converted
    batch by batch on the device, by the same float32 operations in the same
    order as converting them all at once.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, mean: tuple[float, ...], std: tuple[float, ...], raw_data: bool = False) -> "PixelNorm":
        """Normalize(mean, std) after ToTensor(), or ToTensor() alone with ``--raw_data``."""
        return cls((0.0,) * len(mean), (1.0,) * len(std)) if raw_data else cls(mean, std)

    def apply(self, pixels: torch.Tensor) -> torch.Tensor:
        """NCHW uint8 pixels as normalized float32 inputs, on their device and in their memory format."""
        mean, std = _statistics_on(self, pixels.device)
        return pixels.float().div(255).sub(mean).div(std)


@functools.cache
def _statistics_on(norm: PixelNorm, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``norm``'s mean and std as (1, C, 1, 1) tensors on ``device``, made once (not copied per batch)."""
    shape = (1, -1, 1, 1)
    return (torch.tensor(norm.mean, device=device).view(shape), torch.tensor(norm.std, device=device).view(shape))


@dataclass
class SplitData:
    """One split's inputs (a tensor, a dict or a tuple of tensors, one row per sample) and targets.

    With ``pixel_norm`` the inputs are uint8 images, normalized per batch.
    """

    inputs: Inputs
    targets: torch.Tensor
    pixel_norm: PixelNorm | None = None
    whole_size: int | None = None  # samples in the whole split, when this is one rank's shard of it

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    @property
    def full_size(self) -> int:
        """Samples in the whole split (the shards of a group add up to it)."""
        return len(self) if self.whole_size is None else self.whole_size

    def float_inputs(self) -> Inputs:
        """The inputs as the network takes them (all at once: for small splits and checks)."""
        return self.pixel_norm.apply(self.inputs) if self.pixel_norm else self.inputs


class StackedSplits:
    """All evaluated splits as one stream of samples, each tagged with its split.

    Kept in device memory when it fits (half the free memory at most), else
    -- or when ``stream`` forces it -- kept in host memory (pinned where there
    is a GPU) and streamed in fixed-order chunks of whole batches: the copy of
    the next chunk (on a CUDA stream of its own) overlaps the compute of the
    current one, and no DataLoader is built per point. uint8 images stay uint8
    until a batch is on the device, where ``pixel_norm`` converts it.
    """

    def __init__(self, splits: Mapping[str, SplitData], device: torch.device,
                 channels_last: bool = False, task: Task | None = None, stream: bool = False):
        self.names = list(splits)
        self.sizes = [len(s) for s in splits.values()]
        self.ends = list(itertools.accumulate(self.sizes))
        shapes = {tuple(tuple(t.shape[1:]) for t in tensors_of(s.inputs)) for s in splits.values()}
        if len(shapes) > 1:
            raise LandscapeError(f"the splits have inputs of different shapes {sorted(shapes)}")
        norms = {s.pixel_norm for s in splits.values()}
        if len(norms) > 1:
            raise LandscapeError("the splits are normalized differently")
        self.pixel_norm = norms.pop()
        inputs = _concatenate([s.inputs for s in splits.values()])
        if channels_last:
            inputs = map_tensors(lambda t: t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t,
                                 inputs)
        targets = (task or make_task()).store_targets(torch.cat([s.targets for s in splits.values()]))
        split_ids = torch.repeat_interleave(torch.arange(len(self.sizes)), torch.tensor(self.sizes))
        self.device = device
        nbytes = sum(t.nbytes for t in tensors_of(inputs))
        self.resident = not stream and not (
            device.type == "cuda" and nbytes > DEVICE_DATA_FRACTION * torch.cuda.mem_get_info(device)[0])
        if self.resident:
            place = lambda t: t.to(device)  # noqa: E731
        elif torch.cuda.is_available():
            place = lambda t: t.pin_memory()  # noqa: E731
        else:
            place = lambda t: t  # noqa: E731
        self.inputs = map_tensors(place, inputs)
        self.targets, self.split_ids = place(targets), place(split_ids)
        self._resident_batches: dict[tuple[int, int, int], list] = {}

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None
                ) -> Iterator[tuple[Inputs, torch.Tensor, torch.Tensor]]:
        """Fixed-order (inputs, targets, split ids) batches on the device, of samples start..stop.

        The batches are the same, resident or streamed: chunks hold whole batches.
        """
        stop = len(self) if stop is None else min(stop, len(self))
        if self.resident:
            key = (batch_size, start, stop)
            if key not in self._resident_batches:  # views, made once: a small network's point feels their cost
                self._resident_batches[key] = list(self._slices(0, (self.inputs, self.targets, self.split_ids),
                                                                batch_size, start, stop))
            raw = iter(self._resident_batches[key])
        else:
            raw = (batch for offset, tensors in self._streamed(start, stop, self.chunk_samples(batch_size))
                   for batch in self._slices(offset, tensors, batch_size, start, stop))
        for inputs, targets, split_ids in raw:
            yield self.pixel_norm.apply(inputs) if self.pixel_norm else inputs, targets, split_ids

    def _slices(self, offset: int, tensors: tuple, batch_size: int, start: int, stop: int):
        """The (inputs, targets, split ids) batches of samples start..stop that lie in ``tensors``
        (samples offset.. of the stream), on the device."""
        for begin in range(max(start, offset), min(stop, offset + len(tensors[1])), batch_size):
            yield self._piece(tensors, begin - offset, min(begin + batch_size, stop) - offset)

    def _piece(self, tensors: tuple, a: int, b: int) -> tuple[Inputs, torch.Tensor, torch.Tensor]:
        """Samples a..b of (inputs, targets, split ids), on the device (a view where they are already)."""
        inputs, targets, split_ids = tensors
        return (map_tensors(lambda t: t[a:b].to(self.device, non_blocking=True), inputs),
                targets[a:b].to(self.device, non_blocking=True), split_ids[a:b].to(self.device, non_blocking=True))

    def _streamed(self, start: int, stop: int, chunk: int):
        """(offset, tensors) of consecutive chunks on the device; the next is copied while this one computes."""
        side = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None

        def fetch(a: int):
            with torch.cuda.stream(side) if side else contextlib.nullcontext():
                return a, self._piece((self.inputs, self.targets, self.split_ids), a, min(a + chunk, stop))

        offsets = list(range(start, stop, chunk))
        upcoming = fetch(offsets[0]) if offsets else None
        for i in range(len(offsets)):
            offset, tensors = upcoming
            if side:
                current = torch.cuda.current_stream(self.device)
                current.wait_stream(side)
                for t in [*tensors_of(tensors[0]), *tensors[1:]]:
                    t.record_stream(current)
            if i + 1 < len(offsets):
                upcoming = fetch(offsets[i + 1])
            yield offset, tensors

    def batch_splits(self, batch_size: int) -> Iterator[int | None]:
        """For each batch of ``batches(batch_size)``, the index of the split it lies in, or None
        when it spans two."""
        for start in range(0, len(self), batch_size):
            split = bisect.bisect_right(self.ends, start)
            yield split if min(start + batch_size, len(self)) <= self.ends[split] else None

    def sample_bytes(self) -> int:
        """Bytes of one sample's inputs as the network takes them (float32 for uint8 images)."""
        return sum(t[:1].nbytes for t in tensors_of(self.inputs)) * (4 if self.pixel_norm else 1)

    @property
    def nbytes(self) -> int:
        """Bytes the stored inputs, targets and split ids take."""
        return sum(t.nbytes for t in [*tensors_of(self.inputs), self.targets, self.split_ids])

    @property
    def dtype(self) -> str:
        """The stored inputs' dtype(s), for the record."""
        return ",".join(str(t.dtype).removeprefix("torch.") for t in tensors_of(self.inputs))

    def chunk_samples(self, batch_size: int) -> int:
        """Samples per streamed chunk: whole batches, at most STREAM_CHUNK_BYTES, at least MIN_STREAM_CHUNKS chunks."""
        per_sample = max(1, self.nbytes // max(1, len(self)))
        by_bytes = max(1, STREAM_CHUNK_BYTES // (per_sample * batch_size))
        by_count = max(1, len(self) // (MIN_STREAM_CHUNKS * batch_size))
        return min(by_bytes, by_count) * batch_size

    def chunks(self, batch_size: int) -> int:
        """How many pieces one pass over the data is copied in (1: resident on the device)."""
        return 1 if self.resident else math.ceil(len(self) / self.chunk_samples(batch_size))

    def split(self, name: str) -> tuple[int, int]:
        """Start and end of split ``name`` in the stream."""
        i = self.names.index(name)
        start = sum(self.sizes[:i])
        return start, start + self.sizes[i]


def _concatenate(parts: list[Inputs]) -> Inputs:
    """The splits' inputs one after another, keeping their structure (tensor, dict or tuple)."""
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts)
    if isinstance(first, Mapping):
        return {k: torch.cat([p[k] for p in parts]) for k in first}
    return type(first)(torch.cat([p[i] for p in parts]) for i in range(len(first)))


class FlatWeights:
    """The model's perturbed tensors rebound as views of one flat buffer.

    ``dir_type="weights"`` covers ``net.parameters()``; ``"states"`` covers every
    floating-point ``state_dict()`` entry (BatchNorm running statistics too).
    Integer entries such as ``num_batches_tracked`` stay at θ*: eval mode does
    not read them. With ``channels_last`` the 4D tensors (conv filters) are
    laid out NHWC in the buffer, so convolutions read them in the layout that
    is fastest for cuDNN and oneDNN alike; directions are flattened in the same order.
    ``storage`` is the dtype θ* and the directions are held in (float32, or
    bf16/fp16 to save memory); the buffer the model reads is always float32.
    """

    def __init__(self, net: torch.nn.Module, dir_type: str, channels_last: bool = False,
                 storage: torch.dtype = torch.float32):
        names, tensors = model_tensors(net, dir_type)
        self.mask = [t.is_floating_point() for t in tensors]
        self.channels_last = channels_last
        self.storage = storage
        kept = [(n, t) for (n, t), keep in zip(zip(names, tensors), self.mask) if keep]
        self.buffer = torch.cat([self._flat(t) for _, t in kept])
        self.theta = self.buffer.to(storage, copy=True)
        offset = 0
        self._segments: dict[int, tuple[int, int]] = {}  # data pointer of each view -> its place in the buffer
        for name, t in kept:
            segment = self.buffer[offset:offset + t.numel()]
            _rebind(net, name, self._shaped(segment, t.shape))
            if t.numel():
                self._segments[segment.data_ptr()] = (offset, t.numel())
            offset += t.numel()

    def _flat(self, t: torch.Tensor) -> torch.Tensor:
        if self.channels_last and t.dim() == 4:
            t = t.permute(0, 2, 3, 1)
        return t.reshape(-1).float()

    def _shaped(self, segment: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        if self.channels_last and len(shape) == 4:
            n, c, h, w = shape
            return segment.view(n, h, w, c).permute(0, 3, 1, 2)
        return segment.view(shape)

    def flatten(self, direction: Direction) -> torch.Tensor:
        """A direction as one flat vector aligned with the buffer, on its device."""
        parts = [self._flat(d) for d, keep in zip(direction, self.mask) if keep]
        return torch.cat(parts).to(self.theta.device, self.storage)

    def moves(self, *directions: torch.Tensor | None) -> Callable[[torch.Tensor], bool]:
        """A test of whether a tensor moves between points: a view of this buffer where one of
        the flat ``directions`` is not zero (a zero direction on biases and BatchNorm keeps them still)."""
        moving = {pointer for pointer, (offset, n) in self._segments.items()
                  if any(d is not None and bool(d[offset:offset + n].any()) for d in directions)}
        return lambda t: t.data_ptr() in moving

    def set(self, alpha: float, dx: torch.Tensor, beta: float = 0.0, dy: torch.Tensor | None = None) -> None:
        """Make the model's tensors θ* + α·dx + β·dy (computed in float32 whatever the storage)."""
        if self.storage == torch.float32:
            torch.add(self.theta, dx, alpha=alpha, out=self.buffer)
        else:
            self.buffer.copy_(dx).mul_(alpha).add_(self.theta)
        if dy is not None:
            self.buffer.add_(dy, alpha=beta)


def check_low_memory(low_memory: bool, precision: str) -> None:
    """``low_memory`` stores weights in the reduced ``precision``: refuse it without one."""
    if low_memory and precision == "fp32":
        raise LandscapeError("--low_memory holds θ* and the directions in the reduced precision: "
                             "give --precision bf16 or fp16 with it")


def weights_memory_bytes(n_values: int, n_directions: int, storage: torch.dtype = torch.float32) -> int:
    """Device bytes of a point's weights: the float32 buffer, θ* and the directions in ``storage``."""
    return n_values * (4 + storage.itemsize * (1 + n_directions))


def check_weights_fit(n_values: int, n_directions: int, storage: torch.dtype, free_bytes: int) -> None:
    """Refuse, before anything is placed on the device, weights that cannot fit in ``free_bytes``."""
    needed = weights_memory_bytes(n_values, n_directions, storage)
    if needed > free_bytes:
        hint = ("" if storage != torch.float32 else
                f" (--low_memory with --precision bf16 needs "
                f"{weights_memory_bytes(n_values, n_directions, torch.bfloat16) / 2**30:.3g} GiB)")
        raise LandscapeError(f"the network's {n_values:,} weights need {needed / 2**30:.3g} GiB on the device "
                             f"(a float32 working copy, θ* and {n_directions} direction(s) in "
                             f"{str(storage).removeprefix('torch.')}), more than the {free_bytes / 2**30:.3g} "
                             f"GiB free{hint}; use a larger GPU or a smaller model")


def _rebind(net: torch.nn.Module, name: str, view: torch.Tensor) -> None:
    """Point the parameter or buffer ``name`` of ``net`` at ``view``."""
    module_name, _, attr = name.rpartition(".")
    module = net.get_submodule(module_name)
    if attr in module._parameters:
        module._parameters[attr].data = view
    elif attr in module._buffers:
        module._buffers[attr] = view
    else:
        raise KeyError(name)


@dataclass(frozen=True)
class TotalsLayout:
    """A task's per-batch sums as the evaluator adds them: their keys in order, their
    ``<split>/<total>`` names per split, and which are counts (exact in float64 up to 2**53;
    ``finish`` gives them back as integers)."""

    keys: tuple[str, ...]
    names: tuple[tuple[str, ...], ...]
    integer: frozenset[str]

    @classmethod
    def of(cls, parts: Mapping[str, torch.Tensor], splits: list[str]) -> "TotalsLayout":
        keys = tuple(parts)
        return cls(keys, tuple(tuple(f"{split}/{k}" for k in keys) for split in splits),
                   frozenset(k for k, part in parts.items() if not part.is_floating_point()))


class PointEvaluator:
    """A task's loss and metrics of one network at any grid point, everything kept on one device.

    ``task`` is a Task or its name (``--task``); ``loss_name`` chooses the
    classification loss. With ``fold_bn`` (and ``bn="eval"``) the forward pass
    runs with eval-mode BatchNorms folded into the layer before them
    (folding.py): the same numbers to float32 rounding, in less time.
    """

    def __init__(self, net: torch.nn.Module, dir_type: str, x: Direction, y: Direction | None,
                 splits: Mapping[str, SplitData], loss_name: str = "crossentropy",
                 batch_size: int | None = None, device: torch.device | str = "cpu",
                 precision: str = "fp32", compile: bool = False, bn: str = "eval",
                 bn_batch_size: int = 128, channels_last: bool | None = None,
                 task: Task | str = "classification", low_memory: bool = False, stream: bool = False,
                 fold_bn: bool = True):
        self.task = make_task(task, loss_name)
        check_choice("--precision", precision, PRECISIONS)
        check_low_memory(low_memory, precision)
        check_choice("--bn", bn, BN_MODES)
        if batch_size is not None and batch_size < 1:
            raise LandscapeError(f"--batch_size must be positive, got {batch_size}")
        if bn == "recompute" and "train" not in splits:
            raise LandscapeError("--bn recompute estimates BatchNorm statistics on the train split: "
                                 "include train in --splits")
        self.device = torch.device(device)
        storage = PRECISIONS[precision] if low_memory else torch.float32
        if self.device.type == "cuda":
            n_values = sum(t.numel() for t in model_tensors(net, dir_type)[1] if t.is_floating_point())
            check_weights_fit(n_values, 1 if y is None else 2, storage, torch.cuda.mem_get_info(self.device)[0])
        self.net = net.to(self.device).eval()
        if channels_last is None:  # where it helps: convolutions (GPUs and oneDNN on CPUs alike)
            channels_last = any(isinstance(m, torch.nn.Conv2d) for m in self.net.modules())
        self.flat = FlatWeights(self.net, dir_type, channels_last, storage)
        self.dx = self.flat.flatten(x)
        self.dy = self.flat.flatten(y) if y is not None else None
        self.data = StackedSplits(splits, self.device, channels_last, self.task, stream)
        self.precision, self.bn = precision, bn
        self.bn_batch_size = bn_batch_size
        self.fixed_batch_size = batch_size
        self._totals: TotalsLayout | None = None  # what the task's sums are, learnt from its first batch
        self.sample_output_bytes = self._check_one_batch()
        # eval-mode BatchNorm folded into the layer before it (folding.py); recompute needs real BatchNorms
        self.folded = fold_batchnorm(self.net, self._sample_outputs) if fold_bn and bn == "eval" else None
        if self.folded:
            self.folded.track(self.flat.moves(self.dx, self.dy))
        self.forward = torch.compile(self.net) if compile else self.net
        self.batch_size = batch_size or self._largest_batch(precision, self.forward)
        self.warmup_seconds = 0.0

    @torch.inference_mode()
    def _check_one_batch(self) -> int:
        """One forward pass of a few samples at θ*, before the first point: the data must fit the model.

        An input shape the model does not take, or outputs and targets that
        cannot mean the task (labels beyond the model's classes, say), and a
        task whose sums break their contract (``task.check_first_batch``) are
        user errors, told in one line here rather than a traceback (or a device
        assert, or wrong numbers) mid-grid. Returns the bytes of one sample's outputs.
        """
        try:
            outputs = self._sample_outputs(self.net)
        except LandscapeError:
            raise
        except Exception as exc:
            inputs, _ = self._first_samples()
            shapes = [tuple(t.shape[1:]) for t in tensors_of(inputs)]
            shape = shapes[0] if len(shapes) == 1 else shapes
            raise LandscapeError(f"the model's forward pass fails on inputs of shape {shape} "
                                 f"from the data ({type(exc).__name__}: {exc}); check that --model and "
                                 f"--dataset go together") from None
        self.task.check(outputs, self.data.targets)
        inputs, targets = self._first_samples()
        check_first_batch(self.task, outputs, inputs, targets)
        return outputs[:1].nbytes

    def _first_samples(self) -> tuple[Inputs, torch.Tensor]:
        """The inputs and targets of the check before the first point (the first few samples)."""
        inputs, targets, _ = next(self.data.batches(PREFLIGHT_SAMPLES, stop=min(PREFLIGHT_SAMPLES, len(self.data))))
        return inputs, targets

    def _sample_outputs(self, forward) -> torch.Tensor:
        """``forward``'s outputs for the first few samples, in the evaluation's precision."""
        inputs, _ = self._first_samples()
        with self._autocast(self.precision):
            return self.task.outputs(forward, inputs)

    def __call__(self, alpha: float, beta: float = 0.0) -> dict[str, float]:
        """Metrics at θ* + α·δ + β·η."""
        return self.finish(self.sums(alpha, beta))

    def sums(self, alpha: float, beta: float = 0.0) -> dict[str, float]:
        """The totals behind the metrics at θ* + α·δ + β·η over the data held here (a shard, in a group).

        Named ``<split>/<total>`` plus ``<split>/samples``: the totals
        of a group's shards add up to those of the whole split.
        """
        self._move_to(alpha, beta)
        return self._sums(self.precision, self.forward, self.batch_size)

    def finish(self, sums: Mapping[str, float]) -> dict[str, float]:
        """A point's metrics from its totals (``sums``, or their sum over a group), divided once per split."""
        values = {}
        for name in self.data.names:
            totals = {key.partition("/")[2]: value for key, value in sums.items() if key.startswith(name + "/")}
            n = int(totals.pop(SAMPLES_TOTAL))
            totals = {k: int(round(v)) if k in self._totals.integer else float(v) for k, v in totals.items()}
            values.update({f"{name}_{k}": v for k, v in self.task.finish(totals, n).items()})
        return values

    def _move_to(self, alpha: float, beta: float) -> None:
        """Set the model to θ* + α·δ + β·η, and with ``bn="recompute"`` its BatchNorm statistics too."""
        self.flat.set(alpha, self.dx, beta, self.dy)
        if self.folded:
            self.folded.refresh()
        if self.bn == "recompute":
            self._recompute_batchnorm()

    def warm_up(self) -> float:
        """Run one point so compilation and allocator warm-up are not charged to the grid."""
        start = time.perf_counter()
        self(0.0, 0.0)
        self.warmup_seconds = time.perf_counter() - start
        return self.warmup_seconds

    def precision_check(self) -> dict:
        """The centre point in fp32 and in the chosen precision, and their largest relative gap.

        The fp32 pass runs eagerly (a compiled model is not recompiled for one
        point) with a batch of its own: fp32 activations are twice as large, so
        the reduced precision's largest batch may not fit.
        """
        self._move_to(0.0, 0.0)
        fp32_batch = self.fixed_batch_size or self._largest_batch("fp32", self.net)
        reference = self._evaluate("fp32", self.net, fp32_batch)
        reduced = self._evaluate(self.precision, self.forward, self.batch_size)
        gap = max(abs(reduced[k] - reference[k]) / max(abs(reference[k]), 1e-12)
                  for k in reference if k.endswith("_loss"))
        return {"fp32": reference, self.precision: reduced, "max_relative_loss_gap": gap}

    def _evaluate(self, precision: str, forward, batch_size: int) -> dict[str, float]:
        return self.finish(self._sums(precision, forward, batch_size))

    @torch.inference_mode()
    def _sums(self, precision: str, forward, batch_size: int) -> dict[str, float]:
        """Every split's totals: per-sample sums added per split on the device, one sync at the end.

        A batch inside one split is reduced to one number per total first
        (one operation instead of a scatter, which a small network's point
        feels); only a batch that spans two splits is scattered per sample.
        Counts (integer or bool sums) are exact; floating-point sums are kept
        in float64, so batch sizes change a split's loss only by float64
        rounding (about 1e-16 of it).
        """
        task, n_splits = self.task, len(self.data.names)
        per_split: list[list[torch.Tensor]] = [[] for _ in range(n_splits)]  # float64 rows of batch totals
        with self._autocast(precision):
            for (inputs, targets, split_ids), split in zip(self.data.batches(batch_size),
                                                          self.data.batch_splits(batch_size)):
                parts = task.sums(task.outputs(forward, inputs), inputs, targets)
                if self._totals is None:
                    self._totals = TotalsLayout.of(parts, self.data.names)
                keys = self._totals.keys
                if split is not None:
                    per_split[split].append(torch.stack([parts[k].sum(dtype=torch.float64) for k in keys]))
                else:
                    spanning = torch.zeros(n_splits, len(keys), dtype=torch.float64, device=self.device)
                    spanning.index_add_(0, split_ids, torch.stack([parts[k].to(torch.float64) for k in keys], dim=1))
                    for i in range(n_splits):
                        per_split[i].append(spanning[i])
        rows = torch.stack([rows[0] if len(rows) == 1 else torch.stack(rows).sum(dim=0)
                            for rows in per_split]).tolist()  # the point's one sync
        sums = {}
        for split_names, row, split, n in zip(self._totals.names, rows, self.data.names, self.data.sizes):
            sums.update(zip(split_names, row))
            sums[f"{split}/{SAMPLES_TOTAL}"] = float(n)
        return sums

    def _recompute_batchnorm(self) -> None:
        """Running statistics of every BatchNorm re-estimated on the train split (cumulative mean)."""
        start, end = self.data.split("train")
        with self._autocast(self.precision):
            update_bn(self.data.batches(self.bn_batch_size, start, end), self.net)

    def _autocast(self, precision: str):
        """Autocast to the reduced ``precision``; for fp32 no context at all (entering even a
        disabled one costs tens of microseconds, a visible share of a small network's point)."""
        dtype = PRECISIONS[precision]
        return contextlib.nullcontext() if dtype is None else torch.autocast(self.device.type, dtype=dtype)

    @torch.inference_mode()
    def _activation_bytes(self, precision: str) -> int:
        """Bytes per sample of the largest tensor a module of the network outputs, in ``precision``."""
        with self._autocast(precision):
            largest = largest_activation_bytes(self.net, lambda: self._sample_outputs(self.net))
        return largest // min(PREFLIGHT_SAMPLES, len(self.data))

    def _largest_batch(self, precision: str, forward) -> int:
        """The batch for ``forward`` in ``precision`` when ``--batch_size`` is not given.

        On a GPU the largest power of two whose forward pass fits (at most
        MAX_AUTO_BATCH). On a CPU ``threads.cpu_batch_size``: the whole split,
        or the fewest equal batches, whose largest activation (any module's
        output, the inputs or a language model's logits) stays within about
        32 MB, measured by bench/batch_rule.py.
        """
        n = len(self.data)
        if self.device.type != "cuda":
            return cpu_batch_size(n, max(self.data.sample_bytes(), self.sample_output_bytes,
                                         self._activation_bytes(precision)))

        def forward_fits(batch: int) -> None:
            with torch.inference_mode(), self._autocast(precision):
                for inputs, _, _ in self.data.batches(batch, stop=batch):
                    self.task.outputs(forward, inputs)
            torch.cuda.synchronize(self.device)

        batch = largest_fitting_batch(forward_fits, min(MAX_AUTO_BATCH, 1 << (n - 1).bit_length()),
                                      release=torch.cuda.empty_cache)
        return min(batch, n)


def largest_fitting_batch(try_batch, start: int, release=lambda: None) -> int:
    """The first of start, start/2, start/4, ... 1 for which ``try_batch`` does not run out of memory.

    ``release`` returns cached memory between tries. A network that does not
    fit even one sample is refused with a message instead of an allocator
    traceback.
    """
    batch = start
    while True:
        try:
            try_batch(batch)
            return batch
        except torch.OutOfMemoryError:
            release()
            if batch == 1:
                raise LandscapeError("the network does not fit in GPU memory even with a batch of 1 "
                                     "sample: use a larger GPU, or the CPU (CUDA_VISIBLE_DEVICES=)") from None
            batch //= 2

