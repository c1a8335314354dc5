"""Administrative units (district, sub-districts, community grids) and building addresses."""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from cim.demo import names
from cim.demo.frame import CRS, DEFAULT_AREA_KM2, Extent, RealData, as_multipolygons, ids
from cim.demo.streets import ARTERIAL, StreetPlan

DISTRICT = {"name": "洪山区", "code": "420111", "parent_code": "420100"}
ADDRESS_PREFIX = "湖北省武汉市洪山区"
SUBDISTRICT_KM2 = 4.3  # in the default district; larger districts have larger ones
GRID_CELL = 500.0  # m, community grid cells
SUBDISTRICT_NAMES = (
    "关东街道",
    "关山街道",
    "佛祖岭街道",
    "豹澥街道",
    "九峰街道",
    "花山街道",
    "左岭街道",
    "龙泉街道",
    "滨湖街道",
    "流芳街道",
    "茅店街道",
    "东湖街道",
)
Index = int | np.ndarray

POSTCODES = ("430074", "430073", "430205", "430223", "430079", "430078", "430206", "430212")


@dataclass(frozen=True)
class Admin:
    layer: gpd.GeoDataFrame
    x_splits: np.ndarray  # sub-district boundaries between columns
    y_splits: np.ndarray
    grid_keys: np.ndarray  # sorted keys of (sub-district, cell row, cell column)
    grid_codes: np.ndarray
    origin: tuple[float, float]
    cells: tuple[int, int]  # rows and columns of community grid cells

    def subdistrict_of(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        cols = self.x_splits.size + 1
        return np.searchsorted(self.y_splits, y) * cols + np.searchsorted(self.x_splits, x)

    def community_of(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        keys = _grid_key(self.subdistrict_of(x, y), *self._cell(x, y), self.cells)
        found = np.searchsorted(self.grid_keys, keys)
        return self.grid_codes[np.minimum(found, self.grid_codes.size - 1)]

    def _cell(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = self.cells
        row = np.clip(((y - self.origin[1]) // GRID_CELL).astype(int), 0, rows - 1)
        col = np.clip(((x - self.origin[0]) // GRID_CELL).astype(int), 0, cols - 1)
        return row, col


def _grid_key(sub: Index, row: Index, col: Index, cells: tuple[int, int]) -> Index:
    """One number per (sub-district, grid row, grid column): cells split by a sub-district
    boundary are two community grids."""
    return (sub * cells[0] + row) * cells[1] + col


def admin_units(extent: Extent, plan: StreetPlan, rng: np.random.Generator) -> Admin:
    """The district; sub-districts split along arterials; 500 m community grids in each."""
    growth = np.sqrt(max(extent.area_km2 / DEFAULT_AREA_KM2, 1.0))
    count = extent.area_km2 / (SUBDISTRICT_KM2 * growth)
    n_cols = max(1, round(np.sqrt(count * extent.width / extent.height)))
    n_rows = max(1, round(count / n_cols))
    x_splits = _splits(
        extent.x0, extent.x1, n_cols, plan.ns.pos[np.isin(plan.ns.road_class, ARTERIAL)]
    )
    y_splits = _splits(
        extent.y0, extent.y1, n_rows, plan.ew.pos[np.isin(plan.ew.road_class, ARTERIAL)]
    )
    xs = np.concatenate([[extent.x0], x_splits, [extent.x1]])
    ys = np.concatenate([[extent.y0], y_splits, [extent.y1]])
    n_sub = (xs.size - 1) * (ys.size - 1)
    sub_names = [*SUBDISTRICT_NAMES[:n_sub]]
    sub_names += names.place_names(rng, n_sub - len(sub_names), "街道", set(sub_names))
    cells = (int(np.ceil(extent.height / GRID_CELL)), int(np.ceil(extent.width / GRID_CELL)))

    rows = [{**DISTRICT, "level": "district", "geometry": extent.box}]
    grid_keys, grid_codes = [], []
    for sub in range(n_sub):
        j, i = divmod(sub, xs.size - 1)
        box = (xs[i], ys[j], xs[i + 1], ys[j + 1])
        code = f"{DISTRICT['code']}{sub + 1:03d}"
        rows.append(
            {
                "name": sub_names[sub],
                "level": "subdistrict",
                "code": code,
                "parent_code": DISTRICT["code"],
                "geometry": shapely.box(*box),
            }
        )
        for m, (row, col, cell_box) in enumerate(_grid_cells(box, extent, cells), start=1):
            grid_code = f"{code}{m:03d}"
            rows.append(
                {
                    "name": f"{sub_names[sub]}第{m}网格",
                    "level": "community_grid",
                    "code": grid_code,
                    "parent_code": code,
                    "geometry": shapely.box(*cell_box),
                }
            )
            grid_keys.append(_grid_key(sub, row, col, cells))
            grid_codes.append(grid_code)
    table = pd.DataFrame(rows)
    layer = gpd.GeoDataFrame(
        table.drop(columns="geometry").assign(source_id=ids("ad", len(table))),
        geometry=as_multipolygons(table["geometry"].to_numpy()),
        crs=CRS,
    )
    order = np.argsort(grid_keys)
    return Admin(
        layer=layer[["source_id", "name", "level", "code", "parent_code", "geometry"]],
        x_splits=x_splits,
        y_splits=y_splits,
        grid_keys=np.asarray(grid_keys)[order],
        grid_codes=np.asarray(grid_codes, dtype=object)[order],
        origin=(extent.x0, extent.y0),
        cells=cells,
    )


def _splits(lo: float, hi: float, parts: int, arterials: np.ndarray) -> np.ndarray:
    """Boundaries between ``parts`` equal strips, moved onto an arterial when one is near."""
    step = (hi - lo) / parts
    targets = lo + step * np.arange(1, parts)
    if not arterials.size:
        return targets
    nearest = arterials[np.abs(arterials[None, :] - targets[:, None]).argmin(axis=1)]
    return np.where(np.abs(nearest - targets) < 0.3 * step, nearest, targets)


def _grid_cells(
    box: tuple[float, float, float, float], extent: Extent, cells: tuple[int, int]
) -> list[tuple[int, int, tuple[float, float, float, float]]]:
    """The community grid cells overlapping ``box`` (row, column, clipped bounds)."""
    x0, y0, x1, y1 = box
    first_row, first_col = int((y0 - extent.y0) // GRID_CELL), int((x0 - extent.x0) // GRID_CELL)
    last_row = min(int(np.ceil((y1 - extent.y0) / GRID_CELL)), cells[0])
    last_col = min(int(np.ceil((x1 - extent.x0) / GRID_CELL)), cells[1])
    out = []
    for row in range(first_row, last_row):
        cy0, cy1 = max(extent.y0 + row * GRID_CELL, y0), min(extent.y0 + (row + 1) * GRID_CELL, y1)
        for col in range(first_col, last_col):
            cx0 = max(extent.x0 + col * GRID_CELL, x0)
            cx1 = min(extent.x0 + (col + 1) * GRID_CELL, x1)
            if cx1 - cx0 > 1 and cy1 - cy0 > 1:
                out.append((row, col, (cx0, cy0, cx1, cy1)))
    return out


def addresses(
    buildings: gpd.GeoDataFrame,
    blocks: gpd.GeoDataFrame,
    roads: gpd.GeoDataFrame,
    real: RealData,
    admin: Admin,
) -> gpd.GeoDataFrame:
    """One address per building: its plot's door number on the nearest street, then the
    building number within the plot (光谷七路12号3栋)."""
    street_lines = np.concatenate([roads.geometry.values, real.roads.geometry])
    street_names = np.concatenate([roads["name"].to_numpy(str), real.roads.name])
    named = np.nonzero((street_names != "") & (street_names != "无名路"))[0]
    used = np.unique(buildings["block"].to_numpy())
    centre = shapely.centroid(blocks.geometry.values[used])
    nearest = named[
        shapely.STRtree(street_lines[named]).query_nearest(centre, all_matches=False)[1]
    ]
    door = _door_numbers(street_lines[nearest], street_names[nearest], centre)

    block = buildings["block"].to_numpy()
    plot = np.searchsorted(used, block)
    in_plot = pd.Series(block).groupby(block).cumcount().to_numpy() + 1
    several = pd.Series(block).map(pd.Series(block).value_counts()).to_numpy() > 1
    street = street_names[nearest][plot]
    house = pd.Series(door[plot].astype(str)) + "号"
    house = house.where(~several, house + pd.Series(in_plot.astype(str)) + "栋")

    at = shapely.point_on_surface(buildings.geometry.values)
    x, y = shapely.get_x(at), shapely.get_y(at)
    sub = admin.subdistrict_of(x, y)
    return gpd.GeoDataFrame(
        {
            "source_id": buildings["address_id"].to_numpy(),
            "name": buildings["name"].to_numpy(),
            "full_address": (ADDRESS_PREFIX + pd.Series(street) + house).to_numpy(),
            "street": street,
            "house_number": house.to_numpy(),
            "postcode": np.asarray(POSTCODES)[sub % len(POSTCODES)],
            "admin_code": admin.community_of(x, y),
        },
        geometry=at,
        crs=CRS,
    )


def _door_numbers(lines: np.ndarray, street: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Odd numbers on the left, even on the right, rising eastward or northward."""
    a = shapely.get_coordinates(shapely.get_point(lines, 0))
    b = shapely.get_coordinates(shapely.get_point(lines, -1))
    direction = (b - a) / np.linalg.norm(b - a, axis=1)[:, None]
    flip = (direction[:, 0] < -1e-9) | ((np.abs(direction[:, 0]) <= 1e-9) & (direction[:, 1] < 0))
    direction[flip] *= -1
    xy = shapely.get_coordinates(at)
    along = (xy * direction).sum(axis=1)
    rel = xy - a
    left = direction[:, 0] * rel[:, 1] - direction[:, 1] * rel[:, 0] > 0
    rank = pd.Series(along).groupby([street, left]).rank(method="first").to_numpy(int)
    return np.where(left, 2 * rank - 1, 2 * rank)
