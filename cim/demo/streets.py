"""The generated street network: a grid of arterials and local streets joined to the real roads.

Grid lines run north-south (``ns``) and east-west (``ew``) over the district. Real roads that
end on the edge of the real network carry on outside it as grid lines with their real names
(光谷六路 continues south), and every generated street cut by the real network's zone is
extended to the nearest real road. Two arterials cross the zone itself, under and over the
real trunk road (高新大道); some arterial crossings elsewhere are underpasses.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import LinearRing, LineString, MultiLineString, Polygon

from cim.demo import names
from cim.demo.frame import CRS, Extent, RealData, ids

CLASSES = ("primary", "secondary", "tertiary", "residential", "service")
ARTERIAL = ("primary", "secondary")
RED_LINE = {
    "primary": 50.0,
    "secondary": 40.0,
    "tertiary": 30.0,
    "residential": 20.0,
    "service": 12.0,
}
"""Road reserve width between the plots on either side, m."""
SETBACK = {"primary": 15.0, "secondary": 12.0, "tertiary": 8.0, "residential": 5.0, "service": 3.0}
"""How far buildings stand back from the road reserve, m."""
SPEED_KMH = {
    "primary": 60.0,
    "secondary": 50.0,
    "tertiary": 40.0,
    "residential": 30.0,
    "service": 20.0,
}
LANE_CAPACITY = {
    "primary": 1800.0,
    "secondary": 1650.0,
    "tertiary": 1400.0,
    "residential": 900.0,
    "service": 600.0,
}
"""Vehicles per hour per lane."""
LANES = {
    "primary": ((6, 8), (0.6, 0.4)),
    "secondary": ((4, 6), (0.6, 0.4)),
    "tertiary": ((2, 4), (0.5, 0.5)),
    "residential": ((2,), (1.0,)),
    "service": ((1, 2), (0.5, 0.5)),
}
REAL_CLASS = {
    "trunk": "primary",
    "primary": "primary",
    "secondary": "secondary",
    "tertiary": "tertiary",
    "residential": "residential",
}

LOCAL_SPACING = (140.0, 260.0)
MIN_GAP = 100.0  # closest two parallel streets may be
ARTERIAL_SPACING = (850.0, 1300.0)
EXIT_REACH = 100.0  # a loose real road end this close to the zone's edge carries on outside
JOIN_REACH = 250.0  # farthest a cut street is extended to reach a real road
UNDERPASS_SHARE = 0.6  # of north-south arterials, passing under one east-west arterial
UNDERPASS_HALF = 60.0  # half the covered length of a generated underpass, m
TRUNK_APRON = 20.0  # a structure under or over the trunk road reaches this far beyond it


@dataclass(frozen=True)
class Lines:
    """Parallel grid lines along one axis: position (x of north-south, y of east-west lines)."""

    pos: np.ndarray
    road_class: np.ndarray
    name: np.ndarray
    through: np.ndarray  # crosses the real road zone, over or under the trunk road


@dataclass
class _Forced:
    pos: float
    road_class: str
    name: str = ""
    through: bool = False


@dataclass(frozen=True)
class StreetPlan:
    ns: Lines
    ew: Lines
    rows: gpd.GeoDataFrame  # one row per street piece between junctions
    crossings: np.ndarray  # (n, 2): where arterials cross


def plan_streets(extent: Extent, real: RealData, rng: np.random.Generator) -> StreetPlan:
    forced_ns, forced_ew = _real_continuations(real, extent)
    forced_ns += _through_arterials(real, extent, forced_ns)
    taken = set(real.roads.name)
    ns = _plan_lines(extent.x0, extent.x1, forced_ns, "光谷{}路", taken, rng)
    ew = _plan_lines(extent.y0, extent.y1, forced_ew, "高新{}路", taken, rng)
    underpasses = _pick_underpasses(ns, ew, real, rng)
    rows = _grid_rows(ns, ew, extent, real, underpasses, rng)
    rows = _clip_to_zone(rows, real.road_zone, real.roads.geometry, keep=rows["through"])
    rows = _clip_to_zone(rows, real.sample_zone, real.sample_roads, keep=None)
    x, y = np.meshgrid(
        ns.pos[np.isin(ns.road_class, ARTERIAL)], ew.pos[np.isin(ew.road_class, ARTERIAL)]
    )
    return StreetPlan(ns=ns, ew=ew, rows=rows, crossings=np.column_stack([x.ravel(), y.ravel()]))


# -- grid lines ---------------------------------------------------------------------------


def _real_continuations(real: RealData, extent: Extent) -> tuple[list[_Forced], list[_Forced]]:
    """Grid lines that continue the real roads leaving the real network."""
    roads = real.roads
    ends, outward, road = _road_ends(roads.geometry)
    # An end is loose when no other road ends near it except its twin carriageway (which
    # leaves the same way); it leaves the network when the zone's edge is just ahead.
    near = np.linalg.norm(ends[:, None] - ends[None], axis=2) < 20.0
    joined = near & (outward @ outward.T < 0.5) & (road[:, None] != road[None])
    rays = shapely.linestrings(np.stack([ends, ends + 500.0 * outward], axis=1))
    exits = shapely.intersection(rays, real.road_zone.exterior)
    ahead = shapely.distance(shapely.points(ends), exits)
    ns: list[_Forced] = []
    ew: list[_Forced] = []
    for k in np.nonzero(~joined.any(axis=1) & (ahead < EXIT_REACH))[0]:
        highway, name = roads.highway[road[k]], roads.name[road[k]]
        if highway not in REAL_CLASS:
            continue
        along_y = abs(outward[k, 1]) > abs(outward[k, 0])
        pos = float(ends[k, 0] if along_y else ends[k, 1])
        lo, hi = (extent.x0, extent.x1) if along_y else (extent.y0, extent.y1)
        if lo + MIN_GAP < pos < hi - MIN_GAP:
            (ns if along_y else ew).append(_Forced(pos, REAL_CLASS[highway], name))
    return _merge(ns), _merge(ew)


def _road_ends(lines: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both ends of every line, the unit direction pointing away from it there, its index."""
    ends = shapely.get_coordinates(
        np.concatenate([shapely.get_point(lines, 0), shapely.get_point(lines, -1)])
    )
    inner = shapely.get_coordinates(
        np.concatenate([shapely.get_point(lines, 1), shapely.get_point(lines, -2)])
    )
    outward = ends - inner
    outward /= np.linalg.norm(outward, axis=1)[:, None]
    return ends, outward, np.tile(np.arange(len(lines)), 2)


def _merge(lines: list[_Forced]) -> list[_Forced]:
    """One line per cluster of nearby ends (dual carriageways end side by side)."""
    rank = {c: i for i, c in enumerate(CLASSES)}
    merged: list[_Forced] = []
    used: set[str] = set()
    for cluster in _clusters(sorted(lines, key=lambda f: f.pos)):
        best = min(cluster, key=lambda f: rank[f.road_class])
        name = best.name if best.name not in used else ""
        used.add(name)
        merged.append(_Forced(float(np.mean([f.pos for f in cluster])), best.road_class, name))
    return merged


def _clusters(lines: list[_Forced]) -> list[list[_Forced]]:
    clusters: list[list[_Forced]] = []
    for line in lines:
        if clusters and line.pos - clusters[-1][-1].pos < 60.0:
            clusters[-1].append(line)
        else:
            clusters.append([line])
    return clusters


def _through_arterials(real: RealData, extent: Extent, forced: list[_Forced]) -> list[_Forced]:
    """Two north-south arterials crossing the real trunk road, well clear of real crossings."""
    roads = real.roads
    trunk = roads.highway == "trunk"
    tx0, ty0, tx1, ty1 = shapely.bounds(shapely.multilinestrings(roads.geometry[trunk]))
    crossing_roads = np.isin(roads.highway, ("trunk", "trunk_link"), invert=True)
    others = roads.vertices[crossing_roads[roads.vertex_road]]
    near = others[(others[:, 1] > ty0 - 30) & (others[:, 1] < ty1 + 30), 0]
    avoid = np.concatenate([near, [f.pos for f in forced]])
    lo, hi = max(tx0, extent.x0) + 150, min(tx1, extent.x1) - 150
    candidates = np.arange(lo, hi, 10.0)
    if not candidates.size:
        return []
    clearance = np.abs(candidates[:, None] - avoid[None, :]).min(axis=1)
    chosen: list[float] = []
    for k in np.argsort(-clearance, kind="stable"):
        if clearance[k] < 60 or len(chosen) == 2:
            break
        if all(abs(candidates[k] - c) >= 300 for c in chosen):
            chosen.append(float(candidates[k]))
    return [_Forced(x, "secondary", through=True) for x in chosen]


def _plan_lines(
    lo: float,
    hi: float,
    forced: list[_Forced],
    template: str,
    taken: set[str],
    rng: np.random.Generator,
) -> Lines:
    gaps = rng.uniform(*LOCAL_SPACING, size=int((hi - lo) / LOCAL_SPACING[0]) + 2)
    fill = lo + rng.uniform(0.3, 1.0) * LOCAL_SPACING[0] + np.concatenate([[0.0], np.cumsum(gaps)])
    fill = fill[fill < hi - 40.0]
    forced_pos = np.array([f.pos for f in forced])
    if forced_pos.size:
        fill = fill[np.abs(fill[:, None] - forced_pos[None, :]).min(axis=1) >= MIN_GAP]
    lines = sorted([*forced, *(_Forced(float(p), "") for p in fill)], key=lambda f: f.pos)

    # Arterials about every kilometre; forced arterials count, forced local roads stay local.
    next_arterial = lo + rng.uniform(0.0, ARTERIAL_SPACING[0])
    for line in lines:
        if line.road_class in ARTERIAL or (not line.road_class and line.pos >= next_arterial):
            line.road_class = line.road_class or ("primary" if rng.random() < 0.4 else "secondary")
            next_arterial = line.pos + rng.uniform(*ARTERIAL_SPACING)
        elif not line.road_class:
            line.road_class = "tertiary" if rng.random() < 0.3 else "residential"

    def unnamed(road_class: str) -> list[_Forced]:
        return [f for f in lines if not f.name and f.road_class == road_class]

    for line, name in zip(
        unnamed("primary"),
        names.place_names(rng, len(unnamed("primary")), "大道", taken),
        strict=True,
    ):
        line.name = name
    for line, name in zip(
        unnamed("secondary"),
        names.numbered(template, len(unnamed("secondary")), taken),
        strict=True,
    ):
        line.name = name
    local = [f for f in lines if not f.name]
    for line, name in zip(local, names.street_names(rng, len(local), taken), strict=True):
        line.name = name
    return Lines(
        pos=np.array([f.pos for f in lines]),
        road_class=np.array([f.road_class for f in lines]),
        name=np.array([f.name for f in lines]),
        through=np.array([f.through for f in lines]),
    )


def _pick_underpasses(
    ns: Lines, ew: Lines, real: RealData, rng: np.random.Generator
) -> dict[int, float]:
    """North-south arterial -> y of the arterial it passes under (one at most per street)."""
    crossing_y = ew.pos[np.isin(ew.road_class, ARTERIAL)]
    underpasses: dict[int, float] = {}
    for k in np.nonzero(np.isin(ns.road_class, ARTERIAL) & ~ns.through)[0]:
        points = shapely.points(np.full(crossing_y.size, ns.pos[k]), crossing_y)
        clear = (shapely.distance(points, real.road_zone) > 300) & (
            shapely.distance(points, real.sample_zone) > 300
        )
        if clear.any() and rng.random() < UNDERPASS_SHARE:
            underpasses[int(k)] = float(rng.choice(crossing_y[clear]))
    return underpasses


# -- street pieces ------------------------------------------------------------------------


def _grid_rows(
    ns: Lines,
    ew: Lines,
    extent: Extent,
    real: RealData,
    underpasses: dict[int, float],
    rng: np.random.Generator,
) -> gpd.GeoDataFrame:
    trunk = shapely.multilinestrings(real.roads.geometry[real.roads.highway == "trunk"])
    through_kinds = iter(("underpass", "bridge"))
    parts = []
    for k, x in enumerate(ns.pos):
        profile = _Profile.plain([extent.y0, *ew.pos, extent.y1])
        if ns.through[k]:
            # No junctions inside the real zone: the arterial crosses it, meeting no grid line.
            inside = shapely.contains_xy(real.road_zone, x, profile.breaks)
            profile = _Profile.plain(
                profile.breaks[
                    ~inside | (profile.breaks == extent.y0) | (profile.breaks == extent.y1)
                ]
            )
            crossing = shapely.intersection(
                trunk, shapely.linestrings([[x, extent.y0], [x, extent.y1]])
            )
            ys = shapely.get_coordinates(crossing)[:, 1]
            if ys.size:
                profile.insert(
                    ys.min() - TRUNK_APRON, ys.max() + TRUNK_APRON, next(through_kinds), "高新大道"
                )
        if k in underpasses:
            y = underpasses[k]
            crossed = ew.name[np.argmin(np.abs(ew.pos - y))]
            profile.insert(y - UNDERPASS_HALF, y + UNDERPASS_HALF, "underpass", crossed)
        parts.append(_pieces("ns", k, ns, profile))
    for k in range(len(ew.pos)):
        parts.append(_pieces("ew", k, ew, _Profile.plain([extent.x0, *ns.pos, extent.x1])))
    rows = gpd.GeoDataFrame(
        {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}, crs=CRS
    )
    # Some residential pieces are narrow service lanes.
    service = (rows["road_class"] == "residential") & (rng.random(len(rows)) < 0.08)
    rows.loc[service, "road_class"] = "service"
    return rows


@dataclass
class _Profile:
    """A grid line cut into pieces at ``breaks``; each piece may be a structure."""

    breaks: np.ndarray
    kinds: list[str]  # "", "underpass" or "bridge"
    crosses: list[str]  # what a structure passes under or over

    @classmethod
    def plain(cls, breaks: list[float] | np.ndarray) -> _Profile:
        n = len(breaks) - 1
        return cls(np.asarray(breaks, dtype=float), [""] * n, [""] * n)

    def insert(self, lo: float, hi: float, kind: str, crossed: str) -> None:
        """Make [lo, hi] one piece of ``kind``; the junctions inside it go."""
        starts = dict(
            zip(self.breaks[:-1], zip(self.kinds, self.crosses, strict=True), strict=True)
        )
        self.breaks = np.sort(
            np.concatenate([self.breaks[(self.breaks < lo) | (self.breaks > hi)], [lo, hi]])
        )
        pieces = [(kind, crossed) if a == lo else starts.get(a, ("", "")) for a in self.breaks[:-1]]
        self.kinds = [p[0] for p in pieces]
        self.crosses = [p[1] for p in pieces]


def _pieces(axis: str, k: int, lines: Lines, profile: _Profile) -> dict[str, np.ndarray]:
    a, b = profile.breaks[:-1], profile.breaks[1:]
    at = np.full(a.size, lines.pos[k])
    ends = (np.column_stack([at, a]), np.column_stack([at, b]))
    if axis == "ew":
        ends = (ends[0][:, ::-1], ends[1][:, ::-1])
    kinds = np.array(profile.kinds, dtype=object)
    return {
        "geometry": shapely.linestrings(np.stack(ends, axis=1)),
        "road_class": np.full(a.size, lines.road_class[k], dtype=object),
        "name": np.full(a.size, lines.name[k], dtype=object),
        "line": np.full(a.size, f"{axis}{k}", dtype=object),
        "through": np.full(a.size, bool(lines.through[k])),
        "bridge": kinds == "bridge",
        "tunnel": kinds == "underpass",
        "crosses": np.array(profile.crosses, dtype=object),
    }


def _clip_to_zone(
    rows: gpd.GeoDataFrame, zone: Polygon, targets: np.ndarray, keep: pd.Series | None
) -> gpd.GeoDataFrame:
    """Cut streets out of ``zone``; extend each cut end to the nearest of ``targets``."""
    geoms = rows.geometry.values
    hit = shapely.intersects(geoms, zone)
    if keep is not None:
        hit &= ~keep.to_numpy(bool)
    if not hit.any():
        return rows
    pieces, owner = shapely.get_parts(shapely.difference(geoms[hit], zone), return_index=True)
    pieces, owner = pieces[~shapely.is_empty(pieces)], owner[~shapely.is_empty(pieces)]
    target = shapely.multilinestrings(targets)
    cut = rows[hit].iloc[owner].copy()
    cut["geometry"] = [_join(piece, zone.exterior, target) for piece in pieces]
    cut = cut[shapely.length(cut.geometry.values) > 1.0]
    return gpd.GeoDataFrame(pd.concat([rows[~hit], cut], ignore_index=True), crs=CRS)


def _join(piece: LineString, edge: LinearRing, target: MultiLineString) -> LineString:
    """``piece`` extended from its ends on ``edge`` to the nearest point of ``target``."""
    xy = shapely.get_coordinates(piece)
    for end in (0, -1):
        point = shapely.Point(xy[end])
        if shapely.distance(point, edge) > 0.01:
            continue
        link = shapely.get_coordinates(shapely.shortest_line(point, target))
        if not 0.5 < np.hypot(*(link[1] - link[0])) <= JOIN_REACH:
            continue
        xy = np.vstack([link[1:], xy]) if end == 0 else np.vstack([xy, link[1:]])
    return shapely.linestrings(xy)


def cross_water(
    rows: gpd.GeoDataFrame, water: np.ndarray, water_names: np.ndarray
) -> gpd.GeoDataFrame:
    """Arterials bridge the water they meet; other streets that meet water are dropped."""
    rows = rows.reset_index(drop=True)
    shores = shapely.buffer(water, 15.0)
    hit = np.zeros(len(rows), dtype=bool)
    hit[shapely.STRtree(shores).query(rows.geometry.values, "intersects")[0]] = True
    bridging = hit & rows["road_class"].isin(ARTERIAL).to_numpy() & ~rows["tunnel"].to_numpy()
    shore = shapely.union_all(shores)
    pieces = []
    for _, group in rows[bridging].groupby("line", sort=False):
        for land in shapely.get_parts(shapely.difference(group.geometry.values, shore)):
            pieces.append(group.iloc[0].copy())
            pieces[-1]["geometry"] = land
        # One bridge per crossing, though the arterial had junctions where the water now is.
        decks = shapely.line_merge(
            shapely.union_all(shapely.intersection(group.geometry.values, shore))
        )
        for deck in shapely.get_parts(decks):
            crossed = np.argmax(shapely.length(shapely.intersection(deck, shores)))
            pieces.append(group.iloc[0].copy())
            pieces[-1]["geometry"] = deck
            pieces[-1]["bridge"], pieces[-1]["crosses"] = True, water_names[crossed]
    bridged = gpd.GeoDataFrame(pieces, columns=rows.columns, crs=CRS)
    bridged = bridged[shapely.length(bridged.geometry.values) > 1.0]
    return gpd.GeoDataFrame(pd.concat([rows[~hit], bridged], ignore_index=True), crs=CRS)


def finish_roads(rows: gpd.GeoDataFrame, rng: np.random.Generator) -> gpd.GeoDataFrame:
    """Source ids and the traffic attributes: lanes, speed, one-way, capacity, surface."""
    rows = rows.reset_index(drop=True)
    rows = rows.astype({"bridge": bool, "tunnel": bool, "through": bool})
    road_class = rows["road_class"]
    # A street keeps its lanes along its length; its service-lane pieces have their own.
    line_class = rows.groupby("line")["road_class"].agg(lambda c: min(c, key=CLASSES.index))
    line_lanes = pd.Series([_draw_lanes(c, rng) for c in line_class], index=line_class.index)
    line_oneway = pd.Series(rng.random(len(line_class)) < 0.1, index=line_class.index)
    lanes = np.array(rows["line"].map(line_lanes), dtype=int)
    service = (road_class == "service").to_numpy()
    lanes[service] = rng.choice(LANES["service"][0], service.sum(), p=LANES["service"][1])
    residential = (road_class == "residential") & rows["line"].map(line_oneway)
    rows["source_id"] = ids("r", len(rows))
    rows["lanes"] = lanes
    rows["max_speed_kmh"] = road_class.map(SPEED_KMH)
    rows["oneway"] = np.where(service, lanes == 1, residential.to_numpy(bool))
    rows["capacity_vph"] = lanes * road_class.map(LANE_CAPACITY).to_numpy()
    rows["surface"] = np.where(service & (rng.random(len(rows)) < 0.4), "concrete", "asphalt")
    return rows


def _draw_lanes(road_class: str, rng: np.random.Generator) -> int:
    choices, weights = LANES[road_class]
    return int(rng.choice(choices, p=weights))


def carriageways(
    rows: gpd.GeoDataFrame, real: RealData, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Street surfaces (the generated streets but bridges, and the real roads) and how far
    each lies below the plots beside it."""
    ground = rows[~rows["bridge"]]
    polygons = np.concatenate(
        [
            shapely.buffer(
                ground.geometry.values,
                ground["lanes"].to_numpy(float) * 3.5 / 2 + 1.0,
                cap_style="flat",
            ),
            shapely.buffer(real.roads.geometry, real.roads.half_width + 1.0, cap_style="flat"),
        ]
    )
    return polygons, rng.uniform(0.2, 0.4, len(polygons))
