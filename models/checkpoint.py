"""Reading and writing model checkpoints, in the reference's ``.t7`` layout.

A checkpoint is a ``torch.save`` of ``{'state_dict': ..., **metadata}`` (what
the reference trainer writes: ``acc``, ``epoch``, ...). Also read: a bare
state_dict, the ``model_state_dict`` key of PyTorch's tutorial layout, keys
prefixed by ``nn.DataParallel`` (``module.``) or ``torch.compile``
(``_orig_mod.``), and files from PyTorch versions without BatchNorm's
``num_batches_tracked``. Files are always read with ``weights_only=True``, so a
checkpoint cannot run code; anything written by :func:`save_checkpoint` reads
back that way.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from .errors import ModelError
from .registry import names_fitting

_STATE_KEYS = ("state_dict", "model_state_dict")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_OPTIONAL_SUFFIX = "num_batches_tracked"
_SHOWN = 5
_SAFE_LEAVES = (type(None), bool, int, float, complex, str, bytes, torch.Size, torch.dtype, torch.device)


def load_checkpoint(model: nn.Module, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load the weights in ``path`` into ``model`` and return the checkpoint's other entries.

    The weights must fit the model exactly (same keys and shapes; only
    ``num_batches_tracked`` may be missing, as in old files); otherwise a
    ModelError names the missing, unexpected and mis-shaped keys. Top-level
    0-d tensors in the metadata (e.g. ``acc``) are returned as Python numbers.
    """
    payload = _read(path)
    state, meta = _split(payload, path)
    expected = model.state_dict()
    state = _without_wrapper_prefixes(state, expected)
    _check_fits(model, expected, state, path)
    for key, value in expected.items():
        if key.endswith(_OPTIONAL_SUFFIX) and key not in state:
            state[key] = value
    model.load_state_dict(state)
    return {k: v.item() if isinstance(v, torch.Tensor) and v.dim() == 0 else v for k, v in meta.items()}


def read_state_dict(path: str | os.PathLike[str]) -> OrderedDict[str, torch.Tensor]:
    """The weights a checkpoint holds, without a model to load them into (as saved: any
    ``module.``/``_orig_mod.`` prefixes kept)."""
    state, _ = _split(_read(path), path)
    return state


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, **meta: Any) -> None:
    """Write ``{'state_dict': model.state_dict(), **meta}`` to ``path`` atomically.

    The file appears complete or not at all (a temporary file in the same
    directory is renamed over ``path``), so a job killed while saving never
    leaves a truncated checkpoint. ``meta`` may hold tensors, numbers,
    strings, None and dicts/lists/tuples of those (an optimizer's
    ``state_dict()`` qualifies); anything else is refused here rather than
    when the file is read back.
    """
    if any(key in meta for key in _STATE_KEYS):
        raise ModelError(
            f"save_checkpoint: metadata may not be named {' or '.join(_STATE_KEYS)}; that entry holds the model's weights"
        )
    for key, value in meta.items():
        _check_safe(value, f"meta[{key!r}]")
    save_atomic({"state_dict": model.state_dict(), **meta}, path)


def save_atomic(payload: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` that leaves the complete file at ``path`` or nothing (temp file + rename)."""
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(directory, f".{os.path.basename(target)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "xb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def checkpoint_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of the file's bytes, to record which checkpoint a result came from."""
    _require_file(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _require_file(path: str | os.PathLike[str]) -> None:
    """Refuse a path that is not an existing file, naming it."""
    if not os.path.exists(path):
        raise ModelError(f"checkpoint file not found: {os.fspath(path)} (check --model_file and the working directory)")
    if not os.path.isfile(path):
        raise ModelError(f"checkpoint path is not a file: {os.fspath(path)}")


def _read(path: str | os.PathLike[str]) -> Any:
    """``torch.load`` with weights only, with every failure turned into a ModelError."""
    _require_file(path)
    try:
        with warnings.catch_warnings():
            # a file pickled without torch.save: the error below says what it holds, in one line
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        message = str(exc)
        if "Weights only load failed" in message:
            found = re.search(r"GLOBAL (\S+)", message)
            what = f"a {found.group(1)} object" if found else "Python objects other than tensors and plain containers"
            raise ModelError(
                f"checkpoint {os.fspath(path)} holds {what}, which is not loaded because unpickling it could run code. "
                f"If you trust the file, re-save its weights and plain metadata only, e.g. "
                f"torch.save({{'state_dict': torch.load(path, weights_only=False)['state_dict']}}, new_path)"
            ) from exc
        first_line = message.strip().splitlines()[0] if message.strip() else "no details"
        raise ModelError(
            f"checkpoint {os.fspath(path)} cannot be read as a PyTorch checkpoint "
            f"({type(exc).__name__}: {first_line}); is it complete and written by torch.save?"
        ) from exc


def _split(payload: Any, path: str | os.PathLike[str]) -> tuple[OrderedDict[str, torch.Tensor], dict[str, Any]]:
    """Separate the weights from the metadata, whichever supported layout the file has."""
    if not isinstance(payload, Mapping):
        raise ModelError(f"checkpoint {os.fspath(path)} holds a {type(payload).__name__}, not a dict of weights")
    for key in _STATE_KEYS:
        if isinstance(payload.get(key), Mapping):
            state, meta = payload[key], {k: v for k, v in payload.items() if k != key}
            break
    else:
        state, meta = payload, {}
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not state or not_tensors:
        raise ModelError(
            f"checkpoint {os.fspath(path)} has no weights: it has no 'state_dict' entry and is not a state_dict "
            f"(top-level keys: {_some(list(payload))}). Save it as {{'state_dict': model.state_dict(), ...}}"
        )
    weights = OrderedDict(state)
    versions = getattr(state, "_metadata", None)
    if versions is not None:
        weights._metadata = versions.copy()  # per-module format versions that load_state_dict relies on
    return weights, meta


def _without_wrapper_prefixes(
    state: OrderedDict[str, torch.Tensor], expected: Mapping[str, torch.Tensor]
) -> OrderedDict[str, torch.Tensor]:
    """Drop ``module.``/``_orig_mod.`` key prefixes added by wrappers the model itself lacks."""
    for prefix in _WRAPPER_PREFIXES:
        if not any(key.startswith(prefix) for key in expected):
            consume_prefix_in_state_dict_if_present(state, prefix)
    return state


def _check_fits(
    model: nn.Module,
    expected: Mapping[str, torch.Tensor],
    state: Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
) -> None:
    """Raise a ModelError that lists every way ``state`` does not fit ``model`` (whose state is ``expected``)."""
    missing = [k for k in expected if k not in state and not k.endswith(_OPTIONAL_SUFFIX)]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} (checkpoint {tuple(state[k].shape)}, model {tuple(expected[k].shape)})"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if not (missing or unexpected or mismatched):
        return
    problems = []
    if missing:
        problems.append(f"{len(missing)} model keys missing from the checkpoint: {_some(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} checkpoint keys not in the model: {_some(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shapes differ: {_some(mismatched)}")
    fitting = names_fitting({k: v.shape for k, v in state.items()})
    spec = str(getattr(model, "model_spec", "")).lower()
    if spec in fitting:
        advice = f"The checkpoint fits '{spec}' built with its default number of classes: build it with that many."
    elif fitting:
        advice = f"The checkpoint fits the registered model {' and '.join(fitting)}: pass that as --model."
    else:
        advice = "Build the architecture the checkpoint was trained with, with the same number of classes."
    raise ModelError(f"checkpoint {os.fspath(path)} does not fit {_describe(model)}: {'; '.join(problems)}. {advice}")


def _describe(model: nn.Module) -> str:
    """The model as the user asked for it, e.g. "model 'resnet56' (ResNet, 855,770 parameters)"."""
    count = sum(p.numel() for p in model.parameters())
    spec = getattr(model, "model_spec", None)
    name = f"model '{spec}'" if spec else "the model"
    return f"{name} ({type(model).__name__}, {count:,} parameters)"


def _some(items: list[str]) -> str:
    """The first few items, and how many more there are."""
    shown = ", ".join(items[:_SHOWN])
    return shown if len(items) <= _SHOWN else f"{shown}, ... ({len(items) - _SHOWN} more)"


def _check_safe(value: Any, where: str) -> None:
    """Refuse metadata that ``torch.load(weights_only=True)`` would not read back."""
    if type(value) in _SAFE_LEAVES or isinstance(value, torch.Tensor):
        return
    if type(value) in (dict, OrderedDict):
        for key, item in value.items():
            _check_safe(key, f"a key of {where}")
            _check_safe(item, f"{where}[{key!r}]")
        return
    if type(value) in (list, tuple, set):
        for index, item in enumerate(value):
            _check_safe(item, f"{where}[{index}]")
        return
    raise ModelError(
        f"save_checkpoint: {where} is a {type(value).__module__}.{type(value).__qualname__}, which a safe load "
        f"(weights_only=True) refuses; store it as numbers, strings, tensors, lists or dicts"
    )
