"""Eval-mode BatchNorm folded into the convolution or linear layer before it, for the evaluator.

In eval mode a BatchNorm is an affine map per channel, y = (x − μ)·s + β with
s = γ/√(σ² + ε). A convolution or linear layer whose output only that BatchNorm
reads is therefore one layer with weights W·s and bias (b − μ)·s + β: the
forward pass then skips a full read and write of the activations per
BatchNorm (10–30% of a point on a CPU, see bench/README.md, "Folded
BatchNorm").

The pairs are found by tracing the model with torch.fx (which runs its
``forward`` once on placeholder values); the model itself then stays the
model: its own ``forward`` runs at every point, with its Python (a counter,
a sleep, a check) and its hooks. Only the two modules of a pair change what
they do, and only without autograd and in eval mode: the layer computes with
the folded weights and the BatchNorm passes its input through. With autograd
on (Hessian-vector products) or in train mode both run as they are.

A point moves the weights in place, so ``FoldedNetwork.refresh()`` recomputes
the folded weights from the live tensors after every move, and only what
depends on a tensor that moves (with the paper's ``--xignore biasbn``, the
layer's weight alone: one operation per pair). A model that does not trace,
has no such pair, or carries forward hooks on a pair's modules (or global
ones) is evaluated as it is (``fold_batchnorm`` returns None).
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

import torch
import torch.fx
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

FOLDABLE_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
AGREEMENT = 1e-3  # relative gap the folded outputs may have on the sample batch (rounding is ~1e-6)


class FoldedPair:
    """A convolution or linear layer and the eval-mode BatchNorm after it, run as one layer.

    ``weight``, ``bias`` and ``scale`` (s) are this pair's own working
    tensors, rewritten by ``refresh``; the modules' tensors stay the model's
    (views of the evaluator's flat buffer).
    """

    def __init__(self, layer: nn.Module, norm: _BatchNorm):
        self.layer, self.norm = layer, norm
        self._sources = {"weight": layer.weight, "bias": layer.bias, "mean": norm.running_mean,
                         "var": norm.running_var, "gamma": norm.weight, "beta": norm.bias}
        self._scale_shape = (-1, *[1] * (layer.weight.dim() - 1))
        self.weight = torch.empty_like(layer.weight)  # keeps the layer's memory format (channels_last)
        self.bias = torch.empty_like(norm.running_mean)
        self.scale = torch.empty_like(norm.running_var)
        self._moving = {name for name, t in self._sources.items() if t is not None}
        self._replaced: dict[nn.Module, object] = {}  # module -> the instance-level forward it had, if any
        with torch.no_grad():
            self.refresh()

    def track(self, moves: Callable[[torch.Tensor], bool]) -> None:
        """From now on ``refresh`` recomputes only what depends on a tensor for which ``moves`` is True."""
        self._moving = {name for name, t in self._sources.items() if t is not None and moves(t)}

    def refresh(self) -> None:
        """The folded weights from the layer's and the BatchNorm's current tensors (call under no_grad)."""
        src, moving = self._sources, self._moving
        scale_moves = "var" in moving or "gamma" in moving
        if scale_moves:
            torch.add(src["var"], self.norm.eps, out=self.scale).rsqrt_()
            if src["gamma"] is not None:
                self.scale.mul_(src["gamma"])
        if scale_moves or "weight" in moving:
            torch.mul(src["weight"], self.scale.view(self._scale_shape), out=self.weight)
        if scale_moves or not moving.isdisjoint(("bias", "mean", "beta")):
            if src["bias"] is not None:
                torch.sub(src["bias"], src["mean"], out=self.bias)
            else:
                torch.neg(src["mean"], out=self.bias)
            self.bias.mul_(self.scale)
            if src["beta"] is not None:
                self.bias.add_(src["beta"])

    def install(self) -> None:
        """Make the layer compute with the folded weights and the BatchNorm pass its input through,
        whenever autograd is off and the BatchNorm is in eval mode."""
        layer, norm = self.layer, self.norm
        plain_layer, plain_norm = layer.forward, norm.forward
        linear = isinstance(layer, nn.Linear)

        def folded(x: torch.Tensor) -> torch.Tensor:
            if norm.training or torch.is_grad_enabled():
                return plain_layer(x)
            if linear:
                return nn.functional.linear(x, self.weight, self.bias)
            return layer._conv_forward(x, self.weight, self.bias)

        def passed_through(x: torch.Tensor) -> torch.Tensor:
            return plain_norm(x) if norm.training or torch.is_grad_enabled() else x

        for module, forward in ((layer, folded), (norm, passed_through)):
            self._replaced[module] = module.__dict__.get("forward")
            module.forward = forward

    def uninstall(self) -> None:
        """Give both modules back the forward they had."""
        for module, previous in self._replaced.items():
            if previous is None:
                del module.forward
            else:
                module.forward = previous
        self._replaced.clear()


class FoldedNetwork:
    """The folded pairs of a model, and how to refresh and remove them."""

    def __init__(self, pairs: list[FoldedPair]):
        self.pairs = pairs

    def track(self, moves: Callable[[torch.Tensor], bool]) -> None:
        """Tell every pair which of its tensors move between points."""
        for pair in self.pairs:
            pair.track(moves)

    @torch.no_grad()
    def refresh(self) -> None:
        """Recompute the folded weights that depend on tensors that moved."""
        for pair in self.pairs:
            pair.refresh()

    def uninstall(self) -> None:
        """Every module runs as it is again."""
        for pair in self.pairs:
            pair.uninstall()


def fold_batchnorm(net: nn.Module, outputs: Callable[[Callable], torch.Tensor]) -> FoldedNetwork | None:
    """Fold every foldable layer→BatchNorm pair of ``net`` (in eval mode); None when there is none.

    A pair is a Conv1d/2d/3d or Linear whose output feeds only a BatchNorm that
    normalizes with running statistics over the layer's output channels, each
    called once per forward pass. ``outputs(forward)`` runs a forward
    function on a sample batch: the folding stays only when the outputs equal
    the model's own to float32 rounding (a BatchNorm1d after a Linear on
    sequences normalizes another axis than the layer's features, say).
    """
    if not any(isinstance(m, _BatchNorm) for m in net.modules()) or _global_forward_hooks():
        return None
    try:
        graph = torch.fx.symbolic_trace(net).graph
    except Exception:  # data-dependent control flow, a model fx cannot follow: evaluate it unfolded
        return None
    modules = dict(net.named_modules(remove_duplicate=False))
    calls = Counter(id(modules[node.target]) for node in graph.nodes if node.op == "call_module")
    pairs = []
    for node in graph.nodes:
        norm = modules.get(node.target) if node.op == "call_module" else None
        if not _normalizes_by_running_statistics(norm) or len(node.args) != 1 or node.kwargs:
            continue
        source = node.args[0]
        if not isinstance(source, torch.fx.Node) or source.op != "call_module" or len(source.users) != 1:
            continue
        layer = modules.get(source.target)
        if (isinstance(layer, FOLDABLE_LAYERS) and _channels(layer) == norm.num_features
                and calls[id(layer)] == calls[id(norm)] == 1
                and not _has_forward_hooks(layer) and not _has_forward_hooks(norm)):
            pairs.append(FoldedPair(layer, norm))
    if not pairs:
        return None
    folded = FoldedNetwork(pairs)
    with torch.inference_mode():
        plain = outputs(net).float()
        for pair in pairs:
            pair.install()
        fused = outputs(net).float()
    if not torch.allclose(fused, plain, rtol=AGREEMENT, atol=AGREEMENT * float(plain.abs().max())):
        folded.uninstall()
        return None
    return folded


def _normalizes_by_running_statistics(module) -> bool:
    """True for a BatchNorm in eval mode that uses its running mean and variance."""
    return (isinstance(module, _BatchNorm) and not module.training and module.track_running_stats
            and module.running_mean is not None and module.running_var is not None)


def _global_forward_hooks() -> bool:
    """True when a forward hook or pre-hook is registered for every module (it would see the pair's
    layer give the BatchNorm's output)."""
    from torch.nn.modules import module as registry

    return bool(registry._global_forward_hooks or registry._global_forward_pre_hooks)


def _has_forward_hooks(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _channels(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
