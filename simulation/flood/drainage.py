"""Drainage: inlets exchange water with pipe networks that store it, drain it at their outlets
and, when full, surcharge it back to the surface at their manholes.

Each pipe network (the connected pipes and their nodes) is one lumped store:
- Volume V_max = Σ pipe cross-section × length + Σ manhole shaft area × (ground − invert).
- Outflow at its outlets (nodes no pipe leaves: outfalls, pumping stations, or where the
  data ends): Q_out = Σ Manning full-flow discharge (1/n) A R^(2/3) √S of the pipes that
  reach them, capped by a pump's capacity, whenever the network holds water. Travel time
  through the pipes is not modelled.
- Exchange at each inlet or manhole k (cell ground z_k, surface η_k = z_k + h_k, opening A_k,
  weir width w_k = 2√(πA_k)) with the network's head H (Rubinato et al. 2017, J. Hydrol.,
  coefficients; Chen et al. 2007, Urban Water J., for the forms):
  - H ≤ z_k, free inflow: Q = min((2/3) 0.54 w h^1.5 √(2g), 0.167 A √(2g h), capacity,
    h a / dt) with a the cell's area;
  - z_k < H < η_k, submerged: the orifice on the head difference 0.167 A √(2g (η − H)),
    no more than free inflow;
  - H ≥ η_k, surcharge: Q = −0.167 A √(2g (H − η_k)), out of the network onto the cell;
  and never, within a step, more than carries the cell's surface to the head.
- While the network has room (V + inflow·dt ≤ V_max + Q_out·dt) it is at atmospheric
  pressure below every crest (H = −∞: free inflow everywhere). When the inlets ask for more
  than the room, the network is pressurised and its head is the level at which what enters
  equals the room left: Σ_k Q_k(H) dt = V_max − V + Q_out dt, the lumped form of SWMM's
  surcharge condition (a full node's head makes its net inflow zero: Rossman 2017, SWMM
  Reference Manual Vol. II – Hydraulics, EPA/600/R-17/111, on surcharge). One head for the
  whole network means no friction losses along it while surcharged: water taken in at high
  inlets comes out at the low manholes, where ground is below the head.

The water the cells give or get is counted as the change of their stored depths, so the
network's balance (Δstored + outflow = net inflow) is exact in float32 as in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

G = 9.81
WEIR = (2.0 / 3.0) * 0.54
ORIFICE = 0.167
DEFAULT_CAPACITY_M3S = {"inlet": 0.1, "manhole": 0.05}
"""Inlet capacity where the data has none: about a single gully grate, and a manhole cover."""
OPENING_M2 = {"inlet": 0.25, "manhole": 0.4}
"""Opening area of a gully grate (0.5 × 0.5 m) and of a manhole cover (0.7 m across)."""
INLET_KINDS = tuple(OPENING_M2)
MIN_SLOPE = 1e-3
"""Pipes flatter than this (or with unknown inverts) are sized at this slope."""
SHAFT_M2 = 1.0
"""Plan area of a manhole's shaft (a chamber about 1.1 m across)."""
HEAD_TOLERANCE_M = 1e-7
"""Bisection of a surcharged network's head stops this close to the root."""


def full_flow_m3s(area_m2: np.ndarray, hydraulic_radius_m: np.ndarray, slope: np.ndarray,
                  manning: np.ndarray) -> np.ndarray:
    """Manning's full-flow discharge of pipes: (1/n) A R^(2/3) √S (R = D / 4 when round)."""
    return area_m2 * hydraulic_radius_m ** (2.0 / 3.0) * np.sqrt(slope) / manning


@dataclass(frozen=True)
class Network:
    """Node ids, kinds, capacities (m³/s, NaN unknown) and shaft volumes (m³); the pipes
    between them with their full-flow capacities (m³/s) and volumes (m³)."""

    node_ids: np.ndarray
    node_kinds: np.ndarray
    node_capacity: np.ndarray
    node_volume: np.ndarray
    pipe_from: np.ndarray  # node indexes
    pipe_to: np.ndarray
    pipe_capacity: np.ndarray
    pipe_volume: np.ndarray

    def components(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each node's network, and each network's outlet capacity (m³/s) and volume (m³)."""
        n = len(self.node_ids)
        if n == 0:  # an area with no drainage (NumPy's bincount of nothing is integer)
            return np.zeros(0, np.int32), np.zeros(0), np.zeros(0)
        graph = coo_matrix((np.ones(len(self.pipe_from)), (self.pipe_from, self.pipe_to)),
                           shape=(n, n))
        count, label = connected_components(graph, directed=False)
        leaves = np.ones(n, bool)
        leaves[self.pipe_from] = False  # an outlet is a node no pipe leaves
        arriving = np.bincount(self.pipe_to, weights=self.pipe_capacity, minlength=n)
        outlet = np.where(leaves, arriving, 0.0)
        pumped = leaves & np.isfinite(self.node_capacity)
        outlet[pumped] = np.minimum(outlet[pumped], self.node_capacity[pumped])
        capacity = np.bincount(label, weights=outlet, minlength=count)
        volume = (np.bincount(label[self.pipe_from], weights=self.pipe_volume, minlength=count)
                  + np.bincount(label, weights=self.node_volume, minlength=count))
        # An inlet joined to no pipe: nothing is known downstream, its own capacity rules.
        piped = np.zeros(count, bool)
        piped[label[self.pipe_from]] = True
        capacity[~piped] = np.inf
        volume[~piped] = np.inf
        return label, capacity, volume


@njit(cache=True, inline="always")
def _flow(h: float, z: float, head: float, opening: float, capacity: float,
          area_dt: float) -> float:
    """Into the network (m³/s; negative: out of it) at an inlet on a cell of depth ``h`` and
    ground ``z`` for the network's head; ``area_dt`` is the cell's area over the step.

    Within a step the exchange never carries the surface past the head (nor below the
    ground): the orifice law alone would overshoot and make the manhole oscillate.
    """
    eta = z + h
    if head >= eta:
        return -min(ORIFICE * opening * math.sqrt(2.0 * G * (head - eta)),
                    (head - eta) * area_dt)
    if h <= 0.0:
        return 0.0
    perimeter = 2.0 * math.sqrt(math.pi * opening)
    weir = WEIR * perimeter * h**1.5 * math.sqrt(2.0 * G)
    drop = eta - max(head, z)
    return min(weir, ORIFICE * opening * math.sqrt(2.0 * G * drop), capacity, drop * area_dt)


@njit(cache=True, nogil=True)
def _exchange(h: np.ndarray, z: np.ndarray, rows: np.ndarray, cols: np.ndarray,
              capacity: np.ndarray, opening: np.ndarray, order: np.ndarray,
              starts: np.ndarray, outlet: np.ndarray, volume: np.ndarray, stored: np.ndarray,
              head: np.ndarray, dt: float, cell_area: float) -> tuple[float, float, float]:
    """One step of every network; returns the volumes (m³) taken from the surface (net),
    discharged at the outlets, and returned to the surface by surcharge."""
    taken = 0.0
    discharged = 0.0
    returned = 0.0
    area_dt = cell_area / dt
    for m in range(starts.shape[0] - 1):
        a, b = starts[m], starts[m + 1]
        room = volume[m] - stored[m] + outlet[m] * dt
        demand = 0.0
        lowest = math.inf
        highest = -math.inf
        for p in range(a, b):
            k = order[p]
            depth = float(h[rows[k], cols[k]])
            ground = float(z[rows[k], cols[k]])
            demand += _flow(depth, ground, -math.inf, opening[k], capacity[k], area_dt) * dt
            lowest = min(lowest, ground)
            highest = max(highest, ground + depth)
        level = -math.inf
        if demand > room:
            # Pressurised: bisect for the head at which the net inflow fills the room. At
            # the lowest crest every inlet takes its free inflow (more than the room); a
            # metre above the highest surface every one returns water (less than the room).
            lo, hi = lowest, highest + 1.0
            while hi - lo > HEAD_TOLERANCE_M:
                mid = 0.5 * (lo + hi)
                net = 0.0
                for p in range(a, b):
                    k = order[p]
                    depth = float(h[rows[k], cols[k]])
                    ground = float(z[rows[k], cols[k]])
                    net += _flow(depth, ground, mid, opening[k], capacity[k], area_dt) * dt
                if net > room:
                    lo = mid
                else:
                    hi = mid
            level = hi  # the side that never overfills
        head[m] = level
        into = 0.0
        for p in range(a, b):
            k = order[p]
            before = h[rows[k], cols[k]]
            depth = float(before)
            ground = float(z[rows[k], cols[k]])
            q = _flow(depth, ground, level, opening[k], capacity[k], area_dt)
            # Several inlets may share a cell: never more than it holds now.
            h[rows[k], cols[k]] = before - min(q * dt / cell_area, depth)
            change = (depth - float(h[rows[k], cols[k]])) * cell_area
            into += change
            if change < 0.0:
                returned -= change
        stored[m] += into
        out = min(outlet[m] * dt, stored[m])
        stored[m] -= out
        taken += into
        discharged += out
    return taken, discharged, returned


class Drainage:
    """Inlets on grid cells, each in a network that stores, drains and surcharges: the
    solver's drain. ``capacity`` and ``network_capacity`` may be edited (measures) between
    runs; ``stored`` is each network's water (m³) and ``head`` its last head (m; −inf while
    not pressurised)."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, capacity_m3s: np.ndarray,
                 opening_m2: np.ndarray, network: np.ndarray, network_capacity_m3s: np.ndarray,
                 cell_area: float, *, network_volume_m3: np.ndarray) -> None:
        self.rows = rows.astype(np.int64)
        self.cols = cols.astype(np.int64)
        self.capacity = capacity_m3s.astype(np.float64)
        self.opening = opening_m2.astype(np.float64)
        self.network = network.astype(np.int64)
        self.network_capacity = network_capacity_m3s.astype(np.float64)
        self.network_volume = network_volume_m3.astype(np.float64)
        self.cell_area = cell_area
        count = len(self.network_capacity)
        self._order = np.argsort(self.network, kind="stable").astype(np.int64)
        self._starts = np.searchsorted(self.network[self._order], np.arange(count + 1))
        self.stored = np.zeros(count)
        self.head = np.full(count, -np.inf)
        self.returned_m3 = 0.0

    @property
    def inlets(self) -> int:
        return len(self.rows)

    @property
    def capacity_m3s(self) -> float:
        """What the inlets could take together, as the networks' outlets allow."""
        asked = np.bincount(self.network, weights=self.capacity,
                            minlength=len(self.network_capacity))
        return float(np.minimum(asked, self.network_capacity).sum())

    @property
    def volume_m3(self) -> float:
        """What the piped networks hold when full."""
        return float(self.network_volume[np.isfinite(self.network_volume)].sum())

    @property
    def stored_m3(self) -> float:
        return float(self.stored.sum())

    def exchange(self, h: np.ndarray, z: np.ndarray, dt: float) -> tuple[float, float]:
        """Swap water between the cells' depths ``h`` (beds ``z``) and the networks over a
        step of ``dt`` s; returns the net volume taken from the surface and the volume
        discharged at the outlets (m³)."""
        if not self.inlets:
            return 0.0, 0.0
        taken, discharged, returned = _exchange(
            h, z, self.rows, self.cols, self.capacity, self.opening, self._order,
            self._starts, self.network_capacity, self.network_volume, self.stored, self.head,
            dt, self.cell_area)
        self.returned_m3 += returned
        return taken, discharged
