"""Level pools: water bodies and trenches whose surface stays level (simulation/flood/pools.py)."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from scipy import ndimage

from simulation.flood.domain import _shore, trenches
from simulation.flood.rain import Hyetograph
from simulation.flood.solver import Boundaries, Edge, Grid, Options, State, simulate


def lake_basin(ny: int = 24, nx: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Banks rising from 2 m away from a bowl with beds 0-1 m below 0 and an island; the
    bowl's cells are the pool."""
    rng = np.random.default_rng(11)
    pool = np.zeros((ny, nx), bool)
    pool[6:18, 8:24] = True
    z = 2.0 + 0.05 * ndimage.distance_transform_edt(~pool)
    z[pool] = rng.random(pool.sum()) * 1.0 - 1.0  # beds between −1 and 0 m
    z[10:13, 14:17] = 1.5  # an island inside the pool, above its level
    return z, pool


def surface(state: State, grid: Grid, cells: np.ndarray) -> np.ndarray:
    wet = cells & (state.h > 0)
    return (grid.z + state.h)[wet]


def test_a_pool_at_rest_does_not_move():
    z, pool = lake_basin()
    grid = Grid(z, 2.0, 2.0, 0.03, pool=pool)
    state = State.level(grid, 0.5)
    before = state.h.copy()
    result = simulate(grid, 600.0, state=state, boundaries=Boundaries.all(Edge("free")))
    assert np.abs(result.state.h - before).max() < 1e-12
    assert np.abs(result.state.qx).max() < 1e-12 and np.abs(result.state.qy).max() < 1e-12
    assert result.state.h[11, 15] == 0.0  # the island stays dry


def test_a_walled_pool_rises_by_exactly_the_rain_on_it():
    # float64 only: float32 rounds each step's rain on a metre of water by up to 4e-4 of it,
    # the same way on every cell, pool or not (the budget reports that error).
    dtype, tolerance = "float64", 1e-12
    z, pool = lake_basin()
    z[~pool] = 5.0  # banks far above the level: nothing runs in from them
    # The whole grid is the pool's: its rain, the island's included, ends in it.
    grid = Grid(z, 2.0, 2.0, 0.03, active=pool, pool=pool)
    state = State.level(grid, 0.5, dtype)
    rain = Hyetograph.constant(50.0, 1800.0)  # 25 mm
    result = simulate(grid, 1800.0, rain=rain, state=state, options=Options(dtype=dtype))
    balance = result.mass_balance
    cells = pool.sum()
    # To round-off of the stored volume, which the rain is a small part of.
    assert balance.final_storage - balance.initial_storage == pytest.approx(
        0.025 * cells * 4.0, abs=tolerance * balance.final_storage)
    eta = surface(result.state, grid, pool)
    # Level to round-off, and above 0.5 m by the rain over the wet part of the bowl.
    assert eta.max() - eta.min() < 1e-12
    assert eta.mean() > 0.5 + 0.025
    assert balance.relative_error < tolerance


def test_a_pool_takes_the_runoff_of_its_banks_and_the_budget_closes():
    z, pool = lake_basin()
    grid = Grid(z, 2.0, 2.0, np.full(z.shape, 0.03), pool=pool)
    state = State.level(grid, 0.2)
    state.h[~pool] = 0.0  # the banks start dry
    rain = Hyetograph.constant(80.0, 1800.0)
    result = simulate(grid, 3600.0, rain=rain, state=state)
    balance = result.mass_balance
    assert balance.relative_error < 1e-12
    # Closed edges: every drop is stored; what the banks still hold is a film, the rest
    # (the rain on them, drained) is in the pool, whose surface is level.
    on_banks = float(result.state.h[~pool].sum()) * 4.0
    in_pool = float(result.state.h[pool].sum()) * 4.0
    initial_pool = balance.initial_storage
    assert in_pool + on_banks == pytest.approx(initial_pool + balance.rain, rel=1e-12)
    assert in_pool - initial_pool > 0.7 * balance.rain
    eta = surface(result.state, grid, pool)
    assert eta.max() - eta.min() < 1e-12


def test_a_deep_pool_does_not_set_the_time_step():
    z, pool = lake_basin()
    z[pool] -= 5.0  # 5-6 m deep
    rain = Hyetograph.constant(30.0, 900.0)
    runs = {}
    for mask in (None, pool):
        grid = Grid(z, 2.0, 2.0, 0.03, pool=mask)
        state = State.level(grid, 0.0)
        state.h[~pool] = 0.0
        runs["pool" if mask is not None else "cells"] = simulate(
            grid, 900.0, rain=rain, state=state)
    # √(g h) over 5.5 m caps the ordinary step near 0.19 s; the bank films allow seconds.
    assert runs["cells"].steps > 900.0 / 0.25
    assert runs["pool"].steps < runs["cells"].steps / 5
    assert runs["pool"].mass_balance.relative_error < 1e-12
    row, col, _ = runs["pool"].deepest_cell()
    assert not pool[row, col]  # the reported step-setting cell is outside the pool


def test_a_pool_above_its_rim_spills_down_to_it():
    ny, nx = 10, 40
    z = np.full((ny, nx), 1.0)
    z[:, 12:] = 1.0 - 0.01 * np.arange(nx - 12)  # a slope east of the rim, to a free edge
    pool = np.zeros((ny, nx), bool)
    pool[:, :10] = True
    z[pool] = -2.0
    grid = Grid(z, 2.0, 2.0, 0.03, pool=pool)
    state = State.level(grid, 1.1)
    state.h[~pool] = 0.0
    result = simulate(grid, 3600.0, state=state, boundaries=Boundaries(east=Edge("free")))
    eta = surface(result.state, grid, pool)
    assert eta.max() - eta.min() < 1e-12
    assert 1.0 < eta.mean() < 1.02  # drained down to (just above) the rim
    balance = result.mass_balance
    assert balance.outflow == pytest.approx(balance.initial_storage - balance.final_storage,
                                            rel=1e-12)
    assert balance.outflow > 0.09 * 10 * ny * 4.0


def test_pool_mask_must_match_the_bed():
    from simulation.flood.errors import FloodInputError

    with pytest.raises(FloodInputError, match="pool mask"):
        Grid(np.zeros((4, 4)), 1.0, 1.0, 0.03, pool=np.ones((3, 3), bool))


def test_trench_cells_are_the_depression_under_the_underpass():
    ny, nx = 60, 80
    bed = np.full((ny, nx), 10.0)
    bed[28:33, 20:60] = 10.0 - np.minimum(np.arange(40) - 0, 39 - np.arange(40)).clip(0, 5)
    bed[10, 70] = 9.0  # a pit elsewhere: not the underpass's
    transform = Affine(2.0, 0.0, 0.0, 0.0, -2.0, ny * 2.0)
    line = shapely.LineString([(40.0, 61.0), (120.0, 61.0)])  # along row 29-30
    cells = trenches(bed, [line], transform)
    assert cells[30, 30] and cells[30, 50]
    assert not cells[10, 70] and not cells[0, 0]
    assert (bed[cells] < 10.0).all() and cells.sum() == (bed < 10.0).sum() - 1


def test_shore_cells_below_a_lake_level_join_it():
    bed = np.array([[0.0, 0.0, 0.5, 0.8, 2.0, 0.1]])
    level = np.array([[1.0, 1.0, np.nan, np.nan, np.nan, np.nan]])
    shore = _shore(bed, level, 3)
    # Reached through ground below the level; the low cell beyond the 2 m bank is not.
    assert shore.tolist() == [[False, False, True, True, False, False]]
    assert level[0, 3] == 1.0 and np.isnan(level[0, 5])


def test_a_pool_rising_over_its_shore_takes_the_flooded_shore_in():
    ny, nx = 8, 30
    z = np.full((ny, nx), 3.0)  # high ground to the east
    pool = np.zeros((ny, nx), bool)
    pool[:, :10] = True
    z[pool] = -2.0
    z[:, 10:25] = 0.0  # a shelf the rising lake floods
    runs = {}
    for join in (0.3, 100.0):
        grid = Grid(z, 2.0, 2.0, 0.03, pool=pool)
        state = State.level(grid, -0.1)
        runs[join] = simulate(grid, 900.0, state=state,
                              boundaries=Boundaries(west=Edge("flow", 0.05)),
                              options=Options(pool_join_depth=join))
    grown = runs[0.3]
    # 720 m³ in: 32 m³ to the shelf's height, the rest over 800 m² of lake and shelf.
    assert grown.pool[:, 10:25].all() and not grown.pool[:, 25:].any()
    assert not runs[100.0].pool[:, 10:25].any()
    eta = surface(grown.state, Grid(z, 2.0, 2.0, 0.03), grown.pool)
    assert eta.max() - eta.min() < 1e-12
    assert eta.mean() == pytest.approx((720.0 - 32.0) / 800.0, rel=1e-9)
    assert grown.mass_balance.relative_error < 1e-12
    # Without joining, the flooded shelf (0.86 m at the end) sets the step.
    assert grown.steps < runs[100.0].steps / 3
