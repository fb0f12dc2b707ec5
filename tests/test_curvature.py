"""Curvature against an exact Hessian: a network of a few hundred parameters whose Hessian
``torch.autograd.functional.hessian`` forms outright."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mpi_landscape.curvature import (Hessian, covered_parameters, density_on_grid, extreme_eigenpairs,
                                     gradient_graph_bytes, hutchinson_trace, lanczos, plan_products,
                                     spectral_density)
from mpi_landscape.task import Classification
from mpi_landscape.data import demo_split

from conftest import train_demo_net


def tiny_net(seed: int = 0) -> torch.nn.Module:
    """An MLP with BatchNorm, a few hundred weights, briefly trained on the demo spirals."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(2, 12), torch.nn.BatchNorm1d(12), torch.nn.Tanh(),
                              torch.nn.Linear(12, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3))
    data = demo_split("train", 600)
    opt = torch.optim.Adam(net.parameters(), lr=3e-2)
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(net(data.inputs), data.targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Products of a net this small are fastest on one thread, above all on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def problem(one_thread):
    """The operator, the exact Hessian of the same mean loss, and its eigendecomposition."""
    net = tiny_net()
    data = demo_split("train", 600)
    params = covered_parameters(net, "biasbn")
    batches = lambda: ((data.inputs[i:i + 256], data.targets[i:i + 256]) for i in range(0, 600, 256))
    operator = Hessian(net, params, batches)

    names = [n for n, p in net.named_parameters() if any(p is q for q in params)]
    shapes = [p.shape for p in params]
    theta = torch.cat([p.detach().reshape(-1) for p in params]).double()

    def mean_loss(flat: torch.Tensor) -> torch.Tensor:
        pieces, offset = {}, 0
        for name, shape in zip(names, shapes):
            n = int(np.prod(shape))
            pieces[name] = flat[offset:offset + n].view(shape).float()
            offset += n
        out = torch.func.functional_call(net, pieces, (data.inputs,))
        return torch.nn.functional.cross_entropy(out.double(), data.targets)

    exact = torch.autograd.functional.hessian(mean_loss, theta)
    values, vectors = torch.linalg.eigh(exact)
    return operator, exact, values, vectors


def test_products_equal_the_exact_hessian_times_a_vector(problem):
    operator, exact, _, _ = problem
    v = torch.randn(operator.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert operator.dim == exact.shape[0] == 12 * 2 + 12 * 12 + 3 * 12  # biases and BN left out
    first, second = operator(v), operator(-2 * v)  # buffers are reused, results are their own
    assert torch.allclose(first, exact @ v, rtol=1e-4, atol=1e-6 * float(exact.abs().max()))
    assert torch.allclose(second, -2 * first, rtol=1e-6)


def test_extreme_eigenvalues_and_vectors_match_the_exact_ones(problem):
    operator, _, values, vectors = problem
    pairs = extreme_eigenpairs(operator, operator.dim, k=3, tol=1e-5, max_steps=200)
    assert pairs.converged
    assert pairs.max_value == pytest.approx(float(values[-1]), rel=1e-4)
    assert pairs.min_value == pytest.approx(float(values[0]), rel=1e-4)
    assert values[0] < 0 < values[-1]  # a real saddle-ish spectrum: λmin from the same Krylov space
    assert pairs.top_values == pytest.approx(values.flip(0)[:3].tolist(), rel=1e-3)
    cos_max = torch.dot(pairs.top_vectors[0], vectors[:, -1]).abs()
    cos_min = torch.dot(pairs.min_vector, vectors[:, 0]).abs()
    assert cos_max > 0.999 and cos_min > 0.999
    assert pairs.steps < operator.dim  # far fewer products than forming the Hessian


def test_a_loose_tolerance_stops_earlier_than_a_tight_one(problem):
    operator = problem[0]
    loose = extreme_eigenpairs(operator, operator.dim, tol=1e-2, max_steps=200)
    tight = extreme_eigenpairs(operator, operator.dim, tol=1e-6, max_steps=200)
    assert loose.steps < tight.steps
    assert loose.max_value == pytest.approx(tight.max_value, rel=1e-2)


@pytest.fixture(scope="module")
def trained_demo(one_thread):
    """The trained demo MLP on 300 samples, whose λmin is negative and small beside λmax: its operator
    per ``--xignore`` and an independent, tightly converged reference (ARPACK) for both extremes."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    net, data = train_demo_net(), demo_split("train", 300)
    cases = {}
    for ignore in ("none", "biasbn"):
        operator = Hessian(net, covered_parameters(net, ignore), lambda: iter([(data.inputs, data.targets)]))
        linear = LinearOperator((operator.dim, operator.dim), dtype=np.float64,
                                matvec=lambda v: operator(torch.from_numpy(v.ravel())).numpy())
        lowest = eigsh(linear, k=1, which="SA", tol=1e-12, ncv=60, v0=np.ones(operator.dim))[0][0]
        highest = eigsh(linear, k=1, which="LA", tol=1e-12, ncv=60, v0=np.ones(operator.dim))[0][0]
        cases[ignore] = operator, lowest, highest
    return cases


@pytest.mark.parametrize("tol", [1e-4, 1e-3])  # the hessian command's default, and the surface's
@pytest.mark.parametrize("ignore,seed", [("none", 3), ("none", 7), ("biasbn", 123)])
def test_lambda_min_is_right_at_every_tolerance(trained_demo, tol, ignore, seed):
    """Starts from which a neighbour of λmin converges first: λmin must not stop there."""
    operator, lowest, highest = trained_demo[ignore]
    assert operator.dim == (4803 if ignore == "none" else 4416)
    assert lowest < 0 < highest and abs(lowest) < 0.1 * highest
    pairs = extreme_eigenpairs(operator, operator.dim, tol=tol, max_steps=200, seed=seed)
    assert pairs.converged
    assert abs(pairs.max_value - highest) <= tol * highest
    assert abs(pairs.min_value - lowest) <= tol * max(abs(lowest), 0.01 * highest)


def test_trace_is_within_its_reported_error(problem):
    operator, exact, _, _ = problem
    trace = hutchinson_trace(operator, operator.dim, samples=100, seed=3)
    assert trace.probes == 100 and 0 < trace.error < 0.2 * abs(float(exact.trace()))
    assert abs(trace.value - float(exact.trace())) < 3 * trace.error


def test_trace_stops_at_its_target_error(problem):
    operator, exact, _, _ = problem
    trace = hutchinson_trace(operator, operator.dim, samples=1000, seed=3, rel_error=0.05)
    assert 10 <= trace.probes < 1000 and trace.error <= 0.05 * abs(trace.value)
    assert abs(trace.value - float(exact.trace())) < 3 * trace.error
    longer = hutchinson_trace(operator, operator.dim, samples=1000, seed=3, rel_error=0.02)
    assert longer.probes > trace.probes and longer.error <= 0.02 * abs(longer.value)


def test_a_kept_gradient_graph_gives_the_same_products_and_is_planned_where_it_fits(problem):
    operator = problem[0]
    kept = Hessian(operator.net, operator.params, operator.batches, keep_graph=True)
    v = torch.randn(operator.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for _ in range(2):  # the second product reuses the first one's graph
        assert torch.allclose(kept(v), operator(v), rtol=1e-6, atol=1e-9)
    assert kept._kept is not None
    kept.release()
    assert kept._kept is None
    data = demo_split("train", 600)
    first = lambda b: (data.inputs[:b], data.targets[:b])  # noqa: E731
    assert plan_products(operator.net, operator.params, Classification(), first, 600, None, 256) == (600, True)
    assert plan_products(operator.net, operator.params, Classification(), first, 600, 100, 256) == (100, True)
    assert gradient_graph_bytes(operator.net, operator.params, Classification(), *first(200)) > \
        gradient_graph_bytes(operator.net, operator.params, Classification(), *first(100))


def test_spectral_density_reproduces_moments_of_the_spectrum(problem):
    operator, exact, values, _ = problem
    nodes, weights = spectral_density(operator, operator.dim, runs=4, steps=40, seed=5)
    assert nodes.shape == weights.shape == (4, 40)
    assert torch.allclose(weights.sum(dim=1), torch.ones(4, dtype=torch.float64))
    # each run's Σ w θ is vᵀHv/vᵀv, an unbiased estimate of tr(H)/dim; the extreme nodes are λmax, λmin
    first_moments = (nodes * weights).sum(dim=1)
    error = float(first_moments.std()) / 2
    assert abs(float(first_moments.mean()) - float(values.mean())) < 3 * error
    assert float(nodes.max()) == pytest.approx(float(values[-1]), rel=1e-3)
    grid, density = density_on_grid(nodes, weights, points=2000)
    assert float(torch.trapezoid(density, grid)) == pytest.approx(1.0, rel=1e-6)
    assert grid[0] < values[0] and grid[-1] > values[-1]


def test_lanczos_on_a_known_matrix_stops_at_an_invariant_space():
    diagonal = torch.tensor([5.0, -2.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    run = lanczos(lambda v: diagonal * v, torch.ones(5, dtype=torch.float64), max_steps=5)
    assert len(run.alphas) == 3  # three distinct eigenvalues span the Krylov space
    theta = run.ritz()[0]
    assert torch.allclose(theta, torch.tensor([-2.0, 1.0, 5.0], dtype=torch.float64))
    assert torch.allclose(run.basis @ run.basis.T, torch.eye(3, dtype=torch.float64), atol=1e-12)


def test_agrees_with_pyhessian_on_the_same_model_and_data():
    """PyHessian (power iteration, Hutchinson, all parameters, batch-size-weighted mean) and ours."""
    from pyhessian import hessian as pyhessian

    net = tiny_net(seed=2)
    data = demo_split("train", 600)
    loader = [(data.inputs[i:i + 200], data.targets[i:i + 200]) for i in range(0, 600, 200)]
    theirs = pyhessian(net, torch.nn.CrossEntropyLoss(), dataloader=loader, cuda=False)
    torch.manual_seed(0)
    their_top = theirs.eigenvalues(maxIter=500, tol=1e-6)[0][0]
    their_samples = np.array(theirs.trace(maxIter=100, tol=0.0))
    operator = Hessian(net, covered_parameters(net, "none"), lambda: iter(loader))
    ours = extreme_eigenpairs(operator, operator.dim, tol=1e-6, max_steps=300)
    trace = hutchinson_trace(operator, operator.dim, samples=100, seed=4)
    assert ours.max_value == pytest.approx(their_top, rel=1e-3)
    their_error = their_samples.std() / np.sqrt(len(their_samples))
    assert abs(trace.value - their_samples.mean()) < 3 * np.hypot(trace.error, their_error)
