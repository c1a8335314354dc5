"""The local-inertial 2D flood solver: grid and state arrays in, state arrays and budget out.

The scheme is Bates, Horritt & Fewtrell (2010) with the θ-weighted discharge of de Almeida
et al. (2012), on a regular grid, with the adaptive step dt = α min(dx, dy) / √(g h_max)
(Bates 2010 eq. 12), h_max over the cells outside level pools and over the pools' banks
(:mod:`simulation.flood.pools`: water bodies and trenches whose surface stays level, so
their depth does not shorten the step). Every run keeps an exact water budget: the change
in storage equals rain + edge inflow − edge outflow − infiltration − drainage at the
outfalls − the change of the water held in the pipes, to round-off, and reports its error.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol

import numpy as np

from simulation.flood import kernels
from simulation.flood.errors import FloodInputError
from simulation.flood.pools import OPEN, SHUT, SURFACE, Pools, grow
from simulation.flood.rain import SpatialRain

EdgeKind = Literal["closed", "free", "level", "flow"]
_KIND_CODES = {"closed": kernels.CLOSED, "free": kernels.FREE, "level": kernels.LEVEL,
               "flow": kernels.FLOW}
Progress = Callable[[str, float], None]


class RainSource(Protocol):
    def depth_between(self, t0: float, t1: float) -> float:
        """Uniform rain depth (m) fallen between two times (s)."""
        ...


Rain = RainSource | SpatialRain
"""Uniform rain, or rain that varies over the grid (:class:`~simulation.flood.rain.SpatialRain`)."""


class Sink(Protocol):
    def remove(self, h: np.ndarray, dt: float) -> float:
        """Take water out of the depths ``h`` (m) over a step of ``dt`` seconds, never more
        than a cell holds; returns the volume taken (m³)."""
        ...


class Drain(Protocol):
    """Pipes that take water from the surface, hold some, discharge some and may give some
    back (:class:`~simulation.flood.drainage.Drainage`)."""

    @property
    def stored_m3(self) -> float:
        """Water held in the pipes now (m³)."""
        ...

    @property
    def returned_m3(self) -> float:
        """Water given back to the surface so far (m³)."""
        ...

    def exchange(self, h: np.ndarray, z: np.ndarray, dt: float) -> tuple[float, float]:
        """Exchange with the depths ``h`` over beds ``z`` for ``dt`` seconds; returns the net
        volume taken from the surface and the volume discharged out of the model (m³)."""
        ...


@dataclass(frozen=True)
class Edge:
    """One side of the domain.

    ``value`` is the level (m) for ``level``, the inflow per metre of edge (m²/s) for
    ``flow``, and for ``free`` an outfall slope (0: the local water-surface slope). A
    callable of the time (s) makes it vary.
    """

    kind: EdgeKind = "closed"
    value: float | Callable[[float], float] = 0.0

    def at(self, t: float) -> float:
        return float(self.value(t) if callable(self.value) else self.value)


@dataclass(frozen=True)
class Boundaries:
    north: Edge = Edge()
    south: Edge = Edge()
    west: Edge = Edge()
    east: Edge = Edge()

    @classmethod
    def all(cls, edge: Edge) -> Boundaries:
        return cls(edge, edge, edge, edge)

    def sides(self) -> tuple[Edge, Edge, Edge, Edge]:
        # The order the kernels index: north, south, west, east.
        return (self.north, self.south, self.west, self.east)


@dataclass(frozen=True)
class Infiltration:
    """Horton infiltration capacity f(t) = fc + (f0 − fc) e^(−kt), t from the run's start.

    ``final_mm_h`` None (or equal to ``initial_mm_h``) is a constant rate. The capacity
    decays with time, not with each cell's own wetting; the grid's ``pervious`` share scales
    it per cell (land cover).
    """

    initial_mm_h: float
    final_mm_h: float | None = None
    decay_per_h: float = 0.0

    def __post_init__(self) -> None:
        final = self.initial_mm_h if self.final_mm_h is None else self.final_mm_h
        if self.initial_mm_h < 0 or final < 0 or self.decay_per_h < 0:
            raise FloodInputError("infiltration rates and decay must not be negative")

    def capacity_m(self, t: float) -> float:
        """Cumulative capacity from 0 to t (s), in metres."""
        f0 = self.initial_mm_h / 3.6e6
        fc = f0 if self.final_mm_h is None else self.final_mm_h / 3.6e6
        k = self.decay_per_h / 3600.0
        if k == 0.0:
            return f0 * t
        return fc * t + (f0 - fc) / k * (1.0 - math.exp(-k * t))

    def depth_between(self, t0: float, t1: float) -> float:
        return self.capacity_m(t1) - self.capacity_m(t0)


@dataclass(frozen=True)
class Options:
    """Numerical settings: θ of de Almeida (2012; 0.7-1), α of the CFL step (Bates 2010:
    0.7), the depth below which a face carries nothing, the longest step, the precision;
    and for the results, the depth that counts as flooded for the time of first flooding
    (0.15 m: a waterlogged lane, GB 50014-2021) and the least depth whose speed is kept;
    the depth beyond which a cell beside a level pool, at its level, joins it, checked every
    ``pool_join_every`` steps (:mod:`simulation.flood.pools`)."""

    theta: float = 0.8
    alpha: float = 0.7
    h_min: float = 1e-4
    dt_max: float = 10.0
    dtype: Literal["float32", "float64"] = "float64"
    arrival_depth: float = 0.15
    velocity_depth: float = 0.01
    pool_join_depth: float = 0.3
    pool_join_every: int = 20

    def __post_init__(self) -> None:
        if not 0.5 <= self.theta <= 1.0:
            raise FloodInputError(f"theta {self.theta:g} must lie in 0.5-1")
        if not 0 < self.alpha <= 1.0:
            raise FloodInputError(f"alpha {self.alpha:g} must lie in (0, 1]")
        if self.h_min < 0 or self.dt_max <= 0:
            raise FloodInputError("h_min must not be negative and dt_max must be positive")
        if self.arrival_depth < 0 or self.velocity_depth < 0:
            raise FloodInputError("the arrival and velocity depths must not be negative")
        if self.pool_join_depth <= 0 or self.pool_join_every < 1:
            raise FloodInputError("the pool join depth and interval must be positive")


@dataclass
class Grid:
    """Bed elevations (m), cell sizes (m), Manning's n (scalar or per cell), the cells in
    the domain (``active``; others are walls, such as a DEM's nodata) and the share of the
    infiltration capacity each cell takes (``pervious``: 0 sealed, 1 fully pervious);
    ``pool`` marks the cells of water bodies and deep depressions whose water stays level
    (:mod:`simulation.flood.pools`: each 4-connected group is one pool)."""

    z: np.ndarray
    dx: float
    dy: float
    manning: float | np.ndarray
    active: np.ndarray | None = None
    pervious: float | np.ndarray = 1.0
    pool: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.z.ndim != 2 or min(self.z.shape) < 1:
            raise FloodInputError("the bed must be a 2-D array")
        if not (self.dx > 0 and self.dy > 0):
            raise FloodInputError("cell sizes must be positive")
        active = np.ones(self.z.shape, bool) if self.active is None else self.active
        if active.shape != self.z.shape:
            raise FloodInputError("the active mask must have the bed's shape")
        self.active = active.astype(bool) & np.isfinite(self.z)
        n = np.asarray(self.manning, dtype=float)
        if n.ndim == 0:
            n = n.reshape(1, 1)
        elif n.shape != self.z.shape:
            raise FloodInputError(f"Manning's n grid {n.shape} does not match the bed "
                                  f"{self.z.shape}")
        if not np.all(n > 0 if n.size == 1 else n[self.active] > 0):
            raise FloodInputError("Manning's n must be positive wherever there is ground")
        self.manning = n
        share = np.asarray(self.pervious, dtype=float)
        if share.ndim == 0:
            share = share.reshape(1, 1)
        elif share.shape != self.z.shape:
            raise FloodInputError(f"the pervious share grid {share.shape} does not match the "
                                  f"bed {self.z.shape}")
        if not np.all((share >= 0) & (share <= 1)):
            raise FloodInputError("pervious shares must lie in 0-1")
        self.pervious = share
        pool = np.zeros(self.z.shape, bool) if self.pool is None else self.pool
        if pool.shape != self.z.shape:
            raise FloodInputError("the pool mask must have the bed's shape")
        self.pool = pool.astype(bool) & self.active

    @property
    def shape(self) -> tuple[int, int]:
        return self.z.shape

    @property
    def cell_area(self) -> float:
        return self.dx * self.dy

    @property
    def active_cells(self) -> int:
        return int(np.count_nonzero(self.active))


@dataclass
class State:
    """Depths (m) on cells and unit-width discharges (m²/s) on faces, at time ``t`` (s)."""

    h: np.ndarray
    qx: np.ndarray
    qy: np.ndarray
    t: float = 0.0

    @classmethod
    def dry(cls, grid: Grid, dtype: str = "float64") -> State:
        ny, nx = grid.shape
        return cls(np.zeros((ny, nx), dtype), np.zeros((ny, nx + 1), dtype),
                   np.zeros((ny + 1, nx), dtype))

    @classmethod
    def level(cls, grid: Grid, eta: float | np.ndarray, dtype: str = "float64") -> State:
        """Still water at a surface level (cells above it stay dry)."""
        state = cls.dry(grid, dtype)
        depth = np.where(grid.active, np.maximum(np.asarray(eta) - grid.z, 0.0), 0.0)
        state.h[:] = np.nan_to_num(depth)
        return state

    def velocities(self) -> tuple[np.ndarray, np.ndarray]:
        """Face velocities u = qx / h_face, v = qy / h_face from the mean neighbouring depth
        (zero where dry): a diagnostic, not part of the scheme."""
        h = np.maximum(self.h, 0.0)
        hx = np.zeros(self.qx.shape)
        hx[:, 1:-1] = 0.5 * (h[:, :-1] + h[:, 1:])
        hx[:, 0], hx[:, -1] = h[:, 0], h[:, -1]
        hy = np.zeros(self.qy.shape)
        hy[1:-1] = 0.5 * (h[:-1] + h[1:])
        hy[0], hy[-1] = h[0], h[-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            return (np.where(hx > 0, self.qx / hx, 0.0), np.where(hy > 0, self.qy / hy, 0.0))


@dataclass
class MassBalance:
    """Volumes (m³) over a run; ``error`` = Δstorage − (rain + inflow − outflow − infiltration
    − drainage − pipe_storage − retention). ``drainage`` is what the pipes discharged at their
    outfalls, ``pipe_storage`` the change of the water they hold, retention what sponge-city
    measures hold back; ``surcharge`` (not a term: inside the pipes' net exchange) what the
    pipes gave back to the surface."""

    initial_storage: float = 0.0
    final_storage: float = 0.0
    rain: float = 0.0
    inflow: float = 0.0
    outflow: float = 0.0
    infiltration: float = 0.0
    drainage: float = 0.0
    pipe_storage: float = 0.0
    retention: float = 0.0
    surcharge: float = 0.0

    @property
    def error(self) -> float:
        change = self.final_storage - self.initial_storage
        return change - (self.rain + self.inflow - self.outflow - self.infiltration
                         - self.drainage - self.pipe_storage - self.retention)

    @property
    def relative_error(self) -> float:
        scale = max(self.rain + self.inflow, self.initial_storage, self.final_storage)
        return abs(self.error) / scale if scale > 0 else 0.0

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "error": self.error, "relative_error": self.relative_error}


@dataclass
class Result:
    """The final state; per cell the greatest depth (m) and speed (m/s) and the time of first
    flooding (s from the start; NaN where the depth never exceeded ``arrival_depth``); the
    cells of level pools at the end (``pool``, grown over flooded shores)."""

    state: State
    max_depth: np.ndarray
    max_velocity: np.ndarray
    arrival_time: np.ndarray
    mass_balance: MassBalance
    steps: int
    limited_steps: int
    wall_s: float
    cell_updates: int = field(default=0)
    pool: np.ndarray | None = None

    @property
    def cell_updates_per_s(self) -> float:
        return self.cell_updates / self.wall_s if self.wall_s > 0 else 0.0

    def deepest_cell(self) -> tuple[int, int, float]:
        """Row, column and depth (m) of the deepest water of the run outside the level
        pools: the cell whose √(g h) set the shortest time step."""
        depth = self.max_depth if self.pool is None else np.where(self.pool, 0, self.max_depth)
        row, col = np.unravel_index(int(np.argmax(depth)), depth.shape)
        return int(row), int(col), float(self.max_depth[row, col])


def storage(grid: Grid, h: np.ndarray) -> float:
    """Water held on the grid (m³), summed in float64 whatever the state's precision."""
    return float(np.sum(h[grid.active], dtype=np.float64)) * grid.cell_area


def simulate(
    grid: Grid,
    duration_s: float,
    *,
    rain: Rain | None = None,
    boundaries: Boundaries | None = None,
    infiltration: Infiltration | None = None,
    sink: Drain | None = None,
    retention: Sink | None = None,
    options: Options | None = None,
    state: State | None = None,
    report_times: Sequence[float] = (),
    on_report: Callable[[State], None] | None = None,
    progress: Progress | None = None,
) -> Result:
    """Advance ``state`` (dry by default) by ``duration_s`` seconds.

    Steps end exactly on each of ``report_times`` (seconds from the state's start), where
    ``on_report`` sees the state; ``progress(stage, fraction)`` follows simulated time (an
    exception it raises stops the run). ``sink`` (the pipes) and ``retention`` (sponge-city
    stores) exchange water after each step, each with its own terms in the budget.
    """
    options = options or Options()
    boundaries = boundaries or Boundaries()
    if not duration_s > 0:
        raise FloodInputError("the duration must be positive")
    dtype = np.dtype(options.dtype)
    state = state or State.dry(grid, options.dtype)
    if state.h.dtype != dtype:
        raise FloodInputError(f"the state is {state.h.dtype}, the options ask for {dtype}")
    z = grid.z.astype(dtype)
    z[~grid.active] = 0.0  # walls: never read as ground, kept finite for the kernels
    pervious = np.broadcast_to(grid.pervious, grid.shape).astype(dtype)
    active = grid.active
    kinds = np.array([_KIND_CODES[e.kind] for e in boundaries.sides()], np.int64)
    sides = tuple(_pool_side(e) for e in boundaries.sides())
    pools = Pools.of(grid.pool, active, z, sides)
    beds = z.ravel().astype(np.float64)
    n2x, n2y = kernels.face_roughness(grid.manning, active, pools.labels, dtype)
    values = np.zeros(4)
    cast = dtype.type  # the kernels' scalars in the state's precision: no widened loops
    # Each step's raw discharges, before the outflow limiter: state.qx and qy get them scaled.
    qx_new, qy_new = np.empty_like(state.qx), np.empty_like(state.qy)
    factor = np.ones((grid.shape[0] + 2, grid.shape[1] + 2), dtype)
    max_depth = np.maximum(state.h, 0.0).astype(dtype)
    max_velocity = np.zeros(grid.shape, dtype)
    arrival = np.where(state.h > options.arrival_depth, 0.0, np.nan).astype(dtype)
    if isinstance(rain, SpatialRain):
        if rain.weights.shape[1:] != grid.shape:
            raise FloodInputError(f"the rain field {rain.weights.shape[1:]} does not match "
                                  f"the grid {grid.shape}")
        weights = np.ascontiguousarray(rain.weights, dtype=np.float64)
        # What each source's depth rains onto the domain, in cell-depths: the budget's rain
        # without summing the field every step.
        shares = np.array([np.sum(w[active], dtype=np.float64) for w in weights])
    # This step's rain, and the depth update it enters, in float64 whatever the precision: a
    # float32 depth of rain would be rounded the same way on every cell, a bias the budget
    # would see (all in float32: 4-20 times the mass error on the bench's plane, measured).
    rain_now = np.zeros(grid.shape if isinstance(rain, SpatialRain) else (1, 1))
    budget = MassBalance(initial_storage=storage(grid, state.h))
    piped = sink.stored_m3 if sink is not None else 0.0
    returned = sink.returned_m3 if sink is not None else 0.0
    area, cells = grid.cell_area, grid.active_cells
    start, end = state.t, state.t + duration_s
    stops = sorted({start + t for t in report_times if 0 < t <= duration_s})
    deepest = float(np.max(np.where(grid.pool, 0.0, state.h), initial=0.0))
    if pools.count:
        pools.settle(state.h, beds, max_depth, arrival, 0.0, options.arrival_depth)
        deepest = max(deepest, pools.deepest_bank(state.h, z))
    steps = limited_steps = 0
    started = last_progress = time.perf_counter()
    while state.t < end - 1e-9:
        dt = options.dt_max
        if deepest > options.h_min:
            dt = min(dt, options.alpha * min(grid.dx, grid.dy) / math.sqrt(kernels.G * deepest))
        while stops and stops[0] <= state.t + 1e-9:
            stops.pop(0)
        target = min(stops[0] if stops else end, end)
        dt = min(dt, target - state.t)
        t0, t1 = state.t - start, state.t - start + dt
        if isinstance(rain, SpatialRain):
            depths = rain.depths_between(t0, t1)
            kernels.combine_rain(weights, depths, rain_now)
            rained = float(depths @ shares)
        else:
            rain_m = rain.depth_between(t0, t1) if rain is not None else 0.0
            rain_now[0, 0] = rain_m
            rained = rain_m * cells
        loss_m = infiltration.depth_between(t0, t1) if infiltration is not None else 0.0
        for k, edge in enumerate(boundaries.sides()):
            values[k] = edge.at(t1)
        kernels.fluxes(state.h, z, n2x, n2y, state.qx, state.qy, qx_new, qy_new,
                       kernels.coefficients(options.theta, dt, grid.dx, options.h_min, dtype),
                       kernels.coefficients(options.theta, dt, grid.dy, options.h_min, dtype))
        kernels.edge_fluxes(state.h, z, n2x, n2y, state.qx, state.qy, qx_new, qy_new, dt,
                            grid.dx, grid.dy, options.h_min, kinds, values)
        dt_dx, dt_dy = dt / grid.dx, dt / grid.dy
        if kernels.outflow_factors(state.h, active, qx_new, qy_new, rain_now, dt_dx, dt_dy,
                                   factor):
            limited_steps += 1
        infiltrated, deepest = kernels.update_depths(
            state.h, active, pools.labels, qx_new, qy_new, factor, state.qx, state.qy,
            rain_now, loss_m, pervious, dt_dx, dt_dy, max_depth, max_velocity, arrival,
            cast(t1), cast(options.arrival_depth), cast(options.velocity_depth))
        out_rate, in_rate = kernels.edge_exchange(state.qx, state.qy, grid.dx, grid.dy)
        if sink is not None:
            budget.drainage += sink.exchange(state.h, z, dt)[1]
        if retention is not None:
            budget.retention += retention.remove(state.h, dt)
        if pools.count:
            pools.settle(state.h, beds, max_depth, arrival, t1, options.arrival_depth)
            if steps % options.pool_join_every == 0:
                joining = pools.joining(state.h, z, options.pool_join_depth)
                if joining.size:
                    mask = pools.labels > 0
                    mask.ravel()[joining] = True
                    mask = grow(mask, state.h, z, active, options.pool_join_depth)
                    pools = Pools.of(mask, active, z, sides)
                    n2x, n2y = kernels.face_roughness(grid.manning, active, pools.labels, dtype)
                    pools.settle(state.h, beds, max_depth, arrival, t1, options.arrival_depth)
                    deepest = float(np.max(np.where(pools.labels > 0, 0.0, state.h)))
            deepest = max(deepest, pools.deepest_bank(state.h, z))
        budget.rain += rained * area
        budget.outflow += out_rate * dt
        budget.inflow += in_rate * dt
        budget.infiltration += infiltrated * area
        state.t = target if dt == target - state.t else state.t + dt
        steps += 1
        if on_report is not None and stops and abs(state.t - stops[0]) <= 1e-9:
            on_report(state)
        if progress is not None and time.perf_counter() - last_progress > 0.2:
            last_progress = time.perf_counter()
            progress(f"{_clock(state.t - start)} of {_clock(duration_s)}",
                     (state.t - start) / duration_s)
    wall = time.perf_counter() - started
    budget.final_storage = storage(grid, state.h)
    if sink is not None:
        budget.pipe_storage = sink.stored_m3 - piped
        budget.surcharge = sink.returned_m3 - returned
    np.sqrt(max_velocity, out=max_velocity)  # the kernels keep the squared speed
    return Result(state, max_depth, max_velocity, arrival, budget, steps, limited_steps, wall,
                  steps * cells, pools.labels > 0)


def _pool_side(edge: Edge) -> int:
    """How a domain edge can take a level pool's water (:meth:`Pools.of`)."""
    if edge.kind in ("closed", "flow"):  # a given inflow: no depth in it to destabilise
        return SHUT
    if edge.kind == "free" and not callable(edge.value) and edge.value == 0:
        return SURFACE
    return OPEN


def _clock(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
