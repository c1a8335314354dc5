"""The fused passes of one solver step against a plain NumPy statement of the same scheme."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from simulation.flood import kernels


@njit
def _roots(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for k in range(x.size):
        out[k] = kernels.cube_root(x[k])
    return out


@pytest.mark.parametrize(("dtype", "tolerance"), [("float64", 1e-14), ("float32", 2.5e-7)])
def test_cube_root_is_exact_to_about_round_off_in_its_precision(dtype, tolerance):
    x = np.geomspace(1e-12, 1e3, 20_001).astype(dtype)
    roots = _roots(x)
    assert roots.dtype == np.dtype(dtype)
    exact = np.cbrt(x.astype(np.longdouble))
    assert np.max(np.abs(roots - exact) / exact) < tolerance


def reference_step(h, active, pool, qx, qy, rain, loss, pervious, dt, dx, dy):
    """Outflow factors, discharges scaled by their upwind cell's factor, continuity, rain and
    infiltration: the four passes of the scheme, written plainly."""
    ny, nx = h.shape
    out = dt * (dy * (np.maximum(qx[:, 1:], 0) + np.maximum(-qx[:, :-1], 0))
                + dx * (np.maximum(qy[1:], 0) + np.maximum(-qy[:-1], 0)))
    available = np.maximum(h + rain, 0) * dx * dy
    limited = active & (out > available)
    factor = np.ones((ny + 2, nx + 2))
    factor[1:-1, 1:-1] = np.where(limited, available / np.where(limited, out, 1), 1)
    sx = qx * np.where(qx > 0, factor[1:-1, :-1], factor[1:-1, 1:])
    sy = qy * np.where(qy > 0, factor[:-1, 1:-1], factor[1:, 1:-1])
    d = h + rain + dt * ((sx[:, :-1] - sx[:, 1:]) / dx + (sy[:-1] - sy[1:]) / dy)
    taken = np.minimum(loss * pervious, np.maximum(d, 0))
    d = np.where(active, d - taken, h)
    deepest = np.max(np.where(active & (pool == 0), np.maximum(d, 0), 0))
    return d, sx, sy, int(limited.sum()), float(np.sum(np.where(active, taken, 0))), deepest


@pytest.mark.parametrize("uniform_rain", [True, False])
def test_limiter_and_depth_update_match_the_plain_scheme(uniform_rain):
    rng = np.random.default_rng(11)
    ny, nx, dt, dx, dy = 37, 53, 0.7, 2.0, 3.0
    h = np.where(rng.random((ny, nx)) < 0.3, 0.0, rng.random((ny, nx)) * 0.05)
    active = rng.random((ny, nx)) > 0.05
    pool = (rng.random((ny, nx)) > 0.9).astype(np.int32)
    # Discharges strong enough that many cells cannot supply their outflows.
    qx = rng.normal(0, 0.05, (ny, nx + 1))
    qy = rng.normal(0, 0.05, (ny + 1, nx))
    rain = np.full((1, 1), 2e-4) if uniform_rain else rng.random((ny, nx)) * 4e-4
    pervious = rng.random((ny, nx))
    loss = 3e-4
    d, sx, sy, limited, infiltrated, deepest = reference_step(
        h, active, pool, qx, qy, rain, loss, pervious, dt, dx, dy)
    assert limited > 50  # the limiter is exercised

    factor = np.ones((ny + 2, nx + 2))
    assert kernels.outflow_factors(h, active, qx, qy, rain, dt / dx, dt / dy, factor) == limited
    depth = h.copy()
    qx_out, qy_out = np.full_like(qx, np.nan), np.full_like(qy, np.nan)
    h_max, v_max = np.zeros((ny, nx)), np.zeros((ny, nx))
    arrival = np.full((ny, nx), np.nan)
    got_infiltrated, got_deepest = kernels.update_depths(
        depth, active, pool, qx, qy, factor, qx_out, qy_out, rain, loss, pervious, dt / dx,
        dt / dy, h_max, v_max, arrival, 5.0, 0.03, 0.01)
    np.testing.assert_allclose(depth, d, rtol=0, atol=1e-15)
    np.testing.assert_allclose(qx_out, sx, rtol=1e-14, atol=0)
    np.testing.assert_allclose(qy_out, sy, rtol=1e-14, atol=0)
    assert depth[active].min() >= -1e-15  # the limiter keeps depths from going negative
    assert got_infiltrated == pytest.approx(infiltrated, rel=1e-13)
    assert got_deepest == pytest.approx(deepest, rel=1e-15)
    ordinary = active & (pool == 0)
    np.testing.assert_allclose(h_max, np.where(ordinary, np.maximum(d, 0), 0), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(arrival == 5.0, ordinary & (d > 0.03))
