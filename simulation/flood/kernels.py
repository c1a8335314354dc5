"""Compiled kernels of the local-inertial scheme: one time step is three passes over the grid
(the inner faces' discharges; each cell's outflow factor; the depths, with the discharges
scaled by those factors on the way) and one along its edges.

Layout: depths ``h`` and beds ``z`` on cells (ny, nx), row 0 at the top (north); unit-width
discharges ``qx`` (ny, nx + 1) on vertical faces, positive eastwards, face j between cells
j − 1 and j; ``qy`` (ny + 1, nx) on horizontal faces, positive southwards (increasing row).
The outermost faces are the domain edges. Each kernel runs rows in parallel (prange) and
compiles once per dtype (float32 or float64), cached on disk, and releases the GIL so a
server can run a scenario on a thread and still answer requests. The inner loops are
branch-free and, in float32, free of float64 temporaries, so they vectorise at full width.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np
from numba import njit, prange
from numba.extending import overload


def _choose_threading_layer() -> None:
    """OpenMP with passive waiting where it can be had, else numba's workqueue.

    The solver calls a parallel kernel a few times a step. workqueue hands every call to its
    pool threads, even on one thread: ~60 us of CPU and a dozen context switches a call,
    about 45 % of a small grid's run (docs/scaling.md); OpenMP runs a one-thread call in the
    caller (~1.5 us) and wakes two threads in 16-31 us, not 120-150. Its default
    spin-waiting made 2-thread runs 10-30 times slower on a loaded 2-core machine
    (DESIGN.md), so only with OMP_WAIT_POLICY=PASSIVE, which libgomp reads when it loads:
    if something loaded it earlier without that, keep workqueue. numba falls back to
    workqueue by itself where no OpenMP runtime is installed. An explicit choice wins."""
    if "NUMBA_THREADING_LAYER" in os.environ:
        return
    policy = os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if policy.upper() != "PASSIVE" or _libgomp_loaded():
        numba.config.THREADING_LAYER = "workqueue"
        return
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "workqueue", "tbb"]
    numba.config.THREADING_LAYER = "default"


def _libgomp_loaded() -> bool:
    try:
        return "libgomp" in Path("/proc/self/maps").read_text()
    except OSError:  # not Linux: assume the worst
        return True


_choose_threading_layer()

G = 9.81
# Edge kinds, in the order of the sides: north (row 0), south, west (column 0), east.
CLOSED, FREE, LEVEL, FLOW = 0, 1, 2, 3


# Bits whose integer third, added to a float32's bits, approximate cbrt(x) to a few per cent
# (dividing the exponent by 3; Kahan's constant for a float).
_CBRT_BIAS_32 = np.int32(709958130)
# Float division without Python's zero-division checks: their branches kept the flux loop
# from vectorising (3-4 times slower, measured). Divisors here are positive by construction.
FAST = {"cache": True, "nogil": True, "error_model": "numpy"}


@njit(inline="always", **FAST)
def _halley(y: float, x: float) -> float:
    # One Halley step towards cbrt(x): the error cubes.
    y3 = y * y * y
    return y * (y3 + x + x) / (y3 + y3 + x)


def cube_root(x: float) -> float:
    """Cube root of x > 0 within float32's normal range, in x's precision: to about 1e-14
    in float64, to round-off in float32 (compiled only: see the overload)."""
    raise NotImplementedError("cube_root runs compiled, inside the kernels")


@overload(cube_root, inline="always", **FAST)
def _cube_root(x: float) -> Callable[[float], float]:  # x: a numba Float type
    """A bit-level guess and two Halley steps, in x's own precision.

    np.cbrt is an opaque libm call, and an integer division by 3 a branchy one: either kept
    the flux loop from vectorising (5-10 times slower, measured), the friction term being
    its main cost. The third of the bits is taken in floating point (its rounding is far
    inside the guess's few per cent). A float32 root stays in float32: twice the lanes.
    """
    if x.bitwidth == 32:
        def root32(x: float) -> float:
            third = np.int32(np.float32(np.float32(x).view(np.int32)) * np.float32(1 / 3))
            y = np.int32(third + _CBRT_BIAS_32).view(np.float32)
            return _halley(_halley(y, x), x)
        return root32

    def root64(x: float) -> float:
        # The guess from x's float32 rounding: AVX2 has no packed int64 <-> float64
        # conversion, so a float64 bit trick ran lane by lane (the flux pass 1.3 times
        # slower, measured).
        x32 = np.float32(x)
        third = np.int32(np.float32(x32.view(np.int32)) * np.float32(1 / 3))
        y = np.float64(np.int32(third + _CBRT_BIAS_32).view(np.float32))
        return _halley(_halley(y, x), x)
    return root64


@njit(inline="always", **FAST)
def _friction_denominator(q: float, depth: float, n2: float, dt: float) -> float:
    # Semi-implicit friction of Bates et al. (2010) eq. 7: 1 + g dt n² |q| / h^(7/3).
    return 1.0 + G * dt * n2 * abs(q) / (depth * depth * cube_root(depth))


@njit(inline="always", **FAST)
def _face_flux(q: float, q_before: float, q_after: float, eta_a: float, eta_b: float,
               z_a: float, z_b: float, n2: float, c: Coefficients) -> float:
    """Discharge from cell a to cell b: de Almeida et al. (2012) eq. 14 (θ = 1: Bates 2010);
    zero on a shut face (``n2`` < 0) or below ``h_min``.

    Computed whatever the depth and selected at the end: a branch-free loop vectorises. The
    friction denominator 1 + g dt n² |q| / d^(7/3) is taken times d^(7/3): no division by
    it, and no float64 constant to widen a float32 loop.
    """
    theta, rest, g_dt, g_dt_dist, h_min, floor = c
    # Flow depth at the face: the higher surface over the higher bed (Bates 2010 eq. 6).
    depth = max(eta_a, eta_b) - max(z_a, z_b)
    d = max(depth, floor)
    d73 = d * d * cube_root(d)
    q_weighted = theta * q + rest * (q_before + q_after)
    new = (q_weighted - g_dt_dist * d * (eta_b - eta_a)) * d73 / (d73 + g_dt * n2 * abs(q))
    # & rather than "and": a short-circuit compiled into masked loads, slow on AMD's cores
    # (the flux pass 1.15 times slower, measured).
    return new if (depth > h_min) & (n2 >= floor - floor) else floor - floor


@njit(inline="always", **FAST)
def _edge_flux(kind: int, value: float, q_out: float, h_edge: float, z_edge: float,
               eta_inner: float, has_inner: bool, n2: float, dt: float, dist: float,
               h_min: float) -> float:
    """Outward discharge across a domain edge of the given kind (negative: inflow)."""
    if kind == CLOSED or n2 < 0.0:
        return 0.0
    if kind == FLOW:
        return -value
    eta_edge = z_edge + h_edge
    if kind == FREE:
        # Normal-depth outfall (the LISFLOOD-FP "free" edge): the surface keeps falling at
        # the given slope, or at the local surface slope when none is given.
        depth = h_edge
        if value > 0.0:
            drop = value
        elif has_inner:
            drop = max(0.0, (eta_inner - eta_edge) / dist)
        else:
            drop = 0.0
    else:
        # A fixed level held one cell beyond the edge, over the edge cell's bed.
        depth = max(eta_edge, value) - z_edge
        drop = (eta_edge - value) / dist
    if depth <= h_min:
        return 0.0
    q = (q_out + G * depth * dt * drop) / _friction_denominator(q_out, depth, n2, dt)
    if kind == FREE and q < 0.0:
        return 0.0
    return q


def face_roughness(n: np.ndarray, active: np.ndarray, pool: np.ndarray, dtype: np.dtype
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Manning's n² on the vertical and horizontal faces (the mean n of their two cells,
    an edge face its cell's), −1 where a face is shut: a wall on either side, or both
    cells in one level pool (``pool`` labels, 0 outside any)."""
    ny, nx = active.shape
    cell = np.broadcast_to(n, active.shape)
    n2x = np.full((ny, nx + 1), -1.0)
    n2y = np.full((ny + 1, nx), -1.0)
    inside = (pool[:, 1:] == 0) | (pool[:, 1:] != pool[:, :-1])
    n2x[:, 1:-1] = np.where(active[:, 1:] & active[:, :-1] & inside,
                            (0.5 * (cell[:, 1:] + cell[:, :-1])) ** 2, -1.0)
    inside = (pool[1:] == 0) | (pool[1:] != pool[:-1])
    n2y[1:-1] = np.where(active[1:] & active[:-1] & inside,
                         (0.5 * (cell[1:] + cell[:-1])) ** 2, -1.0)
    n2x[:, 0] = np.where(active[:, 0], cell[:, 0] ** 2, -1.0)
    n2x[:, -1] = np.where(active[:, -1], cell[:, -1] ** 2, -1.0)
    n2y[0] = np.where(active[0], cell[0] ** 2, -1.0)
    n2y[-1] = np.where(active[-1], cell[-1] ** 2, -1.0)
    return n2x.astype(dtype), n2y.astype(dtype)


Coefficients = tuple[float, float, float, float, float, float]
"""θ, (1 − θ) / 2, g dt, g dt / (face spacing), h_min, a floor under the depth (> 0): in the
state's precision (:func:`coefficients`)."""


def coefficients(theta: float, dt: float, spacing: float, h_min: float, dtype: np.dtype
                 ) -> Coefficients:
    """:func:`_face_flux`'s scalars for one axis, in the state's precision."""
    cast = np.dtype(dtype).type
    return (cast(theta), cast(0.5 * (1.0 - theta)), cast(G * dt), cast(G * dt / spacing),
            cast(h_min), cast(max(h_min, 1e-12)))


@njit(parallel=True, **FAST)
def fluxes(h: np.ndarray, z: np.ndarray, n2x: np.ndarray, n2y: np.ndarray,
           qx: np.ndarray, qy: np.ndarray, qx_new: np.ndarray, qy_new: np.ndarray,
           cx: Coefficients, cy: Coefficients) -> None:
    """New discharges on the inner faces from the depths and discharges of the previous
    step, on faces whose n² (:func:`face_roughness`) is not negative; the domain's edges are
    :func:`edge_fluxes`'s, so these loops have no boundary branch."""
    ny, nx = h.shape
    for i in prange(ny):
        if i == 0:
            for j in range(1, nx):
                qx_new[0, j] = _x_flux(h, z, n2x, qx, cx, 0, j)
            continue
        qy_new[i, 0] = _y_flux(h, z, n2y, qy, cy, i, 0)
        # Both axes in one loop: two independent chains per column keep the core busy
        # through the friction term's long dependency chain (1.13 times faster, measured).
        for j in range(1, nx):
            qx_new[i, j] = _x_flux(h, z, n2x, qx, cx, i, j)
            qy_new[i, j] = _y_flux(h, z, n2y, qy, cy, i, j)


@njit(inline="always", **FAST)
def _x_flux(h: np.ndarray, z: np.ndarray, n2x: np.ndarray, qx: np.ndarray, cx: Coefficients,
            i: int, j: int) -> float:
    # The face between cells (i, j − 1) and (i, j).
    return _face_flux(qx[i, j], qx[i, j - 1], qx[i, j + 1], z[i, j - 1] + h[i, j - 1],
                      z[i, j] + h[i, j], z[i, j - 1], z[i, j], n2x[i, j], cx)


@njit(inline="always", **FAST)
def _y_flux(h: np.ndarray, z: np.ndarray, n2y: np.ndarray, qy: np.ndarray, cy: Coefficients,
            i: int, j: int) -> float:
    # The face between cells (i − 1, j) and (i, j).
    return _face_flux(qy[i, j], qy[i - 1, j], qy[i + 1, j], z[i - 1, j] + h[i - 1, j],
                      z[i, j] + h[i, j], z[i - 1, j], z[i, j], n2y[i, j], cy)


@njit(**FAST)
def edge_fluxes(h: np.ndarray, z: np.ndarray, n2x: np.ndarray, n2y: np.ndarray,
                qx: np.ndarray, qy: np.ndarray, qx_new: np.ndarray, qy_new: np.ndarray,
                dt: float, dx: float, dy: float, h_min: float, kinds: np.ndarray,
                values: np.ndarray) -> None:
    """New discharges on the domain's edge faces, by each side's kind. A shut inner face (a
    wall or the same pool) gives the edge no surface slope to follow."""
    ny, nx = h.shape
    for i in range(ny):
        # West and east; outward is −x on the west.
        inner = min(1, nx - 1)
        qx_new[i, 0] = -_edge_flux(
            kinds[2], values[2], -qx[i, 0], h[i, 0], z[i, 0], z[i, inner] + h[i, inner],
            nx > 1 and n2x[i, 1] >= 0.0, n2x[i, 0], dt, dx, h_min)
        e = nx - 1
        inner = max(e - 1, 0)
        qx_new[i, nx] = _edge_flux(
            kinds[3], values[3], qx[i, nx], h[i, e], z[i, e], z[i, inner] + h[i, inner],
            nx > 1 and n2x[i, e] >= 0.0, n2x[i, nx], dt, dx, h_min)
    inner = min(1, ny - 1)
    e = ny - 1
    below = max(e - 1, 0)
    for j in range(nx):
        qy_new[0, j] = -_edge_flux(
            kinds[0], values[0], -qy[0, j], h[0, j], z[0, j], z[inner, j] + h[inner, j],
            ny > 1 and n2y[1, j] >= 0.0, n2y[0, j], dt, dy, h_min)
        qy_new[ny, j] = _edge_flux(
            kinds[1], values[1], qy[ny, j], h[e, j], z[e, j], z[below, j] + h[below, j],
            ny > 1 and n2y[e, j] >= 0.0, n2y[ny, j], dt, dy, h_min)


@njit(parallel=True, **FAST)
def outflow_factors(h: np.ndarray, active: np.ndarray, qx: np.ndarray, qy: np.ndarray,
                    rain: np.ndarray, dt_dx: float, dt_dy: float, factor: np.ndarray) -> int:
    """Per cell, the fraction of its outflows it can supply this step, into ``factor``
    (ny + 2, nx + 2: cell (i, j) at (i + 1, j + 1), a ring of ones for the world outside);
    returns how many cells are limited.

    Scaling every outflow of a cell by the same fraction keeps depths from going negative
    without creating or destroying water (a clamp of negative depths would create it).
    ``rain`` is this step's depth per cell, or a (1, 1) array: the same everywhere.
    """
    ny, nx = h.shape
    field = rain.shape[0] > 1
    zero = dt_dx - dt_dx
    limited = 0
    for i in prange(ny):
        if field:
            for j in range(nx):
                limited += _factor(h, active, qx, qy, rain[i, j], dt_dx, dt_dy, factor, i, j,
                                   zero)
        else:
            for j in range(nx):
                limited += _factor(h, active, qx, qy, rain[0, 0], dt_dx, dt_dy, factor, i, j,
                                   zero)
    return limited


@njit(inline="always", **FAST)
def _factor(h: np.ndarray, active: np.ndarray, qx: np.ndarray, qy: np.ndarray, r: float,
            dt_dx: float, dt_dy: float, factor: np.ndarray, i: int, j: int, zero: float
            ) -> int:
    out = (dt_dx * (max(qx[i, j + 1], zero) + max(-qx[i, j], zero))
           + dt_dy * (max(qy[i + 1, j], zero) + max(-qy[i, j], zero)))
    available = max(h[i, j] + r, zero)
    short = active[i, j] and out > available
    factor[i + 1, j + 1] = available / out if short else 1.0
    return 1 if short else 0


# Reassociation lets the row's sum of losses vectorise (a float reduction kept the loop
# scalar: 3.5 times slower with the deepest depth's, measured).
@njit(parallel=True, fastmath={"reassoc"}, **FAST)
def update_depths(h: np.ndarray, active: np.ndarray, pool: np.ndarray, qx: np.ndarray,
                  qy: np.ndarray, factor: np.ndarray, qx_out: np.ndarray, qy_out: np.ndarray,
                  rain: np.ndarray, infiltration: float, pervious: np.ndarray, dt_dx: float,
                  dt_dy: float, h_max: np.ndarray, v_max: np.ndarray, arrival: np.ndarray,
                  t_end: float, arrival_depth: float, velocity_depth: float
                  ) -> tuple[float, float]:
    """Continuity (Bates 2010 eq. 3) over the faces' discharges ``qx``, ``qy`` each scaled by
    the :func:`outflow_factors` of the cell it leaves (written to ``qx_out``, ``qy_out``),
    plus rain, minus infiltration up to what the cell holds; and the running maxima of depth
    and speed and the time of first flooding. One pass: the scaling needs no pass of its own.

    ``rain`` is per cell or a (1, 1) array, ``pervious`` per cell. ``v_max`` keeps the
    squared speed of the cell-centred discharge (the mean of each axis's two faces) over the
    cell's depth, where deeper than ``velocity_depth`` (thinner films give meaningless
    speeds). ``arrival`` holds, per cell, the first ``t_end`` at which the depth exceeded
    ``arrival_depth``, NaN until then. Returns the infiltrated depth summed over cells and the
    deepest cell outside the level pools (``pool`` > 0), whose depths and their maxima
    :func:`simulation.flood.pools.level` settles after the step.
    """
    ny, nx = h.shape
    field = rain.shape[0] > 1
    infiltrated = 0.0
    deepest = 0.0
    for i in prange(ny):
        # Row sums in plain locals, added to the run's after the row: the loop does not
        # vectorise over prange's own reduction variables.
        row_loss = 0.0
        row_top = 0  # the deepest's bits: an integer maximum vectorises, a float one did not
        if field:
            for j in range(nx):
                taken, d = _update_cell(
                    h, active, pool, qx, qy, factor, qx_out, qy_out, rain[i, j], infiltration,
                    pervious, dt_dx, dt_dy, h_max, v_max, arrival, t_end, arrival_depth,
                    velocity_depth, i, j)
                row_loss += taken
                row_top = max(row_top, bits(d))
        else:
            for j in range(nx):
                taken, d = _update_cell(
                    h, active, pool, qx, qy, factor, qx_out, qy_out, rain[0, 0], infiltration,
                    pervious, dt_dx, dt_dy, h_max, v_max, arrival, t_end, arrival_depth,
                    velocity_depth, i, j)
                row_loss += taken
                row_top = max(row_top, bits(d))
        infiltrated += row_loss
        deepest = max(deepest, from_bits(row_top, d))
        # The faces no cell's west or north side is: the east and south edges.
        qx_out[i, nx] = _scaled(qx[i, nx], factor[i + 1, nx], factor[i + 1, nx + 1])
        if i == ny - 1:
            for j in range(nx):
                qy_out[ny, j] = _scaled(qy[ny, j], factor[ny, j + 1], factor[ny + 1, j + 1])
    return infiltrated, deepest


def bits(x: float) -> int:
    """The bits of a float x ≥ 0 as an integer of its width: they order as x does (compiled
    only: see the overload)."""
    raise NotImplementedError("bits runs compiled, inside the kernels")


def from_bits(b: int, like: float) -> float:
    """The float of ``like``'s type whose :func:`bits` are ``b`` (compiled only)."""
    raise NotImplementedError("from_bits runs compiled, inside the kernels")


@overload(bits, inline="always", **FAST)
def _bits(x: float) -> Callable[[float], int]:  # x: a numba Float type
    if x.bitwidth == 32:
        def bits32(x: float) -> int:
            return np.float32(x).view(np.int32)
        return bits32

    def bits64(x: float) -> int:
        return np.float64(x).view(np.int64)
    return bits64


@overload(from_bits, inline="always", **FAST)
def _from_bits(b: int, like: float) -> Callable[[int, float], float]:
    if like.bitwidth == 32:
        def float32(b: int, like: float) -> float:
            return np.int32(b).view(np.float32)
        return float32

    def float64(b: int, like: float) -> float:
        return np.int64(b).view(np.float64)
    return float64


@njit(inline="always", **FAST)
def _scaled(q: float, f_before: float, f_after: float) -> float:
    # A face's discharge times the factor of the cell it leaves: the one before it when
    # positive (west or north of it), the one after when negative.
    return q * (f_before if q > f_before - f_before else f_after)


@njit(inline="always", **FAST)
def _update_cell(h: np.ndarray, active: np.ndarray, pool: np.ndarray, qx: np.ndarray,
                 qy: np.ndarray, factor: np.ndarray, qx_out: np.ndarray, qy_out: np.ndarray,
                 r: float, infiltration: float, pervious: np.ndarray, dt_dx: float,
                 dt_dy: float, h_max: np.ndarray, v_max: np.ndarray, arrival: np.ndarray,
                 t_end: float, arrival_depth: float, velocity_depth: float, i: int, j: int
                 ) -> tuple[float, float]:
    f = factor[i + 1, j + 1]
    west = _scaled(qx[i, j], factor[i + 1, j], f)
    east = _scaled(qx[i, j + 1], f, factor[i + 1, j + 2])
    north = _scaled(qy[i, j], factor[i, j + 1], f)
    south = _scaled(qy[i + 1, j], f, factor[i + 2, j + 1])
    qx_out[i, j] = west
    qy_out[i, j] = north
    # Every value loaded unconditionally and the tests combined with &: a short-circuit
    # "and" over a load is a branch the loop does not vectorise through.
    zero = r - r
    depth, top, fastest, first = h[i, j], h_max[i, j], v_max[i, j], arrival[i, j]
    on = active[i, j]
    ordinary = on & (pool[i, j] == 0)
    # A wall's changes times 0 store its depth back unchanged: an unconditional store. A
    # select would be compiled into masked stores, slower on AMD's cores than the rest of
    # the cell (measured).
    unit = zero + on
    d = depth + r * unit + (dt_dx * (west - east) + dt_dy * (north - south)) * unit
    taken = min(infiltration * pervious[i, j], max(d, zero)) * unit
    d -= taken
    h[i, j] = d
    h_max[i, j] = max(top, d) if ordinary else top
    arrival[i, j] = t_end if ordinary & (d > arrival_depth) & math.isnan(first) else first
    u = west + east
    v = north + south
    # The squared speed: the square root is taken once, after the run.
    speed = (u * u + v * v) / ((d + d) * (d + d)) if on & (d > velocity_depth) else zero
    v_max[i, j] = max(fastest, speed)
    return taken, (max(d, zero) if ordinary else zero)


@njit(parallel=True, **FAST)
def combine_rain(weights: np.ndarray, depths: np.ndarray, out: np.ndarray) -> None:
    """Each cell's rain: its sources' depths (m) weighted by their shares (m, ny, nx)."""
    m, ny, nx = weights.shape
    for i in prange(ny):
        for j in range(nx):
            total = 0.0
            for k in range(m):
                total += weights[k, i, j] * depths[k]
            out[i, j] = total


@njit(**FAST)
def edge_exchange(qx: np.ndarray, qy: np.ndarray, dx: float, dy: float) -> tuple[float, float]:
    """Volume rate (m³/s) leaving and entering through the domain edges."""
    ny = qx.shape[0]
    nx = qy.shape[1]
    out = 0.0
    into = 0.0
    for i in range(ny):
        for q in (-qx[i, 0], qx[i, nx]):
            if q > 0.0:
                out += q * dy
            else:
                into -= q * dy
    for j in range(nx):
        for q in (-qy[0, j], qy[ny, j]):
            if q > 0.0:
                out += q * dx
            else:
                into -= q * dx
    return out, into
