"""The library entry point for notebooks and scripts: a surface from objects in memory.

    from mpi_landscape import compute_surface
    surface = compute_surface(net, (inputs, targets), x="-1:1:21", y="-1:1:21")
    plt.contour(surface.x, surface.y, surface.metrics["train_loss"])

No MPI, no checkpoint files: the network, the data and (optionally) the
directions are passed in; the same evaluator and direction code as the MPI
engine does the work, so the numbers are the ones the command line would give.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from .directions import Direction, DirectionSpec, create_directions
from .evaluate import PointEvaluator, SplitData
from .task import Inputs, Task, make_task, metric_names
from .grid import Grid
from .store import Surface

DataLike = SplitData | tuple[Inputs, torch.Tensor]


def compute_surface(net: torch.nn.Module, data: DataLike | Mapping[str, DataLike],
                    x: str = "-1:1:51", y: str | None = None, *,
                    directions: tuple[Direction, Direction | None] | None = None,
                    spec: DirectionSpec | None = None, loss_name: str = "crossentropy",
                    batch_size: int | None = None, device: str | torch.device | None = None,
                    task: Task | str = "classification") -> Surface:
    """The loss and metrics of ``task`` for ``net`` over the grid ``x`` (and ``y``), as a ``Surface``.

    ``data`` is one split (``(inputs, targets)``, evaluated as "train"; inputs
    a tensor, a dict or a tuple of tensors) or a mapping of split name to
    split. ``task`` is a built-in name (classification, language_model,
    regression) or a ``Task``. ``directions`` defaults to seeded
    filter-normalized random directions (``spec``). ``net`` is modified in
    place during the run and restored to θ* at the end.
    """
    grid = Grid.parse(x, y)
    spec = spec or DirectionSpec(two_d=grid.is_2d)
    splits = {k: _as_split(v) for k, v in (data.items() if isinstance(data, Mapping) else [("train", data)])}
    dx, dy = directions if directions is not None else create_directions(net, spec)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    original = {k: v.detach().clone() for k, v in net.state_dict().items()}
    task = make_task(task, loss_name)
    evaluator = PointEvaluator(net, spec.dir_type, dx, dy if grid.is_2d else None, splits,
                               loss_name, batch_size, device, task=task)
    names = metric_names(splits, task)
    metrics = {k: np.full(grid.shape, np.nan) for k in names}
    for index in grid.coarse_to_fine():
        values = evaluator(*grid.point(int(index)))
        for k in names:
            metrics[k].ravel()[index] = values[k]
    net.load_state_dict(original)
    return Surface(grid.xcoordinates(), grid.ycoordinates(), metrics,
                   np.ones(grid.shape, dtype=bool), None, {"dir_type": spec.dir_type})


def _as_split(value: DataLike) -> SplitData:
    if isinstance(value, SplitData):
        return value
    inputs, targets = value
    return SplitData(inputs, targets)
