"""A scenario's changes to the car network: closed, flooded, changed and added links.

Everything works on the link table of a built :class:`~simulation.traffic.network.RoadNetwork`
(one row per directed link, connectors included) and returns a new table with a ``status`` per
link (``open``, ``changed``, ``added``, ``flooded``, ``closed``); the scenario's
:class:`~simulation.traffic.assignment.Network` is then made of its links that are not closed,
on the same nodes and zones as the base network, so the two compare link by link.

Flooded roads slow down by the depth–speed function of Pregnolato et al. (2017, *Transp. Res.
D* 55: 67-81), v(w) = 0.0009 w² − 0.5529 w + 86.9448 km/h for a water depth w in mm, applied as
the fraction v(w) / 86.9448 of the link's own free-flow speed, and close at 300 mm, where the
curve's authors put the limit for cars. ``cim.flood_roads`` holds the deepest water along each
road, so every link of a road gets that road's depth (the conservative reading).

New roads join the network only at their two ends, each at the nearest road node within
``SNAP_M`` (a junction or a road's end), like a bridge: they cross what lies between without a
junction.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

from simulation.traffic.assignment import Network
from simulation.traffic.errors import TrafficInputError
from simulation.traffic.network import BPR_ALPHA, BPR_BETA, DEFAULTS

CLOSED_MM = 300.0
DRY_KMH = 86.9448
SNAP_M = 200.0


def pregnolato_kmh(depth_mm: np.ndarray | float) -> np.ndarray:
    """Pregnolato et al. (2017) car speed in water ``depth_mm`` deep; 0 from 300 mm."""
    w = np.clip(np.asarray(depth_mm, dtype=float), 0.0, None)
    return np.where(w >= CLOSED_MM, 0.0, 0.0009 * w**2 - 0.5529 * w + DRY_KMH)


def speed_fraction(depth_mm: np.ndarray | float) -> np.ndarray:
    """The share of its free-flow speed a link keeps under water (0 = closed)."""
    return pregnolato_kmh(depth_mm) / DRY_KMH


@dataclass(frozen=True)
class RoadChange:
    """New totals for both directions of a road (None keeps the road's value)."""

    road_id: str
    lanes: float | None = None
    max_speed_kmh: float | None = None
    capacity_vph: float | None = None


@dataclass(frozen=True)
class NewRoad:
    """A road to add, drawn in longitude and latitude."""

    coordinates: list[tuple[float, float]]
    road_class: str = "secondary"
    lanes: float | None = None
    max_speed_kmh: float | None = None
    capacity_vph: float | None = None
    oneway: bool = False


def start(links: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The base links with every status ``open`` and no water."""
    table = links.copy()
    table["status"] = "open"
    table["max_depth_m"] = np.nan
    table["base_free_flow_min"] = table["free_flow_min"]
    return table


def _roads(table: gpd.GeoDataFrame, road_ids: list[str]) -> tuple[np.ndarray, list[str]]:
    """The rows of these roads' links, and the ids of those the car network lacks (not for
    cars, or outside its largest strongly connected part)."""
    road = table["road_id"].astype(object).to_numpy()
    known = set(road[~table["connector"].to_numpy()])
    return np.isin(road, list(road_ids)), sorted(set(road_ids) - known)


def close_roads(table: gpd.GeoDataFrame, road_ids: list[str]
                ) -> tuple[gpd.GeoDataFrame, list[str]]:
    """Both directions of every link of these roads closed; and the ids not in the network."""
    table = table.copy()
    rows, missing = _roads(table, road_ids)
    table.loc[rows, "status"] = "closed"
    return table, missing


def close_areas(table: gpd.GeoDataFrame, areas: list[shapely.Geometry], crs: int
                ) -> tuple[gpd.GeoDataFrame, int]:
    """Road links that touch any of these polygons (in longitude and latitude) closed; and
    how many links that closed."""
    to_city = Transformer.from_crs(4326, crs, always_xy=True)
    shapes = [shapely.transform(area, lambda xy: np.column_stack(
        to_city.transform(xy[:, 0], xy[:, 1]))) for area in areas]
    table = table.copy()
    roads = ~table["connector"].to_numpy()
    geoms = table.geometry.values
    hit = np.zeros(len(table), dtype=bool)
    for shape in shapes:
        hit |= shapely.intersects(geoms, shape)
    hit &= roads & (table["status"] != "closed").to_numpy()
    table.loc[hit, "status"] = "closed"
    return table, int(hit.sum())


def flood(table: gpd.GeoDataFrame, depths: pd.Series) -> gpd.GeoDataFrame:
    """Links of the roads in ``depths`` (deepest water in metres, by road id) slowed by the
    depth–speed function, or closed from 300 mm."""
    table = table.copy()
    depth = table["road_id"].map(depths).to_numpy(dtype=float)
    wet = np.isfinite(depth) & (depth > 0) & (table["status"] != "closed").to_numpy()
    fraction = speed_fraction(np.where(wet, depth, 0.0) * 1000.0)
    table.loc[wet, "max_depth_m"] = depth[wet]
    closed = wet & (fraction <= 0)
    slowed = wet & ~closed
    table.loc[closed, "status"] = "closed"
    table.loc[slowed, "status"] = "flooded"
    table.loc[slowed, "speed_kmh"] = table.loc[slowed, "speed_kmh"] * fraction[slowed]
    table.loc[slowed, "free_flow_min"] = table.loc[slowed, "free_flow_min"] / fraction[slowed]
    return table


def change_roads(table: gpd.GeoDataFrame, changes: list[RoadChange]
                 ) -> tuple[gpd.GeoDataFrame, list[str]]:
    """New lanes, speeds or capacities (totals of both directions, as in ``cim.roads``); and
    the ids not in the network."""
    table = table.copy()
    missing: list[str] = []
    for change in changes:
        mine, lacking = _roads(table, [change.road_id])
        missing += lacking
        split = np.where(table.loc[mine, "oneway"].to_numpy(bool), 1.0, 2.0)
        if change.lanes is not None:
            old = table.loc[mine, "lanes"].to_numpy(float)
            table.loc[mine, "lanes"] = change.lanes / split
            if change.capacity_vph is None:  # capacity follows the lanes
                table.loc[mine, "capacity_vph"] = (
                    table.loc[mine, "capacity_vph"].to_numpy(float) * change.lanes / split / old)
        if change.capacity_vph is not None:
            table.loc[mine, "capacity_vph"] = change.capacity_vph / split
        if change.max_speed_kmh is not None:
            table.loc[mine, "speed_kmh"] = change.max_speed_kmh
            table.loc[mine, "free_flow_min"] = (
                table.loc[mine, "length_m"].to_numpy(float) / 1000.0 / change.max_speed_kmh
                * 60.0)
            table.loc[mine, "base_free_flow_min"] = table.loc[mine, "free_flow_min"]
        table.loc[mine & (table["status"] == "open").to_numpy(), "status"] = "changed"
    return table, missing


def add_roads(table: gpd.GeoDataFrame, nodes: gpd.GeoDataFrame, roads: list[NewRoad],
              crs: int) -> gpd.GeoDataFrame:
    """New links between the road nodes nearest to each new road's ends."""
    if not roads:
        return table
    to_city = Transformer.from_crs(4326, crs, always_xy=True)
    road_nodes = np.flatnonzero((nodes["kind"] == "road").to_numpy())
    tree = shapely.STRtree(nodes.geometry.values[road_nodes])
    rows = []
    for number, road in enumerate(roads, start=1):
        lon, lat = np.array(road.coordinates, dtype=float).T
        x, y = to_city.transform(lon, lat)
        line = shapely.linestrings(np.column_stack([x, y]))
        ends = shapely.points([[x[0], y[0]], [x[-1], y[-1]]])
        found, nearest = tree.query_nearest(ends, max_distance=SNAP_M, return_distance=False)
        if len(found) < 2 or len(np.unique(found)) < 2:
            raise TrafficInputError(f"new road {number}: both ends must lie within {SNAP_M:g} m "
                                    "of a road of the car network")
        first = np.unique(found, return_index=True)[1]
        start_node, end_node = road_nodes[nearest[first]]
        if start_node == end_node:
            raise TrafficInputError(f"new road {number}: both ends snap to the same junction")
        coords = shapely.get_coordinates(line)
        coords[0] = shapely.get_coordinates(nodes.geometry.values[start_node])[0]
        coords[-1] = shapely.get_coordinates(nodes.geometry.values[end_node])[0]
        geometry = shapely.linestrings(coords)
        defaults = DEFAULTS.get(road.road_class, DEFAULTS["other"])
        lanes = road.lanes if road.lanes is not None else defaults.lanes
        speed = road.max_speed_kmh if road.max_speed_kmh is not None else defaults.speed_kmh
        capacity = (road.capacity_vph if road.capacity_vph is not None
                    else lanes * defaults.lane_capacity_vph)
        split = 1.0 if road.oneway else 2.0
        length = float(shapely.length(geometry))
        base = {"road_id": f"new:{number}", "road_class": road.road_class, "level": 0,
                "oneway": road.oneway, "connector": False, "lanes": lanes / split,
                "speed_kmh": speed, "capacity_vph": capacity / split, "length_m": length,
                "free_flow_min": length / 1000.0 / speed * 60.0, "status": "added",
                "max_depth_m": np.nan}
        base["base_free_flow_min"] = base["free_flow_min"]
        rows.append({**base, "from_node": start_node, "to_node": end_node,
                     "geometry": geometry})
        if not road.oneway:
            rows.append({**base, "from_node": end_node, "to_node": start_node,
                         "geometry": shapely.reverse(geometry)})
    added = gpd.GeoDataFrame(rows, geometry="geometry", crs=table.crs)
    return gpd.GeoDataFrame(pd.concat([table, added], ignore_index=True), geometry="geometry",
                            crs=table.crs)


def open_network(table: gpd.GeoDataFrame, base: Network) -> tuple[Network, np.ndarray]:
    """The network of the links not closed, on the base network's nodes and zones, and the
    rows of ``table`` its links are."""
    rows = np.flatnonzero((table["status"] != "closed").to_numpy())
    kept = table.iloc[rows]
    connector = kept["connector"].to_numpy(bool)
    network = Network(
        num_nodes=base.num_nodes,
        init_node=kept["from_node"].to_numpy(np.int64),
        term_node=kept["to_node"].to_numpy(np.int64),
        capacity=kept["capacity_vph"].to_numpy(float),
        free_flow_time=kept["free_flow_min"].to_numpy(float),
        alpha=np.where(connector, 0.0, BPR_ALPHA),
        beta=np.full(len(kept), BPR_BETA),
        length_km=kept["length_m"].to_numpy(float) / 1000.0,
        zone_nodes=base.zone_nodes,
        through_zones=base.through_zones,
    )
    return network, rows
