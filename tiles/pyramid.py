"""Tile pyramids over an area: which tiles, and each one's bytes through the cache.

Shared by ``cim tiles seed`` (fill the disk cache) and ``cim tiles export`` (PMTiles,
MBTiles). Tiles render on a few threads: PostgreSQL does the work, so the GIL is no limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import morecantile
from sqlalchemy import Engine, text

from layers.model import MAX_ZOOM, LayerDefinition
from tiles.cache import TileCache, Tileset, cached_tile
from tiles.errors import TileError
from tiles.grid import BBox

Progress = Callable[[str, float], None]
MAX_TILES = 5_000_000
"""A pyramid larger than this is almost surely a mistaken zoom range or area."""


def parse_bbox(value: str) -> BBox:
    """``west,south,east,north`` in lon/lat degrees."""
    try:
        west, south, east, north = (float(v) for v in value.split(","))
    except ValueError:
        raise TileError(f"bbox {value!r}: expected four numbers west,south,east,north") from None
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise TileError(f"bbox {value!r}: west < east within ±180, south < north within ±90")
    return west, south, east, north


def check_zooms(min_zoom: int, max_zoom: int) -> None:
    if not 0 <= min_zoom <= max_zoom <= MAX_ZOOM:
        raise TileError(f"zooms {min_zoom}-{max_zoom}: need 0 <= min <= max <= {MAX_ZOOM}")


def data_bbox(engine: Engine, layers: list[LayerDefinition]) -> BBox:
    """The extent of the current features of ``layers`` (what is worth tiling)."""
    boxes = []
    with engine.connect() as conn:
        for layer in layers:
            src = layer.source
            where = " AND valid_to IS NULL" if src.versioned else ""
            row = conn.execute(text(
                f'SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT '
                f'ST_Extent("{src.geometry}") AS e FROM "{src.schema_}"."{src.relation}" '
                f"WHERE TRUE{where}) q")).one()
            if row[0] is not None:
                boxes.append(row)
    if not boxes:
        raise TileError("the layers hold no features: nothing to tile (give --bbox?)")
    return (min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes))


def tiles_in(tms: morecantile.TileMatrixSet, bbox: BBox, min_zoom: int,
             max_zoom: int) -> list[morecantile.Tile]:
    tiles = []
    for z in range(min_zoom, max_zoom + 1):
        tiles.extend(tms.tiles(*bbox, zooms=[z]))
        if len(tiles) > MAX_TILES:
            raise TileError(f"more than {MAX_TILES:,} tiles by zoom {z}: "
                            "narrow the zoom range or the bbox")
    return tiles


def render_all(engine: Engine, cache: TileCache | None, tileset: Tileset,
               layers: list[LayerDefinition], tms: morecantile.TileMatrixSet,
               tiles: list[morecantile.Tile], progress: Progress,
               workers: int = 2) -> Iterator[tuple[morecantile.Tile, bytes, bool]]:
    """Each tile, in the order given, with its gzip-compressed bytes and whether it was cached."""

    def one(tile: morecantile.Tile) -> tuple[morecantile.Tile, bytes, bool]:
        data, hit = cached_tile(cache, engine, tileset, layers, tms, tile.z, tile.x, tile.y)
        return tile, data, hit

    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        for done, result in enumerate(pool.map(one, tiles), start=1):
            progress(f"zoom {result[0].z}", done / len(tiles))
            yield result
    finally:  # a failed writer must not wait for the rest of the pyramid to render
        pool.shutdown(cancel_futures=True)
