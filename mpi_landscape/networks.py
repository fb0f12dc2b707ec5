"""The models package as the engine's commands use it: a mistake in it is a LandscapeError.

``models`` knows nothing of this package (it raises its own ``ModelError``);
every command that builds a network, loads a checkpoint or runs a user's own
``package.module:factory`` (a dataset, a task) goes through here, so the user
sees one kind of error with one kind of message.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
import torch

import mpi_landscape_models as models

from .errors import LandscapeError


@contextmanager
def _as_user_error() -> Iterator[None]:
    try:
        yield
    except models.ModelError as exc:
        raise LandscapeError(str(exc)) from exc.__cause__


def import_factory(spec: str, flag: str) -> Callable:
    """The callable that ``spec`` (``package.module:factory``) names for ``flag`` (``--task``, ``--dataset``).

    A module that is not found, does not compile or raises while it is
    imported is one LandscapeError naming the spec, the exception and the
    user's file and line, as for ``--model``.
    """
    with _as_user_error():
        return models.import_factory(spec, f"{flag} {spec}")


@contextmanager
def user_code(what: str, doing: str = "the factory failed") -> Iterator[None]:
    """Inside, an exception raised by the user's own code is one LandscapeError
    ``"{what}: {doing}: Type: message (at file:line)"``; one raised by ours keeps its traceback."""
    with _as_user_error(), models.user_code(what, doing):
        yield


def build_network(spec: str) -> torch.nn.Module:
    """A registered architecture by name, or a user's ``package.module:factory``."""
    with _as_user_error():
        return models.build_model(spec)


def load_weights(net: torch.nn.Module, path: str) -> dict:
    """Load the checkpoint at ``path`` into ``net``; returns the checkpoint's metadata."""
    with _as_user_error():
        return models.load_checkpoint(net, path)


def load_network(spec: str, path: str) -> torch.nn.Module:
    """``spec`` built and filled from ``path``, in float32."""
    net = build_network(spec)
    load_weights(net, path)
    return net.float()


def checkpoint_weights(path: str) -> dict[str, np.ndarray]:
    """The weight tensors of a checkpoint (dim > 1: convolution and linear weights, the tensors
    filter normalization rescales) as float64 arrays, by name; biases and BatchNorm left out."""
    with _as_user_error():
        state = models.read_state_dict(path)
    weights = {name: t.detach().double().numpy() for name, t in state.items()
               if t.dim() > 1 and t.is_floating_point()}
    if not weights:
        raise LandscapeError(f"checkpoint {path} has no weight tensors of dimension 2 or more")
    return weights


def checkpoint_sha256(path: str) -> str:
    """The sha256 of the checkpoint file at ``path``: which file a surface was computed from."""
    with _as_user_error():
        return models.checkpoint_sha256(path)
