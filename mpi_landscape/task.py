"""What a batch means: the loss and the metrics a surface shows, for any network.

A ``Task`` turns the model's outputs on one batch into per-sample sums: the
sample's summed loss, optionally how many units (tokens, elements) it holds,
and one numerator per named metric. The evaluator adds those sums up per
split over the whole split and calls ``finish`` once per split, so every
metric is an exact mean over the split whatever the batch size or the number
of ranks. Built in:

- ``classification`` (the default, the paper's problem): outputs (B, C),
  integer labels (B); mean cross-entropy (or MSE of softmax against one-hot),
  top-1 accuracy in percent, and ``nonfinite``, the share of samples whose
  outputs are not all finite (such a sample never counts as correct);
- ``language_model``: logits (B, T, V) (a tensor or an object with
  ``.logits``), next-token cross-entropy over every non-ignored token of the
  split (labels shifted by one; ``-100`` labels and ``attention_mask == 0``
  positions ignored), token accuracy in percent, ``perplexity`` and the share
  of non-ignored tokens with non-finite logits;
- ``regression``: mean squared error on real-valued targets of any shape,
  ``mae`` and ``nonfinite``.

A user's task is ``package.module:factory`` returning a ``Task``; its metric
names go into the surface file, the plots and the VTK export unchanged.
``split_mean_loss`` gives the same loss as a differentiable scalar (for
curvature).
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Iterable, Mapping

import torch
import torch.nn.functional as F

from .errors import LandscapeError, check_choice
from .networks import import_factory, user_code

LOSS_NAMES = ("crossentropy", "mse")
MAX_EXP_ARGUMENT = 709.0  # math.exp overflows a float beyond it
# below this many classes PyTorch's CPU log-softmax along a row runs scalar code (bench/README.md, "Small class counts")
CPU_ROW_KERNEL_MIN_CLASSES = 16
CLASS_FIRST_PADDING = 64  # samples: a multiple of every CPU vector width, so none falls in a partial vector
IGNORE_INDEX = -100  # the label of a token that is not scored (PyTorch's and Hugging Face's convention)
METRIC_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.+-]*")  # becomes part of HDF5 dataset and VTK array names
RESERVED_SUMS = ("loss", "count")

Inputs = Any  # a tensor, a dict of tensors (input_ids, attention_mask, ...) or a tuple of tensors


def map_tensors(fn: Callable[[torch.Tensor], torch.Tensor], inputs: Inputs) -> Inputs:
    """``fn`` applied to every tensor of a batch's inputs, keeping their structure."""
    if isinstance(inputs, torch.Tensor):
        return fn(inputs)
    if isinstance(inputs, Mapping):
        return {k: fn(v) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(fn(v) for v in inputs)
    raise LandscapeError(f"batch inputs must be a tensor, a dict or a tuple of tensors, got {type(inputs).__name__}")


def tensors_of(inputs: Inputs) -> list[torch.Tensor]:
    """The tensors of a batch's inputs, in order."""
    if isinstance(inputs, torch.Tensor):
        return [inputs]
    return list(inputs.values()) if isinstance(inputs, Mapping) else list(inputs)


def call_model(forward: Callable, inputs: Inputs) -> torch.Tensor:
    """The model's output tensor for one batch: ``forward(x)``, ``forward(**dict)`` or ``forward(*tuple)``.

    Token ids and masks stored in a compact integer dtype reach the model as
    int64. A model that returns an object with ``.logits`` (Hugging Face) or
    a tuple gives its logits or its first element.
    """
    if isinstance(inputs, torch.Tensor):
        out = forward(_widened(inputs))
    elif isinstance(inputs, Mapping):
        out = forward(**{k: _widened(v) for k, v in inputs.items()})
    else:
        out = forward(*map(_widened, inputs))
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if logits is not None:
        return logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise LandscapeError(f"the model returns a {type(out).__name__}; a tensor, an object with .logits "
                         f"or a tuple starting with a tensor is needed")


def _widened(t: torch.Tensor) -> torch.Tensor:
    """Compact integer tensors (int8/16/32 token ids, masks) as int64; anything else as it is."""
    if t.is_floating_point() or t.dtype in (torch.int64, torch.uint8, torch.bool):
        return t
    return t.long()


class Task:
    """What a batch means. Subclass it and set ``name`` and ``metrics``, define ``sums``.

    ``sums`` returns per-sample tensors of shape (B,): ``"loss"`` (float64, the
    sample's summed loss), optionally ``"count"`` (int64, the units the
    sample holds; 1 per sample without it) and one per name in ``metrics``
    (float64, int64 or bool numerators; a bool counts as 0 or 1). ``finish``
    divides a split's totals by its count; override it for a metric that is
    not a plain mean.
    """

    name = "task"
    metrics: tuple[str, ...] = ()

    def outputs(self, forward: Callable, inputs: Inputs) -> torch.Tensor:
        """The model's outputs for a batch."""
        return call_model(forward, inputs)

    def sums(self, outputs: torch.Tensor, inputs: Inputs, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def finish(self, totals: Mapping[str, float], samples: int) -> dict[str, float]:
        """A split's metrics from its totals (``samples`` is the split's number of samples)."""
        count = totals.get("count", samples)
        return {"loss": totals["loss"] / count, **{m: totals[m] / count for m in self.metrics}}

    def check(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Refuse, with a LandscapeError, outputs of a first batch that cannot mean this task.

        ``targets`` are all the targets the run evaluates (to check label ranges once).
        """

    def store_targets(self, targets: torch.Tensor) -> torch.Tensor:
        """Targets as the evaluator keeps them for the whole run."""
        return targets


class Classification(Task):
    """Mean per-sample loss, top-1 accuracy (%) and the share of non-finite samples."""

    name = "classification"
    metrics = ("acc", "nonfinite")

    def __init__(self, loss_name: str = "crossentropy"):
        check_choice("--loss_name", loss_name, LOSS_NAMES)
        self.loss_name = loss_name

    def sums(self, outputs, inputs, targets):
        correct, nonfinite = correct_and_nonfinite(outputs, targets)
        return {"loss": per_sample_loss(outputs, targets, self.loss_name).double(),
                "acc": correct, "nonfinite": nonfinite}

    def finish(self, totals, samples):
        return {"loss": totals["loss"] / samples, "acc": 100.0 * totals["acc"] / samples,
                "nonfinite": totals["nonfinite"] / samples}

    def check(self, outputs, targets):
        if outputs.ndim != 2:
            raise LandscapeError(f"the model returns outputs of shape {tuple(outputs.shape)} for a batch; "
                                 f"(batch, classes) scores are needed (or choose another --task)")
        low, high = int(targets.min()), int(targets.max())
        if low < 0 or high >= outputs.shape[1]:
            raise LandscapeError(f"the data has labels {low}..{high} but the model has {outputs.shape[1]} "
                                 f"classes (labels 0..{outputs.shape[1] - 1}); check --model and --dataset")

    def store_targets(self, targets):
        return targets.long()


class LanguageModel(Task):
    """Next-token cross-entropy over all scored tokens, token accuracy (%), perplexity, non-finite share."""

    name = "language_model"
    metrics = ("acc", "perplexity", "nonfinite")

    def sums(self, outputs, inputs, targets):
        labels = targets[:, 1:].long()
        if isinstance(inputs, Mapping) and "attention_mask" in inputs:
            labels = labels.masked_fill(inputs["attention_mask"][:, 1:] == 0, IGNORE_INDEX)
        logits = outputs[:, :-1].float()
        scored = labels != IGNORE_INDEX
        # one row per token: PyTorch's fast layout (a (batch, vocabulary, tokens) view is copied and
        # reduced along its middle axis, several times slower)
        losses = F.cross_entropy(logits.reshape(-1, logits.shape[2]), labels.reshape(-1),
                                 ignore_index=IGNORE_INDEX, reduction="none").view(labels.shape)
        correct, nonfinite = correct_and_nonfinite(logits, labels)
        correct.logical_and_(scored)
        nonfinite.logical_and_(scored)
        return {"loss": losses.double().sum(dim=1),
                "count": scored.long().sum(dim=1),
                "acc": correct.long().sum(dim=1),
                "nonfinite": nonfinite.long().sum(dim=1)}

    def finish(self, totals, samples):
        tokens = totals["count"]
        if tokens == 0:
            raise LandscapeError("the split has no scored tokens (every label is ignored or masked)")
        loss = totals["loss"] / tokens
        return {"loss": loss, "acc": 100.0 * totals["acc"] / tokens,
                "perplexity": math.inf if loss > MAX_EXP_ARGUMENT else math.exp(loss),  # NaN stays NaN
                "nonfinite": totals["nonfinite"] / tokens}

    def check(self, outputs, targets):
        if outputs.ndim != 3:
            raise LandscapeError(f"the model returns outputs of shape {tuple(outputs.shape)} for a batch; "
                                 f"a language model gives (batch, tokens, vocabulary) logits")
        if targets.ndim != 2 or targets.shape[1] < 2:
            raise LandscapeError(f"language_model needs token sequences of at least 2 tokens per sample, "
                                 f"got targets of shape {tuple(targets.shape)}")
        scored = targets[targets != IGNORE_INDEX]
        if len(scored) and (int(scored.min()) < 0 or int(scored.max()) >= outputs.shape[2]):
            raise LandscapeError(f"the data has tokens {int(scored.min())}..{int(scored.max())} but the "
                                 f"model's vocabulary has {outputs.shape[2]} entries")


class Regression(Task):
    """Mean squared error on real-valued targets of any shape, mean absolute error, non-finite share."""

    name = "regression"
    metrics = ("mae", "nonfinite")

    def sums(self, outputs, inputs, targets):
        error = (outputs.float() - targets).flatten(1)
        finite = torch.isfinite(error).all(dim=1)
        return {"loss": error.double().square().mean(dim=1), "mae": error.double().abs().mean(dim=1),
                "nonfinite": (~finite).long()}

    def check(self, outputs, targets):
        if tuple(outputs.shape[1:]) != tuple(targets.shape[1:]):
            raise LandscapeError(f"the model returns outputs of shape {tuple(outputs.shape[1:])} per sample "
                                 f"but the targets have shape {tuple(targets.shape[1:])}")

    def store_targets(self, targets):
        return targets.float()


BUILT_IN = {"classification": Classification, "language_model": LanguageModel, "regression": Regression}


class UserTask(Task):
    """A task of the user's own as the engine runs it.

    Its metric names are checked once; what its own methods raise (not the
    ones it inherits from ours) is one LandscapeError naming it, the
    exception and the user's line; what its ``finish`` returns must be the
    loss and every declared metric, as numbers.
    """

    def __init__(self, task: Task, what: str):
        self.task, self.what = task, what
        self.name = str(task.name)
        self.metrics = _checked_metrics(task.metrics, what)
        self._own = {method for method in ("outputs", "sums", "finish", "check", "store_targets")
                     if not _is_ours(getattr(type(task), method))}

    def _call(self, method: str, *args):
        if method not in self._own:
            return getattr(self.task, method)(*args)
        with user_code(self.what, f"its {method} failed"):
            return getattr(self.task, method)(*args)

    def outputs(self, forward, inputs):
        return self._call("outputs", forward, inputs)

    def sums(self, outputs, inputs, targets):
        return self._call("sums", outputs, inputs, targets)

    def check(self, outputs, targets):
        self._call("check", outputs, targets)

    def store_targets(self, targets):
        return self._call("store_targets", targets)

    def finish(self, totals, samples):
        return self._checked(self._call("finish", totals, samples))

    def _checked(self, values) -> dict[str, float]:
        """What ``finish`` gave, as the loss and every metric, each a float; refused otherwise."""
        names = ("loss", *self.metrics)
        if not isinstance(values, Mapping) or set(values) != set(names):
            given = sorted(values) if isinstance(values, Mapping) else type(values).__name__
            raise LandscapeError(f"{self.what}: its finish gives {given}; it must give exactly "
                                 f"{', '.join(names)} (the loss and its metrics)")
        try:
            return {name: float(values[name]) for name in names}
        except (TypeError, ValueError, RuntimeError) as exc:
            raise LandscapeError(f"{self.what}: its finish must give numbers ({exc})") from None

    def try_finish(self, totals: Mapping[str, float], samples: int) -> None:
        """``finish`` on a first batch's totals: a mistake in its code shows before the first point.

        Only errors that do not depend on the values (a missing key, a wrong
        name or type, a result without every metric) are refused: a ratio of
        totals may well be 0/0 on a few samples and not on the whole split.
        """
        try:
            values = self._call("finish", totals, samples)
        except LandscapeError as exc:
            if isinstance(exc.__cause__, (LookupError, AttributeError, NameError, TypeError)):
                raise
            return
        self._checked(values)


def _is_ours(obj) -> bool:
    """Whether a class or function is defined in this package (then it is not the user's code)."""
    return getattr(obj, "__module__", "").partition(".")[0] == __name__.partition(".")[0]


def _checked_metrics(metrics, what: str) -> tuple[str, ...]:
    """A task's metric names, refused unless they are distinct names a file can hold."""
    if isinstance(metrics, str) or not isinstance(metrics, Iterable):
        raise LandscapeError(f"{what}: metrics must be a tuple of names, got {metrics!r}")
    names = tuple(metrics)
    bad = [m for m in names if not isinstance(m, str) or not METRIC_NAME.fullmatch(m) or m in RESERVED_SUMS]
    if bad or len(set(names)) != len(names):
        raise LandscapeError(f"{what}: metric names must be distinct words of letters, digits and _ . + - "
                             f"(not {' or '.join(RESERVED_SUMS)}); got {names!r}")
    return names


def check_first_batch(task: Task, outputs: torch.Tensor, inputs: Inputs, targets: torch.Tensor) -> None:
    """Refuse, with a LandscapeError, a task whose sums on a first batch break the ``Task`` contract.

    Every sum is a real-valued tensor with one value per sample of the batch,
    on the outputs' device; ``loss`` is floating point, and with the default
    ``finish`` (every metric the mean of its sum) every declared metric is
    there. A key beyond those is a total only a task's own
    ``finish`` can use: with one of ours it is refused (an undeclared
    metric would be lost). A user's ``finish`` is tried on the batch's totals.
    """
    what = task.what if isinstance(task, UserTask) else f"the task {task.name}"
    parts = task.sums(outputs, inputs, targets)
    if not isinstance(parts, Mapping):
        raise LandscapeError(f"{what}: its sums must give a dict of tensors, got {type(parts).__name__}")
    batch = len(targets)
    for key, part in parts.items():
        if not isinstance(part, torch.Tensor):
            raise LandscapeError(f"{what}: its sums' {key!r} is a {type(part).__name__}, not a tensor")
        if part.is_complex():
            raise LandscapeError(f"{what}: its sums' {key!r} is a {part.dtype} tensor; sums are real numbers "
                                 f"(floating point, integer or bool)")
        if tuple(part.shape) != (batch,):
            raise LandscapeError(f"{what}: its sums' {key!r} has shape {tuple(part.shape)} for a batch of {batch} "
                                 f"samples: one value per sample is needed, shape ({batch},)")
        if part.device != outputs.device:
            raise LandscapeError(f"{what}: its sums' {key!r} is on {part.device}, the outputs on {outputs.device}")
    inner = task.task if isinstance(task, UserTask) else task
    plain_means = type(inner).finish is Task.finish  # every metric a mean of its own sum
    missing = [m for m in ("loss", *(task.metrics if plain_means else ())) if m not in parts]
    if missing:
        raise LandscapeError(f"{what}: its sums give no {', '.join(map(repr, missing))}; they give "
                             f"{', '.join(map(repr, parts))}")
    if not parts["loss"].is_floating_point():
        raise LandscapeError(f"{what}: its sums' 'loss' is a {parts['loss'].dtype} tensor; a loss is floating point")
    extra = [k for k in parts if k not in (*RESERVED_SUMS, *task.metrics)]
    if extra and _is_ours(type(inner).finish):
        raise LandscapeError(f"{what}: its sums give {', '.join(map(repr, extra))}, which is not in its metrics "
                             f"{task.metrics!r}; declare it there (or use it in a finish of your own)")
    if isinstance(task, UserTask):
        totals = {k: (int(v.sum()) if not v.is_floating_point() else float(v.double().sum())) for k, v in parts.items()}
        task.try_finish(totals, batch)


def make_task(spec: str | Task = "classification", loss_name: str = "crossentropy") -> Task:
    """The task named ``spec`` (a built-in name or ``package.module:factory``), or ``spec`` itself.

    A task of the user's own (from a factory, or an object of a class defined
    elsewhere) comes back as a ``UserTask``: its failures are one error line.
    """
    if isinstance(spec, Task):
        return spec if _is_ours(type(spec)) else UserTask(spec, f"the task {type(spec).__name__}")
    if spec == "classification":
        return Classification(loss_name)
    if loss_name != "crossentropy":
        raise LandscapeError(f"--loss_name {loss_name} applies to --task classification only")
    if spec in BUILT_IN:
        return BUILT_IN[spec]()
    if ":" not in spec:
        raise LandscapeError(f"--task {spec!r}: use {', '.join(BUILT_IN)}, or package.module:factory "
                             f"for your own")
    factory = import_factory(spec, "--task")
    with user_code(f"--task {spec}"):
        task = factory()
    if not isinstance(task, Task):
        raise LandscapeError(f"--task {spec}: the factory must return a mpi_landscape.task.Task, "
                             f"got {type(task).__name__}")
    return UserTask(task, f"--task {spec}")


def metric_names(splits: Iterable[str], task: Task | None = None) -> list[str]:
    """The names a point's metrics get for these splits under ``task``, in file order."""
    task = task or Classification()
    return [f"{split}_{m}" for split in splits for m in ("loss", *task.metrics)]


def correct_and_nonfinite(scores: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per prediction (the last axis of ``scores`` holds the classes): whether its top score is
    ``labels``' class, and whether any of its scores is not finite (such a prediction is never
    correct). On a CPU one sum first tells whether there is any non-finite score at all."""
    correct = scores.max(dim=-1).indices == labels  # argmax's first maximum; on a CPU about half its time
    if all_finite_on_cpu(scores):
        return correct, torch.zeros_like(correct)
    finite = torch.isfinite(scores).all(dim=-1)
    return correct.logical_and_(finite), finite.logical_not_()


def all_finite_on_cpu(outputs: torch.Tensor) -> bool:
    """True when ``outputs`` lie on a CPU and are all finite.

    One float32 sum tells it (any inf or NaN makes the sum non-finite; a sum
    that overflows only sends the caller the per-sample way): a fraction of
    the cost of a per-sample check on a small network, and no copy of float32
    outputs. Reading the answer on a GPU would stall the stream, so there it
    is always False.
    """
    return outputs.device.type == "cpu" and math.isfinite(outputs.sum(dtype=torch.float32).item())


def per_sample_loss(outputs: torch.Tensor, targets: torch.Tensor, loss_name: str) -> torch.Tensor:
    """Each sample's classification loss: cross-entropy, or mean squared error of softmax against one-hot.

    Class indices may come in a compact integer dtype (a dataset stored small);
    they are widened here, so every caller (surface, Hessian, training) takes them.
    """
    outputs, targets = outputs.float(), _widened(targets)
    if loss_name == "crossentropy":
        if (outputs.device.type == "cpu" and outputs.ndim == 2 and outputs.shape[1] < CPU_ROW_KERNEL_MIN_CLASSES
                and not outputs.requires_grad):  # under autograd (training, Hessian) the plain kernel is faster
            return _class_first_cross_entropy(outputs, targets)
        return F.cross_entropy(outputs, targets, reduction="none")
    if loss_name == "mse":
        probs = F.softmax(outputs, dim=1)
        return ((probs - F.one_hot(targets, probs.shape[1]).to(probs.dtype)) ** 2).mean(dim=1)
    raise LandscapeError(f"--loss_name {loss_name!r}: choose one of {', '.join(LOSS_NAMES)}")


def _class_first_cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy computed with the classes as dim 1 of a (1, classes, batch) copy.

    PyTorch's CPU kernel then vectorizes along the batch (2-10x faster than
    along a row of 2-15 classes; equal to 1 ulp). The copy is padded to whole
    vectors: a sample in a last, partial vector would be computed by other
    code, and its loss would depend on its place in the batch by an ulp.
    """
    pad = -len(targets) % CLASS_FIRST_PADDING
    scores = F.pad(outputs.t(), (0, pad))[None]
    return F.cross_entropy(scores, F.pad(targets, (0, pad))[None], reduction="none")[0, :len(targets)]


def split_mean_loss(task: Task, forward: Callable, batches: Iterable[tuple[Inputs, torch.Tensor]]) -> torch.Tensor:
    """The mean loss of a whole split as one differentiable scalar: the task's loss sum over its count.

    ``batches`` yields ``(inputs, targets)``; this is the loss a surface shows,
    built for autograd (Hessian-vector products), never averaged per batch.
    """
    total, count = None, 0
    for inputs, targets in batches:
        parts = task.sums(task.outputs(forward, inputs), inputs, targets)
        loss = parts["loss"].sum()
        total = loss if total is None else total + loss
        count = count + (parts["count"].sum() if "count" in parts else len(parts["loss"]))
    if total is None:
        raise LandscapeError("the split is empty")
    return total / count
