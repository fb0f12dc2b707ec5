"""Model names -> factories, and building a model from a name or ``module:factory`` spec.

The names are the reference's ``--model`` names, so existing command lines keep
working. A spec with a colon, ``package.module:factory``, builds a user's own
network: the module is imported (the current directory is importable) and the
factory is called with no arguments, or with ``num_classes=`` when a class
count is requested.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Mapping
from functools import partial

import torch
from torch import nn

from .densenet import densenet121
from .errors import ModelError
from .mlp import demo_mlp
from .resnet import IMAGENET_STYLE_DEPTHS, cifar_resnet, imagenet_style_resnet
from .user_code import import_factory, user_code
from .vgg import vgg9

Factory = Callable[..., nn.Module]


def _factories() -> dict[str, Factory]:
    """Every registered name with its factory; each factory takes ``num_classes``."""
    table: dict[str, Factory] = {"vgg9": vgg9, "densenet121": densenet121, "demo_mlp": demo_mlp}
    for depth in (20, 32, 44, 56, 110):
        table[f"resnet{depth}"] = partial(cifar_resnet, depth)
        table[f"resnet{depth}_noshort"] = partial(cifar_resnet, depth, skip=False)
    table["resnet50_16_noshort"] = partial(cifar_resnet, 50, skip=False)
    for width in (2, 4, 8):
        table[f"wrn56_{width}"] = partial(cifar_resnet, 56, width)
        table[f"wrn56_{width}_noshort"] = partial(cifar_resnet, 56, width, skip=False)
    for width in (2, 4):
        table[f"wrn110_{width}_noshort"] = partial(cifar_resnet, 110, width, skip=False)
    for depth in IMAGENET_STYLE_DEPTHS:
        table[f"resnet{depth}"] = partial(imagenet_style_resnet, depth)
        table[f"resnet{depth}_noshort"] = partial(imagenet_style_resnet, depth, skip=False)
    return table


FACTORIES: dict[str, Factory] = _factories()
MODEL_NAMES: tuple[str, ...] = tuple(sorted(FACTORIES))


def build_model(spec: str, num_classes: int | None = None) -> nn.Module:
    """Build the network named by ``spec``, with freshly initialised weights.

    ``spec`` is a registered name (see ``MODEL_NAMES``; case does not matter)
    or ``package.module:factory``. ``num_classes=None`` keeps the factory's
    default (10, or 3 for ``demo_mlp``). The spec is recorded on the model as
    ``model.model_spec`` so that later errors can name it.
    """
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise ModelError(f"num_classes must be a positive integer, got {num_classes!r}")
    if not isinstance(spec, str) or not spec.strip():
        raise ModelError(
            f"no model given (got {spec!r}); name one of {', '.join(MODEL_NAMES)} or give package.module:factory"
        )
    spec = spec.strip()
    factory = import_factory(spec, f"model spec '{spec}'") if ":" in spec else _registered_factory(spec)
    model = _call_factory(factory, spec, num_classes)
    model.model_spec = spec
    return model


def names_fitting(shapes: Mapping[str, torch.Size]) -> list[str]:
    """Registered models (default class count) whose state_dict has exactly these keys and shapes.

    BatchNorm's ``num_batches_tracked`` is ignored, as old checkpoints lack it.
    The models are built on the meta device, so this allocates no weights.
    """
    wanted = {k: tuple(v) for k, v in shapes.items() if not k.endswith("num_batches_tracked")}
    return [name for name in MODEL_NAMES if _state_shapes(name) == wanted]


@functools.cache
def _state_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Shapes of a registered model's state_dict (default class count), without its BN counters."""
    with torch.device("meta"):
        state = FACTORIES[name]().state_dict()
    return {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}


def _registered_factory(name: str) -> Factory:
    """The factory registered under ``name``, or a ModelError that suggests names."""
    factory = FACTORIES.get(name.lower())
    if factory is not None:
        return factory
    close = difflib.get_close_matches(name.lower(), MODEL_NAMES, n=5, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else f"registered models: {', '.join(MODEL_NAMES)}."
    raise ModelError(f"unknown model '{name}'; {hint} For your own network give package.module:factory.")


def _call_factory(factory: Factory, spec: str, num_classes: int | None) -> nn.Module:
    """Call the factory (with ``num_classes`` when given) and check it returned a Module."""
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as exc:
        wanted = "num_classes=..." if kwargs else "no arguments"
        raise ModelError(
            f"model factory '{spec}' cannot be called with {wanted} ({exc}); change its signature"
        ) from exc
    except ValueError:
        pass  # no introspectable signature (e.g. a builtin); the call below decides
    with user_code(f"model spec '{spec}'", "the factory failed"):
        model = factory(**kwargs)
    if not isinstance(model, nn.Module):
        raise ModelError(f"model factory '{spec}' returned a {type(model).__name__}, not a torch.nn.Module")
    return model
