"""The flood domain of an area of the city model: bed, land cover, roughness, losses, water,
inlets, from the database.

- Bed: the registered DEM (``cim.dems``, a COG under the storage root) resampled with
  rasterio to the cell size in the city's metric CRS (bilinear when refining, the mean when
  coarsening); its nodata cells are walls.
- Buildings (current, standing on the ground) raise their cells by their height, at most
  ``BUILDING_RAISE_M``: enough to stand above any flood, and roof rain still runs off them.
- Land cover, by priority building > water > road > other, sets Manning's n and the share
  of the Horton infiltration capacity a cell takes (the tables below). Roads are their
  centre lines buffered by half their width (lanes × 3.5 m, or a width by class); bridges and
  tunnels do not cover the ground. "Other" ground takes its catchment's pervious share
  (1 − ``impervious_fraction``), or ``DEFAULT_PERVIOUS`` outside any catchment.
- Standing water bodies (all kinds but ``FLOWING_KINDS``) are level pools
  (:mod:`simulation.flood.pools`): their surface stays level, so their depth does not set
  the grid's time step (√(g h)). Those with a normal level start full to it, with the
  ground below that level within ``SHORE_M`` of their outline; the others start empty (the
  run's log says how many).
- Closed depressions of the bed deeper than ``DEPRESSION_MIN_DEPTH_M`` and no larger than
  ``DEPRESSION_MAX_AREA_M2`` are level pools (their cells ``DEPRESSION_POOL_DEPTH_M`` or
  more below the spill level; the margins join as they flood): water ponding in a sag would
  otherwise set the step.
- Underpasses' trenches are level pools too: the closed depression of the bed (filled by
  morphological reconstruction within ``TRENCH_REACH_M`` of the underpass) around the
  lowest cell under its road, deeper than ``TRENCH_MIN_DEPTH_M``. Water standing several
  metres deep there would otherwise set the step; the minute it takes to run down a ramp
  is not modelled.
- Drainage inlets (kinds ``inlet`` and ``manhole``) on their cells, in the pipe networks of
  :mod:`simulation.flood.drainage`: each holds its pipes full (cross-section × length) and
  its manholes' and inlets' shafts (``SHAFT_M2`` × (ground − invert), where both are known).

| cover | Manning's n | infiltration share |
| --- | --- | --- |
| other (plots, green, open ground) | 0.050 | catchment's pervious share, else 0.5 |
| road | 0.016 | 0 |
| building (roof) | 0.015 | 0 |
| water | 0.030 | 0 |

Horton capacity of pervious ground: 60 mm/h falling to 10 mm/h at 2 per hour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

import geopandas as gpd
import numpy as np
from affine import Affine
from rasterio import open as open_raster
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.features import rasterize
from rasterio.transform import rowcol
from rasterio.warp import reproject, transform_bounds
from scipy import ndimage
from skimage.morphology import reconstruction
from sqlalchemy import Connection, text

from simulation.flood.drainage import (
    DEFAULT_CAPACITY_M3S,
    INLET_KINDS,
    MIN_SLOPE,
    OPENING_M2,
    SHAFT_M2,
    Drainage,
    Network,
    full_flow_m3s,
)
from simulation.flood.errors import FloodInputError
from simulation.flood.solver import Grid, Infiltration

STORAGE_SRID = 4326
MAX_CELLS = 20_000_000
"""About 2 GB of solver arrays in float64: larger grids are refused before anything runs."""
BUILDING_RAISE_M = 10.0
FLOWING_KINDS = ("river", "stream", "canal", "ditch", "drain")
"""Water body kinds whose surface slopes: ordinary cells, not level pools."""
SHORE_M = 20.0
"""How far beyond a water body's outline the ground below its normal level counts as its own
(outlines and DEM basins disagree by a few cells: left out, those cells would start dry,
0.3 m below the lake beside them, and take the first minutes' surge)."""
TRENCH_REACH_M = 150.0
TRENCH_MIN_DEPTH_M = 0.01
DEPRESSION_MIN_DEPTH_M = 1.0
"""A closed depression of the bed this deep at its lowest is a level pool: the 3 × 3 km demo
district's shortest steps came from 2.9 m of water in a 1.3 m deep sag of a road."""
DEPRESSION_POOL_DEPTH_M = 0.3
"""How far below its spill level a depression's cell lies to start in its pool (shallower
margins join it as they flood, at ``Options.pool_join_depth``)."""
DEPRESSION_MAX_AREA_M2 = 10_000.0
"""A larger depression stays ordinary cells: one level over it would move water across the
ridges between the basins nested in it at once (on the demo district a 19 ha one around an
underpass's trench held its lowest cell 2 m deeper after 30 minutes than the explicit
scheme, whose surface there still spanned 1 m after 2 hours: measured)."""
DEFAULT_PERVIOUS = 0.5
HORTON = Infiltration(60.0, final_mm_h=10.0, decay_per_h=2.0)
LANE_M = 3.5
ROAD_WIDTH_M = {"motorway": 24.0, "trunk": 20.0, "primary": 16.0, "secondary": 12.0,
                "tertiary": 9.0, "residential": 6.0, "living_street": 5.0, "service": 4.0}
OTHER_ROAD_WIDTH_M = 3.0
"""Footways, paths, cycleways and unknown classes."""
PIPE_MANNING = 0.013
NETWORK_MARGIN_DEG = 0.02
"""Pipes and nodes this far beyond the area are read too, so networks reach their outlets."""


class Cover(IntEnum):
    other = 0
    road = 1
    building = 2
    water = 3


MANNING = {Cover.other: 0.050, Cover.road: 0.016, Cover.building: 0.015, Cover.water: 0.030}


@dataclass(frozen=True)
class Bbox:
    """An area in longitude and latitude (EPSG:4326)."""

    west: float
    south: float
    east: float
    north: float

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.west, self.south, self.east, self.north)


@dataclass(frozen=True)
class DemRecord:
    id: str
    vid: int
    path: Path
    bbox: Bbox
    resolution: float


@dataclass
class Domain:
    """Everything a scenario run needs, on one grid in the city's metric CRS."""

    grid: Grid
    transform: Affine
    crs: int
    cover: np.ndarray  # Cover codes, uint8
    initial_depth: np.ndarray
    drainage: Drainage
    infiltration: Infiltration
    buildings: gpd.GeoDataFrame  # vid, id, use, floors, height; city CRS
    roads: gpd.GeoDataFrame  # vid, id, road_class; city CRS, bridges and tunnels left out
    underpasses: gpd.GeoDataFrame  # vid, id, name; city CRS (structures of kind underpass)
    dem: DemRecord
    bbox: Bbox
    notes: list[str] = field(default_factory=list)

    def cells(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return cells_of(self.transform, self.grid.active, x, y)


def cells_of(transform: Affine, active: np.ndarray, x: np.ndarray, y: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and whether each point (city CRS) falls on an active cell."""
    if len(x) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, bool)
    r, c = rowcol(transform, x, y)
    r, c = np.asarray(r, np.int64), np.asarray(c, np.int64)
    ny, nx = active.shape
    inside = (r >= 0) & (r < ny) & (c >= 0) & (c < nx)
    r, c = np.where(inside, r, 0), np.where(inside, c, 0)
    return r, c, inside & active[r, c]


def find_dem(conn: Connection, storage_root: Path, bbox: Bbox | None) -> DemRecord:
    """The current DEM covering most of the area (finest first); the first DEM without one."""
    if bbox is None:
        sql = ("SELECT id, vid, path, resolution, ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), "
               "ST_YMax(geom) FROM cim.dems WHERE valid_to IS NULL ORDER BY resolution, id "
               "LIMIT 1")
        row = conn.execute(text(sql)).first()
        if row is None:
            raise FloodInputError("no DEM is registered: import one first (cim import DEM.tif "
                                  "--layer dems, or cim demo load)")
    else:
        row = conn.execute(text(
            "SELECT id, vid, path, resolution, ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), "
            "ST_YMax(geom) FROM cim.dems, ST_MakeEnvelope(:w, :s, :e, :n, 4326) box "
            "WHERE valid_to IS NULL AND ST_Intersects(geom, box) "
            "ORDER BY ST_Area(ST_Intersection(geom, box)) DESC, resolution, id LIMIT 1"),
            dict(zip("wsen", bbox.as_tuple(), strict=True))).first()
        if row is None:
            raise FloodInputError(f"the area {list(bbox.as_tuple())} lies outside every "
                                  "registered DEM")
    return DemRecord(row[0], row[1], storage_root / row[2], Bbox(*row[4:8]), row[3])


def grid_frame(bbox: Bbox, cell: float, crs: int,
               within: tuple[float, float, float, float] | None = None
               ) -> tuple[Affine, int, int]:
    """A north-up grid of ``cell`` metres snapped to multiples of the cell, covering the area
    (cut to ``within``, bounds in ``crs``, so the domain's edges are the DEM's)."""
    x0, y0, x1, y1 = transform_bounds(CRS.from_epsg(STORAGE_SRID), CRS.from_epsg(crs),
                                      *bbox.as_tuple(), densify_pts=21)
    if within is not None:
        x0, y0 = max(x0, within[0]), max(y0, within[1])
        x1, y1 = min(x1, within[2]), min(y1, within[3])
    left, top = math.floor(x0 / cell) * cell, math.ceil(y1 / cell) * cell
    width = math.ceil((x1 - left) / cell - 1e-9)
    height = math.ceil((top - y0) / cell - 1e-9)
    return Affine(cell, 0.0, left, 0.0, -cell, top), width, height


def check_size(bbox: Bbox, cell: float, crs: int) -> int:
    _, width, height = grid_frame(bbox, cell, crs)
    cells = width * height
    if cells > MAX_CELLS:
        raise FloodInputError(f"{width} × {height} cells at {cell:g} m is more than "
                              f"{MAX_CELLS:,}: choose a smaller area or a larger cell")
    return cells


def _dem_bounds(dem: DemRecord, crs: int) -> tuple[float, float, float, float]:
    """The DEM's extent in the city's CRS (a cell inside, so no edge cell is half outside)."""
    try:
        with open_raster(dem.path) as src:
            left, bottom, right, top = transform_bounds(src.crs, CRS.from_epsg(crs), *src.bounds)
            inset = max(abs(src.res[0]), abs(src.res[1]))
    except RasterioIOError as exc:
        raise FloodInputError(f"the DEM {dem.id} cannot be read from {dem.path}: {exc}") from None
    return left + inset, bottom + inset, right - inset, top - inset


def _bed(dem: DemRecord, transform: Affine, shape: tuple[int, int], crs: int) -> np.ndarray:
    cell = transform.a
    bed = np.full(shape, np.nan)
    try:
        with open_raster(dem.path) as src:
            reproject(source=src.read(1, masked=True).filled(np.nan).astype(np.float64),
                      destination=bed, src_transform=src.transform, src_crs=src.crs,
                      src_nodata=np.nan, dst_transform=transform, dst_crs=CRS.from_epsg(crs),
                      dst_nodata=np.nan,
                      resampling=Resampling.bilinear if cell <= dem.resolution
                      else Resampling.average)
    except RasterioIOError as exc:
        raise FloodInputError(f"the DEM {dem.id} cannot be read from {dem.path}: {exc}") from None
    return bed


def _read(conn: Connection, sql: str, bbox: Bbox, crs: int, margin: float = 0.0
          ) -> gpd.GeoDataFrame:
    w, s, e, n = bbox.as_tuple()
    params = {"w": w - margin, "s": s - margin, "e": e + margin, "n": n + margin}
    frame = gpd.read_postgis(text(sql), conn, geom_col="geom", params=params,
                             crs=STORAGE_SRID)
    return frame.to_crs(crs)


_IN_AREA = "valid_to IS NULL AND geom && ST_MakeEnvelope(:w, :s, :e, :n, 4326)"


def burn(shapes: gpd.GeoSeries, values: np.ndarray | float, transform: Affine,
          shape: tuple[int, int], fill: float = 0.0) -> np.ndarray:
    if shapes.empty:
        return np.full(shape, fill)
    values = np.broadcast_to(np.asarray(values, float), (len(shapes),))
    pairs = [(g, v) for g, v in zip(shapes, values, strict=True) if g is not None]
    return rasterize(pairs, out_shape=shape, transform=transform, fill=fill,
                     dtype="float64") if pairs else np.full(shape, fill)


def _road_widths(roads: gpd.GeoDataFrame) -> np.ndarray:
    by_class = roads["road_class"].map(ROAD_WIDTH_M).fillna(OTHER_ROAD_WIDTH_M).to_numpy()
    lanes = roads["lanes"].to_numpy(dtype=float, na_value=np.nan)
    return np.where(np.isfinite(lanes) & (lanes > 0), lanes * LANE_M, by_class)


def _network(conn: Connection, bbox: Bbox, crs: int) -> tuple[gpd.GeoDataFrame, Network]:
    nodes = _read(conn, "SELECT id, kind, capacity_m3s, invert_elevation, ground_elevation, "
                  f"geom FROM cim.drainage_nodes "
                  f"WHERE {_IN_AREA} ORDER BY id", bbox, crs, NETWORK_MARGIN_DEG)
    pipes = _read(conn, "SELECT from_node, to_node, shape, diameter_m, width_m, height_m, "
                  "upstream_invert, downstream_invert, length_m, roughness, geom "
                  f"FROM cim.drainage_pipes WHERE {_IN_AREA}", bbox, crs, NETWORK_MARGIN_DEG)
    index = {node: k for k, node in enumerate(nodes["id"])}
    ends = pipes["from_node"].map(index), pipes["to_node"].map(index)
    pipes = pipes[ends[0].notna() & ends[1].notna()]
    circular = pipes["shape"].eq("circular").to_numpy()
    d = pipes["diameter_m"].to_numpy(dtype=float, na_value=np.nan)
    w = pipes["width_m"].to_numpy(dtype=float, na_value=np.nan)
    h = pipes["height_m"].to_numpy(dtype=float, na_value=np.nan)
    area = np.where(circular, np.pi * d**2 / 4, w * h)
    radius = np.where(circular, d / 4, w * h / (2 * (w + h)))
    length = pipes["length_m"].to_numpy(dtype=float, na_value=np.nan)
    length = np.where(np.isfinite(length) & (length > 0), length, pipes.geometry.length)
    drop = (pipes["upstream_invert"].to_numpy(dtype=float, na_value=np.nan)
            - pipes["downstream_invert"].to_numpy(dtype=float, na_value=np.nan))
    slope = np.nan_to_num(drop / np.maximum(length, 1e-6), nan=MIN_SLOPE)
    n = pipes["roughness"].to_numpy(dtype=float, na_value=np.nan)
    capacity = full_flow_m3s(area, radius, np.maximum(slope, MIN_SLOPE),
                             np.where(np.isfinite(n) & (n > 0), n, PIPE_MANNING))
    shaft = (nodes["ground_elevation"].to_numpy(dtype=float, na_value=np.nan)
             - nodes["invert_elevation"].to_numpy(dtype=float, na_value=np.nan))
    shafts = np.where(nodes["kind"].isin(INLET_KINDS).to_numpy(),
                      SHAFT_M2 * np.clip(np.nan_to_num(shaft, nan=0.0), 0.0, None), 0.0)
    network = Network(
        node_ids=nodes["id"].to_numpy(), node_kinds=nodes["kind"].to_numpy(),
        node_capacity=nodes["capacity_m3s"].to_numpy(dtype=float, na_value=np.nan),
        node_volume=shafts,
        pipe_from=pipes["from_node"].map(index).to_numpy(np.int64),
        pipe_to=pipes["to_node"].map(index).to_numpy(np.int64),
        pipe_capacity=np.nan_to_num(capacity, nan=0.0),
        pipe_volume=np.nan_to_num(area * length, nan=0.0))
    return nodes, network


def _drainage(conn: Connection, bbox: Bbox, crs: int, transform: Affine, grid: Grid,
              notes: list[str]) -> Drainage:
    nodes, network = _network(conn, bbox, crs)
    label, network_capacity, network_volume = network.components()
    kinds = nodes["kind"].to_numpy()
    rows, cols, on_grid = cells_of(transform, grid.active, nodes.geometry.x.to_numpy(),
                                   nodes.geometry.y.to_numpy())
    take = np.isin(kinds, INLET_KINDS) & on_grid
    default = np.array([DEFAULT_CAPACITY_M3S.get(k, 0.0) for k in kinds])
    given = network.node_capacity
    capacity = np.where(np.isfinite(given) & (given > 0), given, default)
    opening = np.array([OPENING_M2.get(k, 0.0) for k in kinds])
    drainage = Drainage(rows[take], cols[take], capacity[take], opening[take], label[take],
                        network_capacity, grid.cell_area, network_volume_m3=network_volume)
    notes.append(
        f"drainage: {drainage.inlets} inlets and manholes in {len(np.unique(label[take]))} "
        f"networks, {len(network.pipe_from)} pipes holding {drainage.volume_m3:.0f} m³; "
        f"together they take at most {drainage.capacity_m3s:.1f} m³/s")
    return drainage


def build_domain(conn: Connection, storage_root: Path, crs: int, cell: float,
                 bbox: Bbox | None = None) -> Domain:
    """Read the area's city model into a flood domain of ``cell`` metres."""
    if not 1.0 <= cell <= 10.0:
        raise FloodInputError(f"cell size {cell:g} m is outside 1-10 m")
    dem = find_dem(conn, storage_root, bbox)
    bbox = bbox or dem.bbox
    check_size(bbox, cell, crs)
    transform, width, height = grid_frame(bbox, cell, crs, _dem_bounds(dem, crs))
    if width < 2 or height < 2:
        raise FloodInputError(f"the area {list(bbox.as_tuple())} overlaps the DEM {dem.id} "
                              "by less than two cells")
    shape = (height, width)
    bed = _bed(dem, transform, shape, crs)
    if not np.isfinite(bed).any():
        raise FloodInputError(f"the area {list(bbox.as_tuple())} has no DEM cells")
    notes = [f"DEM {dem.id} ({dem.resolution:g} m) resampled to {width} × {height} cells of "
             f"{cell:g} m in EPSG:{crs}"]

    water = _read(conn, "SELECT id, kind, normal_level, geom FROM cim.water_bodies "
                  f"WHERE {_IN_AREA}", bbox, crs)
    roads = _read(conn, "SELECT vid, id, road_class, lanes, bridge, tunnel, geom "
                  f"FROM cim.roads WHERE {_IN_AREA} ORDER BY id", bbox, crs)
    roads = roads[~(roads["bridge"] | roads["tunnel"])].reset_index(drop=True)
    buildings = _read(conn, "SELECT vid, id, use, floors, height, geom FROM cim.buildings "
                      f"WHERE {_IN_AREA} AND coalesce(min_height, 0) < 1 ORDER BY id", bbox, crs)
    underpasses = _read(conn, "SELECT vid, id, name, geom FROM cim.structures "
                        f"WHERE {_IN_AREA} AND kind = 'underpass' ORDER BY id", bbox, crs)
    catchments = _read(conn, "SELECT impervious_fraction, geom FROM cim.catchments "
                       f"WHERE {_IN_AREA} AND impervious_fraction IS NOT NULL", bbox, crs)

    cover = np.full(shape, Cover.other, np.uint8)
    road_area = burn(roads.geometry.buffer(_road_widths(roads) / 2, cap_style="flat"), 1.0,
                      transform, shape)
    cover[road_area > 0] = Cover.road
    water_area = burn(water.geometry, 1.0, transform, shape)
    cover[water_area > 0] = Cover.water
    leveled = water[water["normal_level"].notna()]
    level = burn(leveled.geometry, leveled["normal_level"].to_numpy(float), transform, shape,
                  fill=np.nan)
    raised = burn(buildings.geometry, np.minimum(
        buildings["height"].to_numpy(dtype=float, na_value=3.0), BUILDING_RAISE_M),
        transform, shape)
    cover[raised > 0] = Cover.building

    bed = bed + raised
    level = np.where(cover == Cover.water, level, np.nan)
    shore = _shore(bed, level, math.ceil(SHORE_M / cell))
    cover[shore] = Cover.water
    has_level = np.isfinite(level) & np.isfinite(bed)
    initial = np.where(has_level, np.maximum(level - bed, 0.0), 0.0)
    standing = water[~water["kind"].isin(FLOWING_KINDS)]
    pool = ((burn(standing.geometry, 1.0, transform, shape) > 0) | shore) & (cover == Cover.water)
    pool |= trenches(bed, underpasses.geometry, transform)
    sags = depressions(bed, cell * cell)
    pool |= sags
    notes.append(f"{len(buildings)} buildings raised (up to {BUILDING_RAISE_M:g} m), "
                 f"{len(roads)} roads, {len(underpasses)} underpasses, {len(water)} water "
                 f"bodies, {ndimage.label(sags)[1]} closed depressions deeper than "
                 f"{DEPRESSION_MIN_DEPTH_M:g} m (up to {DEPRESSION_MAX_AREA_M2:g} m²) as level "
                 "pools")
    if len(leveled) < len(water):
        notes.append(f"{len(water) - len(leveled)} water bodies have no normal level: they "
                     "start empty")

    manning = np.choose(cover, [MANNING[c] for c in Cover])
    pervious_other = burn(catchments.geometry,
                           1.0 - catchments["impervious_fraction"].to_numpy(float).clip(0, 1),
                           transform, shape, fill=DEFAULT_PERVIOUS)
    pervious = np.where(cover == Cover.other, pervious_other, 0.0)
    grid = Grid(bed, cell, cell, manning, pervious=pervious, pool=pool)
    drainage = _drainage(conn, bbox, crs, transform, grid, notes)
    return Domain(grid=grid, transform=transform, crs=crs, cover=cover,
                  initial_depth=np.where(grid.active, initial, 0.0), drainage=drainage,
                  infiltration=HORTON, buildings=buildings, roads=roads,
                  underpasses=underpasses, dem=dem, bbox=bbox, notes=notes)


def trenches(bed: np.ndarray, lines: gpd.GeoSeries, transform: Affine) -> np.ndarray:
    """The cells of the closed depressions under the underpasses' roads (``lines``, city CRS)."""
    pool = np.zeros(bed.shape, bool)
    for line in lines:
        if line is None or line.is_empty:
            continue
        x0, y0, x1, y1 = line.buffer(TRENCH_REACH_M).bounds
        (r0, r1), (c0, c1) = rowcol(transform, [x0, x1], [y1, y0])
        r0, c0 = max(int(r0), 0), max(int(c0), 0)
        r1, c1 = min(int(r1) + 1, bed.shape[0]), min(int(c1) + 1, bed.shape[1])
        if r1 - r0 < 3 or c1 - c0 < 3:
            continue
        window = bed[r0:r1, c0:c1]
        ground, depth = _below_spill(window)
        under = rasterize([(line, 1)], out_shape=window.shape, all_touched=True,
                          transform=transform @ Affine.translation(c0, r0), dtype="uint8") > 0
        if not under.any():
            continue
        labels, _ = ndimage.label(depth > TRENCH_MIN_DEPTH_M)
        low = np.unravel_index(np.argmin(np.where(under, ground, np.inf)), ground.shape)
        if labels[low]:
            pool[r0:r1, c0:c1] |= labels == labels[low]
    return pool


def depressions(bed: np.ndarray, cell_area_m2: float,
                min_depth: float = DEPRESSION_MIN_DEPTH_M,
                pool_depth: float = DEPRESSION_POOL_DEPTH_M,
                max_area_m2: float = DEPRESSION_MAX_AREA_M2) -> np.ndarray:
    """The cells of the bed's closed depressions at least ``min_depth`` deep at their lowest
    that lie ``pool_depth`` or more below their spill level, in groups of at most
    ``max_area_m2``.

    The spill levels are the bed filled from the grid's rim (the scenario's edges are free
    outfalls).
    """
    depth = _below_spill(bed)[1]
    labels, count = ndimage.label(depth >= pool_depth)
    if count == 0:
        return np.zeros(bed.shape, bool)
    deepest = ndimage.maximum(depth, labels, np.arange(1, count + 1))
    area = np.bincount(labels.ravel(), minlength=count + 1)[1:] * cell_area_m2
    keep = np.concatenate([[False], (deepest >= min_depth) & (area <= max_area_m2)])
    return keep[labels] & np.isfinite(bed)


def _below_spill(bed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ground (NaN cells, walls, as the highest ground) and each cell's depth below its
    spill level: the ground filled by morphological reconstruction from the array's rim
    inwards, so what stays below the fill lies in a closed depression."""
    ground = np.where(np.isfinite(bed), bed, np.nanmax(bed))
    seed = ground.copy()
    seed[1:-1, 1:-1] = ground.max()
    return ground, reconstruction(seed, ground, method="erosion") - ground


def _shore(bed: np.ndarray, level: np.ndarray, reach: int) -> np.ndarray:
    """Cells within ``reach`` cells of a water body (``level`` finite, updated in place with
    its level) whose bed lies below that level, reached through such cells."""
    shore = np.zeros(bed.shape, bool)
    for _ in range(reach):
        grown = False
        for axis, shift in ((0, 1), (0, -1), (1, 1), (1, -1)):
            beside = np.roll(level, shift, axis=axis)
            edge = [slice(None)] * 2
            edge[axis] = 0 if shift == 1 else -1
            beside[tuple(edge)] = np.nan  # no wrapping round the grid
            take = np.isnan(level) & np.isfinite(beside) & (bed < beside)
            if take.any():
                level[take] = beside[take]
                shore |= take
                grown = True
        if not grown:
            break
    return shore
