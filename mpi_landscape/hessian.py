"""``python -m mpi_landscape.hessian``: the Hessian spectrum at θ*, and its sharpest directions.

    mpirun -n 4 python -m mpi_landscape.hessian --model resnet56 \\
        --model_file resnet56.t7 --dataset cifar10 --datapath cifar10/data --top_k 5

reports the top-k eigenvalues and the smallest (Lanczos), the trace
(Hutchinson, with its standard error) and the spectral density (stochastic
Lanczos quadrature) of the Hessian of the mean loss over ``--split``, network
in eval mode, with respect to the parameters the directions cover
(``--xignore biasbn`` leaves out biases and BatchNorm). They go into an HDF5
spectrum file with provenance, and the density into a figure. The top two
eigenvectors are written as a direction file (``xdirection``, ``ydirection``;
``--y_direction random`` makes y a filter-normalized random direction), so
``surface --dir_file`` draws the loss along the sharpest directions.

Under mpirun each rank holds 1/N of the split and the ranks sum every
Hessian-vector product; without MPI one process does it all.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from . import __version__
from .cli import add_flag, exit_on_user_error, new_parser, parse_config
from .curvature import (Hessian, NonFiniteHessian, covered_parameters, density_on_grid, extreme_eigenpairs,
                        hutchinson_trace, plan_products, spectral_density)
from .data import load_splits
from .directions import (IGNORES, NORMS, DirectionSpec, eigenvector_direction, model_tensors,
                         normalize_direction, random_direction, save_directions)
from .distributed import Context
from .errors import LandscapeError
from .task import LOSS_NAMES
from .networks import checkpoint_sha256, load_network
from .store import Spectrum, write_spectrum
from .task import make_task

Y_DIRECTIONS = ("eigenvector", "random")
DEFAULT_BATCH = 256  # samples per product pass where a shard's gradient graph is not kept


@dataclass(frozen=True)
class HessianConfig:
    """Everything one spectrum run needs, as given on the command line."""

    model: str = "resnet56"
    model_file: str | None = None
    dataset: str = "cifar10"
    datapath: str = "cifar10/data"
    download: bool = False
    raw_data: bool = False
    data_split: int = 1
    split: str = "train"
    loss_name: str = "crossentropy"
    batch_size: int | None = None
    xignore: str = "biasbn"
    top_k: int = 2
    tol: float = 1e-4
    max_iter: int = 200
    trace_samples: int = 200
    trace_tol: float = 0.02
    slq_runs: int = 1
    slq_steps: int = 90
    y_direction: str = "eigenvector"
    ynorm: str = "filter"
    seed: int = 123
    spectrum_file: str | None = None
    dir_file: str | None = None
    plot_file: str | None = None
    no_plot: bool = False

    def resolved_spectrum_file(self) -> str:
        return self.spectrum_file or f"{self.model_file}_hessian_{self.split}.h5"

    def resolved_dir_file(self) -> str:
        suffix = "top2" if self.y_direction == "eigenvector" else f"top1_random_ynorm={self.ynorm}"
        return self.dir_file or f"{self.model_file}_weights_xignore={self.xignore}_hessian_{suffix}.h5"

    def resolved_plot_file(self) -> str:
        return self.plot_file or os.path.splitext(self.resolved_spectrum_file())[0] + "_density.pdf"


def build_parser():
    """The hessian command's flags (also the source of the CLI reference in docs/)."""
    p = new_parser("mpi_landscape.hessian", HessianConfig,
                   "Top-k eigenvalues, λmin, trace and spectral density of the Hessian at θ*, "
                   "and its top eigenvectors as a direction file.")
    add_flag(p, "--model", help="registered model name (e.g. resnet56) or package.module:factory")
    add_flag(p, "--model_file", help="checkpoint of θ*")
    add_flag(p, "--dataset", help="cifar10, demo (built in, no download) or package.module:factory")
    add_flag(p, "--datapath", help="folder holding cifar-10-batches-py")
    add_flag(p, "--download", action="store_true", help="download CIFAR-10 into --datapath if missing")
    add_flag(p, "--raw_data", action="store_true", help="no input normalization")
    add_flag(p, "--data_split", type=int, help="use a fixed random 1/N of the split (quick preview)")
    add_flag(p, "--split", choices=("train", "test"), help="the split whose mean loss the Hessian is of")
    add_flag(p, "--loss_name", choices=LOSS_NAMES, help="per-sample loss")
    add_flag(p, "--batch_size", type=int,
             help="batch of each Hessian-vector product pass (default: each rank's whole shard at once, "
                  "its gradient graph built once and kept, where it fits in memory; else 256 samples, "
                  "or on a GPU the most that fit)")
    add_flag(p, "--xignore", choices=IGNORES,
             help="biasbn: the Hessian leaves out biases and BN parameters, as the directions do")
    add_flag(p, "--top_k", type=int, help="how many of the largest eigenvalues to report (at least 2)")
    add_flag(p, "--tol", type=float, help="relative precision of each eigenvalue: Lanczos stops when each wanted one has "
                                                  "settled and its residual is below tol·max(|λ|, |λmax|/100)")
    add_flag(p, "--max_iter", type=int, help="most Lanczos steps (Hessian-vector products)")
    add_flag(p, "--trace_samples", type=int, help="most Hutchinson probes for the trace")
    add_flag(p, "--trace_tol", type=float,
             help="the trace stops once its standard error is below this fraction of it (after 10 probes "
                  "at least; 0: always --trace_samples probes)")
    add_flag(p, "--slq_runs", type=int, help="stochastic Lanczos quadrature runs for the density")
    add_flag(p, "--slq_steps", type=int, help="Lanczos steps of each density run")
    add_flag(p, "--y_direction", choices=Y_DIRECTIONS,
             help="y of the direction file: the second eigenvector, or a random direction")
    add_flag(p, "--ynorm", choices=NORMS, help="normalization of a random y direction")
    add_flag(p, "--seed", type=int, help="seed of the Lanczos start, the probes and a random y")
    add_flag(p, "--spectrum_file", help="spectrum file to write (default: named after --model_file)")
    add_flag(p, "--dir_file", help="direction file of the eigenvectors to write "
                                   "(default: named after --model_file)")
    add_flag(p, "--plot_file", help="density figure (default: the spectrum file's name, _density.pdf)")
    add_flag(p, "--no_plot", action="store_true", help="write no figure")
    return p


def check_request(config: HessianConfig) -> None:
    """Refuse a request that cannot run, before anything is loaded or computed."""
    if not config.model_file:
        raise LandscapeError("--model_file is required: the checkpoint of the trained network θ*")
    for flag in ("top_k", "max_iter", "trace_samples", "slq_runs", "slq_steps", "batch_size"):
        minimum = 2 if flag in ("top_k", "trace_samples") else 1
        if getattr(config, flag) is not None and getattr(config, flag) < minimum:
            raise LandscapeError(f"--{flag} must be at least {minimum}, got {getattr(config, flag)}")
    if config.tol <= 0:
        raise LandscapeError(f"--tol must be positive, got {config.tol}")
    if not config.trace_tol >= 0:
        raise LandscapeError(f"--trace_tol must be 0 or positive, got {config.trace_tol}")
    for path, flag in ((config.resolved_spectrum_file(), "--spectrum_file"),
                       (config.resolved_dir_file(), "--dir_file")):
        if os.path.exists(path):
            raise LandscapeError(f"{flag} {path} exists; it is not overwritten: move it away or "
                                 f"name another file")


def run(config: HessianConfig, comm=None, command_line: list[str] | None = None) -> Spectrum:
    """Compute the spectrum of ``config`` on the ranks of ``comm``; rank 0 writes the files."""
    ctx = Context(comm)
    held: dict = {}

    def prepare() -> None:  # on rank 0 first: a refused request ends every rank with one message
        check_request(config)
        held.update(net=load_network(config.model, config.model_file), data=_load_split(config, config.download))

    ctx.from_root(prepare)
    with ctx.abort_on_error():
        started = time.perf_counter()
        device = ctx.device()
        # rank 0 has downloaded the data if it had to: the others only read it
        net = (held["net"] if ctx.is_root else load_network(config.model, config.model_file)).to(device).eval()
        data = held["data"] if ctx.is_root else _load_split(config, download=False)
        inputs, targets = data.inputs[ctx.rank::ctx.size].to(device), data.targets[ctx.rank::ctx.size].to(device)
        params = covered_parameters(net, config.xignore)
        task = make_task("classification", config.loss_name)
        size, keep = plan_products(net, params, task, lambda b: (inputs[:b], targets[:b]), len(targets),
                                   config.batch_size, DEFAULT_BATCH)

        def batches():
            return ((inputs[i:i + size], targets[i:i + size]) for i in range(0, len(targets), size))

        def reduce(t: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(ctx.sum_over_ranks(t.cpu().numpy())).to(t.device)

        hessian = Hessian(net, params, batches, task, reduce, keep_graph=keep)
        try:
            pairs = extreme_eigenpairs(hessian, hessian.dim, config.top_k, config.tol, config.max_iter,
                                       config.seed, device)
            trace = hutchinson_trace(hessian, hessian.dim, config.trace_samples, config.seed, device,
                                     config.trace_tol)
            nodes, weights = spectral_density(hessian, hessian.dim, config.slq_runs, config.slq_steps,
                                              config.seed, device)
        except NonFiniteHessian:
            raise LandscapeError(f"the loss of --model_file {config.model_file} or its Hessian-vector products "
                                 f"are not finite on the {config.split} split: the network has diverged "
                                 f"there, and its Hessian has no spectrum") from None
        grid, density = density_on_grid(nodes, weights)
        seconds = time.perf_counter() - started
        attrs = {**_provenance(config, ctx, hessian, pairs, seconds, command_line),
                 "trace_probes": trace.probes, "batch_size": size, "kept_gradient_graph": keep}
        spectrum = Spectrum(np.array(pairs.top_values), pairs.min_value, trace.value, trace.error,
                            nodes.numpy(), weights.numpy(), grid.numpy(), density.numpy(), attrs)
        if ctx.is_root:
            _write_outputs(config, net, pairs, spectrum)
        return spectrum


def _load_split(config: HessianConfig, download: bool):
    return load_splits(config.dataset, [config.split], config.datapath, config.raw_data,
                       config.data_split, config.seed, download)[config.split]


def _provenance(config: HessianConfig, ctx: Context, hessian: Hessian, pairs, seconds: float,
                command_line: list[str] | None) -> dict:
    return {
        "command_line": " ".join(command_line or sys.argv), "config": dataclasses.asdict(config),
        "model": config.model, "split": config.split, "model_file_sha256": checkpoint_sha256(config.model_file),
        "dataset_size": hessian.terms, "parameters": hessian.dim, "loss": "mean over the split",
        "residuals": pairs.residuals, "lanczos_steps": pairs.steps, "converged": pairs.converged,
        "hessian_vector_products": hessian.products, "seconds": seconds, "ranks": ctx.size,
        "versions": {"mpi_landscape": __version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "host": platform.node(),
    }


def _write_outputs(config: HessianConfig, net: torch.nn.Module, pairs, spectrum: Spectrum) -> None:
    """The spectrum file, the eigenvector direction file and the density figure; a summary printed."""
    spectrum_file, dir_file = config.resolved_spectrum_file(), config.resolved_dir_file()
    write_spectrum(spectrum_file, spectrum)
    x = eigenvector_direction(net, pairs.top_vectors[0], config.xignore)
    attrs = {"directions": "hessian", "model": config.model, "model_file": config.model_file,
             "split": config.split, "x_eigenvalue": pairs.top_values[0]}
    if config.y_direction == "eigenvector":
        y, ynorm = eigenvector_direction(net, pairs.top_vectors[1], config.xignore), "none"
        attrs["y_eigenvalue"] = pairs.top_values[1]
    else:
        _, theta = model_tensors(net.cpu(), "weights")
        y = normalize_direction(random_direction(theta, torch.Generator().manual_seed(config.seed)),
                                theta, config.ynorm, config.xignore)
        ynorm = config.ynorm
    spec = DirectionSpec("weights", "none", ynorm, config.xignore, config.xignore, seed=config.seed)
    save_directions(dir_file, net, spec, x, y, attrs)
    values = ", ".join(f"{v:.6g}" for v in pairs.top_values)
    print(f"hessian: top-{len(pairs.top_values)} eigenvalues {values}; λmin {pairs.min_value:.6g}; "
          f"trace {spectrum.trace:.6g} ± {spectrum.trace_error:.2g} ({spectrum.attrs['trace_probes']} probes) "
          f"({spectrum.attrs['hessian_vector_products']} Hessian-vector products, "
          f"{spectrum.attrs['seconds']:.1f} s, {spectrum.attrs['ranks']} ranks)", flush=True)
    if not pairs.converged:
        print(f"warning: Lanczos did not reach --tol {config.tol:g} in --max_iter {config.max_iter} "
              f"steps; residuals {', '.join(f'{r:.2g}' for r in pairs.residuals)}", file=sys.stderr)
    print(f"spectrum file: {os.path.abspath(spectrum_file)}", flush=True)
    print(f"direction file: {os.path.abspath(dir_file)}", flush=True)
    if not config.no_plot:
        from .views.plot_spectrum import plot_spectrum_file

        print(f"density figure: {os.path.abspath(plot_spectrum_file(spectrum_file, config.resolved_plot_file()))}",
              flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, run, and turn a user error into one line and exit status 2."""
    argv = sys.argv[1:] if argv is None else argv
    config = parse_config(build_parser(), HessianConfig, argv)
    with exit_on_user_error():
        run(config, command_line=["python", "-m", "mpi_landscape.hessian", *argv])
    return 0


if __name__ == "__main__":
    sys.exit(main())
