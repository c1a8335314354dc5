"""Structures (bridges, underpasses), network assets and sensors along the generated streets."""

from __future__ import annotations

from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from cim.demo import names
from cim.demo.frame import CRS, Extent, ids
from cim.demo.streets import ARTERIAL
from cim.demo.terrain import Grid, Surface, Trench
from cim.demo.water import WaterBody

LIGHT_SPACING = 35.0  # m between street lights on one side
DECK_THICKNESS = (1.0, 1.4)  # m, bridge decks over underpasses and roads
KM2_PER_ASSET = {
    ("gas", "pressure_regulator"): 0.8,
    ("power", "substation_10kv"): 0.6,
    ("power", "substation_110kv"): 8.0,
}
KM2_PER_RAIN_GAUGE = 6.0
TRAFFIC_COUNTER_SPACING = 1200.0  # m of arterial per counter


def structures_layer(
    roads: gpd.GeoDataFrame,
    water: Sequence[WaterBody],
    surface: Surface,
    rng: np.random.Generator,
) -> tuple[gpd.GeoDataFrame, list[Trench]]:
    """Bridges and underpasses, and the trenches the underpasses cut into the terrain.

    ``low_point_elevation`` of underpasses is filled in from the DEM by :func:`settle`.
    """
    rows = roads[roads["bridge"] | roads["tunnel"]]
    n = len(rows)
    mid = shapely.line_interpolate_point(rows.geometry.values, 0.5, normalized=True)
    grade = surface.at(shapely.get_x(mid), shapely.get_y(mid))
    levels = {w.name: w.normal_level for w in water}
    over_water = rows["crosses"].isin(levels).to_numpy()
    underpass = rows["tunnel"].to_numpy(bool)
    thickness = rng.uniform(*DECK_THICKNESS, n)
    clearance = np.where(
        underpass,
        rng.uniform(4.5, 5.0, n),
        np.where(over_water, rng.uniform(3.5, 6.0, n), rng.uniform(5.0, 5.5, n)),
    )
    base = np.where(over_water, rows["crosses"].map(levels).fillna(0).to_numpy(float), grade)
    road, crossed = rows["name"].to_numpy(str), rows["crosses"].to_numpy(str)
    layer = gpd.GeoDataFrame(
        {
            "source_id": ids("s", n),
            "name": np.where(
                underpass,
                np.char.add(np.char.add(road, "下穿"), np.char.add(crossed, "通道")),
                np.char.add(np.char.add(road, "跨"), np.char.add(crossed, "桥")),
            ),
            "kind": np.where(underpass, "underpass", "bridge"),
            "road_id": rows["source_id"].to_numpy(),
            "clearance_m": np.round(clearance, 1),
            # An underpass's deck is the road it passes under, at grade.
            "deck_elevation": np.round(np.where(underpass, grade, base + clearance + thickness), 2),
            "low_point_elevation": np.nan,
            "length_m": np.round(shapely.length(rows.geometry.values), 1),
        },
        geometry=rows.geometry.values,
        crs=CRS,
    )
    trenches = [
        Trench(
            line=line,
            depth=float(c + t),
            half_width=float(lanes * 3.5 / 2 + 1.0),
            ramp=float(rng.uniform(70.0, 110.0)),
        )
        for line, c, t, lanes in zip(
            rows.geometry.values[underpass],
            clearance[underpass],
            thickness[underpass],
            rows["lanes"].to_numpy()[underpass],
            strict=True,
        )
    ]
    return layer, trenches


def settle(structures: gpd.GeoDataFrame, grid: Grid, dem: np.ndarray) -> None:
    """Underpass low points from the finished DEM (the lowest cell along the road)."""
    underpass = (structures["kind"] == "underpass").to_numpy()
    lines = shapely.segmentize(structures.geometry.values[underpass], grid.cell / 2)
    lows = [grid.sample(dem, *shapely.get_coordinates(line).T).min() for line in lines]
    structures.loc[underpass, "low_point_elevation"] = np.round(lows, 2)


def assets_layer(
    roads: gpd.GeoDataFrame, blocks: gpd.GeoDataFrame, extent: Extent, rng: np.random.Generator
) -> gpd.GeoDataFrame:
    lights = _street_lights(roads, rng)
    plants = _plants(blocks, extent, rng)
    layer = pd.concat([lights, plants], ignore_index=True)
    layer.insert(0, "source_id", ids("as", len(layer)))
    return gpd.GeoDataFrame(layer, crs=CRS)


def _street_lights(roads: gpd.GeoDataFrame, rng: np.random.Generator) -> gpd.GeoDataFrame:
    """A light every 35 m beside the carriageway; on arterials on both sides, staggered."""
    geoms = roads.geometry.values
    length = shapely.length(geoms)
    count = np.floor(length / LIGHT_SPACING).astype(int)
    row = np.repeat(np.arange(len(roads)), count)
    k = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    at = shapely.line_interpolate_point(geoms[row], (k + 0.5) / count[row], normalized=True)
    start = shapely.get_coordinates(shapely.get_point(geoms, 0))
    end = shapely.get_coordinates(shapely.get_point(geoms, -1))
    chord = end - start  # connectors bend a little: the chord is direction enough
    direction = chord / np.maximum(np.linalg.norm(chord, axis=1), 1e-9)[:, None]
    normal = np.column_stack([-direction[:, 1], direction[:, 0]])[row]
    both_sides = roads["road_class"].isin(ARTERIAL).to_numpy()[row]
    side = np.where(both_sides & (k % 2 == 1), -1.0, 1.0)
    offset = (roads["lanes"].to_numpy(float)[row] * 3.5 / 2 + 1.5) * side
    xy = shapely.get_coordinates(at) + normal * offset[:, None]
    n = row.size
    return gpd.GeoDataFrame(
        {
            "name": None,
            "asset_type": "lighting",
            "subtype": "street_light",
            "status": np.where(rng.random(n) < 0.01, "fault", "in_service"),
        },
        geometry=shapely.points(xy),
        crs=CRS,
    )


def _plants(blocks: gpd.GeoDataFrame, extent: Extent, rng: np.random.Generator) -> gpd.GeoDataFrame:
    """Gas regulators and substations in plot corners, inside the setback (clear of buildings)."""
    regular = np.nonzero(blocks["regular"].to_numpy(bool))[0]
    parts = []
    for (asset_type, subtype), km2 in KM2_PER_ASSET.items():
        n = min(max(1, round(extent.area_km2 / km2)), regular.size)
        plots = rng.choice(regular, n, replace=False)
        x0, y0, x1, y1 = shapely.bounds(blocks.geometry.values[plots]).T
        east, north = rng.random(n) < 0.5, rng.random(n) < 0.5
        x, y = np.where(east, x1 - 3.0, x0 + 3.0), np.where(north, y1 - 3.0, y0 + 3.0)
        label = {
            "pressure_regulator": "调压站",
            "substation_10kv": "10kV开闭所",
            "substation_110kv": "110kV变电站",
        }[subtype]
        parts.append(
            gpd.GeoDataFrame(
                {
                    "name": np.char.add(names.words(rng, n), label),
                    "asset_type": asset_type,
                    "subtype": subtype,
                    "status": np.where(rng.random(n) < 0.03, "maintenance", "in_service"),
                },
                geometry=shapely.points(x, y),
                crs=CRS,
            )
        )
    return gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), crs=CRS)


def sensors_layer(
    roads: gpd.GeoDataFrame,
    water: gpd.GeoDataFrame,
    structures: gpd.GeoDataFrame,
    extent: Extent,
    rng: np.random.Generator,
) -> gpd.GeoDataFrame:
    """Rain gauges, water levels at lakes and underpasses, traffic counters, bridge monitors."""
    rain = _rain_gauges(roads, extent, rng)

    lake_polygons = shapely.get_geometry(water.geometry.values, 0)
    shore = shapely.get_point(shapely.get_exterior_ring(lake_polygons), 0)
    lakes = _sensors(
        shore,
        "water_level",
        "m a.s.l.",
        water["source_id"].to_numpy(),
        (water["name"] + "水位站").to_list(),
    )

    underpass = structures[structures["kind"] == "underpass"]
    ponding = _midway(underpass, "water_level", "m", "积水监测")

    arterial = roads[roads["road_class"].isin(ARTERIAL) & ~roads["bridge"] & ~roads["tunnel"]]
    length = shapely.length(arterial.geometry.values)
    # Every TRAFFIC_COUNTER_SPACING metres of arterial, on the piece where the mark falls.
    marks = np.unique(
        np.searchsorted(
            np.cumsum(length),
            np.arange(TRAFFIC_COUNTER_SPACING / 2, length.sum(), TRAFFIC_COUNTER_SPACING),
        )
    )
    counted = arterial.iloc[marks[marks < len(arterial)]]
    traffic = _midway(counted, "traffic_counter", "veh/h", "车流检测")
    bridges = structures[structures["kind"] == "bridge"]
    strain = _midway(bridges, "bridge_monitor", "με", "健康监测")

    layer = pd.concat([rain, lakes, ponding, traffic, strain], ignore_index=True)
    n = len(layer)
    # A few sensors are down; the first of each kind always reports.
    first = ~layer["kind"].duplicated().to_numpy()
    status = rng.choice(["active", "maintenance", "offline"], p=[0.94, 0.03, 0.03], size=n)
    layer["status"] = np.where(first, "active", status)
    layer.insert(0, "source_id", ids("sn", n))
    return gpd.GeoDataFrame(layer, crs=CRS)


def _midway(lines: gpd.GeoDataFrame, kind: str, unit: str, suffix: str) -> pd.DataFrame:
    """One sensor halfway along each line, watching it and named after it."""
    return _sensors(
        shapely.line_interpolate_point(lines.geometry.values, 0.5, normalized=True),
        kind,
        unit,
        lines["source_id"].to_numpy(),
        (lines["name"] + suffix).to_list(),
    )


def _rain_gauges(
    roads: gpd.GeoDataFrame, extent: Extent, rng: np.random.Generator
) -> gpd.GeoDataFrame:
    """Gauges spread over a coarse grid of the district, each by the road nearest its spot."""
    n = max(3, round(extent.area_km2 / KM2_PER_RAIN_GAUGE))
    cols = int(np.ceil(np.sqrt(n * extent.width / extent.height)))
    rows = int(np.ceil(n / cols))
    cell = np.arange(n)
    spot = shapely.points(
        extent.x0 + (cell % cols + rng.uniform(0.2, 0.8, n)) * extent.width / cols,
        extent.y0 + (cell // cols + rng.uniform(0.2, 0.8, n)) * extent.height / rows,
    )
    near = shapely.STRtree(roads.geometry.values).query_nearest(spot, all_matches=False)[1]
    street = roads.geometry.values[near]
    at = shapely.line_interpolate_point(street, shapely.line_locate_point(street, spot))
    return _sensors(at, "rain_gauge", "mm/h", None, [f"雨量站{i + 1:02d}" for i in cell])


def _sensors(
    points: np.ndarray, kind: str, unit: str, targets: np.ndarray | None, labels: list[str]
) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"name": labels, "kind": kind, "unit": unit, "target_id": targets},
        geometry=points,
        crs=CRS,
    )
