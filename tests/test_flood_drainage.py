"""Pipe networks that fill, drain at their outlets and surcharge back at their manholes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulation.flood.drainage import Drainage, Network
from simulation.flood.solver import Boundaries, Edge, Grid, Options, State, simulate

INFLOW = 0.05  # m³/s fed to the high inlet
OUTLET = 0.02  # m³/s the network's outlet passes
VOLUME = 30.0  # m³ the network holds


def two_basins() -> Grid:
    """A 1 m cell at 1 m (row 0, column 0: the high inlet's) walled off from a flat basin of
    10 × 10 cells at 0 m (columns 2-11) that only the network can fill."""
    z = np.zeros((10, 12))
    z[0, 0] = 1.0
    active = np.zeros(z.shape, bool)
    active[0, 0] = True
    active[:, 2:] = True
    return Grid(z, 1.0, 1.0, 0.03, active=active)


def network(outlet_m3s: float, volume_m3: float) -> Drainage:
    """The high inlet (1 m² opening) and a manhole in the basin (0.4 m²), in one network."""
    return Drainage(np.array([0, 5]), np.array([0, 6]), np.array([10.0, 10.0]),
                    np.array([1.0, 0.4]), np.array([0, 0]), np.array([outlet_m3s]), 1.0,
                    network_volume_m3=np.array([volume_m3]))


def run(drainage: Drainage, duration_s: float, dtype: str = "float64",
        every_s: float = 0.0) -> tuple:
    grid = two_basins()
    stored: list[tuple[float, float]] = []
    times = list(np.arange(every_s, duration_s, every_s)) if every_s else []
    result = simulate(grid, duration_s, boundaries=Boundaries(west=Edge("flow", INFLOW)),
                      sink=drainage, options=Options(dtype=dtype),
                      state=State.dry(grid, dtype), report_times=times,
                      on_report=lambda s: stored.append((s.t, drainage.stored_m3)))
    return grid, result, stored


def test_network_fills_on_time_then_surcharges_the_surplus_at_the_low_manhole():
    drainage = network(OUTLET, VOLUME)
    _, result, stored = run(drainage, 2000.0, every_s=5.0)
    full = next(t for t, v in stored if v > VOLUME - 1e-3)
    # The network stores the inflow beyond its outlet's: full after V / (Q_in − Q_out).
    assert full == pytest.approx(VOLUME / (INFLOW - OUTLET), abs=10.0)
    assert all(v < VOLUME for t, v in stored if t < full)
    balance = result.mass_balance
    basin = float(np.sum(result.state.h[:, 2:], dtype=np.float64))
    # Then what the outlet cannot pass comes out at the manhole, 1 m below the inlet.
    expected = (INFLOW - OUTLET) * 2000.0 - VOLUME
    assert basin == pytest.approx(expected, rel=0.01)
    # Gross: the manhole takes a little back while the surface around it settles.
    assert basin <= balance.surcharge == pytest.approx(basin, rel=0.01)
    assert balance.pipe_storage == pytest.approx(VOLUME, rel=1e-6)
    assert balance.drainage == pytest.approx(OUTLET * 2000.0, rel=1e-3)
    assert balance.inflow == pytest.approx(INFLOW * 2000.0, rel=1e-12)
    # The network's head stands at or above the basin's surface, below the inlet's ground.
    assert result.state.h[5, 6] <= drainage.head[0] + 1e-12 and drainage.head[0] < 1.0


@pytest.mark.parametrize(("dtype", "tolerance"), [("float64", 1e-13), ("float32", 1e-6)])
def test_mass_balance_closes_while_surcharging(dtype, tolerance):
    _, result, _ = run(network(OUTLET, 10.0), 900.0, dtype)
    balance = result.mass_balance
    assert balance.surcharge > 5.0  # full after about 330 s
    assert balance.relative_error < tolerance
    assert result.state.h.min() >= 0.0


def test_a_network_that_keeps_up_never_stores_or_surcharges():
    big = network(2 * INFLOW, VOLUME)
    _, result, _ = run(big, 1200.0)
    balance = result.mass_balance
    assert balance.pipe_storage == 0.0 and balance.surcharge == 0.0
    assert not result.state.h[:, 2:].any()
    # As inlets with no network behind them (only their own capacity rules): the old model.
    unpiped = network(math.inf, math.inf)
    _, alone, _ = run(unpiped, 1200.0)
    assert np.array_equal(result.state.h, alone.state.h)
    assert balance.drainage == pytest.approx(alone.mass_balance.drainage, rel=1e-12)
    assert balance.relative_error < 1e-13


def test_network_volumes_and_outlet_capacity():
    # Two manholes 2 m deep feeding an outfall through two 0.5 m pipes of 100 m; one lone inlet.
    network = Network(
        node_ids=np.array(["a", "b", "out", "lone"]),
        node_kinds=np.array(["manhole", "manhole", "outfall", "inlet"]),
        node_capacity=np.full(4, np.nan), node_volume=np.array([2.0, 2.0, 0.0, 0.0]),
        pipe_from=np.array([0, 1]), pipe_to=np.array([1, 2]),
        pipe_capacity=np.array([0.3, 0.4]),
        pipe_volume=np.full(2, math.pi * 0.25**2 * 100.0))
    label, capacity, volume = network.components()
    assert label[0] == label[1] == label[2] != label[3]
    assert capacity[label[0]] == pytest.approx(0.4)  # what reaches the outlet
    assert volume[label[0]] == pytest.approx(2 * math.pi * 0.25**2 * 100.0 + 4.0)
    assert math.isinf(capacity[label[3]]) and math.isinf(volume[label[3]])


def test_an_area_without_drainage_gets_an_empty_drain_that_takes_nothing():
    nothing = np.zeros(0)
    none = Network(node_ids=nothing.astype(object), node_kinds=nothing.astype(object),
                   node_capacity=nothing, node_volume=nothing, pipe_from=nothing.astype(int),
                   pipe_to=nothing.astype(int), pipe_capacity=nothing, pipe_volume=nothing)
    label, capacity, volume = none.components()
    assert (len(label), len(capacity), len(volume)) == (0, 0, 0)
    drainage = Drainage(label, label, nothing, nothing, label, capacity, 1.0,
                        network_volume_m3=volume)
    assert (drainage.inlets, drainage.capacity_m3s, drainage.volume_m3) == (0, 0.0, 0.0)
    _, result, _ = run(drainage, 60.0)
    assert result.mass_balance.drainage == 0.0
