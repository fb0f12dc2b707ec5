"""Directions in weight space: random, target (model to model), normalized, saved and loaded.

A direction is a list of tensors, one per tensor of the model: one per
``net.parameters()`` entry for ``dir_type="weights"``, one per ``state_dict()``
entry for ``dir_type="states"`` (BatchNorm running statistics included). This
is the reference's convention and its file layout, so direction files move
between the two tools.

Normalization follows the paper (section 4): with ``filter`` every slice
``d_i`` along dim 0 of a direction tensor is rescaled to the norm of the same
slice of θ*, which removes the scale invariance of ReLU networks from the
picture. Tensors with ``dim <= 1`` (biases, BatchNorm affine and statistics)
are not normalized: with ``ignore="biasbn"`` their direction is zero, without
it a copy of θ* (as the reference does).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import torch

from .errors import LandscapeError

DIR_TYPES = ("weights", "states")
NORMS = ("filter", "layer", "weight", "dfilter", "dlayer", "none")
IGNORES = ("biasbn", "none")
EPS = 1e-10  # the reference's guard against a zero-norm slice

Direction = list[torch.Tensor]


def model_tensors(net: torch.nn.Module, dir_type: str) -> tuple[list[str], list[torch.Tensor]]:
    """Names and tensors a direction of ``dir_type`` has one entry for, in file order."""
    if dir_type == "weights":
        named = list(net.named_parameters())
    elif dir_type == "states":
        named = list(net.state_dict().items())
    else:
        raise LandscapeError(f"--dir_type {dir_type!r}: choose one of {', '.join(DIR_TYPES)}")
    return [n for n, _ in named], [t.detach() for _, t in named]


def is_covered(t: torch.Tensor, ignore: str) -> bool:
    """Whether a direction moves tensor ``t``: with ``ignore="biasbn"`` only tensors with dim > 1."""
    return not (ignore == "biasbn" and t.dim() <= 1)


def random_direction(reference: list[torch.Tensor], generator: torch.Generator) -> Direction:
    """One standard Gaussian float32 tensor per reference tensor, drawn on the CPU."""
    return [torch.randn(t.shape, generator=generator, dtype=torch.float32) for t in reference]


def normalize_direction(direction: Direction, reference: list[torch.Tensor],
                        norm: str = "filter", ignore: str = "biasbn") -> Direction:
    """Normalize ``direction`` against θ* in place (see the module docstring) and return it."""
    if norm not in NORMS:
        raise LandscapeError(f"normalization {norm!r}: choose one of {', '.join(NORMS)}")
    if ignore not in IGNORES:
        raise LandscapeError(f"ignore {ignore!r}: choose biasbn or leave it out")
    for d, w in zip(direction, reference):
        w = w.detach().to(device=d.device, dtype=torch.float32)
        if d.dim() <= 1:
            if ignore == "biasbn":
                d.zero_()
            else:
                d.copy_(w)
            continue
        if norm == "filter":
            d.mul_(_view_per_filter(_filter_norms(w) / (_filter_norms(d) + EPS), d))
        elif norm == "layer":
            d.mul_(w.norm() / d.norm())
        elif norm == "weight":
            d.mul_(w)
        elif norm == "dfilter":
            d.div_(_view_per_filter(_filter_norms(d) + EPS, d))
        elif norm == "dlayer":
            d.div_(d.norm())
    return direction


def _filter_norms(t: torch.Tensor) -> torch.Tensor:
    """Frobenius norm of each slice along dim 0."""
    return t.reshape(t.shape[0], -1).norm(dim=1)


def _view_per_filter(scale: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return scale.reshape((-1,) + (1,) * (like.dim() - 1))


def target_direction(theta1: list[torch.Tensor], theta2: list[torch.Tensor]) -> Direction:
    """θ2 − θ1 as float32: the direction from one model to another (interpolation)."""
    return [(b.detach().double() - a.detach().double()).float() for a, b in zip(theta1, theta2)]


@dataclass(frozen=True)
class DirectionSpec:
    """How to build the directions of one surface (the ``--dir_type/--xnorm/...`` flags)."""

    dir_type: str = "weights"
    xnorm: str = "filter"
    ynorm: str = "filter"
    xignore: str = "biasbn"
    yignore: str = "biasbn"
    same_dir: bool = False
    seed: int = 123
    two_d: bool = True


def create_directions(net: torch.nn.Module, spec: DirectionSpec,
                      net2: torch.nn.Module | None = None,
                      net3: torch.nn.Module | None = None) -> tuple[Direction, Direction | None]:
    """The x (and y) directions of a surface, from θ* = ``net``.

    ``net2``/``net3`` turn x/y into target directions θ2 − θ1 and θ3 − θ1
    (not normalized, as in the paper's interpolation); otherwise directions are
    seeded Gaussian and normalized per ``spec``.
    """
    _, theta = model_tensors(net, spec.dir_type)
    generator = torch.Generator().manual_seed(spec.seed)

    def one(target: torch.nn.Module | None, norm: str, ignore: str) -> Direction:
        if target is not None:
            return target_direction(theta, model_tensors(target, spec.dir_type)[1])
        return normalize_direction(random_direction(theta, generator), theta, norm, ignore)

    x = one(net2, spec.xnorm, spec.xignore)
    if not spec.two_d:
        return x, None
    if spec.same_dir and net3 is None:
        return x, [t.clone() for t in x]
    return x, one(net3, spec.ynorm, spec.yignore)


def fingerprint(x: Direction, y: Direction | None) -> str:
    """sha256 of the direction tensors: a surface file records it to know its directions."""
    digest = hashlib.sha256()
    for t in [*x, *(y or [])]:
        digest.update(str(tuple(t.shape)).encode())
        digest.update(t.detach().cpu().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_directions(path: str, net: torch.nn.Module, spec: DirectionSpec,
                    x: Direction, y: Direction | None, provenance: dict | None = None,
                    extras: dict | None = None) -> None:
    """Write directions in the reference's layout, with what they were made from as attributes.

    ``extras`` are further root datasets (PCA's ``explained_variance_ratio_``, ...).
    """
    names, theta = model_tensors(net, spec.dir_type)
    attrs = {
        "dir_type": spec.dir_type, "xnorm": spec.xnorm, "ynorm": spec.ynorm,
        "xignore": spec.xignore, "yignore": spec.yignore, "same_dir": spec.same_dir,
        "seed": spec.seed, "tensor_names": names,
        "tensor_shapes": [list(t.shape) for t in theta], **(provenance or {}),
    }
    from . import store  # h5py only where files are touched: the numerical core runs without it

    to_numpy = lambda d: [t.detach().cpu().numpy() for t in d]  # noqa: E731
    store.write_directions(path, to_numpy(x), to_numpy(y) if y is not None else None, attrs,
                           extras)


def load_directions(path: str, net: torch.nn.Module, dir_type: str,
                    two_d: bool) -> tuple[Direction, Direction | None]:
    """Read a direction file and check that it fits ``net`` tensor by tensor."""
    from . import store

    data = store.read_directions(path)
    saved_type = data.attrs.get("dir_type")
    if saved_type is not None and saved_type != dir_type:
        raise LandscapeError(
            f"{path} holds '{saved_type}' directions but --dir_type is '{dir_type}'; "
            f"pass --dir_type {saved_type} or another --dir_file"
        )
    names, theta = model_tensors(net, dir_type)
    for axis, tensors in (("x", data.x), ("y", data.y)):
        if tensors is not None:
            _check_fits(path, axis, tensors, names, theta)
    if two_d and data.y is None:
        raise LandscapeError(f"{path} has no ydirection, but a 2D surface (--y) was requested")
    to_torch = lambda d: [torch.from_numpy(np.array(t, dtype=np.float32)) for t in d]  # noqa: E731
    return to_torch(data.x), to_torch(data.y) if (two_d and data.y is not None) else None


SPEC_FLAGS = ("seed", "xnorm", "ynorm", "xignore", "yignore", "same_dir")  # recorded under their names
TARGET_FLAGS = ("model_file2", "model_file3")  # recorded as the path given and as <flag>_sha256


def open_directions(path: str, net: torch.nn.Module, spec: DirectionSpec, given: Mapping[str, object],
                    make: Callable[[], tuple[Direction, Direction | None]],
                    provenance: Mapping[str, object]) -> tuple[Direction, Direction | None]:
    """The directions of the file ``path``: read, or made by ``make`` and written if it does not exist.

    Jobs started together may name the same new file: it is created under its
    own lock by one of them and appears whole (written beside it, then renamed;
    through a symlink, its target), while the others wait, then read it. An
    existing file is refused when a flag of ``given`` (the direction flags the
    user set: ``SPEC_FLAGS`` with their values, ``TARGET_FLAGS`` with paths)
    contradicts what the file records.
    """
    from . import store

    if not os.path.exists(path):
        lock = store.SurfaceLock.acquire(path, wait=True)
        try:
            if not os.path.exists(path):  # nobody made it while this job waited
                x, y = make()
                shas = {f"{flag}_sha256": _sha256(given[flag]) for flag in TARGET_FLAGS if flag in given}
                lock.check()
                save_directions(lock.target, net, spec, x, y, {**provenance, **shas})
                return x, y
        finally:
            lock.release()
    check_direction_flags(path, given)
    return load_directions(path, net, spec.dir_type, spec.two_d)


def check_direction_flags(path: str, given: Mapping[str, object]) -> None:
    """Refuse, in one line, direction flags the user set that contradict the direction file ``path``.

    A flag the file does not record (a file of the reference carries no
    attributes) cannot contradict it; a target model contradicts a file whose
    direction on that axis is random, or which records another checkpoint.
    """
    from . import store

    recorded = store.read_directions(path, tensors=False).attrs
    made, asked = [], []
    for flag, value in given.items():
        if flag in TARGET_FLAGS:
            sha = recorded.get(f"{flag}_sha256")
            if recorded.get(flag) == "" or (sha is not None and sha != _sha256(value)):
                made.append(f"--{flag} {recorded.get(flag) or '(none: a random direction)'}")
                asked.append(_flag_text(flag, value))
        elif flag in recorded and recorded[flag] != value:
            made.append(_flag_text(flag, recorded[flag]))
            asked.append(_flag_text(flag, value))
    if made:
        raise LandscapeError(f"--dir_file {path} was made with {' '.join(made)}, but this request gives "
                             f"{' '.join(asked)}: leave those flags out to use its directions, or pass "
                             f"another --dir_file (nothing was changed)")


def _flag_text(flag: str, value: object) -> str:
    """A flag as a command line gives it (a switch: present or not)."""
    if isinstance(value, bool):
        return f"--{flag}" if value else f"no --{flag}"
    return f"--{flag} {value}"


def _sha256(model_file) -> str:
    from .networks import checkpoint_sha256

    return checkpoint_sha256(str(model_file))


DESCRIPTIVE_ATTRS = ("dir_type", "xnorm", "ynorm", "xignore", "yignore", "same_dir", "seed",
                     "x_eigenvalue", "y_eigenvalue")


def describe_directions(path: str) -> dict:
    """How a direction file's directions were made, for a surface file's provenance and titles.

    Files of the reference carry no attributes; PCA files add their explained variance ratios.
    """
    from . import store

    data = store.read_directions(path, tensors=False)
    summary = {k: data.attrs[k] for k in DESCRIPTIVE_ATTRS if k in data.attrs}
    if "explained_variance_ratio_" in data.extras:
        summary["explained_variance_ratio"] = [float(v) for v in data.extras["explained_variance_ratio_"]]
    return summary


def _check_fits(path: str, axis: str, tensors: list[np.ndarray], names: list[str],
                theta: list[torch.Tensor]) -> None:
    if len(tensors) != len(theta):
        raise LandscapeError(
            f"{path}: the {axis} direction has {len(tensors)} tensors but the model has "
            f"{len(theta)}; it was made for another model or --dir_type"
        )
    for i, (t, w, name) in enumerate(zip(tensors, theta, names)):
        if tuple(t.shape) != tuple(w.shape):
            raise LandscapeError(
                f"{path}: {axis}direction/{i} has shape {tuple(t.shape)} but the model's "
                f"{name} has {tuple(w.shape)}; the direction file was made for another model"
            )


def eigenvector_direction(net: torch.nn.Module, vector: torch.Tensor, ignore: str = "biasbn") -> Direction:
    """A flat Hessian eigenvector over the covered parameters as a ``weights`` direction.

    ``vector`` concatenates the covered parameters (``is_covered``) in
    ``net.parameters()`` order, each flattened in its shape; the tensors it
    does not cover get a zero direction, so the surface stays in the space the
    Hessian was taken in. The direction is unit length: a step of 1 is a step
    of 1 in weight space.
    """
    _, theta = model_tensors(net, "weights")
    vector = vector.detach().cpu().float()
    direction, offset = [], 0
    for t in theta:
        if is_covered(t, ignore):
            direction.append(vector[offset:offset + t.numel()].reshape(t.shape).clone())
            offset += t.numel()
        else:
            direction.append(torch.zeros(t.shape, dtype=torch.float32))
    if offset != vector.numel():
        raise ValueError(f"the vector has {vector.numel()} entries, the covered parameters {offset}")
    return direction


def default_dir_file(model_file: str, spec: DirectionSpec, model_file2: str | None = None,
                     model_file3: str | None = None) -> str:
    """The reference's direction file name, derived from the checkpoint and the flags."""
    def joined(a: str, b: str) -> str:
        # The reference appended b's whole path when the folders differ, which names a
        # folder that does not exist; flattening b's path keeps the name unique and valid.
        same_folder = os.path.dirname(a) == os.path.dirname(b)
        return a + "_" + (os.path.basename(b) if same_folder else b.strip("/").replace("/", "_"))

    name = joined(model_file, model_file2) if model_file2 else model_file
    name += f"_{spec.dir_type}"
    name += _flag_suffix("xignore", spec.xignore) + _flag_suffix("xnorm", spec.xnorm)
    if spec.two_d:
        if model_file3:
            name = joined(name, model_file3)
        else:
            name += _flag_suffix("yignore", spec.yignore) + _flag_suffix("ynorm", spec.ynorm)
            name += "_same_dir" if spec.same_dir else ""
    return name + ".h5"


def _flag_suffix(flag: str, value: str) -> str:
    return f"_{flag}={value}" if value and value != "none" else ""
