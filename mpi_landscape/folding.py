"""Eval-mode BatchNorm folded into the convolution or linear layer before it, for the evaluator.

In eval mode a BatchNorm is an affine map per channel, y = (x − μ)·s + β with
s = γ/√(σ² + ε). A convolution or linear layer whose output only that BatchNorm
reads is therefore one layer with weights W·s and bias (b − μ)·s + β: the
forward pass then skips a full read and write of the activations per
BatchNorm (a fifth of a small network's forward pass on a CPU, see
bench/README.md, "Folded BatchNorm"). Only the evaluator's forward pass is
folded: the model, its parameters and every other use of it stay as they are.

A point moves the weights in place, so ``FoldedNetwork.refresh()`` recomputes
the folded weights from the live tensors (perturbed weights, and perturbed
running statistics with ``--dir_type states``) after every move: a few vector
operations per pair. The pairs are found by tracing the model with torch.fx; a
model that does not trace, has no such pair or carries forward hooks is
evaluated as it is (``fold_batchnorm`` returns None). Tracing runs the model's
``forward`` once on placeholder values (fx's symbolic tracing).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.fx
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

FOLDABLE_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
AGREEMENT = 1e-3  # relative gap the folded outputs may have on the sample batch (rounding is ~1e-6)


class FoldedLayer(nn.Module):
    """A convolution or linear layer and the eval-mode BatchNorm after it, run as one layer.

    The layer and the BatchNorm are held, not owned: their tensors stay the
    model's (views of the evaluator's flat buffer). ``weight`` and ``bias``
    are this module's own working tensors, rewritten by ``refresh``.
    """

    def __init__(self, layer: nn.Module, norm: _BatchNorm):
        super().__init__()
        self._pair = (layer, norm)  # a tuple, so that they are not registered as submodules twice
        self.weight = torch.empty_like(layer.weight)  # keeps the layer's memory format (channels_last)
        self.bias = torch.empty_like(norm.running_mean)
        self.refresh()

    @torch.no_grad()
    def refresh(self) -> None:
        """Folded weights from the layer's and the BatchNorm's current tensors."""
        layer, norm = self._pair
        scale = torch.rsqrt(norm.running_var + norm.eps)
        if norm.weight is not None:
            scale.mul_(norm.weight)
        torch.mul(layer.weight, scale.view(-1, *[1] * (layer.weight.dim() - 1)), out=self.weight)
        if layer.bias is not None:
            torch.sub(layer.bias, norm.running_mean, out=self.bias)
        else:
            torch.neg(norm.running_mean, out=self.bias)
        self.bias.mul_(scale)
        if norm.bias is not None:
            self.bias.add_(norm.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer = self._pair[0]
        if isinstance(layer, nn.Linear):
            return nn.functional.linear(x, self.weight, self.bias)
        return layer._conv_forward(x, self.weight, self.bias)


class FoldedNetwork:
    """The traced model with its foldable pairs fused (``module``), and how to refresh them."""

    def __init__(self, module: torch.fx.GraphModule, layers: list[FoldedLayer]):
        self.module = module
        self.layers = layers

    def refresh(self) -> None:
        """Recompute every folded layer's weights (after the model's tensors moved)."""
        for layer in self.layers:
            layer.refresh()


def fold_batchnorm(net: nn.Module, outputs: Callable[[Callable], torch.Tensor]) -> FoldedNetwork | None:
    """``net`` (in eval mode) with every foldable layer→BatchNorm pair fused, or None when none is.

    A pair is a Conv1d/2d/3d or Linear whose output feeds only a BatchNorm that
    normalizes with running statistics over the layer's output channels.
    ``outputs(forward)`` runs a forward function on a sample batch: the folded
    network is used only when its outputs equal the model's own to float32
    rounding (a BatchNorm1d after a Linear on sequences normalizes another
    axis than the layer's features, say). A model with forward hooks is left
    as it is: a traced graph would not call them.
    """
    if not any(isinstance(m, _BatchNorm) for m in net.modules()) or _has_forward_hooks(net):
        return None
    try:
        traced = torch.fx.symbolic_trace(net)
    except Exception:  # data-dependent control flow, a model fx cannot follow: evaluate it unfolded
        return None
    modules = dict(traced.named_modules())
    layers = []
    for node in list(traced.graph.nodes):
        norm = modules.get(node.target) if node.op == "call_module" else None
        if not _normalizes_by_running_statistics(norm) or not node.args:
            continue
        source = node.args[0]
        layer = modules.get(source.target) if isinstance(source, torch.fx.Node) and source.op == "call_module" else None
        if not isinstance(layer, FOLDABLE_LAYERS) or len(source.users) != 1 or len(node.args) != 1 or node.kwargs:
            continue
        if _channels(layer) != norm.num_features:
            continue
        folded = FoldedLayer(layer, norm)
        name = f"folded_batchnorm_{len(layers)}"
        traced.add_submodule(name, folded)
        with traced.graph.inserting_after(source):
            fused = traced.graph.call_module(name, source.args, source.kwargs)
        node.replace_all_uses_with(fused)
        traced.graph.erase_node(node)
        traced.graph.erase_node(source)
        layers.append(folded)
    if not layers:
        return None
    traced.graph.lint()
    traced.recompile()
    with torch.inference_mode():
        plain, folded = outputs(net).float(), outputs(traced).float()
    if not torch.allclose(folded, plain, rtol=AGREEMENT, atol=AGREEMENT * float(plain.abs().max())):
        return None
    return FoldedNetwork(traced, layers)


def _normalizes_by_running_statistics(module) -> bool:
    """True for a BatchNorm in eval mode that uses its running mean and variance."""
    return (isinstance(module, _BatchNorm) and not module.training and module.track_running_stats
            and module.running_mean is not None and module.running_var is not None)


def _has_forward_hooks(net: nn.Module) -> bool:
    """True when a forward hook or pre-hook is registered on any module of ``net``, or globally."""
    from torch.nn.modules import module as registry

    if registry._global_forward_hooks or registry._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in net.modules())


def _channels(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
