"""City blocks (the plots between streets) and their land use.

Grid cells between streets are rectangles inset by half the road reserve on each side.
Cells that touch the real data or the water are cut around them, and the real network's
zone is divided by its own roads. Land use follows smooth random fields, so industry,
campuses and old villages come in clusters, and offices and shops line the arterials.
"""

from __future__ import annotations

from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from cim.demo.frame import CRS, Extent, RealData
from cim.demo.noise import NoiseField
from cim.demo.streets import ARTERIAL, RED_LINE, SETBACK, StreetPlan
from cim.demo.water import WaterBody

EDGE_SETBACK = 5.0  # from the district's edge, where no street runs
ZONE_GAP = 8.0  # between the real network's zone and generated plots outside it
SHORE_GAP = 20.0  # between the water and the plots
INNER_SETBACK = 6.0  # buildings from the edge of an irregular plot
MIN_PLOT_M2 = 1500.0

# Land use of the plots no cluster or arterial claims, with its shares.
OTHER_USES = {
    "tower": 0.56,
    "villa": 0.12,
    "office_park": 0.08,
    "commercial": 0.05,
    "public": 0.06,
    "healthcare": 0.02,
    "park": 0.08,
    "midrise": 0.03,
}


def build_blocks(
    extent: Extent,
    real: RealData,
    plan: StreetPlan,
    roads: gpd.GeoDataFrame,
    water: Sequence[WaterBody],
    rng: np.random.Generator,
) -> gpd.GeoDataFrame:
    """Plots (``geometry``) with the box buildings go in, whether they are plain rectangles
    (``regular``), whether they front an arterial, their ``layout`` and ``ring`` (0 at the
    district's anchor, 1 on its edge)."""
    grid = _grid_cells(extent, plan)
    shores = [shapely.buffer(w.polygon(), SHORE_GAP) for w in water]
    obstacles = shapely.union_all(
        [shapely.buffer(real.road_zone, ZONE_GAP), real.sample_zone, *shores]
    )
    hit = shapely.intersects(grid.geometry.values, obstacles)
    cut = _cut_cells(grid[hit], obstacles)
    zone = _zone_blocks(extent, real, roads)
    blocks = gpd.GeoDataFrame(pd.concat([grid[~hit], cut, zone], ignore_index=True), crs=CRS)
    blocks = blocks[shapely.area(blocks.geometry.values) >= MIN_PLOT_M2].reset_index(drop=True)

    centre = shapely.centroid(blocks.geometry.values)
    cx, cy = shapely.get_x(centre), shapely.get_y(centre)
    arterial = np.array(blocks["arterial"], dtype=bool)
    irregular = ~blocks["regular"].to_numpy(bool)
    arterial[irregular] = _near_arterial(blocks.geometry.values[irregular], roads, real)
    blocks["arterial"] = arterial
    blocks["ring"] = extent.ring_distance(cx, cy)
    area = shapely.area(blocks.geometry.values)
    blocks["layout"] = _land_use(extent, cx, cy, area, arterial, rng)
    return blocks


def _grid_cells(extent: Extent, plan: StreetPlan) -> gpd.GeoDataFrame:
    """Every cell of the street grid: its plot and its buildable box."""
    xs = np.concatenate([[extent.x0], plan.ns.pos, [extent.x1]])
    ys = np.concatenate([[extent.y0], plan.ew.pos, [extent.y1]])
    x_half, x_back = _side_widths(plan.ns.road_class)
    y_half, y_back = _side_widths(plan.ew.road_class)
    i, j = np.meshgrid(np.arange(xs.size - 1), np.arange(ys.size - 1), indexing="ij")
    i, j = i.ravel(), j.ravel()
    px0, px1 = xs[i] + x_half[i], xs[i + 1] - x_half[i + 1]
    py0, py1 = ys[j] + y_half[j], ys[j + 1] - y_half[j + 1]
    ok = (px1 - px0 > 20) & (py1 - py0 > 20)
    arterial = (
        np.isin(_padded(plan.ns.road_class)[i], ARTERIAL)
        | np.isin(_padded(plan.ns.road_class)[i + 1], ARTERIAL)
        | np.isin(_padded(plan.ew.road_class)[j], ARTERIAL)
        | np.isin(_padded(plan.ew.road_class)[j + 1], ARTERIAL)
    )
    boxes = np.column_stack(
        [px0 + x_back[i], py0 + y_back[j], px1 - x_back[i + 1], py1 - y_back[j + 1]]
    )
    plots = shapely.box(px0, py0, px1, py1)
    return gpd.GeoDataFrame(
        {
            "buildable": shapely.box(*boxes.T),
            "regular": True,
            "arterial": arterial,
        },
        geometry=plots,
        crs=CRS,
    )[ok]


def _padded(classes: np.ndarray) -> np.ndarray:
    """Classes of the lines bounding the cells, with "" for the district's edges."""
    return np.concatenate([[""], classes, [""]])


def _side_widths(classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half road reserve and building setback of each cell side (edges first and last)."""
    half = np.array([0.0, *(RED_LINE[c] / 2 for c in classes), 0.0])
    back = np.array([EDGE_SETBACK, *(SETBACK[c] for c in classes), EDGE_SETBACK])
    return half, back


def _cut_cells(cells: gpd.GeoDataFrame, obstacles: shapely.Geometry) -> gpd.GeoDataFrame:
    """Cells minus the obstacles, one row per remaining piece, no longer regular."""
    parts, owner = shapely.get_parts(
        shapely.difference(cells.geometry.values, obstacles), return_index=True
    )
    cut = cells.iloc[owner].copy()
    cut["buildable"] = shapely.intersection(
        shapely.buffer(parts, -INNER_SETBACK, join_style="mitre"), cut["buildable"].values
    )
    cut["geometry"] = parts
    cut["regular"] = False
    return cut[~shapely.is_empty(parts)]


def _zone_blocks(extent: Extent, real: RealData, roads: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The real network's zone, divided by the real roads and the generated ones crossing it."""
    land = shapely.intersection(real.road_zone, extent.box)
    inside = roads[shapely.intersects(roads.geometry.values, land)]
    reserves = np.concatenate(
        [
            shapely.buffer(real.roads.geometry, real.roads.half_width + 6.0),
            shapely.buffer(
                inside.geometry.values, inside["road_class"].map(RED_LINE).to_numpy() / 2
            ),
        ]
    )
    parts = shapely.get_parts(shapely.difference(land, shapely.union_all(reserves)))
    buildable = shapely.buffer(parts, -INNER_SETBACK, join_style="mitre")
    keep = ~shapely.is_empty(shapely.buffer(parts, -12.0))  # no slivers between carriageways
    return gpd.GeoDataFrame(
        {"buildable": buildable[keep], "regular": False, "arterial": False},
        geometry=parts[keep],
        crs=CRS,
    )


def _near_arterial(plots: np.ndarray, roads: gpd.GeoDataFrame, real: RealData) -> np.ndarray:
    arterials = np.concatenate(
        [
            roads.geometry.values[roads["road_class"].isin(ARTERIAL).to_numpy()],
            real.roads.geometry[np.isin(real.roads.highway, ("trunk", "primary", "secondary"))],
        ]
    )
    near = np.zeros(len(plots), dtype=bool)
    plot_idx, _ = shapely.STRtree(arterials).query(plots, "dwithin", distance=40.0)
    near[plot_idx] = True
    return near


def _land_use(
    extent: Extent,
    x: np.ndarray,
    y: np.ndarray,
    area: np.ndarray,
    arterial: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """A layout name per plot. Campuses, industry and old villages each take a share of the
    land where their field runs highest; shops and offices take some arterial frontage."""
    bounds = (extent.x0, extent.y0, extent.x1, extent.y1)
    old = NoiseField(rng, bounds, 1500.0, angle=0.5).at(x, y)
    industry = NoiseField(rng, bounds, 2200.0, angle=1.1).at(x, y)
    campus = NoiseField(rng, bounds, 1200.0, angle=0.8).at(x, y)
    u = rng.random(x.size)
    layout = rng.choice(list(OTHER_USES), p=list(OTHER_USES.values()), size=x.size)
    layout = layout.astype(object)
    free = np.ones(x.size, dtype=bool)

    def claim(field: np.ndarray, share: float, eligible: np.ndarray) -> np.ndarray:
        """Eligible free plots, highest ``field`` first, until they cover ``share`` of the
        district's plot area."""
        order = np.nonzero(eligible & free)[0]
        order = order[np.argsort(-field[order], kind="stable")]
        taken = order[np.cumsum(area[order]) <= share * area.sum()]
        mask = np.zeros(x.size, dtype=bool)
        mask[taken] = True
        free[taken] = False
        return mask

    everywhere = np.ones(x.size, dtype=bool)
    campuses = claim(campus, 0.05, everywhere)
    layout[campuses] = np.where(u < 0.8, "education", "healthcare")[campuses]
    industrial = claim(industry, 0.16, everywhere)
    layout[industrial] = np.where(u < 0.85, "industrial", "office_park")[industrial]
    frontage = claim(rng.random(x.size), 0.12, arterial)
    layout[frontage] = np.where(u < 0.6, "office_tower", "commercial")[frontage]
    layout[claim(old, 0.21, everywhere)] = "village"
    layout[claim(old, 0.08, everywhere)] = "midrise"
    return layout
