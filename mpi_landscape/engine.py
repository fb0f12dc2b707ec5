"""One surface, end to end over the ranks of a communicator.

Rank 0 checks the request, creates or reopens the direction file and the
surface file (refusing a file computed for another request), and tells every
rank which points are still to do. Every rank then builds the model, loads the
checkpoint, directions and data once, binds its device, and evaluates the
points the coordinator hands it; rank 0 writes each result as it arrives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from . import __version__
from .curvature import HESSIAN_METRICS, PointCurvature
from .data import load_splits, shard_sizes
from .directions import create_directions, describe_directions, fingerprint, load_directions, open_directions
from .distributed import Context, GroupLayout, RunStats
from .errors import LandscapeError, require_folder
from .evaluate import PointEvaluator, SplitData, check_low_memory
from .task import make_task, metric_names
from .grid import Grid
from .networks import checkpoint_sha256, load_network
from .store import SurfaceLock, SurfaceWriter, check_surface_path

# Identity keys a rerun may leave out, or a file may lack, without being another request: the
# Hessian's settings (a file's curvature arrays stay as they are when a rerun computes no curvature)
# and the checkpoints the directions were made from (the directions' own fingerprint is compared).
OPTIONAL_IDENTITY = ("hessian", "model_file2_sha256", "model_file3_sha256")
IDENTITY_DEFAULTS = {"task": "classification"}  # what a file without the key was computed with
PRECISION_WARN_GAP = 0.01  # relative loss gap at the centre above which reduced precision is flagged
RUN_SUMMARY = ("points", "wall_seconds", "seconds_per_point", "stopped_early")  # of last_run, in the list of runs
BOOKKEEPING_BYTES_PER_POINT = 80  # rank 0's per-point cost beside the metrics: order, queue, done mask


@dataclass
class Inputs:
    """What every rank loads once: θ* as a model, the directions and the data (on the CPU)."""

    net: torch.nn.Module
    x: list[torch.Tensor]
    y: list[torch.Tensor] | None
    splits: dict[str, SplitData]


def run_surface(config, comm=None, command_line: list[str] | None = None) -> RunStats:
    """Compute the surface of ``config`` (a SurfaceConfig) over ``comm``; returns rank 0's stats.

    Everything a user can get wrong is checked before the first point, on the
    rank that can see it: the request and the surface file on rank 0, the data
    and the model (one forward pass of one batch) on every rank. Rank 0 holds
    the surface file's lock before it writes any file (a direction file
    included), until the end.
    """
    held: dict = {}
    try:
        return _run_surface(config, comm, command_line, held)
    finally:
        if "lock" in held:
            held["lock"].release()  # a no-op once the writer has closed (and released) it


def _run_surface(config, comm, command_line: list[str] | None, held: dict) -> RunStats:
    ctx = Context(comm)
    grid = ctx.on_every_rank(lambda: config.grid)

    def prepare() -> str:
        _check_request(config, grid, ctx)
        check_surface_path(config.resolved_surf_file())
        held["lock"] = SurfaceLock.acquire(config.resolved_surf_file())
        inputs, dir_file = _load_inputs(config, shard=0, create_missing=True)
        held["inputs"] = inputs
        return dir_file

    def build_evaluator() -> PointEvaluator:
        # rank 0 has downloaded the data if it had to: the others only read it
        inputs = (held["inputs"] if ctx.is_root else
                  _load_inputs(dataclasses.replace(config, download=False), group.shard, dir_file=dir_file)[0])
        evaluator = PointEvaluator(inputs.net, config.dir_type, inputs.x, inputs.y, inputs.splits,
                                   config.loss_name, config.batch_size, ctx.device(), config.precision,
                                   config.compile, config.bn, config.bn_batch_size, task=config.task,
                                   low_memory=config.low_memory, stream=config.stream, fold_bn=config.fold_bn)
        if config.compile:
            evaluator.warm_up()
        return evaluator

    def open_surface() -> np.ndarray:
        writer = _open_surface(config, held["inputs"], dir_file, ctx, command_line, held["lock"])
        held["writer"] = writer
        for note in writer.notes:
            print(note, file=sys.stderr, flush=True)
        return writer.remaining(grid.coarse_to_fine())

    dir_file = ctx.from_root(prepare)
    group = ctx.on_every_rank(lambda: ctx.groups(config.ranks_per_point, config.coordinator_only))
    with ctx.abort_on_error(), ctx.stop_on_signals():
        evaluator = ctx.on_every_rank(build_evaluator)
        todo = ctx.from_root(open_surface)  # only a request every rank can compute touches the file

        curvature = (PointCurvature.of_evaluator(evaluator, config.split_list[0], config.xignore,
                                                 config.hessian_tol, config.hessian_max_iter, config.seed)
                     if config.hessian else None)

        def shard_sums(index: int) -> dict[str, float]:
            return evaluator.sums(*grid.point(index))

        if not group.is_leader:
            group.follow(shard_sums)
            group.close()
            return RunStats(stopped_early=ctx.from_root(lambda: None))  # every rank exits alike
        reduced = group.reduced(shard_sums, evaluator.finish)

        def evaluate_point(index: int) -> dict[str, float]:
            values = reduced(index)
            return {**values, **curvature()} if curvature else values

        if not ctx.is_root:
            ctx.run_grid(todo, evaluate_point, on_result=None, group=group)
            return RunStats(stopped_early=ctx.from_root(lambda: None))  # every rank exits alike
        writer = held["writer"]
        if config.precision != "fp32":
            _check_precision(evaluator, writer)
        with _progress(len(todo), grid.size) as bar:
            def on_result(index: int, values) -> None:
                writer.record(index, values)
                bar.update(1)

            stats = ctx.run_grid(todo, evaluate_point, on_result, not config.coordinator_only, group)
        stats.stopped_early = stats.stopped_early and not writer.done.all()
        timings = _timings(stats, ctx, evaluator)
        writer.close(timings, run={k: timings["last_run"][k] for k in RUN_SUMMARY})
        _summary(stats, ctx, writer)
        ctx.from_root(lambda: stats.stopped_early)
        return stats


def _check_request(config, grid: Grid, ctx: Context) -> None:
    """Refuse, before anything is loaded or written, a request that cannot be computed here."""
    if config.hessian and config.dir_type != "weights":
        raise LandscapeError("--hessian is the Hessian with respect to the parameters: use --dir_type weights")
    if config.hessian and config.ranks_per_point > 1:
        raise LandscapeError("--hessian takes each point's Hessian on one rank: it cannot be combined "
                             "with --ranks_per_point > 1")
    check_low_memory(config.low_memory, config.precision)
    GroupLayout(ctx.size, config.ranks_per_point, config.coordinator_only)  # raises if K does not fit
    if config.ranks_per_point > 1 and config.bn == "recompute":
        raise LandscapeError("--bn recompute needs the whole train split on every rank: it cannot be "
                             "combined with --ranks_per_point > 1")
    limit = float(np.finfo(np.float32).max)
    for flag, axis in (("--x", grid.x), ("--y", grid.y)):
        if axis is not None and max(abs(axis.lo), abs(axis.hi)) > limit:
            raise LandscapeError(f"{flag}={axis.spec}: coordinates beyond ±{limit:.3g} do not fit the "
                                 f"network's float32 weights")
    needed = grid.size * (8 * len(metric_names(config.split_list, make_task(config.task, config.loss_name)))
                          + BOOKKEEPING_BYTES_PER_POINT)
    available = _available_memory()
    if available is not None and needed > available:
        raise LandscapeError(f"a grid of {grid.size} points needs about {needed / 1e9:.3g} GB of memory "
                             f"on rank 0, more than the {available / 1e9:.3g} GB available: use "
                             f"fewer points in --x/--y")


def _available_memory() -> int | None:
    """Bytes of memory this machine can still give (MemAvailable), or None where it cannot tell."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def _load_inputs(config, shard: int, create_missing: bool = False,
                 dir_file: str | None = None) -> tuple[Inputs, str]:
    """θ*, this rank's shard of the data, and directions; rank 0 creates the direction file if needed.

    The other models (``--model_file2``/``3``) are loaded only to create
    target directions: once the direction file exists they are not needed.
    """
    if not config.model_file:
        raise LandscapeError("--model_file is required: the checkpoint of the trained network θ*")
    net = load_network(config.model, config.model_file)
    splits = load_splits(config.dataset, config.split_list, config.datapath, config.raw_data,
                         config.data_split, config.seed, config.download, shard=shard,
                         shards=config.ranks_per_point, uint8=True, image_size=config.image_size,
                         cache_dir=config.cache_dir)
    dir_file = dir_file or config.resolved_dir_file()
    spec = config.direction_spec
    if not create_missing:
        x, y = load_directions(dir_file, net, config.dir_type, two_d=spec.two_d)
    else:
        def make() -> tuple:
            others = [load_network(config.model, path) if path else None
                      for path in (config.model_file2, config.model_file3)]
            return create_directions(net, spec, *others)

        require_folder(dir_file, f"--dir_file {dir_file}")
        x, y = open_directions(dir_file, net, spec, config.direction_flags_given(), make,
                               {"model": config.model, "model_file": config.model_file,
                                "model_file2": config.model_file2 or "", "model_file3": config.model_file3 or ""})
    return Inputs(net, x, y, splits), dir_file


def _open_surface(config, inputs: Inputs, dir_file: str, ctx: Context,
                  command_line: list[str] | None, lock: SurfaceLock) -> SurfaceWriter:
    grid = config.grid
    identity = {
        "model": config.model, "directions_sha256": fingerprint(inputs.x, inputs.y),
        "dir_type": config.dir_type, "dataset": config.dataset, "raw_data": config.raw_data,
        "data_split": config.data_split, "loss_name": config.loss_name,
        "precision": config.precision, "bn": config.bn,
        "dataset_size": {k: v.full_size for k, v in inputs.splits.items()},
        **({"task": config.task} if config.task != "classification" else {}),
        **{f"{flag}_sha256": checkpoint_sha256(getattr(config, flag))
           for flag in ("model_file", "model_file2", "model_file3") if getattr(config, flag)},
    }
    if config.data_split > 1:
        identity["data_seed"] = config.seed
    if config.hessian:
        identity["hessian"] = {"split": config.split_list[0], "ignore": config.xignore,
                               "tol": config.hessian_tol, "max_iter": config.hessian_max_iter}
    provenance = {
        "command_line": " ".join(command_line or sys.argv),
        "config": dataclasses.asdict(config),
        "versions": {"mpi_landscape": __version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "precision": config.precision, "ranks": ctx.size, "host": platform.node(),
        "ranks_per_point": config.ranks_per_point,
        "shard_sizes": {k: shard_sizes(v.full_size, config.ranks_per_point) for k, v in inputs.splits.items()},
        "directions": describe_directions(dir_file),
    }
    run = {"command_line": provenance["command_line"], "host": provenance["host"], "ranks": ctx.size,
           "mpi_landscape": __version__}
    return SurfaceWriter.open(config.resolved_surf_file(), grid.xcoordinates(), grid.ycoordinates(),
                              dir_file, metric_names(config.split_list, make_task(config.task, config.loss_name))
                              + list(HESSIAN_METRICS) * config.hessian,
                              identity, provenance, flush_seconds=config.flush_seconds,
                              fsync_every_result=config.fsync_every_result, lock=lock,
                              optional_identity=OPTIONAL_IDENTITY, identity_defaults=IDENTITY_DEFAULTS, run=run)


def _check_precision(evaluator: PointEvaluator, writer: SurfaceWriter) -> None:
    """Store the centre point in fp32 and the reduced precision; warn when they disagree."""
    check = evaluator.precision_check()
    writer.attrs["precision_check"] = check
    gap = check["max_relative_loss_gap"]
    if gap > PRECISION_WARN_GAP:
        print(f"warning: at the centre, the {evaluator.precision} loss differs from fp32 by "
              f"{100 * gap:.2g}% (more than {100 * PRECISION_WARN_GAP:g}%); near a sharp minimum "
              f"reduced precision is not faithful: consider --precision fp32", file=sys.stderr, flush=True)


def _timings(stats: RunStats, ctx: Context, evaluator: PointEvaluator) -> dict:
    per_point = stats.wall_seconds / stats.points if stats.points else float("nan")
    device = evaluator.device
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"last_run": {
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "points": stats.points,
        "wall_seconds": stats.wall_seconds, "seconds_per_point": per_point,
        "warmup_seconds": evaluator.warmup_seconds, "batch_size": evaluator.batch_size,
        "folded_batchnorms": len(evaluator.folded.pairs) if evaluator.folded else 0,
        "coordinator_seconds": stats.coordinator_seconds, "ranks": ctx.size,
        "device": str(device), "peak_memory_bytes_rank0": int(peak),
        "data": {"resident": evaluator.data.resident, "chunks": evaluator.data.chunks(evaluator.batch_size),
                 "bytes_rank0": evaluator.data.nbytes, "dtype": evaluator.data.dtype},
        "points_by_rank": {str(k): v for k, v in stats.points_by_rank.items()},
        "stopped_early": stats.stopped_early}}


def _summary(stats: RunStats, ctx: Context, writer: SurfaceWriter) -> None:
    done, total = int(writer.done.sum()), writer.done.size
    rate = (f"{stats.wall_seconds / stats.points:.3g} s/point" if stats.points else
            "stopped before the first point" if stats.stopped_early else "nothing to do")
    print(f"surface: {stats.points} points in {stats.wall_seconds:.1f} s ({rate}, {ctx.size} ranks); "
          f"{done}/{total} done", flush=True)
    if stats.stopped_early:
        print(f"stopped early: {total - done} points remain; rerun the same command to finish",
              flush=True)
    print(f"surface file: {os.path.abspath(writer.path)}", flush=True)


class _Quiet:
    """The progress bar's stand-in when nobody watches a terminal."""

    def update(self, n: int = 1) -> None:
        pass


def _progress(todo: int, total: int):
    """A tqdm progress bar (points done/total, points/s, ETA) on a terminal; nothing otherwise."""
    if not sys.stderr.isatty():
        return contextlib.nullcontext(_Quiet())
    from tqdm import tqdm

    return tqdm(total=total, initial=total - todo, unit="pt", desc="surface", dynamic_ncols=True)
