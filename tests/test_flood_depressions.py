"""Closed depressions of the bed as level pools (simulation/flood/domain.py's depressions)."""

from __future__ import annotations

import numpy as np
import pytest

from simulation.flood.domain import depressions
from simulation.flood.rain import Hyetograph
from simulation.flood.solver import Grid, Options, simulate

DX = 2.0


def bowl_in_a_cone(n: int = 40) -> np.ndarray:
    """Ground rising 0.5 % from the centre, a bowl 1.5 m deep and 10 m across in the middle
    and a pit 0.5 m deep and 6 m across at 28 m from it."""
    y, x = (np.mgrid[0:n, 0:n] + 0.5) * DX - n * DX / 2
    r2 = x**2 + y**2
    bed = 0.005 * np.sqrt(r2)
    bed -= np.where(r2 < 100.0, 1.5 * (1 - r2 / 100.0), 0.0)
    pit = (x - 28.0) ** 2 + y**2
    return bed - np.where(pit < 9.0, 0.5 * (1 - pit / 9.0), 0.0)


def plain_fill_level(bed: np.ndarray, volume_m3: float) -> float:
    """The level at which ``bed`` holds ``volume_m3``, by bisection."""
    low, high = float(bed.min()), float(bed.max()) + volume_m3 / DX**2
    for _ in range(200):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if np.maximum(mid - bed, 0).sum() * DX**2 < volume_m3 else (
            low, mid)
    return 0.5 * (low + high)


def test_deep_depressions_are_pools_shallow_ones_and_margins_are_not():
    bed = bowl_in_a_cone()
    cells = depressions(bed, DX**2)
    y, x = (np.mgrid[0:40, 0:40] + 0.5) * DX - 40.0
    r2 = x**2 + y**2
    # Filled from the rim, the whole cone is a sag up to its lowest rim cells (mid-side):
    # the bowl's cells 0.3 m or more below that spill level are the pool; the pit's lie in
    # a depression 0.5 m deep, too shallow.
    spill = 0.005 * np.hypot(1.0, 39.0)
    assert np.array_equal(cells, (r2 < 100.0) & (bed <= spill - 0.3))
    assert not cells[(x - 28.0) ** 2 + y**2 < 9.0].any()
    walled = bed.copy()
    walled[0, 5] = np.nan  # a wall is high ground
    assert np.array_equal(depressions(walled, DX**2), cells)
    assert not depressions(bed, DX**2, min_depth=2.0).any()
    assert not depressions(bed, DX**2, max_area_m2=cells.sum() * DX**2 - 1).any()


def test_a_depression_pool_stores_the_rain_at_the_level_of_a_plain_fill():
    bed = bowl_in_a_cone()
    rain = Hyetograph.constant(50.0, 1800.0)  # 25 mm over 6400 m²: 160 m³
    runs = {}
    for name, pool in (("pool", depressions(bed, DX**2)), ("plain", None)):
        grid = Grid(bed, DX, DX, 0.03, pool=pool)
        runs[name] = simulate(grid, 3600.0, rain=rain, options=Options(dtype="float64"))
    pooled, plain = runs["pool"], runs["plain"]
    balance = pooled.mass_balance
    assert balance.rain == pytest.approx(0.025 * 6400.0, rel=1e-12)
    # Closed edges: every drop is stored, to round-off.
    assert balance.relative_error < 1e-12
    assert balance.final_storage == pytest.approx(balance.rain, rel=1e-12)
    pool = pooled.pool
    h = pooled.state.h
    eta = (bed + h)[pool & (h > 0)]
    assert eta.max() - eta.min() < 1e-12  # one level
    # That level is the plain fill of the bowl with what the pool holds, and where the
    # explicit scheme, with the bowl's 1 m of water setting its step, let the water settle.
    assert eta.mean() == pytest.approx(plain_fill_level(bed[pool], h[pool].sum() * DX**2),
                                       abs=1e-9)
    settled = (bed + plain.state.h)[pool & (plain.state.h > 0.05)]
    assert abs(eta.mean() - settled.mean()) < 0.01
    assert h[pool].max() > 0.8
    # The step is set by the margin's water, under 0.3 m before it joins, not the bowl's.
    assert pooled.steps < plain.steps / 1.5
