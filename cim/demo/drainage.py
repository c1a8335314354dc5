"""Storm drainage: manholes along the streets, pipes flowing to outfalls, sub-catchments.

Manholes sit every 40-60 m along the generated streets. Each one drains along the streets
toward the nearest outfall (on a lake shore, or where an arterial leaves the district), so
the network is a forest of trees; at loops of the street grid the sewers stop at a ridge.
Pipes are sized by the rational method for the area upstream, and inverts fall at least
at a minimum slope toward the outfall while keeping their cover below the street.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely

from cim.demo.frame import CRS, Extent, as_multipolygons, ids
from cim.demo.streets import ARTERIAL
from cim.demo.terrain import Grid
from cim.demo.water import WaterBody

MANHOLE_SPACING = 50.0
DESIGN_RAIN_MM_H = 80.0  # about a 3-year, 15-minute storm in Wuhan
RUNOFF = (0.9, 0.2)  # runoff coefficient of impervious and of pervious ground
PAVED = {
    "tower": 0.35,
    "midrise": 0.40,
    "village": 0.45,
    "villa": 0.25,
    "commercial": 0.55,
    "office_tower": 0.45,
    "office_park": 0.40,
    "industrial": 0.50,
    "education": 0.30,
    "healthcare": 0.45,
    "public": 0.40,
    "park": 0.10,
}
"""Paved share of a plot besides its roofs."""
MANNING_N = 0.013
MIN_SLOPE = 0.002
MIN_DROP = 0.01  # m, across a manhole
COVER = 1.2  # m of soil over a pipe's crown
DIAMETERS = np.array([0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.2, 1.35, 1.5, 1.65, 1.8, 2.0])
OUTFALL_REACH = 250.0  # m from a street to a lake shore for an outfall
OUTFALL_SPACING = 400.0  # m between the outfalls of one lake


@dataclass(frozen=True)
class Drainage:
    nodes: gpd.GeoDataFrame
    pipes: gpd.GeoDataFrame
    catchments: gpd.GeoDataFrame


@dataclass(frozen=True)
class _Network:
    """Manholes joined along the streets, before the drainage direction is known."""

    xy: np.ndarray  # (n, 2) node positions
    edges: np.ndarray  # (m, 2) node pairs along streets
    width: np.ndarray  # street width along each edge, m
    outfalls: np.ndarray  # node indices
    outfall_names: np.ndarray
    lake: np.ndarray  # per outfall: index of the water body it discharges into, -1 for none


@dataclass(frozen=True)
class _Tree:
    """The nodes that drain somewhere, each with its downstream neighbour."""

    xy: np.ndarray
    parent: np.ndarray  # -1 at outfalls
    length: np.ndarray  # of the pipe leaving each node, 0 at outfalls
    width: np.ndarray  # of the street above that pipe
    by_level: list[np.ndarray]  # nodes by pipe count to their outfall, farthest first
    outfalls: np.ndarray  # tree indices of the network's outfalls, -1 where dropped

    @property
    def pipe(self) -> np.ndarray:
        return self.parent >= 0


def build_drainage(
    roads: gpd.GeoDataFrame,
    blocks: gpd.GeoDataFrame,
    buildings: gpd.GeoDataFrame,
    water: Sequence[WaterBody],
    extent: Extent,
    grid: Grid,
    dem: np.ndarray,
    rng: np.random.Generator,
) -> Drainage:
    net = _network(roads, water, buildings, extent)
    tree = _grow(net)
    ground = grid.sample(dem, tree.xy[:, 0], tree.xy[:, 1])

    # Each plot drains to the nearest manhole (its inlet), each street to its sewer.
    impervious = _impervious(blocks, buildings)
    area = shapely.area(blocks.geometry.values)
    candidates = np.setdiff1d(np.arange(len(tree.xy)), tree.outfalls)
    nearest = shapely.STRtree(shapely.points(tree.xy[candidates])).query_nearest(
        shapely.centroid(blocks.geometry.values), all_matches=False
    )[1]
    outlet = candidates[nearest]
    runoff_area = np.zeros(len(tree.xy))  # C * A draining in at each node, m2
    coefficient = impervious * RUNOFF[0] + (1 - impervious) * RUNOFF[1]
    np.add.at(runoff_area, outlet, coefficient * area)
    runoff_area += RUNOFF[0] * tree.length * tree.width
    flow = _accumulate(runoff_area, tree) * DESIGN_RAIN_MM_H / 1000 / 3600  # rational method
    inflow = runoff_area * DESIGN_RAIN_MM_H / 1000 / 3600

    invert = _inverts(ground, COVER + DIAMETERS[0], tree)
    diameter = _diameters(flow, invert, tree)
    invert = _inverts(ground, COVER + diameter, tree)

    node_ids = ids("dn", len(tree.xy))
    nodes = _nodes(net, tree, node_ids, outlet, ground, invert, flow, inflow, water)
    pipes = _pipes(tree, invert, diameter, node_ids, rng)
    catchments = gpd.GeoDataFrame(
        {
            "source_id": ids("c", len(blocks)),
            "name": None,
            "outlet_node": node_ids[outlet],
            "area_m2": np.round(area, 1),
            "impervious_fraction": np.round(impervious, 3),
        },
        geometry=as_multipolygons(blocks.geometry.values),
        crs=CRS,
    )
    return Drainage(nodes=nodes, pipes=pipes, catchments=catchments)


def _network(
    roads: gpd.GeoDataFrame,
    water: Sequence[WaterBody],
    buildings: gpd.GeoDataFrame,
    extent: Extent,
) -> _Network:
    """Manholes along every street but bridges, joined where streets meet; and outfalls."""
    streets = roads[~roads["bridge"]]
    geoms = streets.geometry.values
    pieces = np.maximum(np.round(shapely.length(geoms) / MANHOLE_SPACING), 1).astype(int)
    row = np.repeat(np.arange(len(streets)), pieces + 1)
    k = np.arange(row.size) - np.repeat(np.cumsum(pieces + 1) - (pieces + 1), pieces + 1)
    points = shapely.line_interpolate_point(geoms[row], k / pieces[row], normalized=True)
    # Streets meeting at a junction share its manhole.
    xy, node = np.unique(np.round(shapely.get_coordinates(points), 1), axis=0, return_inverse=True)
    node = node.ravel()
    along = k[1:] > 0
    edges = np.column_stack([node[:-1], node[1:]])[along]
    width = (streets["lanes"].to_numpy(float) * 3.5 + 2.0)[row[1:][along]]
    edges, first = np.unique(np.sort(edges, axis=1), axis=0, return_index=True)
    width = width[first]
    ok = edges[:, 0] != edges[:, 1]
    edges, width = edges[ok], width[ok]

    # Where arterials leave the district, trunk sewers carry on: those ends are outfalls.
    arterial = streets["road_class"].isin(ARTERIAL).to_numpy()[row]
    first_row = row[np.unique(node, return_index=True)[1]]
    x, y = xy[:, 0], xy[:, 1]
    side = np.select(
        [
            np.abs(x - extent.x0) < 1,
            np.abs(x - extent.x1) < 1,
            np.abs(y - extent.y0) < 1,
            np.abs(y - extent.y1) < 1,
        ],
        ["西", "东", "南", "北"],
        "",
    )
    edge_out = np.intersect1d(np.nonzero(side != "")[0], node[arterial])
    road = streets["name"].to_numpy(str)[first_row[edge_out]]
    edge_names = [f"{r}{s}出水口" for r, s in zip(road, side[edge_out], strict=True)]

    lake_xy, lake_links, lake_names, lake_of = _lake_outfalls(xy, water, buildings)
    n = len(xy)
    links = np.column_stack([lake_links, n + np.arange(len(lake_xy))]).astype(int)
    return _Network(
        xy=np.vstack([xy, lake_xy.reshape(-1, 2)]),
        edges=np.vstack([edges, links.reshape(-1, 2)]),
        width=np.concatenate([width, np.full(len(lake_xy), 2.0)]),
        outfalls=np.concatenate([edge_out, n + np.arange(len(lake_xy))]).astype(int),
        outfall_names=np.array([*edge_names, *lake_names], dtype=object),
        lake=np.concatenate([np.full(edge_out.size, -1), lake_of]).astype(int),
    )


def _lake_outfalls(
    xy: np.ndarray, water: Sequence[WaterBody], buildings: gpd.GeoDataFrame
) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Up to three outfalls per lake, each piped from a nearby manhole straight to the
    nearest shore without passing under a building."""
    points = shapely.points(xy)
    manholes = shapely.STRtree(points)
    houses = shapely.STRtree(buildings.geometry.values)
    shore_xy, linked, labels, lake_of = [], [], [], []
    for i, body in enumerate(water):
        shore = body.polygon().exterior
        near = manholes.query(shore, "dwithin", distance=OUTFALL_REACH)
        near = near[np.argsort(shapely.distance(points[near], shore), kind="stable")]
        links = shapely.shortest_line(points[near], shore)
        blocked = np.zeros(near.size, dtype=bool)
        blocked[houses.query(links, "intersects")[0]] = True
        chosen: list[int] = []
        for node, link in zip(near[~blocked], links[~blocked], strict=True):
            if len(chosen) == 3:
                break
            if all(np.hypot(*(xy[node] - xy[c])) >= OUTFALL_SPACING for c in chosen):
                chosen.append(int(node))
                shore_xy.append(shapely.get_coordinates(link)[1])
                linked.append(node)
                labels.append(f"{body.name}排口{len(chosen)}")
                lake_of.append(i)
    return np.array(shore_xy), np.array(linked, dtype=int), labels, np.array(lake_of, dtype=int)


def _drain_to_outfalls(
    n: int, edges: np.ndarray, outfalls: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Breadth-first search from all outfalls at once: each node's downstream neighbour
    (``parent``, -1 at outfalls and unreached nodes) and its pipe count to the outfall
    (``level``, -1 when unreached)."""
    a = np.concatenate([edges[:, 0], edges[:, 1]])
    b = np.concatenate([edges[:, 1], edges[:, 0]])
    order = np.argsort(a, kind="stable")
    a, b = a[order], b[order]
    start = np.searchsorted(a, np.arange(n + 1))
    parent = np.full(n, -1)
    level = np.full(n, -1)
    frontier = np.unique(outfalls)
    level[frontier] = 0
    depth = 0
    while frontier.size:
        count = start[frontier + 1] - start[frontier]
        offset = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        src = np.repeat(frontier, count)
        dst = b[np.repeat(start[frontier], count) + offset]
        new = level[dst] < 0
        dst, first = np.unique(dst[new], return_index=True)
        depth += 1
        level[dst] = depth
        parent[dst] = src[new][first]
        frontier = dst
    return parent, level


def _grow(net: _Network) -> _Tree:
    """Drain every node toward the nearest outfall; drop what reaches none, and outfalls
    that nothing reaches."""
    parent, level = _drain_to_outfalls(len(net.xy), net.edges, net.outfalls)
    reached = level >= 0
    reached[net.outfalls] &= np.isin(net.outfalls, parent)
    keep = np.nonzero(reached)[0]
    renumber = np.full(len(net.xy), -1)
    renumber[keep] = np.arange(keep.size)
    parent = np.where(parent[keep] >= 0, renumber[np.maximum(parent[keep], 0)], -1)
    xy, level = net.xy[keep], level[keep]
    pipe = parent >= 0
    length = np.where(pipe, np.hypot(*(xy - xy[np.maximum(parent, 0)]).T), 0.0)

    # The street width over each pipe, looked up among the network's edges.
    n = len(net.xy)
    pairs = np.sort(net.edges, axis=1)
    keys = pairs[:, 0] * n + pairs[:, 1]
    order = np.argsort(keys)
    a, b = keep[pipe], keep[parent[pipe]]
    width = np.zeros(len(xy))
    width[pipe] = net.width[order][
        np.searchsorted(keys[order], np.minimum(a, b) * n + np.maximum(a, b))
    ]
    return _Tree(
        xy=xy,
        parent=parent,
        length=length,
        width=width,
        by_level=[np.nonzero(level == d)[0] for d in range(level.max(initial=0), 0, -1)],
        outfalls=renumber[net.outfalls],
    )


def _accumulate(values: np.ndarray, tree: _Tree) -> np.ndarray:
    """Each node's value plus everything upstream of it."""
    total = values.copy()
    for nodes in tree.by_level:
        np.add.at(total, tree.parent[nodes], total[nodes])
    return total


def _inverts(ground: np.ndarray, depth: np.ndarray | float, tree: _Tree) -> np.ndarray:
    """As shallow as the cover allows, yet falling downstream along every pipe by its
    minimum slope and across every manhole by a small drop."""
    invert = ground - depth
    for nodes in tree.by_level:
        fall = np.maximum(MIN_SLOPE * tree.length[nodes], MIN_DROP)
        np.minimum.at(invert, tree.parent[nodes], invert[nodes] - fall)
    return invert


def _diameters(flow: np.ndarray, invert: np.ndarray, tree: _Tree) -> np.ndarray:
    """Manning full-pipe capacity >= design flow, rounded up to a standard size and never
    shrinking downstream. Indexed by node: the pipe leaving it."""
    pipe, parent = tree.pipe, tree.parent
    slope = np.full(flow.size, MIN_SLOPE)
    slope[pipe] = np.maximum(
        (invert[pipe] - invert[parent[pipe]]) / np.maximum(tree.length[pipe], 1e-6), MIN_SLOPE
    )
    # Q = (1/n) (pi D^2 / 4) (D / 4)^(2/3) S^(1/2), solved for D.
    needed = (flow * MANNING_N * 4 ** (5 / 3) / (np.pi * np.sqrt(slope))) ** (3 / 8)
    size = np.minimum(np.searchsorted(DIAMETERS, needed - 1e-9), DIAMETERS.size - 1)
    diameter = DIAMETERS[size]
    for nodes in tree.by_level:
        np.maximum.at(diameter, parent[nodes], diameter[nodes])
    return diameter


def _nodes(
    net: _Network,
    tree: _Tree,
    node_ids: np.ndarray,
    outlet: np.ndarray,
    ground: np.ndarray,
    invert: np.ndarray,
    flow: np.ndarray,
    inflow: np.ndarray,
    water: Sequence[WaterBody],
) -> gpd.GeoDataFrame:
    """Manholes; inlets taking the plots' runoff; outfalls; pumping stations before lakes."""
    kind = np.full(len(tree.xy), "manhole", dtype=object)
    capacity = np.full(len(tree.xy), np.nan)
    kind[outlet] = "inlet"
    capacity[outlet] = np.round(inflow[outlet], 3)
    names = np.full(len(tree.xy), None, dtype=object)
    kept = tree.outfalls >= 0
    kind[tree.outfalls[kept]] = "outfall"
    names[tree.outfalls[kept]] = net.outfall_names[kept]
    for lake, station in _pumping_stations(net, tree, flow, invert, water).items():
        kind[station] = "pumping_station"
        capacity[station] = round(max(1.2 * flow[station], 0.5), 2)
        names[station] = f"{water[lake].name}泵站"
    return gpd.GeoDataFrame(
        {
            "source_id": node_ids,
            "name": names,
            "kind": kind,
            "invert_elevation": np.round(invert, 2),
            "ground_elevation": np.round(ground, 2),
            "capacity_m3s": capacity,
        },
        geometry=shapely.points(tree.xy),
        crs=CRS,
    )


def _pumping_stations(
    net: _Network, tree: _Tree, flow: np.ndarray, invert: np.ndarray, water: Sequence[WaterBody]
) -> dict[int, int]:
    """Lake -> the last manhole before its busiest outfall whose sewer arrives below the
    lake's normal level (it must be pumped). At least one in the district."""
    chosen: dict[int, int] = {}
    busiest: tuple[int, int] | None = None
    for outfall, lake in zip(tree.outfalls, net.lake, strict=True):
        if lake < 0 or outfall < 0:
            continue
        feeders = np.nonzero(tree.parent == outfall)[0]
        last = int(feeders[np.argmax(flow[feeders])])
        if busiest is None or flow[last] > flow[busiest[1]]:
            busiest = (int(lake), last)
        below = invert[last] < water[lake].normal_level
        if below and (lake not in chosen or flow[last] > flow[chosen[lake]]):
            chosen[int(lake)] = last
    if not chosen and busiest is not None:
        chosen[busiest[0]] = busiest[1]
    return chosen


def _impervious(blocks: gpd.GeoDataFrame, buildings: gpd.GeoDataFrame) -> np.ndarray:
    roofs = np.zeros(len(blocks))
    np.add.at(roofs, buildings["block"].to_numpy(), shapely.area(buildings.geometry.values))
    coverage = roofs / shapely.area(blocks.geometry.values)
    paved = blocks["layout"].map(PAVED).to_numpy(float)
    paved = np.where(roofs > 0, paved, 0.3 * paved)  # plots left empty are mostly unpaved
    return np.clip(coverage + paved, 0.05, 0.95)


def _pipes(
    tree: _Tree,
    invert: np.ndarray,
    diameter: np.ndarray,
    node_ids: np.ndarray,
    rng: np.random.Generator,
) -> gpd.GeoDataFrame:
    up = np.nonzero(tree.pipe)[0]
    down = tree.parent[up]
    size = diameter[up]
    plastic = (size <= 0.6) & (rng.random(up.size) < 0.75)
    return gpd.GeoDataFrame(
        {
            "source_id": ids("dp", up.size),
            "name": None,
            "shape": "circular",
            "diameter_m": size,
            "upstream_invert": np.round(invert[up], 3),
            "downstream_invert": np.round(invert[down], 3),
            "length_m": np.round(tree.length[up], 2),
            "roughness": MANNING_N,
            "material": np.where(plastic, "HDPE", "concrete"),
            "from_node": node_ids[up],
            "to_node": node_ids[down],
        },
        geometry=shapely.linestrings(np.stack([tree.xy[up], tree.xy[down]], axis=1)),
        crs=CRS,
    )
