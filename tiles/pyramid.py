"""Tile pyramids over an area: which tiles, and rendering them in blocks that run anywhere.

Shared by ``cim tiles seed`` (fill the disk cache) and ``cim tiles export`` (PMTiles,
MBTiles). A block is a run of neighbouring tiles (Hilbert order) and one task
(:func:`cim.batch.completed`: a Dask worker, or a thread here). Seeding writes each block
into a staging folder beside the cache and moves the tiles in only once every block has
succeeded; exporting gets each block's bytes back, in order, for the archive writer. Tiles
already in the cache are read, not rendered.
"""

from __future__ import annotations

import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import morecantile
from pmtiles.tile import zxy_to_tileid
from sqlalchemy import Engine, text

from cim.batch import completed, slots
from layers.model import MAX_ZOOM, LayerDefinition
from tiles.cache import TileCache, TileKey, Tileset, compress
from tiles.errors import TileError
from tiles.grid import GRIDS, BBox
from tiles.mvt import render_tile

if TYPE_CHECKING:
    from dask.distributed import Client

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


def hilbert_order(tiles: list[morecantile.Tile]) -> list[morecantile.Tile]:
    """Tiles in PMTiles' Hilbert order: neighbours stay together (in blocks, in archives)."""
    return sorted(tiles, key=lambda t: zxy_to_tileid(t.z, t.x, t.y))


BLOCKS_PER_SLOT = 16
"""Blocks per task slot: enough that the last ones finish close together."""
MAX_BLOCK = 256


def blocks(tiles: list[morecantile.Tile], slots: int) -> list[list[morecantile.Tile]]:
    """``tiles`` cut into consecutive blocks, about ``BLOCKS_PER_SLOT`` per slot."""
    size = max(1, min(MAX_BLOCK, math.ceil(len(tiles) / (slots * BLOCKS_PER_SLOT))))
    return [tiles[i:i + size] for i in range(0, len(tiles), size)]


def _folder_cache(folder: str) -> TileCache:
    """The cache's own reading and writing of a tile folder, without a memory tier."""
    cache = TileCache(0)
    cache.attach(Path(folder))
    cache.active = True
    return cache


def seed_block(engine: Engine, tileset: Tileset, layers: list[LayerDefinition], tms_id: str,
               tiles: list[morecantile.Tile], live: str, staging: str) -> tuple[int, int]:
    """A task: render the tiles of a block missing from the cache folder ``live`` into
    ``staging`` (same layout); returns (rendered, already cached)."""
    tms = GRIDS.get(tms_id)
    cached, staged = _folder_cache(live), _folder_cache(staging)
    rendered = hits = 0
    with engine.connect() as conn:
        for tile in tiles:
            key = TileKey(tileset.name, tms_id, tile.z, tile.x, tile.y)
            if cached.get(key) is not None:
                hits += 1
                continue
            data = compress(render_tile(conn, layers, tms, tile.z, tile.x, tile.y))
            staged.put(tileset, key, data, staged.generation)
            rendered += 1
    return rendered, hits


def _move_into(staging: Path, folder: Path) -> None:
    """Every file under ``staging`` renamed to the same place under ``folder``."""
    for parent, _, names in os.walk(staging):
        target = folder / Path(parent).relative_to(staging)
        target.mkdir(parents=True, exist_ok=True)
        for name in names:
            os.replace(Path(parent) / name, target / name)


def seed_pyramid(engine: Engine, folder: Path,
                 tilesets: list[tuple[Tileset, list[LayerDefinition]]], tms_id: str,
                 tiles: list[morecantile.Tile], progress: Progress,
                 client: Client | None = None, threads: int = 1) -> tuple[int, int]:
    """Fill the cache folder ``folder`` with ``tiles`` of each tileset; returns (rendered,
    already cached). Nothing reaches the folder unless every block succeeded."""
    staging = folder.parent / f".staging-{uuid.uuid4().hex}"  # not scanned by evictions
    ordered = hilbert_order(tiles)
    calls = [(tileset, layers, tms_id, block, str(folder), str(staging))
             for tileset, layers in tilesets for block in blocks(ordered, slots(client, threads))]
    total = len(tiles) * len(tilesets)
    rendered = hits = done = 0
    try:
        for i, (new, old) in completed(seed_block, calls, engine, client, threads):
            rendered, hits, done = rendered + new, hits + old, done + len(calls[i][3])
            progress(f"{done:,} of {total:,} tiles", done / max(total, 1))
        _move_into(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return rendered, hits


def render_block(engine: Engine, tileset: Tileset, layers: list[LayerDefinition], tms_id: str,
                 tiles: list[morecantile.Tile], live: str | None) -> list[tuple[bytes, bool]]:
    """A task: each tile's gzip-compressed bytes and whether the cache folder ``live`` (if
    any) held it."""
    tms = GRIDS.get(tms_id)
    cached = _folder_cache(live) if live is not None else None
    found: list[tuple[bytes, bool]] = []
    with engine.connect() as conn:
        for tile in tiles:
            data = (cached.get(TileKey(tileset.name, tms_id, tile.z, tile.x, tile.y))
                    if cached is not None else None)
            found.append((data, True) if data is not None else
                         (compress(render_tile(conn, layers, tms, tile.z, tile.x, tile.y)),
                          False))
    return found


def render(engine: Engine, tileset: Tileset, layers: list[LayerDefinition], tms_id: str,
           tiles: list[morecantile.Tile], progress: Progress, live: Path | None = None,
           client: Client | None = None, threads: int = 1
           ) -> Iterator[tuple[morecantile.Tile, bytes, bool]]:
    """Each tile, in the order given, with its gzip-compressed bytes and whether the cache
    folder ``live`` held it; blocks render in parallel and are handed on in order."""
    parts = blocks(tiles, slots(client, threads))
    calls = [(tileset, layers, tms_id, block, str(live) if live else None) for block in parts]
    waiting: dict[int, list[tuple[bytes, bool]]] = {}
    following = done = 0
    for i, result in completed(render_block, calls, engine, client, threads):
        waiting[i] = result
        done += len(parts[i])
        progress(f"{done:,} of {len(tiles):,} tiles", done / len(tiles))
        while following in waiting:
            for tile, (data, hit) in zip(parts[following], waiting.pop(following), strict=True):
                yield tile, data, hit
            following += 1
