"""Curvature of the loss: Hessian-vector products, extreme eigenvalues, trace and spectral density.

The Hessian is that of the same loss a surface shows -- the mean per-sample
loss over the whole split, network in eval mode -- with respect to the
tensors the directions cover. It is never formed: ``Hessian`` applies it to a
vector by double backpropagation, one pass over the (device-resident) split
per product, each batch's product summed in float64 and divided by the
number of samples (the mean, not the sum over batches).

On top of products alone: ``extreme_eigenpairs`` (Lanczos with full
reorthogonalization, λmax and the top k and λmin from one Krylov space),
``hutchinson_trace`` (Rademacher probes, with the standard error of the mean)
and ``spectral_density`` (stochastic Lanczos quadrature, as PyHessian draws it).
No MPI here: a ``reduce`` callable sums the partial products of data shards.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from .directions import is_covered
from .evaluate import PointEvaluator, largest_fitting_batch
from .task import Classification, Task

Matvec = Callable[[torch.Tensor], torch.Tensor]
Batches = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]


class NonFiniteHessian(ArithmeticError):
    """The loss or a Hessian-vector product is not finite: the network has diverged at this point."""


def covered_parameters(net: torch.nn.Module, ignore: str = "biasbn") -> list[torch.nn.Parameter]:
    """The parameters a ``--dir_type weights`` direction moves: with ``ignore="biasbn"`` only dim > 1."""
    return [p for p in net.parameters() if is_covered(p, ignore)]


GRAPH_MEMORY_FRACTION = 0.25  # share of free memory a kept gradient graph may take
GRAPH_PROBE_SAMPLES = 64  # the batch the graph's size per sample is measured on (small: it must fit anywhere)
TRACE_MIN_PROBES = 10  # Hutchinson probes before the standard error is trusted to stop


@dataclass
class BatchGradient:
    """One batch's loss gradient (a tensor per parameter, still carrying its graph), and its loss sum and
    count of loss terms as one float64 pair."""

    gradient: tuple[torch.Tensor, ...]
    sums: torch.Tensor


class Hessian:
    """The Hessian of the mean loss over a split, as a symmetric operator on one flat float64 vector.

    The vector is the concatenation of the covered parameters, each flattened
    in its own shape. ``batches`` yields (inputs, targets) on the device;
    ``task`` gives each batch's loss sum and its count of loss terms (samples,
    or tokens), so the mean is the surface's own; ``reduce`` sums a flat
    float64 tensor over data shards (identity for one process).

    A product differentiates g·v, g the batch's gradient built with its own
    graph. With ``keep_graph`` the gradients and their graphs are built once
    and every later product only backpropagates through them (about half the
    work of building them anew: a forward and a backward pass fewer); call
    ``release`` whenever the network's weights change. Without it each
    product builds each batch's gradient again and frees it at once, for
    splits whose graph does not fit in memory (``plan_products`` decides).
    """

    def __init__(self, net: torch.nn.Module, params: list[torch.nn.Parameter], batches: Batches,
                 task: Task | None = None, reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
                 keep_graph: bool = False):
        self.net, self.params, self.batches = net, params, batches
        self.task, self.reduce, self.keep_graph = task or Classification(), reduce, keep_graph
        self.terms = 0  # known after the first product
        self.sizes = [p.numel() for p in params]
        self.dim = sum(self.sizes)
        self.device = params[0].device
        self.products = 0
        self._kept: list[BatchGradient] | None = None
        # buffers every product reuses: fresh ones each time cost a few per cent of a small network's product
        self._input = torch.empty(self.dim, dtype=params[0].dtype, device=self.device)
        self._pieces = [c.view_as(p) for c, p in zip(self._input.split(self.sizes), params)]
        self._uniform = all(p.dtype == params[0].dtype for p in params)
        self._total = torch.empty(self.dim + 2, dtype=torch.float64, device=self.device)  # H·v sums, loss, count

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """H·v for a flat vector ``v`` of length ``dim``; float64.

        Raises NonFiniteHessian when the loss or the product is not finite.
        """
        self._input.copy_(v)  # v in the parameters' dtype, seen as one piece per parameter
        pieces = self._pieces if self._uniform else [c.to(p.dtype) for c, p in zip(self._pieces, self.params)]
        total = self._total.zero_()
        with torch.enable_grad():
            for batch in self._gradients():
                hv = torch.autograd.grad(batch.gradient, self.params, grad_outputs=pieces,
                                         retain_graph=self.keep_graph)
                total[:-2] += torch.cat([h.reshape(-1) for h in hv])
                total[-2:] += batch.sums
        self.products += 1
        total = self.reduce(total)
        if not math.isfinite(float(total.sum())):  # one reduction: any inf or NaN makes the float64 sum so
            raise NonFiniteHessian("the loss or its Hessian-vector product is not finite")
        self.terms = int(total[-1])  # the loss terms the mean is over: samples, or a split's scored tokens
        return total[:-2] / total[-1]

    def release(self) -> None:
        """Drop the kept gradients and their graphs (the weights are about to change)."""
        self._kept = None

    def _gradients(self) -> Iterable[BatchGradient]:
        if not self.keep_graph:
            return (self._gradient(inputs, targets) for inputs, targets in self.batches())
        if self._kept is None:
            self._kept = [self._gradient(inputs, targets) for inputs, targets in self.batches()]
        return self._kept

    def _gradient(self, inputs, targets) -> BatchGradient:
        task = self.task
        parts = task.sums(task.outputs(self.net, inputs), inputs, targets)
        grads = torch.autograd.grad(parts["loss"].sum(), self.params, create_graph=True)
        loss = parts["loss"].detach().sum(dtype=torch.float64)
        count = parts["count"].sum().to(loss) if "count" in parts else torch.tensor(len(parts["loss"])).to(loss)
        return BatchGradient(grads, torch.stack([loss, count]))


def gradient_graph_bytes(net: torch.nn.Module, params: list[torch.nn.Parameter], task: Task,
                         inputs, targets) -> int:
    """Bytes autograd saves to differentiate one batch's gradient again: what keeping its graph holds."""
    saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        Hessian(net, params, lambda: iter([(inputs, targets)]), task)._gradient(inputs, targets)
    return saved


def free_memory(device: torch.device) -> int:
    """Bytes free on ``device``: the GPU's, or the host's unused memory."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def plan_products(net: torch.nn.Module, params: list[torch.nn.Parameter], task: Task,
                  first: Callable[[int], tuple], samples: int, batch_size: int | None,
                  default_batch: int) -> tuple[int, bool]:
    """The batch and whether to keep the gradient graph, for products over ``samples`` samples.

    ``first(b)`` gives the first ``b`` samples (inputs, targets) on the
    device. When the whole split's gradient graph (measured on a small batch)
    takes at most GRAPH_MEMORY_FRACTION of the free memory, it is kept, built
    from the whole split in one batch (the fewest passes, and on a CPU the
    fastest for small networks). Otherwise each product rebuilds it batch by
    batch: ``default_batch`` samples, or on a GPU the largest batch whose
    product fits. A ``batch_size`` the user gave is kept either way.
    """
    device = params[0].device
    probe = min(batch_size or default_batch, samples, GRAPH_PROBE_SAMPLES)
    per_sample = gradient_graph_bytes(net, params, task, *first(probe)) / probe
    keep = per_sample * samples <= GRAPH_MEMORY_FRACTION * free_memory(device)
    if batch_size:
        return batch_size, keep
    if keep:
        return samples, True
    if device.type != "cuda":
        return min(default_batch, samples), False
    zeros = torch.zeros(sum(p.numel() for p in params), dtype=torch.float64, device=device)

    def product_fits(batch: int) -> None:
        Hessian(net, params, lambda: iter([first(batch)]), task)(zeros)
        torch.cuda.synchronize(device)

    return min(largest_fitting_batch(product_fits, default_batch, release=torch.cuda.empty_cache), samples), False


@dataclass
class LanczosRun:
    """A Krylov basis Q (steps × dim, orthonormal rows) and its tridiagonal T = QᵀHQ."""

    alphas: torch.Tensor  # on the host
    betas: torch.Tensor  # off-diagonal, on the host; betas[-1] is the residual norm after the last step
    basis: torch.Tensor  # on the device

    def tridiagonal(self) -> torch.Tensor:
        m = len(self.alphas)
        off = self.betas[:m - 1]
        return torch.diag(self.alphas) + torch.diag(off, 1) + torch.diag(off, -1)

    def ritz(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Ritz values (ascending), their vectors in the Krylov basis, and residual norms ‖Hx − θx‖."""
        theta, s = torch.linalg.eigh(self.tridiagonal())
        return theta, s, (self.betas[-1] * s[-1]).abs()

    def vectors(self, s: torch.Tensor, which: list[int]) -> torch.Tensor:
        """The Ritz vectors ``which`` (columns of ``s``) in the full space, one per row."""
        return s[:, which].T.to(self.basis.device) @ self.basis


def lanczos(matvec: Matvec, start: torch.Tensor, max_steps: int,
            converged: Callable[[LanczosRun], bool] = lambda run: False) -> LanczosRun:
    """Lanczos iteration from ``start`` with full reorthogonalization (twice, classical Gram-Schmidt).

    Stops after ``max_steps`` steps, when ``converged(run)`` holds, or when the
    Krylov space is invariant (then its Ritz pairs are exact).
    """
    dim = start.numel()
    max_steps = min(max_steps, dim)
    basis = torch.empty(max_steps, dim, dtype=torch.float64, device=start.device)  # rows past the step unread
    alphas: list[float] = []
    betas: list[float] = []  # one host sync per step; T and its eigenproblem stay on the host
    q = start.double() / start.double().norm()
    while True:
        step = len(alphas)
        basis[step] = q
        w = matvec(q)
        alphas.append(float(torch.dot(w, q)))
        known = basis[:step + 1]
        for _ in range(2):
            w = w - known.T @ (known @ w)
        beta = w.norm()
        betas.append(float(beta))
        run = LanczosRun(torch.tensor(alphas, dtype=torch.float64), torch.tensor(betas, dtype=torch.float64),
                         known)
        invariant = betas[-1] <= 1e-12 * (max(map(abs, alphas)) + betas[-1])
        if invariant or step + 1 == max_steps or converged(run):
            return run
        q = w / beta


@dataclass
class Eigenpairs:
    """The top-k eigenpairs (largest first) and the smallest one, with how they were found."""

    top_values: list[float]
    top_vectors: torch.Tensor  # k × dim
    min_value: float
    min_vector: torch.Tensor
    residuals: list[float]  # ‖Hx − λx‖ of the top k, then of the smallest
    steps: int
    converged: bool

    @property
    def max_value(self) -> float:
        return self.top_values[0]


EIGENVALUE_FLOOR = 0.01  # an eigenvalue's tolerance is relative to max(|λ|, this share of ‖H‖)
SETTLED_STEPS = 2  # a wanted Ritz value must have moved less than its tolerance over this many steps


class ExtremesSettled:
    """The stopping test of ``extreme_eigenpairs``: each wanted Ritz value (the k largest, and the
    smallest) has settled and has a small residual, each against a tolerance of its own.

    A Ritz value θ with residual r = ‖Hx − θx‖ lies within r of some
    eigenvalue, not necessarily the extreme one: a start vector that barely
    touches the extreme eigenvector lets a Ritz value sit next to a neighbouring
    eigenvalue, residual small, for several steps before the extreme one
    emerges (on a trained MLP, λmin = −0.037 reported against a true −0.043 at
    tol 1e-3, with tol·|λmax| as the only yardstick). So each wanted value
    must satisfy r ≤ tol·s and have moved by at most tol·s over each of the
    last SETTLED_STEPS steps, where s = max(|θ|, EIGENVALUE_FLOOR·max|θ|) is
    that value's own scale: a small λmin must be found to its own relative
    precision, which takes the few steps more that let a hidden extreme emerge.
    """

    def __init__(self, k: int, tol: float):
        self.k, self.tol = k, tol
        self.history: list[torch.Tensor] = []  # the wanted Ritz values after each step
        self.met = False  # whether the last call found them settled

    def wanted(self, m: int) -> list[int]:
        """Indices (into ascending Ritz values) of the k largest, largest first, then of the smallest."""
        return list(range(m - 1, max(m - 1 - self.k, -1), -1)) + [0]

    def __call__(self, run: LanczosRun) -> bool:
        theta, _, residuals = run.ritz()
        wanted = self.wanted(len(theta))
        values = theta[wanted]
        self.history.append(values)
        if len(theta) <= self.k or len(self.history) <= SETTLED_STEPS:
            return False
        scale = self.tol * torch.clamp(values.abs(), min=EIGENVALUE_FLOOR * float(theta.abs().max()))
        recent = self.history[-SETTLED_STEPS - 1:]
        settled = all(len(a) == len(b) and bool(((a - b).abs() <= scale).all()) for a, b in zip(recent, recent[1:]))
        self.met = settled and bool((residuals[wanted] <= scale).all())
        return self.met


def extreme_eigenpairs(matvec: Matvec, dim: int, k: int = 1, tol: float = 1e-4, max_steps: int = 100,
                       seed: int = 0, device: torch.device | str = "cpu") -> Eigenpairs:
    """λmax (and the k largest) and λmin of a symmetric operator, by Lanczos.

    Converged when each wanted Ritz value has settled and its residual
    ‖Hx − θx‖ is at most tol·max(|θ|, ‖H‖/100) (``ExtremesSettled``; max|θ|
    estimates ‖H‖): an eigenvalue of H then lies that close to it -- in
    practice far closer, the error goes with the residual squared -- so λmax
    and λmin are each found to a relative precision of about ``tol`` (λmin
    to tol·‖H‖/100 where it is smaller than that), and |λmin/λmax| too.
    The start vector is a seeded Gaussian drawn on the CPU, so every process
    of a sharded job runs the same iteration.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    start = torch.randn(dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    converged = ExtremesSettled(k, tol)
    run = lanczos(matvec, start.to(device), max_steps, converged)
    theta, s, residuals = run.ritz()
    wanted = converged.wanted(len(theta))
    vectors = run.vectors(s, wanted)
    exact = len(theta) == dim or float(run.betas[-1]) <= 1e-12 * float(theta.abs().max())
    return Eigenpairs([float(theta[i]) for i in wanted[:-1]], vectors[:-1], float(theta[0]), vectors[-1],
                      [float(residuals[i]) for i in wanted], len(theta), exact or converged.met)


@dataclass
class TraceEstimate:
    """Hutchinson's tr(H): the mean of the probes, its standard error, and how many probes it took."""

    value: float
    error: float
    probes: int


def hutchinson_trace(matvec: Matvec, dim: int, samples: int = 100, seed: int = 0,
                     device: torch.device | str = "cpu", rel_error: float = 0.0) -> TraceEstimate:
    """tr(H) as the mean of vᵀHv over Rademacher probes v, with the standard error of that mean.

    Stops after ``samples`` probes, or earlier -- once TRACE_MIN_PROBES have
    been drawn -- when the standard error is at most ``rel_error``·|mean|
    (0: always ``samples``). The probes come from a seeded CPU generator, so
    every process of a sharded job draws the same ones.
    """
    generator = torch.Generator().manual_seed(seed)
    values: list[float] = []
    while len(values) < samples:
        v = (torch.randint(0, 2, (dim,), generator=generator, dtype=torch.float64) * 2 - 1).to(device)
        values.append(float(torch.dot(v, matvec(v))))
        estimates = torch.tensor(values, dtype=torch.float64)
        mean = float(estimates.mean())
        error = float(estimates.std() / math.sqrt(len(values))) if len(values) > 1 else float("inf")
        if len(values) >= TRACE_MIN_PROBES and error <= rel_error * abs(mean):
            break
    return TraceEstimate(mean, error, len(values))


def spectral_density(matvec: Matvec, dim: int, runs: int = 1, steps: int = 90, seed: int = 0,
                     device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Stochastic Lanczos quadrature: nodes and weights (runs × steps) of the spectral measure.

    Each run starts Lanczos from a Rademacher vector; the Ritz values are the
    nodes and the squared first components of the Ritz vectors their weights,
    so each run's weights sum to 1 and Σ wᵢ f(θᵢ) estimates tr f(H)/dim.
    """
    generator = torch.Generator().manual_seed(seed)
    nodes, weights = [], []
    steps = min(steps, dim)
    for _ in range(runs):
        v = torch.randint(0, 2, (dim,), generator=generator, dtype=torch.float64) * 2 - 1
        run = lanczos(matvec, v.to(device), steps)
        theta, s = torch.linalg.eigh(run.tridiagonal())
        pad = steps - len(theta)  # an invariant Krylov space ends a run early: zero-weight padding
        nodes.append(torch.cat([theta, theta.new_full((pad,), float(theta[-1]))]))
        weights.append(torch.cat([s[0] ** 2, s.new_zeros(pad)]))
    return torch.stack(nodes), torch.stack(weights)


def density_on_grid(nodes: torch.Tensor, weights: torch.Tensor, points: int = 10000,
                    sigma_squared: float = 1e-5, margin: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """The spectral density smoothed by a Gaussian, on a grid spanning the nodes (PyHessian's picture).

    The kernel's variance is ``sigma_squared``·max(1, range of the nodes), the
    grid reaches ``margin`` beyond the extreme nodes, and the density integrates to 1 over it.
    """
    lo, hi = float(nodes.min()) - margin, float(nodes.max()) + margin
    grid = torch.linspace(lo, hi, points, dtype=torch.float64)
    sigma = math.sqrt(sigma_squared * max(1.0, hi - lo))
    density = torch.zeros(points, dtype=torch.float64)
    for theta, w in zip(nodes.double(), weights.double()):
        kernel = torch.exp(-((grid[:, None] - theta[None, :]) ** 2) / (2 * sigma ** 2))
        density += kernel @ w / (sigma * math.sqrt(2 * math.pi))
    density /= len(nodes)
    total = torch.trapezoid(density, grid)
    return grid, density / total if total > 0 else density


HESSIAN_METRICS = ("max_eig", "min_eig", "eig_ratio")  # the reference's dataset names, and |λmin/λmax|


class PointCurvature:
    """``max_eig``, ``min_eig`` and ``eig_ratio`` of the Hessian at whatever point the model is set to.

    ``batches`` streams the split the Hessian is taken on (device-resident,
    as for loss points); the same seeded start vector is used at every point,
    so a point's values do not depend on which rank computed it or when.
    """

    def __init__(self, net: torch.nn.Module, batches: Batches, task: Task | None = None,
                 ignore: str = "biasbn", tol: float = 1e-3, max_steps: int = 100, seed: int = 0,
                 keep_graph: bool = False):
        self.hessian = Hessian(net, covered_parameters(net, ignore), batches, task, keep_graph=keep_graph)
        self.tol, self.max_steps, self.seed = tol, max_steps, seed

    def __call__(self) -> dict[str, float]:
        """The point's curvature; NaN for all three where the network has diverged (done, as loss points are)."""
        try:
            pairs = extreme_eigenpairs(self.hessian, self.hessian.dim, 1, self.tol, self.max_steps,
                                       self.seed, self.hessian.device)
        except NonFiniteHessian:
            return dict.fromkeys(HESSIAN_METRICS, math.nan)
        finally:
            self.hessian.release()  # the next point moves the weights
        ratio = abs(pairs.min_value / pairs.max_value) if pairs.max_value != 0 else float("inf")
        return {"max_eig": pairs.max_value, "min_eig": pairs.min_value, "eig_ratio": ratio}

    @classmethod
    def of_evaluator(cls, evaluator: PointEvaluator, split: str, ignore: str, tol: float,
                     max_steps: int, seed: int) -> "PointCurvature":
        """Curvature on ``split`` of a PointEvaluator's model and resident data (its point, its device).

        The batch and whether each point's gradient graph is kept for all its
        products are ``plan_products``'s: the whole split at once where its
        graph fits, else the evaluator's batch (on a GPU, the largest whose
        product fits: double backward takes several times a forward pass's memory).
        """
        start, end = evaluator.data.split(split)
        params = covered_parameters(evaluator.net, ignore)

        def first(batch: int) -> tuple:
            x, t, _ = next(evaluator.data.batches(batch, start, min(start + batch, end)))
            return x, t

        size, keep = plan_products(evaluator.net, params, evaluator.task, first, end - start,
                                   evaluator.fixed_batch_size, evaluator.batch_size)

        def batches():
            return ((x, t) for x, t, _ in evaluator.data.batches(size, start, end))

        return cls(evaluator.net, batches, evaluator.task, ignore, tol, max_steps, seed, keep)
