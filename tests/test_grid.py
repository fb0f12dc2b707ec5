"""Grid specs, flat indices and the coarse-to-fine order."""

import numpy as np
import pytest

from mpi_landscape.errors import LandscapeError
from mpi_landscape.grid import Axis, Grid, refinement_levels


def test_parse_reference_spec():
    axis = Axis.parse("-1:1:51")
    assert (axis.lo, axis.hi, axis.num) == (-1.0, 1.0, 51)
    np.testing.assert_array_equal(axis.coordinates(), np.linspace(-1, 1, 51))
    assert axis.spec == "-1:1:51"


@pytest.mark.parametrize("spec", ["-1:1", "a:1:5", "-1:1:5.5", "1:-1:5", "-1:1:0", "", "-1:1:5:2", "nan:1:3"])
def test_malformed_specs_are_refused(spec):
    with pytest.raises(LandscapeError, match="--x"):
        Axis.parse(spec)


@pytest.mark.parametrize("count, num", [("1e9", 10**9), ("+51", 51), ("2.0e1", 20)])
def test_a_whole_count_in_any_notation_is_a_grid_spec(count, num):
    """``--x=-1:1:1e9`` is a spec that is too large (refused later, for memory), not a malformed one."""
    assert Axis.parse(f"-1:1:{count}").num == num


@pytest.mark.parametrize("spec", ["-1:1:inf", "-1:1:1e400", "-1:1:2.5e0"])
def test_a_count_that_is_not_whole_is_refused(spec):
    with pytest.raises(LandscapeError, match="not a grid spec"):
        Axis.parse(spec)


def test_single_point_axis_is_allowed():
    assert Axis.parse("0:0:1").coordinates().tolist() == [0.0]


def test_flat_index_matches_ravel_of_ny_nx_arrays():
    grid = Grid.parse("-1:1:5", "-2:2:3")
    assert grid.shape == (3, 5)
    z = np.arange(15).reshape(3, 5)
    for i in range(grid.size):
        iy, ix = grid.unravel(i)
        assert z[iy, ix] == z.ravel()[i] and grid.ravel(iy, ix) == i
    assert grid.point(grid.ravel(2, 4)) == (1.0, 2.0)
    assert grid.point(grid.ravel(0, 0)) == (-1.0, -2.0)


def test_1d_grid():
    grid = Grid.parse("-0.5:1.5:401")
    assert grid.shape == (401,) and not grid.is_2d
    assert grid.point(0) == (-0.5, 0.0) and grid.point(400) == (1.5, 0.0)
    with pytest.raises(IndexError):
        grid.unravel(401)


def test_refinement_levels_bisect_with_endpoints_first():
    levels = refinement_levels(9)
    assert levels.tolist() == [0, 3, 2, 3, 1, 3, 2, 3, 0]
    assert (refinement_levels(51) >= 0).all()
    assert refinement_levels(1).tolist() == [0]


@pytest.mark.parametrize("nx,ny", [(9, 9), (51, 51), (21, 7), (2, 3)])
def test_coarse_to_fine_is_a_permutation_whose_prefixes_are_coarse_grids(nx, ny):
    grid = Grid.parse(f"-1:1:{nx}", f"-1:1:{ny}")
    order = grid.coarse_to_fine()
    assert sorted(order.tolist()) == list(range(grid.size))
    assert set(order[:4].tolist()) == {0, nx - 1, (ny - 1) * nx, ny * nx - 1}  # corners first
    lx, ly = refinement_levels(nx), refinement_levels(ny)
    level = np.maximum(ly[:, None], lx[None, :]).ravel()[order]
    assert (np.diff(level) >= 0).all()
    # After all points of level <= 1 the finished set is a full (sub)grid product.
    first = order[level <= 1]
    rows = {i // nx for i in first}
    cols = {i % nx for i in first}
    assert len(first) == len(rows) * len(cols)
