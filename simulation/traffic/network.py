"""The car network from the city model: roads in, a directed graph with zones out.

Topology. Roads are cut at every crossing with a road of the same level and nowhere else:
level is the OSM ``layer`` where the source had one (kept in ``attributes``), else +1 for a
bridge, −1 for a tunnel and 0 for the rest. So a bridge passing over a street makes no junction
with it, while the *ends* of a bridge or tunnel (its ramps and portals) join whatever road they
touch there, at any level. Ends closer than ``SNAP_M`` are one node. Each level is noded in
one vectorised GEOS call (``shapely.node``); only roads touched by a ramp's end are cut in a
Python loop. Only the largest strongly connected part (by length of road) is kept; the
report counts what was dropped.

Directions. A one-way road gives one link along its drawn direction, any other road two.
``lanes`` and ``capacity_vph`` are read as totals over both directions (as the demo city
writes them), so each direction of a two-way road gets half.

Where data is missing, per road class (``DEFAULTS``; classes not listed count as ``other``;
pedestrian, cycle, track, bus-only and rail ways are left out of the car network):

| class         | speed km/h | lanes | capacity per lane, veh/h |
| ------------- | ---------- | ----- | ------------------------ |
| motorway      | 100        | 6     | 2000                     |
| trunk         | 80         | 6     | 1900                     |
| primary       | 60         | 6     | 1800                     |
| secondary     | 50         | 4     | 1650                     |
| tertiary      | 40         | 2     | 1400                     |
| unclassified  | 30         | 2     | 1000                     |
| residential   | 30         | 2     | 900                      |
| living_street | 15         | 1     | 500                      |
| service       | 20         | 1     | 600                      |
| other         | 30         | 2     | 900                      |

The speeds follow the design speeds of CJJ 37-2012 for expressways, arterials, secondary
arterials and branch roads; the per-lane capacities are those of the demo city's generator,
of the order of CJJ 37's design capacities. Every road link gets the BPR α 0.15, β 4.

Zones are the cells of a square grid that hold road nodes, or administrative units; each
zone's centroid joins its ``connectors`` road nodes nearest to it (inside the zone, or the
nearest anywhere for a unit with none inside) by two-way connectors at ``CONNECTOR_KMH``
with no congestion. Trips may not pass through a centroid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from shapely.ops import substring
from sqlalchemy import Connection, Engine, text

from simulation.traffic.assignment import Network
from simulation.traffic.errors import TrafficInputError


@dataclass(frozen=True)
class ClassDefaults:
    speed_kmh: float
    lanes: int
    lane_capacity_vph: float


DEFAULTS: dict[str, ClassDefaults] = {
    "motorway": ClassDefaults(100.0, 6, 2000.0),
    "trunk": ClassDefaults(80.0, 6, 1900.0),
    "primary": ClassDefaults(60.0, 6, 1800.0),
    "secondary": ClassDefaults(50.0, 4, 1650.0),
    "tertiary": ClassDefaults(40.0, 2, 1400.0),
    "unclassified": ClassDefaults(30.0, 2, 1000.0),
    "residential": ClassDefaults(30.0, 2, 900.0),
    "living_street": ClassDefaults(15.0, 1, 500.0),
    "service": ClassDefaults(20.0, 1, 600.0),
    "other": ClassDefaults(30.0, 2, 900.0),
}
NOT_FOR_CARS = frozenset({"track", "pedestrian", "footway", "cycleway", "path", "steps",
                          "busway", "rail"})
BPR_ALPHA, BPR_BETA = 0.15, 4.0
SNAP_M = 0.05  # road ends closer than this are one node
GRID_M = 0.01  # coordinates are rounded to this before noding
CONNECTOR_KMH = 30.0
CONNECTOR_CAPACITY = 1e6  # connectors never congest (α is 0 on them anyway)


@dataclass
class BuildReport:
    """What the build read, left out, filled in and dropped."""

    roads: int = 0
    car_roads: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    defaulted: dict[str, int] = field(default_factory=dict)
    ramp_cuts: int = 0
    dropped_links: int = 0
    dropped_nodes: int = 0
    zones_without_nodes: int = 0

    def lines(self) -> list[str]:
        excluded = ", ".join(f"{k} {v}" for k, v in sorted(self.excluded.items())) or "none"
        filled = ", ".join(f"{k} {v}" for k, v in self.defaulted.items() if v) or "none"
        return [f"{self.car_roads} of {self.roads} roads are for cars (left out: {excluded})",
                f"defaults by class filled in: {filled}",
                f"{self.ramp_cuts} roads cut where a bridge or tunnel ends on them",
                f"dropped outside the largest strongly connected part: {self.dropped_links} "
                f"links, {self.dropped_nodes} nodes",
                f"zones joined to the nearest node outside them: {self.zones_without_nodes}"]


@dataclass(frozen=True, eq=False)
class RoadNetwork:
    """The assignment network and its geometry: ``links`` row i is ``network`` link i."""

    network: Network
    links: gpd.GeoDataFrame
    nodes: gpd.GeoDataFrame
    zones: gpd.GeoDataFrame
    report: BuildReport


Area = tuple[float, float, float, float]
"""West, south, east, north in longitude and latitude."""


def area_condition(area: Area | None) -> tuple[str, dict[str, float | None]]:
    """A SQL condition on ``geom`` (and its parameters) keeping what touches ``area``."""
    west, south, east, north = area or (None, None, None, None)
    return ("(CAST(:west AS float8) IS NULL OR "
            "geom && ST_MakeEnvelope(:west, :south, :east, :north, 4326))",
            {"west": west, "south": south, "east": east, "north": north})


def read_roads(conn: Connection, crs: int, area: Area | None = None) -> gpd.GeoDataFrame:
    """The current roads (touching ``area``), reprojected in the database to the city's
    metric CRS."""
    where, params = area_condition(area)
    sql = text(f"""
        SELECT id, road_class, lanes, max_speed_kmh, oneway, bridge, tunnel, capacity_vph,
               attributes->>'layer' AS layer, ST_Transform(geom, :srid) AS geom
        FROM cim.roads WHERE valid_to IS NULL AND {where} ORDER BY id""")
    roads = gpd.read_postgis(sql, conn, geom_col="geom", params={"srid": crs, **params},
                             crs=crs)
    if roads.empty:
        raise TrafficInputError("no current roads" + (" in the area" if area else ""))
    return roads


def read_admin_units(conn: Connection, crs: int, level: str, area: Area | None = None
                     ) -> gpd.GeoDataFrame:
    """The current administrative units of one level (``district``, ``subdistrict``...)."""
    where, params = area_condition(area)
    sql = text(f"""
        SELECT id, ST_Transform(geom, :srid) AS geom FROM cim.admin_units
        WHERE valid_to IS NULL AND level = :level AND {where} ORDER BY id""")
    units = gpd.read_postgis(sql, conn, geom_col="geom",
                             params={"srid": crs, "level": level, **params}, crs=crs)
    if units.empty:
        raise TrafficInputError(f"no current administrative units of level {level!r}"
                                + (" in the area" if area else ""))
    return units


def network_from_database(db: Engine | Connection, crs: int, *, admin_level: str | None = None,
                          grid_m: float = 1000.0, connectors: int = 2,
                          area: Area | None = None) -> RoadNetwork:
    """The car network of the current city (of the roads touching ``area``): zones from
    ``admin_level`` units, else a grid."""
    if isinstance(db, Engine):
        with db.connect() as conn:
            return network_from_database(conn, crs, admin_level=admin_level, grid_m=grid_m,
                                         connectors=connectors, area=area)
    roads = read_roads(db, crs, area)
    units = read_admin_units(db, crs, admin_level, area) if admin_level else None
    return build_network(roads, zones=units, grid_m=grid_m, connectors=connectors)


def build_network(roads: gpd.GeoDataFrame, *, zones: gpd.GeoDataFrame | None = None,
                  grid_m: float = 1000.0, connectors: int = 2) -> RoadNetwork:
    """The directed car network of roads in a metric CRS (columns as in ``cim.roads``)."""
    if roads.crs is None or not roads.crs.is_projected:
        raise TrafficInputError("roads must be in a projected (metric) CRS")
    if grid_m <= 0 or connectors < 1:
        raise TrafficInputError("the grid size and the connectors per zone must be positive")
    report = BuildReport(roads=len(roads))
    lines = _car_lines(roads, report)
    pieces, piece_level = _node(lines, report)
    source = _match(pieces, piece_level, lines)
    links, nodes = _links(pieces, lines.iloc[source].reset_index(drop=True), report)
    links, nodes = _largest_strong_part(links, nodes, report)
    zone_table, connector_links, centroids = _zones(nodes, zones, grid_m, connectors, report)
    zone_table = zone_table.set_crs(roads.crs)
    links = pd.concat([links, connector_links], ignore_index=True)
    nodes = pd.concat([nodes, centroids], ignore_index=True)
    links = gpd.GeoDataFrame(links, geometry="geometry", crs=roads.crs)
    nodes = gpd.GeoDataFrame(nodes, geometry="geometry", crs=roads.crs)
    network = Network(
        num_nodes=len(nodes),
        init_node=links["from_node"].to_numpy(np.int64),
        term_node=links["to_node"].to_numpy(np.int64),
        capacity=links["capacity_vph"].to_numpy(float),
        free_flow_time=links["free_flow_min"].to_numpy(float),
        alpha=np.where(links["connector"], 0.0, BPR_ALPHA),
        beta=np.full(len(links), BPR_BETA),
        length_km=links["length_m"].to_numpy(float) / 1000.0,
        zone_nodes=zone_table["node"].to_numpy(np.int64),
        through_zones=False,
    )
    return RoadNetwork(network, links, nodes, zone_table, report)


def _car_lines(roads: gpd.GeoDataFrame, report: BuildReport) -> gpd.GeoDataFrame:
    """Car roads as single LineStrings with their level, class and traffic attributes."""
    road_class = roads["road_class"].fillna("other").astype(str)
    excluded = road_class.isin(NOT_FOR_CARS)
    report.excluded = road_class[excluded].value_counts().to_dict()
    cars = roads[~excluded].copy()
    cars["road_class"] = road_class[~excluded].where(road_class[~excluded].isin(DEFAULTS),
                                                     "other")
    report.car_roads = len(cars)
    if cars.empty:
        raise TrafficInputError("no roads for cars: the network would be empty")
    layer = pd.to_numeric(cars.get("layer"), errors="coerce") if "layer" in cars else None
    structure = cars["bridge"].fillna(False).astype(int) - cars["tunnel"].fillna(False).astype(int)
    cars["level"] = (structure if layer is None else layer.fillna(structure)).astype(int)
    for name in ("lanes", "max_speed_kmh", "capacity_vph"):
        report.defaulted[name] = int(cars[name].isna().sum())
    cars = cars.explode(index_parts=False).reset_index(drop=True)
    geoms = shapely.set_precision(cars.geometry.values, GRID_M)
    keep = shapely.get_type_id(geoms) == shapely.GeometryType.LINESTRING
    keep &= ~shapely.is_empty(geoms)
    cars = cars[keep].reset_index(drop=True)
    return cars.set_geometry(geoms[keep])


def _node(lines: gpd.GeoDataFrame, report: BuildReport) -> tuple[np.ndarray, np.ndarray]:
    """Lines cut at crossings within each level, then where a ramp or portal ends on them."""
    geoms, levels = lines.geometry.values, lines["level"].to_numpy()
    parts, part_level = [], []
    for level in np.unique(levels):
        noded = shapely.get_parts(shapely.node(shapely.multilinestrings(geoms[levels == level])))
        parts.append(noded)
        part_level.append(np.full(len(noded), level))
    pieces, piece_level = np.concatenate(parts), np.concatenate(part_level)

    raised = levels != 0
    ends = np.concatenate([shapely.get_point(geoms[raised], 0),
                           shapely.get_point(geoms[raised], -1)])
    end_level = np.tile(levels[raised], 2)
    if len(ends) == 0:
        return pieces, piece_level
    hit_end, hit_piece = shapely.STRtree(pieces).query(ends, "dwithin", distance=SNAP_M)
    inside = (piece_level[hit_piece] != end_level[hit_end]) & (
        shapely.distance(ends[hit_end], shapely.get_point(pieces[hit_piece], 0)) > SNAP_M) & (
        shapely.distance(ends[hit_end], shapely.get_point(pieces[hit_piece], -1)) > SNAP_M)
    hit_end, hit_piece = hit_end[inside], hit_piece[inside]
    at = shapely.line_locate_point(pieces[hit_piece], ends[hit_end])
    cut: dict[int, list[float]] = {}
    for piece, distance in zip(hit_piece.tolist(), at.tolist(), strict=True):
        cut.setdefault(piece, []).append(distance)
    report.ramp_cuts = len(cut)
    extra, extra_level = [], []
    for piece, distances in cut.items():
        marks = [0.0, *sorted(set(distances)), float(shapely.length(pieces[piece]))]
        extra += [substring(pieces[piece], a, b) for a, b in pairwise(marks)]
        extra_level += [piece_level[piece]] * (len(marks) - 1)
    keep = np.ones(len(pieces), dtype=bool)
    keep[list(cut)] = False
    return (np.concatenate([pieces[keep], np.array(extra, dtype=object)]),
            np.concatenate([piece_level[keep], np.array(extra_level, dtype=int)]))


def _match(pieces: np.ndarray, piece_level: np.ndarray, lines: gpd.GeoDataFrame) -> np.ndarray:
    """For each piece, the row of the line it was cut from (by its midpoint, same level)."""
    source = np.full(len(pieces), -1)
    mids = shapely.line_interpolate_point(pieces, 0.5, normalized=True)
    levels = lines["level"].to_numpy()
    for level in np.unique(piece_level):
        rows = np.flatnonzero(levels == level)
        mine = np.flatnonzero(piece_level == level)
        tree = shapely.STRtree(lines.geometry.values[rows])
        found, nearest = tree.query_nearest(mids[mine], max_distance=SNAP_M)
        first = np.unique(found, return_index=True)[1]
        source[mine[found[first]]] = rows[nearest[first]]
    if (source < 0).any():
        raise TrafficInputError(f"{int((source < 0).sum())} noded road pieces could not be "
                                "traced to their road; is the geometry valid?")
    return source


def _links(pieces: np.ndarray, roads: gpd.GeoDataFrame,
           report: BuildReport) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Directed links with capacity and free-flow time, and their nodes."""
    starts = shapely.get_coordinates(shapely.get_point(pieces, 0))
    ends = shapely.get_coordinates(shapely.get_point(pieces, -1))
    node_xy, node_of = _cluster(np.vstack([starts, ends]))
    start_node, end_node = node_of[: len(pieces)], node_of[len(pieces):]
    length = shapely.length(pieces)
    keep = (start_node != end_node) & (length > 0)  # loops carry nothing between nodes

    defaults = roads["road_class"].map(DEFAULTS)
    lanes = roads["lanes"].fillna(defaults.map(lambda d: d.lanes)).to_numpy(float)
    speed = roads["max_speed_kmh"].fillna(defaults.map(lambda d: d.speed_kmh)).to_numpy(float)
    capacity = roads["capacity_vph"].fillna(
        pd.Series(lanes * defaults.map(lambda d: d.lane_capacity_vph).to_numpy(float)))
    oneway = roads["oneway"].fillna(False).to_numpy(bool)
    split = np.where(oneway, 1.0, 2.0)
    forward = pd.DataFrame({
        "from_node": start_node, "to_node": end_node, "road_id": roads["id"].to_numpy(),
        "road_class": roads["road_class"].to_numpy(), "level": roads["level"].to_numpy(),
        "oneway": oneway, "connector": False, "lanes": lanes / split, "speed_kmh": speed,
        "capacity_vph": capacity.to_numpy(float) / split, "length_m": length,
        "free_flow_min": length / 1000.0 / speed * 60.0, "geometry": pieces})[keep]
    backward = forward[~forward["oneway"]].copy()
    backward[["from_node", "to_node"]] = backward[["to_node", "from_node"]].to_numpy()
    backward["geometry"] = shapely.reverse(backward["geometry"].to_numpy())
    links = pd.concat([forward, backward], ignore_index=True)
    nodes = pd.DataFrame({"kind": "road", "zone_id": None,
                          "geometry": shapely.points(node_xy)})
    return links, nodes


def _cluster(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points closer than SNAP_M merged: the merged points and each input's index."""
    points = shapely.points(xy)
    a, b = shapely.STRtree(points).query(points, "dwithin", distance=SNAP_M)
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(len(xy), len(xy)))
    _, label = connected_components(graph, directed=False)
    first = np.unique(label, return_index=True)[1]
    return xy[first], label


def _largest_strong_part(links: pd.DataFrame, nodes: pd.DataFrame,
                         report: BuildReport) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Only the largest strongly connected part, by length of road: elsewhere some trips
    could not return. (By length, not nodes: a lane-level or finely cut network elsewhere in
    the database must not outweigh a district's street grid.)"""
    n = len(nodes)
    graph = coo_matrix((np.ones(len(links)), (links["from_node"], links["to_node"])),
                       shape=(n, n))
    parts, label = connected_components(graph, directed=True, connection="strong")
    tail = label[links["from_node"].to_numpy()]
    inside = tail == label[links["to_node"].to_numpy()]
    main = np.argmax(np.bincount(tail[inside], weights=links["length_m"].to_numpy()[inside],
                                 minlength=parts))
    kept_node = label == main
    kept_link = kept_node[links["from_node"].to_numpy()] & kept_node[links["to_node"].to_numpy()]
    report.dropped_nodes = int((~kept_node).sum())
    report.dropped_links = int((~kept_link).sum())
    renumber = np.cumsum(kept_node) - 1
    links = links[kept_link].reset_index(drop=True)
    links["from_node"] = renumber[links["from_node"].to_numpy()]
    links["to_node"] = renumber[links["to_node"].to_numpy()]
    return links, nodes[kept_node].reset_index(drop=True)


def _zones(nodes: pd.DataFrame, units: gpd.GeoDataFrame | None, grid_m: float,
           connectors: int, report: BuildReport
           ) -> tuple[gpd.GeoDataFrame, pd.DataFrame, pd.DataFrame]:
    """Zones (polygons and centroid node), their connector links and centroid nodes."""
    points = nodes["geometry"].to_numpy()
    xy = shapely.get_coordinates(points)
    if units is None:
        origin = np.floor(xy.min(axis=0) / grid_m) * grid_m
        cell = np.floor((xy - origin) / grid_m).astype(np.int64)
        keys, member = np.unique(cell, axis=0, return_inverse=True)
        lower = origin + keys * grid_m
        polygons = shapely.box(lower[:, 0], lower[:, 1], lower[:, 0] + grid_m,
                               lower[:, 1] + grid_m)
        zone_ids = [f"grid:{i}_{j}" for i, j in keys]
        centre = shapely.points(lower + grid_m / 2)
        zone_of, node_in = member.ravel(), np.arange(len(points))
    else:
        polygons = units.geometry.values
        zone_ids = units["id"].astype(str).tolist()
        centre = shapely.point_on_surface(polygons)
        node_in, zone_of = shapely.STRtree(polygons).query(points, "within")
        empty = np.setdiff1d(np.arange(len(polygons)), zone_of)
        report.zones_without_nodes = len(empty)
        if len(empty):
            near_zone, near_node = shapely.STRtree(points).query_nearest(centre[empty])
            first = np.unique(near_zone, return_index=True)[1]
            zone_of = np.concatenate([zone_of, empty[near_zone[first]]])
            node_in = np.concatenate([node_in, near_node[first]])
    distance = shapely.distance(centre[zone_of], points[node_in])
    order = np.lexsort((distance, zone_of))
    zone_of, node_in, distance = zone_of[order], node_in[order], distance[order]
    rank = np.arange(len(zone_of)) - np.searchsorted(zone_of, zone_of)
    pick = rank < connectors
    zone_of, node_in, distance = zone_of[pick], node_in[pick], distance[pick]

    first_centroid = len(nodes)
    centroid_node = first_centroid + np.arange(len(polygons))
    out = pd.DataFrame({
        "from_node": centroid_node[zone_of], "to_node": node_in, "road_id": None,
        "road_class": "connector", "level": 0, "oneway": False, "connector": True,
        "lanes": 1.0, "speed_kmh": CONNECTOR_KMH, "capacity_vph": CONNECTOR_CAPACITY,
        "length_m": distance, "free_flow_min": distance / 1000.0 / CONNECTOR_KMH * 60.0,
        "geometry": shapely.linestrings(
            np.stack([shapely.get_coordinates(centre[zone_of]), xy[node_in]], axis=1))})
    back = out.copy()
    back[["from_node", "to_node"]] = out[["to_node", "from_node"]].to_numpy()
    back["geometry"] = shapely.reverse(out["geometry"].to_numpy())
    centroids = pd.DataFrame({"kind": "zone", "zone_id": zone_ids, "geometry": centre})
    zone_table = gpd.GeoDataFrame({"zone_id": zone_ids, "node": centroid_node},
                                  geometry=polygons, crs=None)
    return zone_table, pd.concat([out, back], ignore_index=True), centroids


def write_gpkg(road_network: RoadNetwork, path: str) -> None:
    """Links, nodes and zones as three layers of a GeoPackage in the network's CRS."""
    links = road_network.links.copy()
    links.insert(0, "link", np.arange(len(links)))
    nodes = road_network.nodes.copy()
    nodes.insert(0, "node", np.arange(len(nodes)))
    links.to_file(path, layer="links", driver="GPKG")
    nodes.to_file(path, layer="nodes", driver="GPKG")
    road_network.zones.to_file(path, layer="zones", driver="GPKG")
