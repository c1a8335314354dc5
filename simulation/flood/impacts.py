"""What a flood does: roads by depth class, buildings with their floors under water, hotspots.

Depths are read from the run's maximum-depth grid on ground cells only: a building's own
(raised) cells hold roof water and a water body's cells hold the lake, so neither counts.

- Roads: the deepest water along the centre line (sampled every half cell). Classes after
  GB 50014-2021 (a lane under more than 15 cm is waterlogged) and Pregnolato et al. (2017:
  cars stop at 30 cm): ``passable`` ≤ 0.15 m < ``with_care`` ≤ 0.30 m < ``closed``.
- Buildings: the deepest water against the footprint (sampled on a ring 0.75 cell, at least
  1 m, outside it); affected above ``WET_M``, a door step (GB 50014 wants ground floors dry).
  Floors affected: every storey the water reaches, storeys of height / floors (or
  ``STOREY_M``).
- Underpasses: the depth at the low point (the lowest ground cell along the structure) and
  the class of a road at that depth.
- Flooded volume: the maximum depths summed over ground deeper than ``WITH_CARE_M``, a
  figure to compare scenarios and measures by.
- Hotspots: connected ground (4-neighbours) deeper than ``HOTSPOT_M`` at the peak, of at
  least ``HOTSPOT_MIN_M2``, ranked by the volume they hold. Affected people: residential
  floor area (footprint × floors) of the affected buildings beside a hotspot divided by
  ``M2_PER_PERSON``, about the urban floor area per person in China's 2020 census (high
  30s m²); set it per city.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from rasterio.features import shapes
from scipy import ndimage
from shapely.geometry import shape as to_shape

from simulation.flood.domain import Cover, Domain

WITH_CARE_M = 0.15
CLOSED_M = 0.30
WET_M = 0.15
STOREY_M = 3.0
HOTSPOT_M = 0.15
HOTSPOT_MIN_M2 = 100.0
M2_PER_PERSON = 40.0


@dataclass(frozen=True)
class Impacts:
    roads: pd.DataFrame  # vid, road_id, max_depth_m, flood_class, flooded_length_m
    buildings: pd.DataFrame  # vid, building_id, depth_m, floors_affected, people, hotspot rank
    hotspots: gpd.GeoDataFrame  # rank, max_depth_m, area_m2, volume_m3, buildings, people
    underpasses: pd.DataFrame  # vid, structure_id, name, max_depth_m, flood_class
    flooded_volume_m3: float


def road_class(depth: np.ndarray) -> np.ndarray:
    return np.where(depth > CLOSED_M, "closed",
                    np.where(depth > WITH_CARE_M, "with_care", "passable"))


def _sample(domain: Domain, depth: np.ndarray, lines: np.ndarray, ground: np.ndarray,
            step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Points every ``step`` metres along ``lines``: their line index, depth, row, column
    (depth NaN off the ground cells)."""
    points, index = shapely.get_coordinates(shapely.segmentize(lines, step), return_index=True)
    rows, cols, on_grid = domain.cells(points[:, 0], points[:, 1])
    found = np.where(on_grid & ground[rows, cols], depth[rows, cols], np.nan)
    return index, found, rows, cols


def _max_by(index: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, -np.inf)
    finite = np.isfinite(values)
    np.maximum.at(out, index[finite], values[finite])
    return np.where(np.isfinite(out), out, 0.0)


def assess(domain: Domain, max_depth: np.ndarray) -> Impacts:
    """Roads, buildings and hotspots of a run's maximum depths (metres, the domain's grid)."""
    peak = np.where(domain.grid.active, np.maximum(max_depth, 0.0), 0.0)
    ground = domain.grid.active & (domain.cover != Cover.building) & (domain.cover != Cover.water)
    cell = domain.grid.dx

    roads = domain.roads
    index, depth, _, _ = _sample(domain, peak, roads.geometry.to_numpy(), ground, cell / 2)
    road_depth = _max_by(index, depth, len(roads))
    wet = np.bincount(index, weights=np.nan_to_num(depth) > WITH_CARE_M, minlength=len(roads))
    samples = np.bincount(index, minlength=len(roads))
    length = roads.geometry.length.to_numpy()
    road_rows = pd.DataFrame({
        "vid": roads["vid"].to_numpy(), "road_id": roads["id"].to_numpy(),
        "max_depth_m": road_depth, "flood_class": road_class(road_depth),
        "flooded_length_m": np.where(samples > 0, wet / np.maximum(samples, 1), 0.0) * length})

    labels, count = ndimage.label(ground & (peak > HOTSPOT_M))
    area = np.bincount(labels.ravel(), minlength=count + 1) * domain.grid.cell_area
    keep = area >= HOTSPOT_MIN_M2
    keep[0] = False
    labels = np.where(keep[labels], labels, 0)

    buildings = domain.buildings
    rings = shapely.boundary(
        buildings.geometry.buffer(max(cell * 0.75, 1.0), quad_segs=2).to_numpy())
    index, depth, rows, cols = _sample(domain, peak, rings, ground, cell / 2)
    building_depth = _max_by(index, depth, len(buildings))
    # The hotspot beside each building: the one under its deepest sampled point.
    order = np.lexsort((np.nan_to_num(depth, nan=-1.0), index))
    last = np.r_[index[order][1:] != index[order][:-1], True] if len(order) else order
    hotspot = np.zeros(len(buildings), np.int64)
    hotspot[index[order][last]] = labels[rows[order][last], cols[order][last]]
    height = buildings["height"].to_numpy(dtype=float, na_value=STOREY_M)
    floors = buildings["floors"].to_numpy(dtype=float, na_value=np.nan)
    floors = np.where(np.isfinite(floors) & (floors > 0), floors,
                      np.maximum(1.0, np.round(height / STOREY_M)))
    storey = np.where(height > 0, height / floors, STOREY_M)
    affected = building_depth > WET_M
    floors_affected = np.where(affected, np.minimum(floors, np.ceil(building_depth / storey)), 0)
    residential = buildings["use"].eq("residential").to_numpy()
    people = np.where(affected & residential,
                      buildings.geometry.area.to_numpy() * floors / M2_PER_PERSON, 0.0)
    building_rows = pd.DataFrame({
        "vid": buildings["vid"].to_numpy(), "building_id": buildings["id"].to_numpy(),
        "depth_m": building_depth, "floors_affected": floors_affected.astype(int),
        "people": people, "hotspot": np.where(affected, hotspot, 0)})[affected]

    hotspots = _hotspots(domain, peak, labels, building_rows)
    rank = dict(zip(hotspots["label"], hotspots["rank"], strict=True))
    building_rows["hotspot"] = building_rows["hotspot"].map(rank).astype("Int64")
    return Impacts(road_rows, building_rows.reset_index(drop=True),
                   hotspots.drop(columns="label"), _underpasses(domain, peak, ground),
                   float(peak[ground & (peak > WITH_CARE_M)].sum() * domain.grid.cell_area))


def _underpasses(domain: Domain, depth: np.ndarray, ground: np.ndarray) -> pd.DataFrame:
    """Each underpass's depth at its lowest ground cell (0 where none is on the grid)."""
    found = domain.underpasses
    index, _, rows, cols = _sample(domain, depth, found.geometry.to_numpy(), ground,
                                   domain.grid.dx / 2)
    on = ground[rows, cols] & domain.grid.active[rows, cols]
    bed = np.where(on, domain.grid.z[rows, cols], np.inf)
    lowest = np.full(len(found), -1)
    order = np.lexsort((bed, index))  # by underpass, then bed: the first of each is lowest
    first = np.r_[True, index[order][1:] != index[order][:-1]] if len(order) else order
    picked = order[first]
    picked = picked[np.isfinite(bed[picked])]
    lowest[index[picked]] = picked
    low = np.where(lowest >= 0, depth[rows[lowest], cols[lowest]], 0.0) if len(found) \
        else np.zeros(0)
    return pd.DataFrame({
        "vid": found["vid"].to_numpy(), "structure_id": found["id"].to_numpy(),
        "name": found["name"].to_numpy(), "max_depth_m": low, "flood_class": road_class(low)})


def _hotspots(domain: Domain, depth: np.ndarray, labels: np.ndarray, buildings: pd.DataFrame
              ) -> gpd.GeoDataFrame:
    columns = ["rank", "label", "max_depth_m", "area_m2", "volume_m3", "buildings", "people"]
    found = np.unique(labels[labels > 0])
    if not len(found):
        return gpd.GeoDataFrame(columns=[*columns, "geometry"], geometry="geometry",
                                crs=domain.crs)
    volume = ndimage.sum(depth, labels, found) * domain.grid.cell_area
    parts = [(to_shape(g), int(v)) for g, v in
             shapes(labels.astype(np.int32), mask=labels > 0, transform=domain.transform)]
    polygons = pd.Series([p for p, _ in parts]).groupby([v for _, v in parts]).agg(
        lambda ps: shapely.MultiPolygon(list(ps)))
    per = buildings[buildings["hotspot"] > 0].groupby("hotspot")
    frame = gpd.GeoDataFrame({
        "label": found,
        "max_depth_m": ndimage.maximum(depth, labels, found),
        "area_m2": ndimage.sum(np.ones_like(depth), labels, found) * domain.grid.cell_area,
        "volume_m3": volume,
        "buildings": per.size().reindex(found, fill_value=0).to_numpy(),
        "people": per["people"].sum().reindex(found, fill_value=0.0).to_numpy(),
        "geometry": polygons.reindex(found).to_numpy(),
    }, geometry="geometry", crs=domain.crs)
    frame = frame.sort_values("volume_m3", ascending=False, kind="stable")
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame.reset_index(drop=True)[[*columns, "geometry"]]
