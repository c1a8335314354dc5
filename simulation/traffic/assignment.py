"""Static user-equilibrium assignment with BPR volume-delay functions.

Our typed interface (``Network`` and ``Demand`` in, ``Result`` out) stands in front of the
engine, so the engine can be swapped; the convergence check is ours too: the textbook
relative gap (TSTT − SPTT) / TSTT, computed from the final flows with SciPy's Dijkstra,
whatever the engine reports.

Engine: pytraf 0.3 (PyPI, MIT, a Rust core whose wheel needs only NumPy), path-based
gradient projection. Measured on this loaded 2-core machine against AequilibraE 1.7.2's
bi-conjugate Frank-Wolfe, one thread each, both to a textbook gap of 1e-5 (CPU seconds;
``bench/traffic.py`` prints the full table):

| network        | pytraf (through ``assign``) | AequilibraE bfw |
| -------------- | --------------------------- | --------------- |
| Sioux Falls    | 0.006 s, 19 sweeps          | 3.4 s, 279 it.  |
| Anaheim        | 0.034 s, 6 sweeps           | 0.60 s, 37 it.  |
| Chicago Sketch | 2.2 s, 13 sweeps            | 27 s, 151 it.   |

(load average 9-11 on 2 cores; with the origins in a fixed order Chicago Sketch took 2.7 s
and 15 sweeps in the same conditions.) Where the time goes, by pytraf's own phase timings on
Chicago Sketch and on the 470,000-building city alike: about two thirds in the engine's
shortest paths, a quarter in its path-flow updates; building its arrays is negligible and
our gap check costs 2 % (Chicago, 0.05 s) to 0.5 % (the city, 2 s of about 126). pytraf's
final relative gap equals ours to every printed digit, with and without zones that paths may
not pass, so ours is an independent confirmation, kept; its per-sweep gaps are another
measure and read up to ten times lower than the final one.

Both match the best-known flows (RMSE on flow-dependent links 0.05-0.4 % of the mean flow).
pytraf is 10 to 300 times faster, keeps path flows (select-link analysis, routes), has turn
penalties and several classes, and installs in a second without touching our pins; AequilibraE
pulls in PyTables, OpenMatrix and a project database we do not need, refuses zero free-flow
times, and its own stopping gap reads below the textbook one. pytraf is young (one
maintainer): hence this interface, behind which a bi-conjugate Frank-Wolfe on SciPy shortest
paths could replace it.

Units: times in minutes (the TNTP convention), lengths in km, volumes in vehicles per hour.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytraf
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from simulation.traffic.errors import TrafficInputError

Progress = Callable[[str, float], None]
# Origins per Dijkstra call in the gap check: bounds its distance matrix on big networks.
_ORIGIN_BATCH = 64
# The engine's origin order per sweep: origins with the largest gap first. On the
# 470,000-building city 8 sweeps reach a textbook gap of 6.3e-4 so against 6.6e-3 in a fixed
# order, at the same cost per sweep; on Chicago Sketch 13 sweeps instead of 15.
ORIGIN_ORDER = "largest_gap"


@dataclass(frozen=True, eq=False)
class Network:
    """A directed road network: one entry per link in each array, nodes 0..num_nodes-1.

    ``zone_nodes[z]`` is the node of zone z's centroid; with ``through_zones`` False a path
    may start or end at a zone node but not pass through it. ``fixed_cost`` (minutes per
    link, e.g. a toll or distance term) is added to the travel time in route choice.
    """

    num_nodes: int
    init_node: np.ndarray
    term_node: np.ndarray
    capacity: np.ndarray
    free_flow_time: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    length_km: np.ndarray
    zone_nodes: np.ndarray
    through_zones: bool = True
    fixed_cost: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        links = len(self.init_node)
        if self.fixed_cost.size == 0:
            object.__setattr__(self, "fixed_cost", np.zeros(links))
        arrays = {"term_node": self.term_node, "capacity": self.capacity,
                  "free_flow_time": self.free_flow_time, "alpha": self.alpha,
                  "beta": self.beta, "length_km": self.length_km,
                  "fixed_cost": self.fixed_cost}
        for name, array in arrays.items():
            if len(array) != links:
                raise TrafficInputError(f"{name} has {len(array)} entries for {links} links")
        if links == 0:
            raise TrafficInputError("the network has no links")
        nodes = np.concatenate([self.init_node, self.term_node, self.zone_nodes])
        if nodes.min() < 0 or nodes.max() >= self.num_nodes:
            raise TrafficInputError(f"a link or zone refers to a node outside "
                                    f"0..{self.num_nodes - 1}")
        if not np.all(self.capacity > 0):
            raise TrafficInputError("every link needs a positive capacity")
        for name in ("free_flow_time", "alpha", "beta", "length_km", "fixed_cost"):
            values = getattr(self, name)
            if not np.all(np.isfinite(values) & (values >= 0)):
                raise TrafficInputError(f"{name} must be finite and not negative")
        if len(np.unique(self.zone_nodes)) != len(self.zone_nodes):
            raise TrafficInputError("two zones share a centroid node")

    @property
    def num_links(self) -> int:
        return len(self.init_node)

    @property
    def num_zones(self) -> int:
        return len(self.zone_nodes)


@dataclass(frozen=True, eq=False)
class Demand:
    """Trips per hour from zone i (row) to zone j (column); the diagonal uses no link."""

    trips: np.ndarray

    def __post_init__(self) -> None:
        trips = np.asarray(self.trips, dtype=np.float64)
        if trips.ndim != 2 or trips.shape[0] != trips.shape[1]:
            raise TrafficInputError(f"the OD matrix must be square, not {trips.shape}")
        if not np.all(np.isfinite(trips) & (trips >= 0)):
            raise TrafficInputError("trips must be finite and not negative")
        object.__setattr__(self, "trips", trips)

    @property
    def total(self) -> float:
        return float(self.trips.sum())

    def scaled(self, factor: float) -> Demand:
        """The same pattern times a factor (a peak-hour factor, a growth scenario)."""
        return Demand(self.trips * factor)


@dataclass(frozen=True, eq=False)
class Result:
    """Link volumes, congested times (minutes), generalised costs and v/c, with totals."""

    volume: np.ndarray
    time: np.ndarray
    cost: np.ndarray
    voc: np.ndarray
    relative_gap: float
    iterations: int
    converged: bool
    gaps: np.ndarray
    vehicle_hours: float
    vehicle_km: float
    beckmann: float
    wall_s: float
    cpu_s: float


def bpr(volume: np.ndarray, free_flow_time: np.ndarray, capacity: np.ndarray,
        alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """BPR link travel time t0 (1 + α (v/c)^β)."""
    return free_flow_time * (1.0 + alpha * (volume / capacity) ** beta)


def beckmann(network: Network, volume: np.ndarray) -> float:
    """Beckmann's objective Σ ∫₀ᵛ t(x) dx, the function user equilibrium minimises."""
    n = network
    integral = n.free_flow_time * volume * (
        1.0 + n.alpha / (n.beta + 1.0) * (volume / n.capacity) ** n.beta)
    return float(np.sum(integral + n.fixed_cost * volume))


def link_cost(network: Network, volume: np.ndarray) -> np.ndarray:
    """Generalised cost per link: BPR time plus the fixed cost."""
    n = network
    return bpr(volume, n.free_flow_time, n.capacity, n.alpha, n.beta) + n.fixed_cost


def shortest_costs(network: Network, cost: np.ndarray, origins: np.ndarray) -> np.ndarray:
    """Least cost from each origin zone's centroid to every node (inf where unreachable).

    Where paths may not pass through zones, each zone's outgoing links leave from a copy of
    its node, the source copy: a path from another zone can enter the zone node but never
    leave it.
    """
    n = network
    nodes = n.num_nodes + (0 if n.through_zones else n.num_zones)
    tail = n.init_node.copy()
    sources = n.zone_nodes[origins]
    if not n.through_zones:
        copy = np.full(n.num_nodes, -1)
        copy[n.zone_nodes] = n.num_nodes + np.arange(n.num_zones)
        from_zone = copy[tail] >= 0
        tail[from_zone] = copy[tail[from_zone]]
        sources = copy[sources]
    # Parallel links: keep the cheapest (a sparse matrix would add them up). A zero cost
    # would read as no edge, hence the floor far below any real cost.
    order = np.lexsort((cost, n.term_node, tail))
    tail_o, head_o, cost_o = tail[order], n.term_node[order], cost[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (tail_o[1:] != tail_o[:-1]) | (head_o[1:] != head_o[:-1])
    graph = csr_matrix((np.maximum(cost_o[first], 1e-12), (tail_o[first], head_o[first])),
                       shape=(nodes, nodes))
    return dijkstra(graph, directed=True, indices=sources)


def relative_gap(network: Network, demand: Demand, volume: np.ndarray) -> float:
    """(TSTT − SPTT) / TSTT in generalised cost: how far the flows are from equilibrium."""
    cost = link_cost(network, volume)
    tstt = float(np.dot(volume, cost))
    sptt = 0.0
    origins = np.flatnonzero(demand.trips.sum(axis=1) > 0)
    for start in range(0, len(origins), _ORIGIN_BATCH):
        batch = origins[start:start + _ORIGIN_BATCH]
        to_zones = shortest_costs(network, cost, batch)[:, network.zone_nodes]
        trips = demand.trips[batch]
        # Trips within a zone use no link.
        served = trips > 0
        served[np.arange(len(batch)), batch] = False
        if not np.all(np.isfinite(to_zones[served])):
            raise TrafficInputError("some trips join zones no path connects")
        sptt += float(np.sum(trips[served] * to_zones[served]))
    return (tstt - sptt) / tstt if tstt > 0 else 0.0


def assign(network: Network, demand: Demand, *, gap: float = 1e-5, max_iter: int = 1000,
           threads: int | None = 1, order: str = ORIGIN_ORDER,
           progress: Progress | None = None) -> Result:
    """User equilibrium to a relative gap of ``gap`` (or ``max_iter`` sweeps).

    ``converged`` and ``relative_gap`` come from our own check of the final flows. U-turns
    are allowed, as in the textbook (node-based) problem the gap measures. ``threads`` 1
    suits a shared machine: the engine's results do not depend on it. ``order`` is the
    engine's origin order per sweep (``pytraf.Order``: fixed, largest_gap, ...).
    """
    if not 0 < gap < 1:
        raise TrafficInputError(f"the relative gap must be between 0 and 1, not {gap:g}")
    if demand.trips.shape[0] != network.num_zones:
        raise TrafficInputError(f"the demand has {demand.trips.shape[0]} zones but the "
                                f"network has {network.num_zones}")
    report = progress or (lambda stage, fraction: None)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    n = network
    centroids = None
    if not n.through_zones:
        centroids = np.zeros(n.num_nodes, dtype=bool)
        centroids[n.zone_nodes] = True
    engine_net = pytraf.Network(
        n.num_nodes, n.init_node, n.term_node, n.free_flow_time, n.capacity, n.alpha, n.beta,
        is_centroid=centroids, allow_u_turns=True)
    origin, dest = np.nonzero(demand.trips)
    keep = origin != dest
    origin, dest = origin[keep], dest[keep]
    trips = pytraf.Demand(n.num_nodes, n.zone_nodes[origin], n.zone_nodes[dest],
                          demand.trips[origin, dest])
    traffic = pytraf.TrafficClass(trips, extra_link_cost=n.fixed_cost)
    report("assign", 0.1)
    try:
        solved = engine_net.assign(traffic, gap=gap, max_iter=max_iter, threads=threads,
                                   order=order)
    except ValueError as exc:
        # The engine names the OD pairs it cannot route; nothing else reaches here.
        raise TrafficInputError(str(exc)) from None
    report(f"gap check after {solved.iterations} sweeps", 0.9)
    volume = np.asarray(solved.links.flow, dtype=np.float64)
    travel = bpr(volume, n.free_flow_time, n.capacity, n.alpha, n.beta)
    achieved = relative_gap(n, demand, volume)
    return Result(
        volume=volume, time=travel, cost=travel + n.fixed_cost, voc=volume / n.capacity,
        relative_gap=achieved, iterations=int(solved.iterations), converged=achieved <= gap,
        gaps=np.asarray(solved.diagnostics.sweep_gaps, dtype=np.float64),
        vehicle_hours=float(np.dot(volume, travel)) / 60.0,
        vehicle_km=float(np.dot(volume, n.length_km)), beckmann=beckmann(n, volume),
        wall_s=time.perf_counter() - wall0, cpu_s=time.process_time() - cpu0)
