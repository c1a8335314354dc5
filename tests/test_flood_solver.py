"""The local-inertial solver against known answers (see shared/notes/flood-facts.md)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from simulation.flood.errors import FloodInputError
from simulation.flood.rain import Hyetograph
from simulation.flood.solver import (
    Boundaries,
    Edge,
    Grid,
    Infiltration,
    Options,
    State,
    simulate,
)

# CI clones the repository with the shared folder beside it.
MACDONALD = Path(__file__).resolve().parents[2] / "shared" / "data" / "flood" / "macdonald_swashes"


def bumpy_bed(ny: int = 20, nx: int = 30) -> np.ndarray:
    rng = np.random.default_rng(7)
    z = rng.random((ny, nx)) * 0.6
    z[5:9, 10:15] = 1.5  # an island above the lake
    return z


def test_lake_at_rest_does_not_move():
    grid = Grid(bumpy_bed(), 2.0, 2.0, 0.03)
    state = State.level(grid, 1.0)
    before = state.h.copy()
    result = simulate(grid, 600.0, state=state)
    u, v = result.state.velocities()
    assert np.abs(u).max() < 1e-12 and np.abs(v).max() < 1e-12
    assert np.abs(result.state.qx).max() < 1e-12 and np.abs(result.state.qy).max() < 1e-12
    assert np.abs(result.state.h - before).max() < 1e-12
    assert result.state.h[6, 12] == 0.0  # the island stays dry


@pytest.mark.parametrize(("dtype", "tolerance", "round_off"),
                         [("float64", 1e-13, 1e-12), ("float32", 1e-6, 1e-6)])
def test_closed_basin_stores_all_the_rain(dtype, tolerance, round_off):
    grid = Grid(bumpy_bed(), 2.0, 2.0, np.full((20, 30), 0.03))
    rain = Hyetograph.constant(50.0, 1800.0)
    result = simulate(grid, 1800.0, rain=rain, options=Options(dtype=dtype))
    balance = result.mass_balance
    assert balance.rain == pytest.approx(0.025 * 20 * 30 * 4.0, rel=1e-12)
    assert balance.outflow == 0 and balance.inflow == 0
    assert abs(balance.final_storage - balance.rain) / balance.rain < tolerance
    assert balance.relative_error < tolerance
    assert result.state.h.dtype == np.dtype(dtype)
    assert result.state.h.min() >= -round_off  # no negative depth beyond round-off


def test_infiltration_and_free_edges_close_the_budget():
    ny, nx = 16, 24
    z = 5.0 - 0.01 * np.arange(nx)[None, :] - 0.005 * np.arange(ny)[:, None] + np.zeros((ny, nx))
    grid = Grid(z, 2.0, 2.0, 0.03)
    loss = Infiltration(20.0, final_mm_h=5.0, decay_per_h=2.0)
    result = simulate(grid, 1800.0, rain=Hyetograph.constant(80.0, 1200.0),
                      boundaries=Boundaries.all(Edge("free")), infiltration=loss)
    balance = result.mass_balance
    assert balance.outflow > 0.2 * balance.rain and balance.infiltration > 0
    # Horton: infiltration never exceeds its capacity over the cells.
    assert balance.infiltration <= loss.capacity_m(1800.0) * ny * nx * 4.0 + 1e-9
    assert balance.relative_error < 1e-13
    assert result.state.h.min() >= -1e-12


def test_fixed_level_edge_fills_the_basin_to_its_level():
    # Rough enough (n 0.1) that the seiche the sudden filling starts dies out within the hour.
    grid = Grid(np.zeros((5, 20)), 5.0, 5.0, 0.1)
    result = simulate(grid, 3600.0, boundaries=Boundaries(west=Edge("level", 0.3)))
    assert np.abs(result.state.h - 0.3).max() < 1e-3
    balance = result.mass_balance
    assert balance.inflow - balance.outflow == pytest.approx(balance.final_storage, rel=1e-12)
    assert balance.final_storage == pytest.approx(0.3 * 100 * 25, rel=1e-3)


def test_steady_uniform_flow_has_manning_normal_depth():
    slope, n, q, dx = 0.001, 0.03, 0.5, 10.0
    x = (np.arange(200) + 0.5) * dx
    grid = Grid(np.tile(10.0 - slope * x, (3, 1)), dx, dx, n)
    result = simulate(grid, 4 * 3600.0,
                      boundaries=Boundaries(west=Edge("flow", q), east=Edge("free")))
    normal = (n * q / np.sqrt(slope)) ** 0.6
    assert normal == pytest.approx(0.6392, abs=1e-4)
    depth = result.state.h[:, 20:-20]
    assert np.abs(depth / normal - 1).max() < 0.005
    assert np.abs(result.state.qx[:, 1:-1] - q).max() < 1e-3 * q
    assert result.mass_balance.relative_error < 1e-12


@pytest.mark.parametrize("theta", [1.0, 0.8])
def test_moving_front_over_a_horizontal_plane(theta):
    # Hunter et al. (2005): h(x, t) = [(7/3) n² u² (u t − x)]^(3/7) behind the front x = u t,
    # driven by h(0, t) = [(7/3) n² u³ t]^(3/7); the set-up of Bates et al. (2010).
    n, u, dx, t = 0.01, 0.4, 25.0, 3600.0
    grid = Grid(np.zeros((4, 80)), dx, dx, n)
    inflow = Edge("level", lambda s: (7 / 3 * n**2 * u**3 * s) ** (3 / 7))
    result = simulate(grid, t, boundaries=Boundaries(west=inflow),
                      options=Options(theta=theta))
    x = (np.arange(80) + 1.0) * dx  # the level is held one cell beyond the edge, at x = 0
    exact = np.where(x < u * t, (7 / 3 * n**2 * u**2 * np.maximum(u * t - x, 0)) ** (3 / 7), 0)
    h = result.state.h[1]
    wet = exact > 0
    rmse = np.sqrt(np.mean((h[wet] - exact[wet]) ** 2))
    assert rmse < 0.01  # measured 3.1 mm (θ 1) and 3.6 mm (θ 0.8)
    assert abs(x[h > 0.01].max() - x[exact > 0.01].max()) <= dx
    assert np.abs(result.state.h[0] - h).max() < 1e-12  # stays one-dimensional
    assert result.mass_balance.relative_error < 1e-12


def macdonald(name: str) -> tuple[np.ndarray, np.ndarray]:
    path = MACDONALD / f"{name}.csv"
    if not path.exists():
        pytest.skip(f"{path} not found (the shared folder sits beside the repository)")
    with path.open() as f:
        rows = list(csv.DictReader(f))
    return (np.array([float(r["topo"]) for r in rows]),
            np.array([float(r["wse"]) for r in rows]))


@pytest.mark.parametrize(("name", "inflow", "rain_m_s", "minutes", "limit"), [
    ("mcdo_norain", 2.0, 0.0, 30, 0.03),
    # With rain, q grows along the channel and the advection term the local-inertial scheme
    # leaves out (2 q q'/h, a third of the pressure term here) sets a floor of 3.3 cm.
    ("mcdo_rain", 1.0, 0.001, 60, 0.035),
])
def test_macdonald_channels(name, inflow, rain_m_s, minutes, limit):
    topo, wse = macdonald(name)
    grid = Grid(np.tile(topo, (3, 1)), 5.0, 5.0, 0.033)
    duration = minutes * 60.0
    rain = Hyetograph.constant(rain_m_s * 3.6e6, duration) if rain_m_s else None
    result = simulate(grid, duration, rain=rain,
                      boundaries=Boundaries(west=Edge("flow", inflow), east=Edge("free")))
    mae = np.abs(result.state.h[1] + topo - wse).mean()
    assert mae < limit  # measured 1.99 cm without rain, 3.33 cm with
    assert np.abs(result.state.qy).max() == 0.0
    expected_outflow = inflow + rain_m_s * 1000.0
    assert result.state.qx[1, -1] == pytest.approx(expected_outflow, rel=1e-6)


def test_bad_inputs_are_refused():
    z = np.zeros((4, 4))
    with pytest.raises(FloodInputError, match="Manning"):
        Grid(z, 1.0, 1.0, 0.0)
    with pytest.raises(FloodInputError, match="does not match"):
        Grid(z, 1.0, 1.0, np.ones((3, 3)))
    with pytest.raises(FloodInputError, match="theta"):
        Options(theta=0.2)
    with pytest.raises(FloodInputError, match="duration"):
        simulate(Grid(z, 1.0, 1.0, 0.03), 0.0)


def test_front_arrival_time_and_velocity_match_hunter():
    # Behind Hunter's front the water moves at u everywhere, and the depth passes d at
    # x when u t − x = d^(7/3) / ((7/3) n² u²): arrival t(x) = (x + that) / u.
    n, u, dx, t, d = 0.01, 0.4, 25.0, 3600.0, 0.15
    grid = Grid(np.zeros((3, 80)), dx, dx, n)
    inflow = Edge("level", lambda s: (7 / 3 * n**2 * u**3 * s) ** (3 / 7))
    result = simulate(grid, t, boundaries=Boundaries(west=inflow),
                      options=Options(theta=1.0, arrival_depth=d))
    x = (np.arange(80) + 1.0) * dx
    exact = (x + d ** (7 / 3) / (7 / 3 * n**2 * u**2)) / u
    reached = exact < t - 200.0
    arrival = result.arrival_time[1]
    assert np.isfinite(arrival[reached]).all() and np.isnan(arrival[exact > t + 200.0]).all()
    assert np.abs(arrival[reached] - exact[reached]).max() < 2 * dx / u
    # The greatest speed is u, plus the overshoot of the front's passage (up to 19 % with
    # θ = 1, measured), away from the driven edge.
    speed = result.max_velocity[1][3:][reached[3:]]
    assert speed.min() > 0.97 * u and speed.max() < 1.2 * u
    assert result.mass_balance.relative_error < 1e-12


def test_uniform_flow_velocity_is_q_over_normal_depth():
    slope, n, q, dx = 0.001, 0.03, 0.5, 10.0
    x = (np.arange(100) + 0.5) * dx
    grid = Grid(np.tile(10.0 - slope * x, (3, 1)), dx, dx, n)
    result = simulate(grid, 3 * 3600.0,
                      boundaries=Boundaries(west=Edge("flow", q), east=Edge("free")))
    normal = (n * q / np.sqrt(slope)) ** 0.6
    # The steady speed is q / h_n; the thin front that first wets the dry slope runs faster
    # (by 12-35 % here), so the greatest speed is at least the steady one.
    steady = q / normal
    assert result.max_velocity[:, 20:-20].min() > 0.99 * steady
    assert result.max_velocity[:, 20:-20].max() < 1.5 * steady
    assert (result.arrival_time[:, 1:] > result.arrival_time[:, :-1]).all()  # it moves east


def test_spatially_varying_rain_keeps_the_budget_exact():
    from simulation.flood.rain import SpatialRain, gauge_weights

    ny, nx = 20, 30
    grid = Grid(bumpy_bed(ny, nx), 2.0, 2.0, 0.03)
    y, x = np.mgrid[0:ny, 0:nx] * 2.0 + 1.0
    gauges = (np.array([5.0, 55.0]), np.array([20.0, 20.0]))
    storms = (Hyetograph.constant(20.0, 1800.0), Hyetograph.constant(80.0, 900.0))
    thiessen = gauge_weights(x, y, *gauges, method="thiessen").reshape(2, ny, nx)
    assert (thiessen[1] == (x > 30.0)).all()  # the east half is the east gauge's
    idw = gauge_weights(x, y, *gauges).reshape(2, ny, nx)
    assert np.allclose(idw.sum(axis=0), 1.0) and (idw[0][:, :15] > idw[1][:, :15]).all()
    for weights in (thiessen, idw):
        result = simulate(grid, 1800.0, rain=SpatialRain(storms, weights))
        balance = result.mass_balance
        expected = sum(w.sum() * s.total_mm / 1000 for w, s in zip(weights, storms, strict=True))
        assert balance.rain == pytest.approx(expected * 4.0, rel=1e-12)
        assert balance.relative_error < 1e-13
    # Thiessen: the east half got four times the depth, in half the time.
    assert result.state.h[:, 20:].mean() > result.state.h[:, :10].mean()
    on_gauge = gauge_weights(np.array([5.0]), np.array([20.0]), *gauges)
    assert on_gauge[:, 0].tolist() == [1.0, 0.0]
    with pytest.raises(FloodInputError, match="does not match"):
        simulate(grid, 60.0, rain=SpatialRain(storms, np.ones((2, 3, 3))))


def test_retention_stores_fill_and_close_the_budget():
    from simulation.flood.measures import Retention

    grid = Grid(bumpy_bed(), 2.0, 2.0, 0.03)
    rows, cols = np.nonzero(np.ones((20, 30), bool)[:, :15])  # the west half
    # Roofs that hold 5 mm, on the west half; pavement taking 10 mm/h, unlimited, on 3 cells.
    store = Retention(np.r_[rows, [0, 1, 2]], np.r_[cols, [20, 20, 20]],
                      np.r_[np.full(len(rows), np.inf), np.full(3, 10 / 3.6e6)],
                      np.r_[np.full(len(rows), 0.005), np.full(3, np.inf)], grid.cell_area)
    result = simulate(grid, 1800.0, rain=Hyetograph.constant(50.0, 1800.0), retention=store)
    balance = result.mass_balance
    held = 0.005 * len(rows) * 4.0
    assert balance.retention == pytest.approx(held + 3 * 0.005 * 4.0, rel=1e-3)
    assert balance.final_storage == pytest.approx(balance.rain - balance.retention, rel=1e-12)
    assert balance.relative_error < 1e-13
