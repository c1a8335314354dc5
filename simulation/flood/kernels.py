"""Compiled kernels of the local-inertial scheme: one time step is four passes over the grid.

Layout: depths ``h`` and beds ``z`` on cells (ny, nx), row 0 at the top (north); unit-width
discharges ``qx`` (ny, nx + 1) on vertical faces, positive eastwards, face j between cells
j − 1 and j; ``qy`` (ny + 1, nx) on horizontal faces, positive southwards (increasing row).
The outermost faces are the domain edges. Each kernel runs rows in parallel (prange) and
compiles once per dtype (float32 or float64), cached on disk, and releases the GIL so a
server can run a scenario on a thread and still answer requests.
"""

from __future__ import annotations

import math
import os

import numba
import numpy as np
from numba import njit, prange

# On a loaded 2-core machine OpenMP's spin-waiting made 2-thread runs 10-30 times slower
# (DESIGN.md, measured); the workqueue layer sleeps instead. An explicit choice wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

G = 9.81
# Edge kinds, in the order of the sides: north (row 0), south, west (column 0), east.
CLOSED, FREE, LEVEL, FLOW = 0, 1, 2, 3


# Bits of a double whose integer third, added to x's bits, approximate cbrt(x) to a few per
# cent (dividing the exponent by 3; Kahan's constant for the high word, shifted).
_CBRT_BIAS = np.int64(0x2A9F789300000000)
# Float division without Python's zero-division checks: their branches kept the flux loop
# from vectorising (3-4 times slower, measured). Divisors here are positive by construction.
FAST = {"cache": True, "nogil": True, "error_model": "numpy"}


@njit(inline="always", **FAST)
def _cbrt(x: float) -> float:
    """Cube root of x > 0 to about 1e-14: a bit-level guess and two Halley steps.

    np.cbrt is an opaque libm call, and an integer division by 3 a branchy one: either kept
    the flux loop from vectorising (5-10 times slower, measured), the friction term being
    its main cost. The third of the bits is taken in floating point (exact to 2^-53 of them,
    far inside the guess's few per cent).
    """
    third = np.int64(np.float64(np.float64(x).view(np.int64)) * (1.0 / 3.0))
    y = np.int64(third + _CBRT_BIAS).view(np.float64)
    for _ in range(2):
        y3 = y * y * y
        y = y * (y3 + 2.0 * x) / (2.0 * y3 + x)
    return y


@njit(inline="always", **FAST)
def _friction_denominator(q: float, depth: float, n2: float, dt: float) -> float:
    # Semi-implicit friction of Bates et al. (2010) eq. 7: 1 + g dt n² |q| / h^(7/3).
    return 1.0 + G * dt * n2 * abs(q) / (depth * depth * _cbrt(depth))


@njit(inline="always", **FAST)
def _face_flux(q: float, q_before: float, q_after: float, eta_a: float, eta_b: float,
               z_a: float, z_b: float, n2: float, theta: float, dt: float, dist: float,
               h_min: float) -> float:
    """Discharge from cell a to cell b: de Almeida et al. (2012) eq. 14 (θ = 1: Bates 2010);
    zero on a shut face (``n2`` < 0) or below ``h_min``.

    Computed whatever the depth and selected at the end: a branch-free loop vectorises.
    """
    # Flow depth at the face: the higher surface over the higher bed (Bates 2010 eq. 6).
    depth = max(eta_a, eta_b) - max(z_a, z_b)
    d = max(depth, h_min, 1e-12)
    q_weighted = theta * q + 0.5 * (1.0 - theta) * (q_before + q_after)
    new = ((q_weighted - G * d * dt * (eta_b - eta_a) / dist)
           / _friction_denominator(q, d, n2, dt))
    return new if depth > h_min and n2 >= 0.0 else 0.0


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


@njit(parallel=True, **FAST)
def fluxes(h: np.ndarray, z: np.ndarray, n2x: np.ndarray, n2y: np.ndarray,
           qx: np.ndarray, qy: np.ndarray, qx_new: np.ndarray, qy_new: np.ndarray,
           dt: float, dx: float, dy: float, theta: float, h_min: float,
           kinds: np.ndarray, values: np.ndarray) -> None:
    """New face discharges from the depths and discharges of the previous step, on faces
    whose n² (:func:`face_roughness`) is not negative."""
    ny, nx = h.shape
    for i in prange(ny + 1):
        if i < ny:
            for j in range(1, nx):
                qx_new[i, j] = _face_flux(
                    qx[i, j], qx[i, j - 1], qx[i, j + 1], z[i, j - 1] + h[i, j - 1],
                    z[i, j] + h[i, j], z[i, j - 1], z[i, j], n2x[i, j], theta, dt, dx, h_min)
            # West and east edges; outward is −x on the west. A shut inner face (a wall or
            # the same pool) gives the edge no surface slope to follow.
            inner = min(1, nx - 1)
            qx_new[i, 0] = -_edge_flux(
                kinds[2], values[2], -qx[i, 0], h[i, 0], z[i, 0], z[i, inner] + h[i, inner],
                nx > 1 and n2x[i, 1] >= 0.0, n2x[i, 0], dt, dx, h_min)
            e = nx - 1
            inner = max(e - 1, 0)
            qx_new[i, nx] = _edge_flux(
                kinds[3], values[3], qx[i, nx], h[i, e], z[i, e], z[i, inner] + h[i, inner],
                nx > 1 and n2x[i, e] >= 0.0, n2x[i, nx], dt, dx, h_min)
        if 0 < i < ny:
            for j in range(nx):
                qy_new[i, j] = _face_flux(
                    qy[i, j], qy[i - 1, j], qy[i + 1, j], z[i - 1, j] + h[i - 1, j],
                    z[i, j] + h[i, j], z[i - 1, j], z[i, j], n2y[i, j], theta, dt, dy, h_min)
        elif i == 0:
            inner = min(1, ny - 1)
            for j in range(nx):
                qy_new[0, j] = -_edge_flux(
                    kinds[0], values[0], -qy[0, j], h[0, j], z[0, j],
                    z[inner, j] + h[inner, j], ny > 1 and n2y[1, j] >= 0.0, n2y[0, j], dt, dy,
                    h_min)
        else:
            e = ny - 1
            inner = max(e - 1, 0)
            for j in range(nx):
                qy_new[ny, j] = _edge_flux(
                    kinds[1], values[1], qy[ny, j], h[e, j], z[e, j],
                    z[inner, j] + h[inner, j], ny > 1 and n2y[e, j] >= 0.0, n2y[ny, j], dt, dy,
                    h_min)


@njit(parallel=True, **FAST)
def limit_outflow(h: np.ndarray, active: np.ndarray, qx: np.ndarray, qy: np.ndarray,
                  rain: np.ndarray, dt: float, dx: float, dy: float, factor: np.ndarray) -> int:
    """Per cell, the fraction of its outflows it can supply this step; returns how many < 1.

    Scaling every outflow of a cell by the same fraction keeps depths from going negative
    without creating or destroying water (a clamp of negative depths would create it).
    ``rain`` is this step's depth per cell (a (1, 1) array: the same everywhere).
    """
    ny, nx = h.shape
    uniform = rain.shape[0] == 1 and rain.shape[1] == 1
    limited = 0
    for i in prange(ny):
        for j in range(nx):
            f = 1.0
            if active[i, j]:
                out = dt * (dy * (max(qx[i, j + 1], 0.0) + max(-qx[i, j], 0.0))
                            + dx * (max(qy[i + 1, j], 0.0) + max(-qy[i, j], 0.0)))
                r = rain[0, 0] if uniform else rain[i, j]
                available = max(h[i, j] + r, 0.0) * dx * dy
                if out > available:
                    f = available / out
                    limited += 1
            factor[i, j] = f
    return limited


@njit(parallel=True, **FAST)
def scale_outflow(qx: np.ndarray, qy: np.ndarray, factor: np.ndarray) -> None:
    """Scale each face's discharge by the factor of the cell it leaves (inflows untouched)."""
    ny, nx = factor.shape
    for i in prange(ny + 1):
        if i < ny:
            for j in range(nx + 1):
                q = qx[i, j]
                if q > 0.0 and j > 0:
                    qx[i, j] = q * factor[i, j - 1]
                elif q < 0.0 and j < nx:
                    qx[i, j] = q * factor[i, j]
        for j in range(nx):
            q = qy[i, j]
            if q > 0.0 and i > 0:
                qy[i, j] = q * factor[i - 1, j]
            elif q < 0.0 and i < ny:
                qy[i, j] = q * factor[i, j]


@njit(parallel=True, **FAST)
def update_depths(h: np.ndarray, active: np.ndarray, pool: np.ndarray, qx: np.ndarray,
                  qy: np.ndarray, rain: np.ndarray, infiltration: float,
                  pervious: np.ndarray, dt: float, dx: float, dy: float, h_max: np.ndarray,
                  v_max: np.ndarray, arrival: np.ndarray, t_end: float, arrival_depth: float,
                  velocity_depth: float) -> tuple[float, float]:
    """Continuity (Bates 2010 eq. 3) plus rain, minus infiltration up to what the cell holds;
    and the running maxima of depth and speed and the time of first flooding.

    ``rain`` and ``pervious`` are per cell, or (1, 1) arrays for the same everywhere. The
    speed is that of the cell-centred discharge (the mean of each axis's two faces) over the
    cell's depth, where deeper than ``velocity_depth`` (thinner films give meaningless
    speeds). ``arrival`` holds, per cell, the first ``t_end`` at which the depth exceeded
    ``arrival_depth``, NaN until then. Returns the infiltrated depth summed over cells and
    the deepest cell outside the level pools (``pool`` > 0), whose depths and their maxima
    :func:`simulation.flood.pools.level` settles after the step.
    """
    ny, nx = h.shape
    uniform = pervious.shape[0] == 1 and pervious.shape[1] == 1
    uniform_rain = rain.shape[0] == 1 and rain.shape[1] == 1
    infiltrated = 0.0
    deepest = 0.0
    for i in prange(ny):
        for j in range(nx):
            if active[i, j]:
                r = rain[0, 0] if uniform_rain else rain[i, j]
                d = h[i, j] + r + dt * ((qx[i, j] - qx[i, j + 1]) / dx
                                        + (qy[i, j] - qy[i + 1, j]) / dy)
                loss = infiltration * (pervious[0, 0] if uniform else pervious[i, j])
                if loss > 0.0 and d > 0.0:
                    taken = min(loss, d)
                    d -= taken
                    infiltrated += taken
                h[i, j] = d
                if pool[i, j] == 0:
                    if d > h_max[i, j]:
                        h_max[i, j] = d
                    if d > arrival_depth and math.isnan(arrival[i, j]):
                        arrival[i, j] = t_end
                    deepest = max(deepest, d)
                if d > velocity_depth:
                    u = 0.5 * (qx[i, j] + qx[i, j + 1])
                    v = 0.5 * (qy[i, j] + qy[i + 1, j])
                    speed = math.sqrt(u * u + v * v) / d
                    if speed > v_max[i, j]:
                        v_max[i, j] = speed
    return infiltrated, deepest


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
