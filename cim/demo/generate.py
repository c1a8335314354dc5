"""The demo city generator: a seeded, plausible district of Wuhan around Optics Valley (光谷).

No open district-scale building set or DEM exists for Wuhan, so this makes one, joined to
the real OpenStreetMap data shipped in ``data/wuhan``: its streets end on the real roads
(which are loaded separately, not copied), its terrain follows their real elevations, and
it keeps clear of the real building sample near Optics Valley Square. Same seed and same
arguments give the same attributes and geometries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import shapely

from cim.demo.admin import addresses, admin_units
from cim.demo.blocks import build_blocks
from cim.demo.buildings import generate_buildings
from cim.demo.drainage import build_drainage
from cim.demo.frame import (
    DEFAULT_AREA_KM2,
    Extent,
    RealData,
    district_extent,
    ids,
    load_real_data,
    rng_for,
)
from cim.demo.infrastructure import assets_layer, sensors_layer, settle, structures_layer
from cim.demo.observations import generate_observations
from cim.demo.streets import StreetPlan, carriageways, cross_water, finish_roads, plan_streets
from cim.demo.terrain import Grid, Surface, build_dem, fit_surface, write_dem
from cim.demo.water import WaterBody, place_water, water_layer

Progress = Callable[[str, float], None]

VECTOR_FILE = "demo_city.gpkg"
DEM_FILE = "demo_dem.tif"
OBSERVATIONS_FILE = "demo_observations.csv"
DEM_MARGIN = 250.0  # m of terrain around the district
MAX_DEM_CELLS = 24_000_000  # the DEM's cells grow beyond ``cell_size`` to stay under this
MIN_SCALE = 0.45  # smallest district, relative to the default, whatever the building count
BUILDINGS_PER_KM2 = 800.0  # of the default district: the first guess of a scaled one's size
OVERSHOOT = 1.04  # lay out a little more than asked, then keep the buildings nearest the centre

COLUMNS = {
    "roads": [
        "source_id",
        "name",
        "road_class",
        "lanes",
        "max_speed_kmh",
        "oneway",
        "bridge",
        "tunnel",
        "capacity_vph",
        "surface",
    ],
    "buildings": [
        "source_id",
        "name",
        "use",
        "floors",
        "height",
        "min_height",
        "roof_shape",
        "roof_height",
        "year_built",
        "status",
        "address_id",
        "ground_elevation",
    ],
}
"""Columns written for layers whose working tables carry more."""


@dataclass(frozen=True)
class DemoFiles:
    vector: Path  # GeoPackage, one layer per city table, EPSG:4547
    dem: Path  # GeoTIFF DEM, EPSG:4547, float32, nodata -9999
    observations: Path  # CSV: sensor_id, observed_at, value, quality
    summary: dict[str, int]  # features per layer, "dem_cells", "observations"


@dataclass(frozen=True)
class _Layout:
    """The district up to its buildings: what decides how many buildings there are."""

    extent: Extent
    surface: Surface
    plan: StreetPlan
    water: list[WaterBody]
    roads: gpd.GeoDataFrame
    blocks: gpd.GeoDataFrame
    buildings: gpd.GeoDataFrame


def generate_city(
    out_dir: Path,
    *,
    seed: int = 2026,
    buildings: int | None = None,
    cell_size: float = 5.0,
    progress: Progress | None = None,
) -> DemoFiles:
    """Write the demo district into ``out_dir``.

    ``buildings=None`` makes the default district (about 6.4 km x 4 km); ``buildings=N``
    enlarges it (more blocks of the same kind) until it holds N buildings.
    """
    if buildings is not None and buildings < 1:
        raise ValueError(f"buildings must be at least 1, not {buildings}")
    if cell_size <= 0:
        raise ValueError(f"cell_size must be positive, not {cell_size}")
    report = progress or (lambda stage, fraction: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    real = load_real_data()

    report("streets and buildings", 0.0)
    layout = _lay_out(real, seed, buildings)
    extent, roads, water = layout.extent, layout.roads, layout.water
    houses = _trim(layout, buildings)
    houses["source_id"] = ids("b", len(houses))
    houses["address_id"] = ids("a", len(houses))

    report("terrain", 0.35)
    structures, grid, dem = _terrain(layout, real, seed, cell_size)
    centre = shapely.centroid(houses.geometry.values)
    houses["ground_elevation"] = np.round(
        grid.sample(dem, shapely.get_x(centre), shapely.get_y(centre)), 2
    )

    report("drainage", 0.5)
    drainage = build_drainage(
        roads, layout.blocks, houses, water, extent, grid, dem, rng_for(seed, "drainage")
    )

    report("assets, sensors and addresses", 0.65)
    water_bodies = water_layer(water)
    sensors = sensors_layer(roads, water_bodies, structures, extent, rng_for(seed, "sensors"))
    admin = admin_units(extent, layout.plan, rng_for(seed, "admin"))
    layers = {
        "roads": roads[COLUMNS["roads"] + ["geometry"]],
        "buildings": houses[COLUMNS["buildings"] + ["geometry"]],
        "water_bodies": water_bodies,
        "drainage_nodes": drainage.nodes,
        "drainage_pipes": drainage.pipes,
        "catchments": drainage.catchments,
        "structures": structures,
        "assets": assets_layer(roads, layout.blocks, extent, rng_for(seed, "assets")),
        "sensors": sensors,
        "addresses": addresses(houses, layout.blocks, roads, real, admin),
        "admin_units": admin.layer,
    }
    readings = generate_observations(sensors, water_bodies, roads, rng_for(seed, "readings"))

    report("writing", 0.8)
    files = DemoFiles(
        vector=out_dir / VECTOR_FILE,
        dem=out_dir / DEM_FILE,
        observations=out_dir / OBSERVATIONS_FILE,
        summary={
            **{name: len(layer) for name, layer in layers.items()},
            "dem_cells": grid.width * grid.height,
            "observations": len(readings),
        },
    )
    _write_layers(files.vector, layers)
    write_dem(files.dem, dem, grid)
    readings.to_csv(files.observations, index=False)
    report("done", 1.0)
    return files


def _lay_out(real: RealData, seed: int, target: int | None) -> _Layout:
    """The default district, or the smallest one (growing it as needed) of ``target``
    buildings or a few more."""
    if target is None:
        return _layout_at(real, seed, 1.0)
    scale = max(MIN_SCALE, np.sqrt(target * OVERSHOOT / (BUILDINGS_PER_KM2 * DEFAULT_AREA_KM2)))
    for _ in range(8):
        layout = _layout_at(real, seed, scale)
        found = len(layout.buildings)
        if found >= target:
            return layout
        scale *= np.sqrt(target * OVERSHOOT / max(found, 1))
    raise RuntimeError(f"could not lay out {target} buildings")


def _layout_at(real: RealData, seed: int, scale: float) -> _Layout:
    extent = district_extent(real, scale)
    margin = DEM_MARGIN + 100
    surface = fit_surface(
        real.roads,
        (extent.x0 - margin, extent.y0 - margin, extent.x1 + margin, extent.y1 + margin),
        rng_for(seed, "terrain"),
    )
    plan = plan_streets(extent, real, rng_for(seed, "streets"))
    water = place_water(extent, real, plan, surface, rng_for(seed, "water"))
    polygons = np.array([body.polygon() for body in water], dtype=object)
    rows = cross_water(plan.rows, polygons, np.array([body.name for body in water]))
    roads = finish_roads(rows, rng_for(seed, "roads"))
    blocks = build_blocks(extent, real, plan, roads, water, rng_for(seed, "blocks"))
    houses = generate_buildings(blocks, rng_for(seed, "buildings"))
    return _Layout(extent, surface, plan, water, roads, blocks, houses)


def _terrain(
    layout: _Layout, real: RealData, seed: int, cell_size: float
) -> tuple[gpd.GeoDataFrame, Grid, np.ndarray]:
    """Bridges and underpasses, and the DEM with the underpasses' trenches cut in."""
    roads = layout.roads
    structures, trenches = structures_layer(
        roads, layout.water, layout.surface, rng_for(seed, "bridges")
    )
    grid = _dem_grid(layout.extent, cell_size)
    dem = build_dem(
        layout.surface,
        grid,
        carriageways(roads, real, rng_for(seed, "carriageways")),
        trenches,
        layout.water,
        rng_for(seed, "dem"),
    )
    settle(structures, grid, dem)
    return structures, grid, dem


def _trim(layout: _Layout, target: int | None) -> gpd.GeoDataFrame:
    """The ``target`` buildings nearest the district's anchor (the outer ring stays open land)."""
    houses = layout.buildings
    if target is None:
        return houses.reset_index(drop=True)
    ring = layout.blocks["ring"].to_numpy()[houses["block"].to_numpy()]
    keep = np.sort(np.argsort(ring, kind="stable")[:target])
    return houses.iloc[keep].reset_index(drop=True)


def _dem_grid(extent: Extent, cell_size: float) -> Grid:
    bounds = (
        extent.x0 - DEM_MARGIN,
        extent.y0 - DEM_MARGIN,
        extent.x1 + DEM_MARGIN,
        extent.y1 + DEM_MARGIN,
    )
    area = (bounds[2] - bounds[0]) * (bounds[3] - bounds[1])
    cell = max(cell_size, np.ceil(np.sqrt(area / MAX_DEM_CELLS) * 2) / 2)
    return Grid.covering(bounds, float(cell))


def _write_layers(path: Path, layers: dict[str, gpd.GeoDataFrame]) -> None:
    path.unlink(missing_ok=True)
    for name, layer in layers.items():
        pyogrio.write_dataframe(
            layer.reset_index(drop=True),
            path,
            layer=name,
            driver="GPKG",
            layer_options={"GEOMETRY_NAME": "geometry"},
            use_arrow=True,
        )
