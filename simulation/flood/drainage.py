"""Drainage, minimum model: inlets take surface water into networks of limited capacity.

Each inlet (a gully, or a manhole's cover) takes from its cell the least of
- its weir flow Q = (2/3) 0.54 w h^1.5 √(2g), w = 2√(πA) the perimeter of a round opening
  of area A, and its orifice flow Q = 0.167 A √(2 g h) (free inflow and the orifice law of
  Rubinato et al. 2017, J. Hydrol.; the weir law governs shallow water, the orifice deep);
- its own capacity (``capacity_m3s``, or a default by kind);
- the water its cell holds.
Every inlet belongs to one pipe network (the connected pipes it joins); a network takes at
most its outlet capacity: the Manning full-flow discharge of the pipes that reach its outlets
(nodes no pipe leaves: outfalls, pumping stations, or where the data ends), capped by a
pump's capacity. When the inlets of a network ask for more, each gets the same fraction. An
inlet joined to no pipe is limited by its own capacity only.

Simplified on purpose (this increment): the pipes hold no water and never surcharge back to
the surface; water that enters a network has left the model (the budget's ``drainage``). The
target is EPA SWMM through pyswmm for the pipes (README, "Flood simulation").
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


def full_flow_m3s(area_m2: np.ndarray, hydraulic_radius_m: np.ndarray, slope: np.ndarray,
                  manning: np.ndarray) -> np.ndarray:
    """Manning's full-flow discharge of pipes: (1/n) A R^(2/3) √S (R = D / 4 when round)."""
    return area_m2 * hydraulic_radius_m ** (2.0 / 3.0) * np.sqrt(slope) / manning


@dataclass(frozen=True)
class Network:
    """Node ids, kinds and capacities (m³/s, NaN unknown) and the pipes between them."""

    node_ids: np.ndarray
    node_kinds: np.ndarray
    node_capacity: np.ndarray
    pipe_from: np.ndarray  # node indexes
    pipe_to: np.ndarray
    pipe_capacity: np.ndarray  # full flow, m³/s

    def components(self) -> tuple[np.ndarray, np.ndarray]:
        """Each node's network, and each network's outlet capacity (m³/s)."""
        n = len(self.node_ids)
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
        # An inlet joined to no pipe: nothing is known downstream, its own capacity rules.
        piped = np.zeros(count, bool)
        piped[label[self.pipe_from]] = True
        capacity[~piped] = np.inf
        return label, capacity


@njit(cache=True, nogil=True)
def _drain(h: np.ndarray, rows: np.ndarray, cols: np.ndarray, capacity: np.ndarray,
           opening: np.ndarray, network: np.ndarray, network_capacity: np.ndarray,
           asked: np.ndarray, dt: float, cell_area: float) -> float:
    """Remove this step's inflow to the inlets from ``h``; returns the volume (m³)."""
    demand = np.zeros(network_capacity.shape[0])
    for k in range(rows.shape[0]):
        depth = h[rows[k], cols[k]]
        if depth <= 0.0:
            asked[k] = 0.0
            continue
        perimeter = 2.0 * math.sqrt(math.pi * opening[k])
        weir = WEIR * perimeter * depth**1.5 * math.sqrt(2.0 * G)
        orifice = ORIFICE * opening[k] * math.sqrt(2.0 * G * depth)
        asked[k] = min(weir, orifice, capacity[k])
        demand[network[k]] += asked[k]
    taken = 0.0
    for k in range(rows.shape[0]):
        if asked[k] <= 0.0:
            continue
        m = network[k]
        share = 1.0 if demand[m] <= network_capacity[m] else network_capacity[m] / demand[m]
        # Never more than the cell holds (several inlets may share a cell); what is counted
        # is the change of the stored depth, exact in float32 as in float64.
        before = h[rows[k], cols[k]]
        h[rows[k], cols[k]] = before - min(asked[k] * share * dt / cell_area, before)
        taken += float(before) - float(h[rows[k], cols[k]])
    return taken * cell_area


class Drainage:
    """Inlets on grid cells, each in a network of limited capacity: the solver's sink."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, capacity_m3s: np.ndarray,
                 opening_m2: np.ndarray, network: np.ndarray, network_capacity_m3s: np.ndarray,
                 cell_area: float) -> None:
        self.rows = rows.astype(np.int64)
        self.cols = cols.astype(np.int64)
        self.capacity = capacity_m3s.astype(np.float64)
        self.opening = opening_m2.astype(np.float64)
        self.network = network.astype(np.int64)
        self.network_capacity = network_capacity_m3s.astype(np.float64)
        self.cell_area = cell_area
        self._asked = np.zeros(len(self.rows))

    @property
    def inlets(self) -> int:
        return len(self.rows)

    @property
    def capacity_m3s(self) -> float:
        """What the inlets could take together, as the networks allow."""
        asked = np.bincount(self.network, weights=self.capacity,
                            minlength=len(self.network_capacity))
        return float(np.minimum(asked, self.network_capacity).sum())

    def remove(self, h: np.ndarray, dt: float) -> float:
        if not self.inlets:
            return 0.0
        return _drain(h, self.rows, self.cols, self.capacity, self.opening, self.network,
                      self.network_capacity, self._asked, dt, self.cell_area)
