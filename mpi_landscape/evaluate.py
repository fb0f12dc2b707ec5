"""Evaluate a network at points θ* + α·δ + β·η of weight space, on one device.

This is the numerical core of a surface: no MPI, no files. A ``PointEvaluator``
holds θ*, the directions and the data on its device for the whole run. Moving
to a point rewrites the model's tensors in place through one flat buffer (the
model's parameters are views into it), so a point costs two fused vector ops
plus the forward passes -- nothing is copied from the host or read from disk.

The loss is the mean per-sample loss over the whole split with the network in
eval mode (BatchNorm uses its running statistics); accuracy is in percent.
A point yields a small mapping of named floats (``train_loss``, ``train_acc``,
``test_loss``, ...): callers pass them on without knowing what they mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping

import torch
import torch.nn.functional as F

from .directions import Direction, model_tensors
from .errors import LandscapeError

LOSS_NAMES = ("crossentropy", "mse")
DEVICE_DATA_FRACTION = 0.5  # share of free device memory the data may take


@dataclass
class SplitData:
    """One split's inputs and integer targets, where the evaluator reads them from."""

    inputs: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def batches(self, batch_size: int, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Fixed-order batches on ``device`` (a slice when resident, a copy when streamed)."""
        for start in range(0, len(self), batch_size):
            end = start + batch_size
            yield (self.inputs[start:end].to(device, non_blocking=True),
                   self.targets[start:end].to(device, non_blocking=True))


def place_data(splits: Mapping[str, SplitData], device: torch.device) -> dict[str, SplitData]:
    """Move the splits into device memory when they fit, else pin them for streaming."""
    total = sum(s.inputs.nbytes + s.targets.nbytes for s in splits.values())
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        resident = total <= DEVICE_DATA_FRACTION * free
    else:
        resident = True
    if resident:
        return {k: SplitData(s.inputs.to(device), s.targets.to(device)) for k, s in splits.items()}
    return {k: SplitData(s.inputs.pin_memory(), s.targets.pin_memory()) for k, s in splits.items()}


class FlatWeights:
    """The model's perturbed tensors rebound as views of one flat buffer.

    ``dir_type="weights"`` covers ``net.parameters()``; ``"states"`` covers every
    floating-point ``state_dict()`` entry (BatchNorm running statistics too).
    Integer entries such as ``num_batches_tracked`` stay at θ*: eval mode does
    not read them.
    """

    def __init__(self, net: torch.nn.Module, dir_type: str):
        names, tensors = model_tensors(net, dir_type)
        self.mask = [t.is_floating_point() for t in tensors]
        kept = [(n, t) for (n, t), keep in zip(zip(names, tensors), self.mask) if keep]
        self.theta = torch.cat([t.reshape(-1).float() for _, t in kept])
        self.buffer = self.theta.clone()
        offset = 0
        for name, t in kept:
            view = self.buffer[offset:offset + t.numel()].view(t.shape)
            _rebind(net, name, view)
            offset += t.numel()

    def flatten(self, direction: Direction) -> torch.Tensor:
        """A direction as one flat vector aligned with the buffer, on its device."""
        parts = [d.reshape(-1).float() for d, keep in zip(direction, self.mask) if keep]
        return torch.cat(parts).to(self.theta.device)

    def set(self, alpha: float, dx: torch.Tensor, beta: float = 0.0, dy: torch.Tensor | None = None) -> None:
        """Make the model's tensors θ* + α·dx + β·dy."""
        torch.mul(dx, alpha, out=self.buffer)
        if dy is not None:
            self.buffer.add_(dy, alpha=beta)
        self.buffer.add_(self.theta)


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


def split_loss(outputs: torch.Tensor, targets: torch.Tensor, loss_name: str) -> torch.Tensor:
    """Summed per-sample loss of a batch (mean over classes for ``mse`` on softmax vs one-hot)."""
    if loss_name == "crossentropy":
        return F.cross_entropy(outputs.float(), targets, reduction="sum")
    if loss_name == "mse":
        probs = F.softmax(outputs.float(), dim=1)
        one_hot = F.one_hot(targets, probs.shape[1]).to(probs.dtype)
        return ((probs - one_hot) ** 2).mean(dim=1).sum()
    raise LandscapeError(f"--loss_name {loss_name!r}: choose one of {', '.join(LOSS_NAMES)}")


@torch.inference_mode()
def evaluate_split(net: torch.nn.Module, data: SplitData, loss_name: str, batch_size: int,
                   device: torch.device) -> tuple[float, float]:
    """Mean loss and accuracy (%) of ``net`` over the whole split, in eval mode."""
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for inputs, targets in data.batches(batch_size, device):
        outputs = net(inputs)
        total_loss += split_loss(outputs, targets, loss_name).double()
        correct += (outputs.argmax(dim=1) == targets).sum()
    n = len(data)
    return total_loss.item() / n, 100.0 * correct.item() / n


class PointEvaluator:
    """Loss and accuracy of one network at any grid point, everything kept on one device."""

    def __init__(self, net: torch.nn.Module, dir_type: str, x: Direction, y: Direction | None,
                 splits: Mapping[str, SplitData], loss_name: str = "crossentropy",
                 batch_size: int = 1024, device: torch.device | str = "cpu"):
        if loss_name not in LOSS_NAMES:
            raise LandscapeError(f"--loss_name {loss_name!r}: choose one of {', '.join(LOSS_NAMES)}")
        if batch_size < 1:
            raise LandscapeError(f"--batch_size must be positive, got {batch_size}")
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.flat = FlatWeights(self.net, dir_type)
        self.dx = self.flat.flatten(x)
        self.dy = self.flat.flatten(y) if y is not None else None
        self.splits = place_data(splits, self.device)
        self.loss_name = loss_name
        self.batch_size = batch_size

    @property
    def metric_names(self) -> list[str]:
        return metric_names(self.splits)

    def __call__(self, alpha: float, beta: float = 0.0) -> dict[str, float]:
        """Metrics at θ* + α·δ + β·η."""
        self.flat.set(alpha, self.dx, beta, self.dy)
        values = {}
        for split, data in self.splits.items():
            loss, acc = evaluate_split(self.net, data, self.loss_name, self.batch_size, self.device)
            values[f"{split}_loss"], values[f"{split}_acc"] = loss, acc
        return values


def metric_names(splits) -> list[str]:
    """The names a point's metrics get for these splits, in file order."""
    return [f"{split}_{m}" for split in splits for m in ("loss", "acc")]
