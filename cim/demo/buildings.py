"""Building footprints and attributes, laid out plot by plot without a per-building loop.

Each plot's buildable box is divided into a grid of lots sized by its layout (tower estates,
walk-up slabs, village houses, industrial sheds, ...). A lot holds at most one footprint,
strictly inside it, so footprints never overlap. Buildings on a plot share its estate's
character (floors, year, alignment) with a little jitter each.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from cim.demo import names
from cim.demo.frame import CRS, as_multipolygons

LOT_GAP = 1.5  # least space between a footprint and its lot's edge, m
MIN_SIDE = 6.0  # narrowest footprint, m
NO_HEIGHT_SHARE = 0.05  # heights left for the importer to estimate from floors
STATUS = (("existing", "under_construction", "planned"), (0.965, 0.022, 0.013))


@dataclass(frozen=True)
class Layout:
    use: str
    lot: tuple[float, float]  # lot width (x) and depth (y), m
    fill: tuple[float, float, float, float]  # footprint share of the lot: width lo/hi, depth lo/hi
    floors: tuple[int, int]
    floor_jitter: int  # floors vary this much around the estate's
    storey: float  # m per floor
    years: tuple[int, int]
    year_jitter: int
    pitched: float  # share of pitched roofs among buildings of up to 11 floors
    l_shaped: float
    empty: float  # share of lots left open
    estates: tuple[str, ...]  # estate name suffixes; none for villages, whose houses go unnamed


# fmt: off
LAYOUTS: dict[str, Layout] = {
    "tower": Layout("residential", (36, 48), (0.55, 0.70, 0.32, 0.40), (18, 34), 3, 3.0,
                    (2006, 2024), 1, 0.0, 0.10, 0.08, ("花园", "小区", "华庭", "家园", "公馆")),
    "midrise": Layout("residential", (55, 30), (0.75, 0.90, 0.38, 0.46), (6, 11), 1, 2.9,
                      (1995, 2010), 2, 0.15, 0.10, 0.05, ("小区", "新村", "花园")),
    "village": Layout("residential", (12, 14), (0.65, 0.85, 0.65, 0.85), (2, 6), 2, 3.1,
                      (1992, 2012), 6, 0.30, 0.0, 0.10, ()),
    "villa": Layout("residential", (22, 26), (0.50, 0.65, 0.45, 0.60), (2, 3), 1, 3.2,
                    (2005, 2020), 1, 0.75, 0.30, 0.05, ("别墅", "山庄", "庭院")),
    "commercial": Layout("commercial", (75, 65), (0.55, 0.85, 0.50, 0.80), (2, 6), 1, 4.8,
                         (2000, 2024), 2, 0.0, 0.25, 0.10, ("广场", "商业街", "购物中心")),
    "office_tower": Layout("office", (62, 62), (0.55, 0.70, 0.55, 0.70), (18, 45), 6, 3.9,
                           (2008, 2024), 2, 0.0, 0.15, 0.10, ("大厦", "中心", "金融港")),
    "office_park": Layout("office", (58, 45), (0.60, 0.85, 0.40, 0.55), (4, 12), 2, 3.8,
                          (2001, 2022), 2, 0.0, 0.30, 0.10, ("科技园", "软件园", "创意园")),
    "industrial": Layout("industrial", (85, 60), (0.50, 0.85, 0.45, 0.80), (1, 3), 1, 6.5,
                         (1995, 2020), 3, 0.35, 0.10, 0.10, ("产业园", "工业园")),
    "education": Layout("education", (72, 50), (0.60, 0.85, 0.28, 0.40), (3, 6), 1, 3.9,
                        (1995, 2022), 4, 0.10, 0.35, 0.20, ("小学", "中学", "实验学校")),
    "healthcare": Layout("healthcare", (85, 65), (0.50, 0.75, 0.40, 0.70), (4, 20), 4, 4.2,
                         (1998, 2022), 3, 0.0, 0.30, 0.10, ("医院", "社区卫生服务中心")),
    "public": Layout("public", (65, 55), (0.45, 0.70, 0.40, 0.65), (2, 8), 1, 4.2,
                     (1995, 2022), 3, 0.10, 0.20, 0.15, ("社区服务中心", "文化中心", "体育馆")),
    # Open space: every lot stays empty.
    "park": Layout("public", (1.0, 1.0), (0, 0, 0, 0), (1, 1), 0, 4.0, (2000, 2000), 0, 0.0,
                   0.0, 1.0, ()),
}
# fmt: on


def _per_block(blocks: gpd.GeoDataFrame, field: str) -> np.ndarray:
    """A layout parameter for every plot."""
    table = np.stack([np.asarray(getattr(layout, field)) for layout in LAYOUTS.values()])
    return table[pd.Categorical(blocks["layout"], categories=list(LAYOUTS)).codes]


def generate_buildings(blocks: gpd.GeoDataFrame, rng: np.random.Generator) -> gpd.GeoDataFrame:
    """Footprints and attributes; ``block`` is each building's plot."""
    lots = _lots(blocks, rng)
    footprints, blk = _footprints(blocks, lots, rng)
    return _attributes(blocks, footprints, blk, rng)


@dataclass(frozen=True)
class _Lots:
    block: np.ndarray
    x0: np.ndarray
    y0: np.ndarray
    width: np.ndarray
    depth: np.ndarray


def _lots(blocks: gpd.GeoDataFrame, rng: np.random.Generator) -> _Lots:
    bx0, by0, bx1, by1 = shapely.bounds(blocks["buildable"].values).T
    empty_box = shapely.is_empty(blocks["buildable"].values)
    lot = _per_block(blocks, "lot") * rng.uniform(0.9, 1.1, (len(blocks), 2))
    width, depth = np.nan_to_num(bx1 - bx0), np.nan_to_num(by1 - by0)
    # A lot may be up to a third smaller than its layout's rather than leave a strip unused.
    nx = np.floor(width / lot[:, 0] + 0.3).astype(int)
    ny = np.floor(depth / lot[:, 1] + 0.3).astype(int)
    open_space = _per_block(blocks, "empty") >= 1.0  # parks
    count = np.where(open_space | empty_box, 0, nx * ny)
    block = np.repeat(np.arange(len(blocks)), count)
    local = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    cols = np.maximum(nx, 1)[block]
    ix, iy = local % cols, local // cols
    lot_w = (width / np.maximum(nx, 1))[block]
    lot_d = (depth / np.maximum(ny, 1))[block]
    return _Lots(block, bx0[block] + ix * lot_w, by0[block] + iy * lot_d, lot_w, lot_d)


def _footprints(
    blocks: gpd.GeoDataFrame, lots: _Lots, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    n, blk = lots.block.size, lots.block
    fill = _per_block(blocks, "fill")
    # The estate's proportions and alignment, each building a little off them.
    share = rng.uniform(fill[:, [0, 2]], fill[:, [1, 3]])[blk] + rng.normal(0, 0.03, (n, 2))
    share = np.clip(share, fill[blk][:, [0, 2]], fill[blk][:, [1, 3]])
    w = np.minimum(lots.width * share[:, 0], lots.width - 2 * LOT_GAP)
    d = np.minimum(lots.depth * share[:, 1], lots.depth - 2 * LOT_GAP)
    align = np.clip(
        rng.uniform(0.25, 0.75, (len(blocks), 2))[blk] + rng.normal(0, 0.05, (n, 2)), 0, 1
    )
    x = lots.x0 + LOT_GAP + (lots.width - w - 2 * LOT_GAP) * align[:, 0]
    y = lots.y0 + LOT_GAP + (lots.depth - d - 2 * LOT_GAP) * align[:, 1]
    keep = (w >= MIN_SIDE) & (d >= MIN_SIDE) & (rng.random(n) >= _per_block(blocks, "empty")[blk])
    l_shaped = rng.random(n) < _per_block(blocks, "l_shaped")[blk]
    corner = rng.integers(0, 4, n)
    notch = rng.uniform(0.3, 0.5, (n, 2))

    polygons = np.empty(n, dtype=object)
    polygons[~l_shaped] = shapely.box(x, y, x + w, y + d)[~l_shaped]
    polygons[l_shaped] = _l_shapes(x, y, w, d, corner, notch)[l_shaped]
    # On irregular plots, only footprints wholly inside the buildable area stand.
    irregular = ~blocks["regular"].to_numpy(bool)[blk] & keep
    keep[irregular] = shapely.contains_properly(
        blocks["buildable"].values[blk[irregular]], polygons[irregular]
    )
    return shapely.orient_polygons(polygons[keep]), blk[keep]


def _l_shapes(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    d: np.ndarray,
    corner: np.ndarray,
    notch: np.ndarray,
) -> np.ndarray:
    """Rectangles with one corner cut away (``corner`` 0-3), ``notch`` of width and depth."""
    a, b = notch[:, 0], notch[:, 1]
    # The L with its north-east corner cut, in unit coordinates of the rectangle.
    u = np.column_stack(
        [np.zeros_like(a), np.ones_like(a), np.ones_like(a), 1 - a, 1 - a, np.zeros_like(a)]
    )
    v = np.column_stack(
        [np.zeros_like(b), np.zeros_like(b), 1 - b, 1 - b, np.ones_like(b), np.ones_like(b)]
    )
    u = np.where((corner == 1) | (corner == 2), u.T, 1 - u.T).T  # mirror for the west corners
    v = np.where((corner == 0) | (corner == 1), v.T, 1 - v.T).T  # mirror for the south corners
    coords = np.stack([x[:, None] + u * w[:, None], y[:, None] + v * d[:, None]], axis=2)
    return shapely.polygons(coords)


def _attributes(
    blocks: gpd.GeoDataFrame, footprints: np.ndarray, blk: np.ndarray, rng: np.random.Generator
) -> gpd.GeoDataFrame:
    n, nb = blk.size, len(blocks)
    layout = blocks["layout"].to_numpy()[blk]
    floors_range = _per_block(blocks, "floors")
    estate_floors = rng.integers(floors_range[:, 0], floors_range[:, 1] + 1)
    jitter = _per_block(blocks, "floor_jitter")[blk]
    floors = np.clip(
        estate_floors[blk] + np.round(rng.uniform(-1, 1, n) * jitter).astype(int),
        floors_range[blk, 0],
        floors_range[blk, 1],
    )
    storey = _per_block(blocks, "storey")[blk] * rng.uniform(0.97, 1.03, n)
    pitched = (rng.random(n) < _per_block(blocks, "pitched")[blk]) & (floors <= 11)
    roof_shape = np.where(pitched, np.where(rng.random(n) < 0.6, "gabled", "hipped"), "flat")
    roof_height = np.where(pitched, np.round(rng.uniform(1.5, 3.5, n), 1), np.nan)
    height = np.round(floors * storey + np.nan_to_num(roof_height), 1)
    height[rng.random(n) < NO_HEIGHT_SHARE] = np.nan

    years = _per_block(blocks, "years")
    estate_year = rng.integers(years[:, 0], years[:, 1] + 1)
    year_jitter = _per_block(blocks, "year_jitter")[blk]
    year = np.clip(
        estate_year[blk] + np.round(rng.uniform(-1, 1, n) * year_jitter).astype(int), 1990, 2024
    )
    status = rng.choice(STATUS[0], p=STATUS[1], size=nb)[blk]
    year_built = pd.array(year, dtype="Int64")
    year_built[status != "existing"] = pd.NA

    return gpd.GeoDataFrame(
        {
            "block": blk,
            "name": _names(blocks, blk, rng),
            "use": pd.Series(layout).map({k: v.use for k, v in LAYOUTS.items()}).to_numpy(),
            "floors": floors,
            "height": height,
            "min_height": 0.0,
            "roof_shape": roof_shape,
            "roof_height": roof_height,
            "year_built": year_built,
            "status": status,
        },
        geometry=as_multipolygons(footprints),
        crs=CRS,
    )


def _names(blocks: gpd.GeoDataFrame, blk: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Estate name + building number (光谷花园3栋); village houses have no name."""
    layout = blocks["layout"].to_numpy()
    estates = np.full(len(blocks), "", dtype=object)
    for key, spec in LAYOUTS.items():
        mine = layout == key
        if spec.estates and mine.any():
            suffix = np.asarray(spec.estates)[rng.integers(0, len(spec.estates), mine.sum())]
            estates[mine] = np.char.add(names.words(rng, mine.sum()), suffix)
    start = np.searchsorted(blk, np.arange(len(blocks)))
    number = (np.arange(blk.size) - start[blk] + 1).astype(str)
    named = pd.Series(estates[blk]) + pd.Series(number) + "栋"
    alone = np.bincount(blk, minlength=len(blocks))[blk] == 1
    named = np.where(alone, estates[blk], named.to_numpy(dtype=object))
    return np.where(estates[blk] == "", None, named)
