"""Fastest routes on a traffic scenario's network, for emergency vehicles.

The network is the scenario's published links (``cim.traffic_links``): every road link that is
not closed, weighted by its congested travel time in the scenario (``time_after_min``), so a
flooded road costs its slower time and a closed one is simply absent. A point joins the network
at the nearest junction within ``SNAP_M``; routes are SciPy's Dijkstra from the depot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra
from shapely.geometry import mapping
from sqlalchemy import Connection, text

from simulation import jobs
from simulation.errors import ScenarioConflict
from simulation.traffic.errors import TrafficInputError

SNAP_M = 500.0


@dataclass(frozen=True, eq=False)
class RouteNetwork:
    """A scenario's open road links: nodes, congested minutes, lengths and lon/lat lines."""

    from_node: np.ndarray
    to_node: np.ndarray
    time_min: np.ndarray
    length_m: np.ndarray
    road_id: np.ndarray
    lines: np.ndarray
    node_xy: np.ndarray  # in the city's CRS; NaN for nodes no open link touches
    crs: int


@dataclass(frozen=True)
class Route:
    """The fastest way to one destination, or why there is none."""

    to: tuple[float, float]
    reachable: bool
    travel_time_min: float | None = None
    length_m: float | None = None
    roads: tuple[str, ...] = ()
    line: shapely.LineString | None = None
    snap_m: float | None = None
    reason: str | None = None


def load(conn: Connection, scenario_id: int, crs: int) -> RouteNetwork:
    """The open links of a succeeded traffic scenario (ScenarioNotFound if none has the id)."""
    record = jobs.get(conn, scenario_id)
    if record.kind != "traffic":
        raise TrafficInputError(f"scenario {scenario_id} is a {record.kind} scenario: routes "
                                "need a traffic scenario (run one with flood_scenario_id "
                                f"{scenario_id} to route around its water)")
    if record.status != "succeeded":
        raise ScenarioConflict(f"scenario {scenario_id} is {record.status}: it has no network "
                               "to route on yet")
    rows = conn.execute(text("""
        SELECT from_node, to_node, time_after_min, length_m, road_id, ST_AsBinary(geom),
               ST_X(p.a), ST_Y(p.a), ST_X(p.b), ST_Y(p.b)
        FROM cim.traffic_links,
             LATERAL (SELECT ST_Transform(ST_StartPoint(geom), :srid) AS a,
                             ST_Transform(ST_EndPoint(geom), :srid) AS b) AS p
        WHERE scenario_id = :id AND status <> 'closed'"""),
        {"id": scenario_id, "srid": crs}).all()
    if not rows:
        raise ScenarioConflict(f"scenario {scenario_id} has no open road")
    columns = list(zip(*rows, strict=True))
    from_node, to_node = np.array(columns[0], np.int64), np.array(columns[1], np.int64)
    node_xy = np.full((int(max(from_node.max(), to_node.max())) + 1, 2), np.nan)
    node_xy[from_node] = np.column_stack([columns[6], columns[7]])
    node_xy[to_node] = np.column_stack([columns[8], columns[9]])
    return RouteNetwork(
        from_node=from_node, to_node=to_node, time_min=np.array(columns[2], float),
        length_m=np.array(columns[3], float), road_id=np.array(columns[4], dtype=object),
        lines=shapely.from_wkb(np.array(columns[5], dtype=object)), node_xy=node_xy, crs=crs)


def hotspot_points(conn: Connection, flood_scenario_id: int) -> list[tuple[float, float]]:
    """A point inside each hotspot of a succeeded flood scenario, by rank (lon, lat)."""
    record = jobs.get(conn, flood_scenario_id)
    if record.kind != "flood":
        raise TrafficInputError(f"scenario {flood_scenario_id} is a {record.kind} scenario: "
                                "hotspots come from a flood scenario")
    if record.status != "succeeded":
        raise ScenarioConflict(f"flood scenario {flood_scenario_id} is {record.status}: it "
                               "has no hotspots yet")
    return [(lon, lat) for lon, lat in conn.execute(text(
        "SELECT ST_X(p), ST_Y(p) FROM cim.flood_hotspots, LATERAL ST_PointOnSurface(geom) "
        "AS p WHERE scenario_id = :id ORDER BY rank"), {"id": flood_scenario_id})]


def _snap(network: RouteNetwork, points: list[tuple[float, float]]
          ) -> tuple[np.ndarray, np.ndarray]:
    """The nearest junction of each lon/lat point (−1 beyond ``SNAP_M``) and its distance."""
    known = np.flatnonzero(np.isfinite(network.node_xy[:, 0]))
    tree = shapely.STRtree(shapely.points(network.node_xy[known]))
    lon, lat = np.array(points, dtype=float).T
    x, y = Transformer.from_crs(4326, network.crs, always_xy=True).transform(lon, lat)
    found, nearest = tree.query_nearest(shapely.points(np.column_stack([x, y])),
                                        max_distance=SNAP_M)
    node, distance = np.full(len(points), -1), np.full(len(points), np.nan)
    first = np.unique(found, return_index=True)[1]
    node[found[first]] = known[nearest[first]]
    hit = node >= 0
    distance[hit] = np.hypot(network.node_xy[node[hit], 0] - x[hit],
                             network.node_xy[node[hit], 1] - y[hit])
    return node, distance


def fastest_routes(network: RouteNetwork, origin: tuple[float, float],
                   destinations: list[tuple[float, float]]) -> tuple[list[Route], float]:
    """The fastest route from ``origin`` to each destination, and how far the origin is from
    the junction it starts at (metres)."""
    if not destinations:
        raise TrafficInputError("give at least one destination")
    nodes, snap = _snap(network, [origin, *destinations])
    if nodes[0] < 0:
        raise TrafficInputError(f"the origin {origin[0]},{origin[1]} is more than {SNAP_M:g} m "
                                "from any open road of the scenario")
    n = len(network.node_xy)
    # Parallel links: the fastest one (a sparse matrix would add them up).
    order = np.lexsort((network.time_min, network.to_node, network.from_node))
    u, v = network.from_node[order], network.to_node[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (u[1:] != u[:-1]) | (v[1:] != v[:-1])
    chosen = order[first]
    graph = csr_matrix((np.maximum(network.time_min[chosen], 1e-9),
                        (network.from_node[chosen], network.to_node[chosen])), shape=(n, n))
    link_of = {(int(a), int(b)): int(k) for a, b, k in zip(
        network.from_node[chosen], network.to_node[chosen], chosen, strict=True)}
    times, previous = dijkstra(graph, directed=True, indices=int(nodes[0]),
                               return_predecessors=True)
    routes = []
    for target, point, distance in zip(nodes[1:], destinations, snap[1:], strict=True):
        if target < 0:
            routes.append(Route(point, False, reason=f"more than {SNAP_M:g} m from any open "
                                "road of the scenario"))
            continue
        if not np.isfinite(times[target]):
            routes.append(Route(point, False, snap_m=float(distance),
                                reason="no open road leads there"))
            continue
        path = []
        node = int(target)
        while node != nodes[0]:
            before = int(previous[node])
            path.append(link_of[(before, node)])
            node = before
        path.reverse()
        routes.append(Route(
            point, True, travel_time_min=float(times[target]),
            length_m=float(network.length_m[path].sum()),
            roads=tuple(dict.fromkeys(network.road_id[path])),
            line=_join(network.lines[path]) if path else None, snap_m=float(distance)))
    return routes, float(snap[0])


def _join(lines: np.ndarray) -> shapely.LineString:
    """Consecutive links as one line (each link starts where the one before ends)."""
    parts = [shapely.get_coordinates(line) for line in lines]
    coords = np.vstack([parts[0], *(part[1:] for part in parts[1:])])
    return shapely.linestrings(coords)


def as_geojson(scenario_id: int, origin: tuple[float, float], origin_snap_m: float,
               routes: list[Route]) -> dict[str, Any]:
    """A GeoJSON FeatureCollection: one feature a destination, null geometry if unreachable."""
    features = []
    for number, route in enumerate(routes):
        features.append({
            "type": "Feature", "id": number,
            "geometry": mapping(route.line) if route.line else None,
            "properties": {
                "to": list(route.to), "reachable": route.reachable,
                "travel_time_min": route.travel_time_min, "length_m": route.length_m,
                "roads": list(route.roads), "snap_m": route.snap_m, "reason": route.reason}})
    return {"type": "FeatureCollection", "scenario": scenario_id, "from": list(origin),
            "from_snap_m": origin_snap_m, "features": features}
