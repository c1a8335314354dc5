"""Static user-equilibrium assignment with BPR volume-delay functions.

Our typed interface (``Network`` and ``Demand`` in, ``Result`` out) stands in front of the
engine, so the engine can be swapped; the convergence check is ours too: the textbook
relative gap (TSTT − SPTT) / TSTT, computed from the final flows with SciPy's Dijkstra,
whatever the engine reports.

Engines: ``bush`` (the default), our Dial's Algorithm B compiled with Numba
(:mod:`simulation.traffic.bush`), and ``pytraf`` 0.3 (PyPI, MIT, a Rust core), a path-based
gradient projection, kept as an independent engine to check ours against (the tests do) and
for its path flows and threads. Measured with ``bench/traffic.py`` on this 2-core machine
(pytraf and AequilibraE in one run at a load average of 13-16, ours as said below), to a
textbook gap of 1e-5, CPU seconds (Numba's compile, about 11 CPU s once, or its cache load,
about 1 s per process, not included):

| network        | Algorithm B (``bush``) | pytraf (largest gap first) | AequilibraE 1.7.2 bfw |
| -------------- | ---------------------- | -------------------------- | --------------------- |
| Sioux Falls    | 0.004 s, 30 sweeps     | 0.006 s, 19 sweeps         | 2.2 s, 279 it.        |
| Anaheim        | 0.018 s, 5 sweeps      | 0.023 s, 6 sweeps          | 0.65 s, 37 it.        |
| Chicago Sketch | 0.74 s, 10 sweeps      | 2.0 s, 13 sweeps           | 22 s, 151 it.         |

(a C Algorithm B, TAP-B, takes 0.89 s on Chicago Sketch on this kind of machine; ours is the
median of three runs, 0.72-0.74 s, at a load average of 9, in origins visited in random
order; in the zones' order it took 0.84-0.90 s and 14 sweeps on a quiet machine.) In
Algorithm B's time on Chicago Sketch about a quarter is the gap check's shortest-path trees,
one per origin, which it therefore skips on sweeps where the last two gaps predict the target
is still far; the rest is the bushes' updates and Newton shifts. More equilibration passes
per bush, or Nie's (2010) relaxed rule for adding links, did not save a sweep there: the
origins' interaction sets the pace. On the 470,000-building generated city's network
(59,383 links, 639 zones, 881,000 gravity trips; ``bench/traffic.py --city``) the order in
which a sweep visits the origins set it: in the zones' own order (grid cells, neighbours one
after another) Algorithm B took 48 sweeps and 127.5 CPU s to 1e-4 and 118 sweeps to 1e-5,
the gap spread evenly over the origins (the largest tenth held a quarter of it) and two
thirds of it on links the bushes lacked. A fresh random order per sweep (seeded) takes it to
1e-4 in 13 sweeps and 54.3 CPU s, to 1e-5 in 47 and 129.0 s; pytraf, largest gap first, 12
sweeps and 83.0 s, 23 and 145.7 s (one run, load average 5-9). Three
equilibration passes per bush, or keeping fewer unused links in the bushes, saved no CPU time
there. Bushes are dense (origins × links) arrays, 340 MB for that network. All engines match
the best-known flows (RMSE on flow-dependent links 0.05-1.1 % of the mean flow at 1e-5; at
1e-5 Anaheim's flows still move 1 % with the origin order, at 1e-6 under 0.6 %).
AequilibraE pulls in PyTables, OpenMatrix and a project database we do not need, refuses zero
free-flow times, and its own stopping gap reads below the textbook one.

Units: times in minutes (the TNTP convention), lengths in km, volumes in vehicles per hour.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
import pytraf
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from simulation.traffic import bush
from simulation.traffic.errors import TrafficInputError

Progress = Callable[[str, float], None]
# Origins per Dijkstra call in the gap check: bounds its distance matrix on big networks.
_ORIGIN_BATCH = 64
# Sweeps between two of Algorithm B's gap checks at most. Two checks on a stalling gap once
# predicted 94 more sweeps on the city, and the 47 skipped ran the gap from 3e-5 to 4e-6
# where 1e-5 was asked; a check every 6 sweeps costs under a tenth of their time.
_MOST_SKIPPED = 5
Engine = Literal["bush", "pytraf"]
ENGINES: tuple[str, ...] = get_args(Engine)
# Equilibrations of each bush per sweep: more do not save sweeps on the test networks.
PASSES = 1
# Shifts between paths closer than this share of the target gap are not worth their time.
CLOSE = 0.1
# Algorithm B visits the origins in a fresh random order each sweep (seeded: runs repeat).
# In the zones' own order, neighbours one after another, the 470,000-building city's gap
# fell 4 times slower (2.1e-3 after 10 sweeps against 4.6e-4 after 8); largest-gap-first,
# which needs every origin's gap each sweep, did no better than random.
ORDER_SEED = 0
# pytraf's origin order per sweep: origins with the largest gap first. On the
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
           engine: Engine = "bush", threads: int | None = 1, order: str = ORIGIN_ORDER,
           progress: Progress | None = None) -> Result:
    """User equilibrium to a relative gap of ``gap`` (or ``max_iter`` sweeps).

    ``converged`` and ``relative_gap`` come from our own check of the final flows. U-turns
    are allowed, as in the textbook (node-based) problem the gap measures. ``engine`` "bush"
    is our Algorithm B (:mod:`simulation.traffic.bush`, one thread); "pytraf" is pytraf's
    path-based gradient projection, which alone reads ``threads`` and ``order`` (its origin
    order per sweep, ``pytraf.Order``: fixed, largest_gap, ...).
    """
    if not 0 < gap < 1:
        raise TrafficInputError(f"the relative gap must be between 0 and 1, not {gap:g}")
    if demand.trips.shape[0] != network.num_zones:
        raise TrafficInputError(f"the demand has {demand.trips.shape[0]} zones but the "
                                f"network has {network.num_zones}")
    if engine not in ENGINES:
        raise TrafficInputError(f"unknown engine {engine!r}: use {' or '.join(ENGINES)}")
    report = progress or (lambda stage, fraction: None)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if engine == "bush":
        volume, iterations, gaps = _solve_bush(network, demand, gap, max_iter, report)
    else:
        volume, iterations, gaps = _solve_pytraf(network, demand, gap, max_iter, threads, order,
                                                 report)
    report(f"gap check after {iterations} sweeps", 0.9)
    n = network
    travel = bpr(volume, n.free_flow_time, n.capacity, n.alpha, n.beta)
    achieved = relative_gap(n, demand, volume)
    return Result(
        volume=volume, time=travel, cost=travel + n.fixed_cost, voc=volume / n.capacity,
        relative_gap=achieved, iterations=iterations, converged=achieved <= gap, gaps=gaps,
        vehicle_hours=float(np.dot(volume, travel)) / 60.0,
        vehicle_km=float(np.dot(volume, n.length_km)), beckmann=beckmann(n, volume),
        wall_s=time.perf_counter() - wall0, cpu_s=time.process_time() - cpu0)


def _solve_bush(network: Network, demand: Demand, gap: float, max_iter: int,
                report: Progress) -> tuple[np.ndarray, int, np.ndarray]:
    """Algorithm B: link flows, sweeps, and the gap after each sweep (NaN where unchecked)."""
    n = network
    trips = demand.trips.copy()
    np.fill_diagonal(trips, 0.0)  # trips within a zone use no link
    origins = np.flatnonzero(trips.sum(axis=1) > 0)
    trips = trips[origins]
    roots = n.zone_nodes[origins].astype(np.int64)
    zones = n.zone_nodes.astype(np.int64)
    tail, head = n.init_node.astype(np.int64), n.term_node.astype(np.int64)
    out_start, out_links = _star(tail, n.num_nodes)
    in_start, in_links = _star(head, n.num_nodes)
    blocked = np.zeros(n.num_nodes, dtype=bool)
    if not n.through_zones:
        blocked[n.zone_nodes] = True
    vdf = tuple(np.ascontiguousarray(a, dtype=np.float64) for a in (
        n.free_flow_time, n.capacity, n.alpha, n.beta, n.fixed_cost))
    volume, cost, deriv = np.zeros(n.num_links), np.empty(n.num_links), np.empty(n.num_links)
    bush_flow = np.zeros((len(roots), n.num_links))
    in_bush = np.zeros((len(roots), n.num_links), dtype=bool)
    orders = np.empty((len(roots), n.num_nodes), dtype=np.int32)
    counts = np.empty(len(roots), dtype=np.int64)
    bush.link_costs(volume, *vdf, cost, deriv)
    unrouted = bush.initial_bushes(roots, trips, zones, tail, head, out_start, out_links,
                                   blocked, cost, volume, bush_flow, in_bush, orders, counts)
    if unrouted.any():
        where = np.nonzero(unrouted)
        pairs = [f"{origins[q] + 1} to {z + 1}" for q, z in zip(*where, strict=True)]
        raise TrafficInputError(f"no path joins {len(pairs)} OD pairs with trips (zones "
                                f"numbered from 1): {', '.join(pairs[:10])}")
    report("assign", 0.1)
    gaps = np.full(max_iter, np.nan)
    shuffle = np.random.default_rng(ORDER_SEED)
    sweeps, next_check = 0, 1
    while sweeps < max_iter:
        bush.link_costs(volume, *vdf, cost, deriv)
        bush.sweep(roots, shuffle.permutation(len(roots)), PASSES, CLOSE * gap, tail, head,
                   out_start, out_links, in_start, in_links, blocked, *vdf, volume, cost, deriv,
                   bush_flow, in_bush, orders, counts)
        sweeps += 1
        if sweeps < next_check and sweeps < max_iter:
            continue
        bush.link_costs(volume, *vdf, cost, deriv)
        tstt = float(np.dot(volume, cost))
        sptt = bush.shortest_path_travel(roots, trips, zones, cost, head, out_start, out_links,
                                         blocked)
        gaps[sweeps - 1] = (tstt - sptt) / tstt if tstt > 0 else 0.0
        report(f"sweep {sweeps}: gap {gaps[sweeps - 1]:.2e}", 0.1 + 0.8 * _progress(gaps, gap))
        if gaps[sweeps - 1] <= gap:
            break
        next_check = sweeps + _sweeps_to_skip(gaps[:sweeps], gap) + 1
    # Shifts round the link flows apart from the sum of the bushes': the bushes are the truth.
    return bush_flow.sum(axis=0), sweeps, gaps[:sweeps]


def _solve_pytraf(network: Network, demand: Demand, gap: float, max_iter: int,
                  threads: int | None, order: str,
                  report: Progress) -> tuple[np.ndarray, int, np.ndarray]:
    """pytraf's gradient projection: link flows, sweeps, and its own gap per sweep."""
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
    return (np.asarray(solved.links.flow, dtype=np.float64), int(solved.iterations),
            np.asarray(solved.diagnostics.sweep_gaps, dtype=np.float64))


def _sweeps_to_skip(gaps: np.ndarray, target: float) -> int:
    """Sweeps not worth a gap check (it costs a shortest-path tree per origin, half a sweep):
    half of those the last two checks predict are still needed, the gap falling log-linearly,
    but at most ``_MOST_SKIPPED``.
    """
    checked = np.flatnonzero(np.isfinite(gaps))
    if len(checked) < 2 or gaps[checked[-1]] <= 0 or gaps[checked[-2]] <= gaps[checked[-1]]:
        return 0
    last, before = checked[-1], checked[-2]
    rate = np.log(gaps[before] / gaps[last]) / (last - before)
    return min(int(np.log(gaps[last] / target) / rate) // 2, _MOST_SKIPPED)


def _progress(gaps: np.ndarray, target: float) -> float:
    """The share of the way from a gap of 1 to the target, in orders of magnitude."""
    reached = np.nanmin(gaps)
    return 1.0 if reached <= target else max(0.0, min(1.0, np.log(reached) / np.log(target)))


def _star(node: np.ndarray, num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Links grouped by ``node`` (their tail: the forward star; head: the backward one)."""
    links = np.argsort(node, kind="stable").astype(np.int64)
    start = np.zeros(num_nodes + 1, dtype=np.int64)
    np.cumsum(np.bincount(node, minlength=num_nodes), out=start[1:])
    return start, links
