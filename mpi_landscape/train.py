"""``python -m mpi_landscape.train``: train a network with the paper's recipe and keep its checkpoints.

    python -m mpi_landscape.train --model resnet56 --dataset cifar10 --datapath cifar10/data

The defaults are the recipe of the paper's reference trainer: SGD with Nesterov
momentum 0.9, batch 128, weight decay 5e-4, learning rate 0.1 divided by 10
after epochs 150, 225 and 275 of 300, random crops (padding 4) and horizontal
flips on CIFAR-10's training split. The save directory receives

* ``model_{epoch}.t7`` -- the reference's layout ``{'state_dict', 'epoch',
  'acc', 'lr'}`` (``acc`` is the test accuracy), at epoch 0 (before
  training), 1, every ``--save_epoch`` and the last: the series the surface,
  interpolation and trajectory commands read;
* ``opt_state_{epoch}.t7`` -- ``{'optimizer': state_dict}`` as in the
  reference, plus the random number generator states, so that
  ``--resume_epoch N`` continues exactly as the uninterrupted run would have;
* ``log.csv``, one row per epoch from 0: ``epoch,lr,train_loss,train_acc,
  test_loss,test_acc`` (lr is the rate used during that epoch; train metrics
  are those seen while training, test metrics are in eval mode), and its
  plot ``log.png``, redrawn every ``--save_epoch`` epochs.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import Any, Iterable

import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

import mpi_landscape_models as models

from .cli import add_flag, exit_on_user_error, new_parser, parse_config
from .data import CIFAR10_MEAN, CIFAR10_STD, cifar_inputs, load_splits, local_cifar10
from .errors import LandscapeError, check_choice
from .evaluate import SplitData
from .task import LOSS_NAMES, per_sample_loss
from .networks import build_network, load_weights
from .threads import sized_thread_pool

OPTIMIZERS = ("sgd", "adam")
INITS = ("reference", "model")
LOG_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc")
LOG_FILE = "log.csv"
PLOT_FILE = "log.png"
EVAL_BATCH_SIZE = 1024


@dataclass(frozen=True)
class TrainConfig:
    """One training run, as given on the command line."""

    model: str = "resnet56"
    dataset: str = "cifar10"
    datapath: str = "cifar10/data"
    download: bool = False
    raw_data: bool = False
    noaug: bool = False
    loss_name: str = "crossentropy"
    optimizer: str = "sgd"
    lr: float = 0.1
    lr_decay: float = 0.1
    lr_milestones: str = "150,225,275"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    epochs: int = 300
    save_epoch: int = 10
    save_dir: str | None = None
    resume_epoch: int | None = None
    seed: int = 0
    init: str = "reference"
    num_workers: int = 2

    @property
    def milestones(self) -> tuple[int, ...]:
        """The epochs after which the learning rate drops."""
        return parse_milestones(self.lr_milestones)

    def resolved_save_dir(self) -> str:
        """``--save_dir``, or the reference's ``trained_nets/<model>_<opt>_lr=<lr>_bs=<bs>_wd=<wd>``."""
        if self.save_dir:
            return self.save_dir
        model = self.model.replace(":", "-").replace(os.sep, "-")
        return os.path.join("trained_nets", f"{model}_{self.optimizer}_lr={self.lr}_bs={self.batch_size}"
                                            f"_wd={self.weight_decay}")

    def check(self) -> None:
        """Refuse values that cannot make a run, before anything is loaded or written."""
        positive = {"--lr": self.lr, "--batch_size": self.batch_size, "--save_epoch": self.save_epoch}
        for flag, value in positive.items():
            if value <= 0:
                raise LandscapeError(f"{flag} must be positive, got {value}")
        if self.epochs < 0 or self.num_workers < 0:
            raise LandscapeError("--epochs and --num_workers may not be negative")
        check_choice("--optimizer", self.optimizer, OPTIMIZERS)
        check_choice("--init", self.init, INITS)
        check_choice("--loss_name", self.loss_name, LOSS_NAMES)
        if self.resume_epoch is not None and not 0 <= self.resume_epoch <= self.epochs:
            raise LandscapeError(f"--resume_epoch {self.resume_epoch} is not between 0 and --epochs {self.epochs}")
        parse_milestones(self.lr_milestones)


def parse_milestones(text: str) -> tuple[int, ...]:
    """``--lr_milestones`` as ascending epochs ("" for a constant learning rate)."""
    try:
        epochs = tuple(int(m) for m in text.split(",") if m.strip())
    except ValueError:
        raise LandscapeError(f"--lr_milestones {text!r}: give comma-separated epochs, e.g. 150,225,275") from None
    if any(m < 1 for m in epochs) or list(epochs) != sorted(set(epochs)):
        raise LandscapeError(f"--lr_milestones {text!r}: epochs must be positive and increasing")
    return epochs


@dataclass(frozen=True)
class Schedule:
    """Step decay: ``lr · decay^k`` in an epoch that comes after k milestones (the reference's rule)."""

    base_lr: float
    decay: float
    milestones: tuple[int, ...]

    def lr(self, epoch: int) -> float:
        """Learning rate used during ``epoch`` (1-based; epoch 0 reports the first epoch's rate)."""
        drops = sum(1 for m in self.milestones if m < epoch)
        return self.base_lr * self.decay ** drops


def build_optimizer(net: nn.Module, config: TrainConfig) -> tuple[torch.optim.Optimizer, Schedule]:
    """The optimizer over all of ``net``'s parameters and the learning-rate schedule it follows.

    SGD is Nesterov's with ``--momentum`` and Adam is plain Adam, both with
    ``--weight_decay`` as an L2 term on every parameter, as the reference had.
    """
    check_choice("--optimizer", config.optimizer, OPTIMIZERS)
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay, nesterov=config.momentum > 0)
    else:
        optimizer = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return optimizer, Schedule(config.lr, config.lr_decay, config.milestones)


def is_save_epoch(epoch: int, config: TrainConfig) -> bool:
    """Whether a checkpoint is written after ``epoch``: 0, 1, every ``--save_epoch``, the last."""
    return epoch in (0, 1, config.epochs) or epoch % config.save_epoch == 0


def model_path(save_dir: str, epoch: int) -> str:
    """The checkpoint of the network after ``epoch``."""
    return os.path.join(save_dir, f"model_{epoch}.t7")


def opt_state_path(save_dir: str, epoch: int) -> str:
    """The optimizer and random states after ``epoch``."""
    return os.path.join(save_dir, f"opt_state_{epoch}.t7")


def saved_epochs(save_dir: str, prefix: str = "model_", suffix: str = ".t7") -> list[int]:
    """Epochs with a ``{prefix}{epoch}{suffix}`` file in ``save_dir``, ascending (empty if there is none)."""
    if not os.path.isdir(save_dir):
        return []
    pattern = re.compile(re.escape(prefix) + r"(\d+)" + re.escape(suffix))
    found = (pattern.fullmatch(name) for name in os.listdir(save_dir))
    return sorted(int(m.group(1)) for m in found if m)


def resumable_epochs(save_dir: str) -> list[int]:
    """Saved epochs that ``--resume_epoch`` can continue from: both model and optimizer state exist.

    A run killed between writing the two files leaves a model file alone.
    """
    return [e for e in saved_epochs(save_dir) if os.path.isfile(opt_state_path(save_dir, e))]


def reference_init(net: nn.Module) -> None:
    """The reference trainer's initialisation, so runs start where the paper's did.

    Kaiming-normal (fan in) convolutions, N(0, 1e-3) linear layers, zero
    biases; BatchNorm keeps PyTorch's (and the reference's) 1 and 0.
    """
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(module.weight, mode="fan_in")
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=1e-3)
        else:
            continue
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def train(config: TrainConfig) -> str:
    """Train as ``config`` says, writing checkpoints, ``log.csv`` and ``log.png``; returns the save directory.

    Seeds torch's global generator from ``--seed`` (it initialises the
    weights, and draws the augmentations when they run in this process); the
    shuffling has its own generator, which also seeds DataLoader workers'
    augmentations. Both states are saved with each checkpoint and restored on resume.
    """
    config.check()
    save_dir = config.resolved_save_dir()
    if config.resume_epoch is None:
        _refuse_existing_run(save_dir)
    else:
        _refuse_overwriting_later_epochs(save_dir, config.resume_epoch)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(config.seed)
    shuffle = torch.Generator().manual_seed(config.seed)

    net = _build_model(config).to(device)
    optimizer, schedule = build_optimizer(net, config)
    data = _TrainingData(config, shuffle, device)
    # Threads sized to the network and batch: a small net on many threads crawls on a busy machine.
    with sized_thread_pool(net, data.test.inputs, config.batch_size, device):
        log_path = os.path.join(save_dir, LOG_FILE)

        if config.resume_epoch is None:
            os.makedirs(save_dir, exist_ok=True)
            start = 0
            train_loss, train_acc = _evaluate(net, data.train_for_evaluation(), config.loss_name, device)
            test_loss, test_acc = _evaluate(net, data.test, config.loss_name, device)
            _start_log(log_path, keep_until=None)
            _report(log_path, 0, schedule.lr(1), train_loss, train_acc, test_loss, test_acc, config.epochs, 0.0)
            _save(save_dir, 0, net, optimizer, shuffle, test_acc, schedule.lr(1))
        else:
            start = config.resume_epoch
            _resume(save_dir, start, net, optimizer, shuffle)
            _start_log(log_path, keep_until=start)

        for epoch in range(start + 1, config.epochs + 1):
            began = time.perf_counter()
            lr = schedule.lr(epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            train_loss, train_acc = train_epoch(net, data.loader, optimizer, config.loss_name, device)
            test_loss, test_acc = _evaluate(net, data.test, config.loss_name, device)
            _report(log_path, epoch, lr, train_loss, train_acc, test_loss, test_acc, config.epochs,
                    time.perf_counter() - began)
            if is_save_epoch(epoch, config):
                _save(save_dir, epoch, net, optimizer, shuffle, test_acc, lr)
            if epoch % config.save_epoch == 0 or epoch == config.epochs:
                plot_log(read_log(log_path), os.path.join(save_dir, PLOT_FILE))
    return save_dir


def train_epoch(net: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                optimizer: torch.optim.Optimizer, loss_name: str, device: torch.device) -> tuple[float, float]:
    """One pass over ``batches`` in train mode; the mean loss and accuracy (%) seen along the way."""
    net.train()
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    for inputs, targets in batches:
        inputs = inputs.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        outputs = net(inputs)
        summed = per_sample_loss(outputs, targets, loss_name).sum()
        (summed / len(targets)).backward()
        optimizer.step()
        total_loss += summed.detach().double()
        correct += (outputs.detach().argmax(dim=1) == targets).sum()
        seen += len(targets)
    if seen == 0:
        raise LandscapeError("the training split is empty")
    return total_loss.item() / seen, 100.0 * correct.item() / seen


def read_log(path: str) -> list[dict[str, float]]:
    """The rows of a ``log.csv`` (or of the one in a save directory), epochs as ints."""
    if os.path.isdir(path):
        path = os.path.join(path, LOG_FILE)
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"epoch", "lr"} <= set(rows[0]):
        raise LandscapeError(f"{path} has no 'epoch' and 'lr' columns; move it away or fix it")
    try:
        return [{k: int(v) if k == "epoch" else float(v) for k, v in row.items()} for row in rows]
    except (TypeError, ValueError) as exc:
        raise LandscapeError(f"{path}: unreadable value ({exc})") from None


def lr_drops(rows: list[dict[str, float]]) -> list[int]:
    """The epochs after which the learning rate changed: the last epoch trained at the old rate.

    Checkpoints are saved at the milestones themselves (``model_150.t7`` is the
    last one before the drop), so these are the epochs a trajectory marks.
    """
    return [int(a["epoch"]) for a, b in zip(rows, rows[1:]) if b["lr"] != a["lr"]]


def plot_log(rows: list[dict[str, float]], path: str) -> None:
    """Loss and accuracy against epochs, train and test, with the learning-rate drops marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [row["epoch"] for row in rows]
    drops = lr_drops(rows)
    figure = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(figure)
    for axes, metric, label in zip(figure.subplots(1, 2), ("loss", "acc"), ("loss", "accuracy (%)")):
        for split in ("train", "test"):
            axes.plot(epochs, [row[f"{split}_{metric}"] for row in rows], label=split)
        if metric == "loss":
            axes.set_yscale("log")
        for epoch in drops:
            axes.axvline(epoch, color="grey", linestyle=":", linewidth=1)
        axes.set_xlabel("epoch")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
        axes.legend()
    if drops:
        figure.suptitle(f"dotted: learning rate changed after epoch {', '.join(map(str, drops))}")
    figure.savefig(path, dpi=100)


class _TrainingData:
    """Shuffled (and, for CIFAR-10, augmented) training batches, and the splits to evaluate."""

    def __init__(self, config: TrainConfig, shuffle: torch.Generator, device: torch.device):
        self._config = config
        if config.dataset == "cifar10":
            test = load_splits("cifar10", ["test"], config.datapath, config.raw_data,
                               download=config.download)["test"]
            self._train = None
            self.loader = DataLoader(_augmented_cifar10(config), batch_size=config.batch_size, shuffle=True,
                                     generator=shuffle, num_workers=config.num_workers,
                                     pin_memory=device.type == "cuda")
        else:
            splits = load_splits(config.dataset, ["train", "test"], config.datapath, config.raw_data)
            test, self._train = splits["test"], splits["train"]
            tensors = TensorDataset(self._train.inputs, self._train.targets)
            batches = BatchSampler(RandomSampler(tensors, generator=shuffle), config.batch_size, drop_last=False)
            # Whole batches are indexed at once: no per-sample collation for data already in memory.
            self.loader = DataLoader(tensors, sampler=batches, batch_size=None, generator=shuffle)
        self.test = SplitData(test.inputs.to(device), test.targets.to(device))

    def train_for_evaluation(self) -> SplitData:
        """The training split under the evaluation transform (for the epoch-0 row)."""
        if self._train is not None:
            return self._train
        dataset = self.loader.dataset  # its transform augments per item; .data and .targets are the raw split
        return SplitData(cifar_inputs(dataset.data, self._config.raw_data),
                         torch.tensor(dataset.targets, dtype=torch.int64))


def _augmented_cifar10(config: TrainConfig):
    """CIFAR-10's training split with the reference's augmentation and normalization."""
    from torchvision import transforms

    steps = [] if config.noaug else [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
    steps.append(transforms.ToTensor())
    if not config.raw_data:
        steps.append(transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD))
    try:
        dataset = local_cifar10(config.datapath, train=True, download=config.download)
    except RuntimeError as exc:
        raise LandscapeError(f"CIFAR-10's training split not found under --datapath {config.datapath} ({exc})") from None
    dataset.transform = transforms.Compose(steps)
    return dataset


def _build_model(config: TrainConfig) -> nn.Module:
    """The network ``--model`` names, initialised as ``--init`` says."""
    net = build_network(config.model)
    if config.init == "reference":
        reference_init(net)
    return net


@torch.inference_mode()
def _evaluate(net: nn.Module, data: SplitData, loss_name: str, device: torch.device) -> tuple[float, float]:
    """Mean loss and accuracy (%) over a whole split in eval mode, as the surface evaluates them."""
    net.eval()
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for start in range(0, len(data), EVAL_BATCH_SIZE):
        inputs = data.inputs[start:start + EVAL_BATCH_SIZE].to(device, non_blocking=True)
        targets = data.targets[start:start + EVAL_BATCH_SIZE].to(device, non_blocking=True)
        outputs = net(inputs)
        total_loss += per_sample_loss(outputs, targets, loss_name).double().sum()
        correct += (outputs.argmax(dim=1) == targets).sum()
    return total_loss.item() / len(data), 100.0 * correct.item() / len(data)


def _refuse_existing_run(save_dir: str) -> None:
    """A fresh run never overwrites another one's checkpoints."""
    epochs = saved_epochs(save_dir)
    if not epochs:
        return
    resumable = resumable_epochs(save_dir)
    hint = (f"continue it with --resume_epoch {resumable[-1]}" if resumable else
            "none of its checkpoints has its opt_state file, so it cannot be continued: move it away")
    raise LandscapeError(f"{save_dir} already holds a training run (checkpoints up to epoch "
                         f"{epochs[-1]}); {hint}, or choose another --save_dir")


def _refuse_overwriting_later_epochs(save_dir: str, epoch: int) -> None:
    """Resuming from an earlier epoch would write over the run's later checkpoints: refuse."""
    later = [e for e in resumable_epochs(save_dir) if e > epoch]
    if later:
        raise LandscapeError(
            f"--resume_epoch {epoch}: {save_dir} already holds later checkpoints (up to epoch {later[-1]}) "
            f"that resuming would overwrite; resume from {later[-1]}, or copy the run to another "
            f"--save_dir first")


def _rng_state(shuffle: torch.Generator) -> dict[str, Any]:
    """Every random state the next epoch draws from, as tensors (safe to load with weights_only)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _save(save_dir: str, epoch: int, net: nn.Module, optimizer: torch.optim.Optimizer,
          shuffle: torch.Generator, acc: float, lr: float) -> None:
    """Write ``model_{epoch}.t7`` and ``opt_state_{epoch}.t7``, each atomically."""
    models.save_checkpoint(model_path(save_dir, epoch), net, epoch=epoch, acc=acc, lr=lr)
    models.save_atomic({"optimizer": optimizer.state_dict(), "epoch": epoch, "rng": _rng_state(shuffle)},
                       opt_state_path(save_dir, epoch))


def _resume(save_dir: str, epoch: int, net: nn.Module, optimizer: torch.optim.Optimizer,
            shuffle: torch.Generator) -> None:
    """Load the network, optimizer and random states saved after ``epoch``."""
    paths = (model_path(save_dir, epoch), opt_state_path(save_dir, epoch))
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        available = resumable_epochs(save_dir)
        raise LandscapeError(
            f"--resume_epoch {epoch}: {' and '.join(missing)} not found; epochs that can be resumed in {save_dir}: "
            f"{', '.join(map(str, available)) or 'none'}"
        )
    load_weights(net, paths[0])
    state = torch.load(paths[1], map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    rng = state.get("rng")
    if rng is None:
        print(f"note: {paths[1]} holds no random states (reference file); the continuation "
              f"will not repeat an uninterrupted run exactly", file=sys.stderr)
        return
    torch.set_rng_state(rng["torch"])
    shuffle.set_state(rng["shuffle"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _start_log(path: str, keep_until: int | None) -> None:
    """Begin ``log.csv`` anew, or keep its rows up to epoch ``keep_until`` when resuming."""
    rows = []
    if keep_until is not None and os.path.isfile(path):
        rows = [row for row in read_log(path) if row["epoch"] <= keep_until]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _report(path: str, epoch: int, lr: float, train_loss: float, train_acc: float,
            test_loss: float, test_acc: float, epochs: int, seconds: float) -> None:
    """Append one row to ``log.csv`` and print it."""
    row = {"epoch": epoch, "lr": f"{lr:.6g}", "train_loss": f"{train_loss:.8g}", "train_acc": f"{train_acc:.4f}",
           "test_loss": f"{test_loss:.8g}", "test_acc": f"{test_acc:.4f}"}
    with open(path, "a", newline="") as handle:
        csv.DictWriter(handle, LOG_COLUMNS).writerow(row)
    print(f"epoch {epoch}/{epochs}  lr {lr:.4g}  train loss {train_loss:.4f} acc {train_acc:.2f}%  "
          f"test loss {test_loss:.4f} acc {test_acc:.2f}%  ({seconds:.1f} s)", flush=True)


def build_parser() -> argparse.ArgumentParser:
    """The training command's flags (the reference trainer's names, with dashed aliases)."""
    p = new_parser("mpi_landscape.train", TrainConfig,
                   "Train a network with the paper's recipe and save the checkpoint series "
                   "model_{epoch}.t7 that the surface, interpolation and trajectory commands read.")
    add_flag(p, "--model", help="registered model name (e.g. resnet56) or package.module:factory")
    add_flag(p, "--dataset", help="cifar10, demo (built in, no download) or package.module:factory "
                                  "returning {'train': ..., 'test': ...}")
    add_flag(p, "--datapath", help="folder holding cifar-10-batches-py")
    add_flag(p, "--download", action="store_true", help="download CIFAR-10 into --datapath if missing")
    add_flag(p, "--raw_data", action="store_true", help="no input normalization")
    add_flag(p, "--noaug", action="store_true", help="no random crops and flips on CIFAR-10")
    add_flag(p, "--loss_name", choices=LOSS_NAMES, help="training loss")
    add_flag(p, "--optimizer", choices=OPTIMIZERS, help="sgd (Nesterov momentum) or adam")
    add_flag(p, "--lr", type=float, help="initial learning rate")
    add_flag(p, "--lr_decay", type=float, help="factor applied to the learning rate at each milestone")
    add_flag(p, "--lr_milestones", help="epochs after which the learning rate drops, e.g. 150,225,275 ('' for none)")
    add_flag(p, "--momentum", type=float, help="SGD momentum")
    add_flag(p, "--weight_decay", type=float, help="L2 penalty on every parameter")
    add_flag(p, "--batch_size", type=int, help="training batch size")
    add_flag(p, "--epochs", type=int, help="number of epochs")
    add_flag(p, "--save_epoch", type=int, help="save a checkpoint every N epochs (and at 0, 1 and the last)")
    add_flag(p, "--save_dir", help="output folder (default: trained_nets/<model>_<optimizer>_lr=.._bs=.._wd=..)")
    add_flag(p, "--resume_epoch", type=int, help="continue a run from its model_N.t7 and opt_state_N.t7")
    p.add_argument("--seed", "--rand_seed", "--rand-seed", dest="seed", type=int,
                   help="seed of the initialisation, augmentation and shuffling")
    add_flag(p, "--init", choices=INITS, help="reference: the paper's trainer's initialisation; model: the factory's")
    add_flag(p, "--num_workers", type=int, help="data loading processes for CIFAR-10")
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse the flags and train; a user error becomes one line and exit status 2."""
    config = parse_config(build_parser(), TrainConfig, argv)
    with exit_on_user_error():
        save_dir = train(config)
    print(f"checkpoints, log.csv and log.png in {os.path.abspath(save_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
