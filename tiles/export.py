"""Offline tile pyramids: PMTiles v3 (the ``pmtiles`` package's writer) or MBTiles 1.3.

Both hold the gzip-compressed MVT tiles as the cache stores them and TileJSON's
``vector_layers`` in their metadata, so MapLibre, GDAL and tippecanoe's tools read them.
Empty tiles are left out (readers take a missing tile as empty). The target is a path or an
fsspec URL (``s3://...``): the archive is written to a local file first (SQLite needs one),
then moved, or uploaded under a staging name and moved, into place, so a failed export
leaves the previous archive as it was and no half file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import fsspec
import morecantile
from fsspec.implementations.local import LocalFileSystem
from pmtiles.tile import Compression, TileType, zxy_to_tileid
from pmtiles.writer import Writer

from tiles.errors import TileError
from tiles.grid import BBox

FORMATS = (".pmtiles", ".mbtiles")
Tiles = Iterable[tuple[morecantile.Tile, bytes, bool]]


def archive_format(target: str) -> str:
    """The target's format (its suffix), refused unless it is one we write."""
    suffix = Path(target).suffix.lower()
    if suffix not in FORMATS:
        raise TileError(f"{Path(target).name}: the archive must end in {' or '.join(FORMATS)}")
    return suffix


def write_archive(target: str, tiles: Tiles, bbox: BBox, metadata: dict[str, Any]
                  ) -> tuple[int, int]:
    """Write the archive ``target`` names (tiles in Hilbert order for PMTiles) and publish it
    whole; returns (tiles written, bytes)."""
    writer = write_pmtiles if archive_format(target) == ".pmtiles" else write_mbtiles
    fs, path = fsspec.core.url_to_fs(target)
    local = isinstance(fs, LocalFileSystem)
    with tempfile.TemporaryDirectory(prefix="cim-export-") as scratch:
        # Locally beside the target, so the final rename stays on one file system.
        partial = (Path(path).with_name(f".{Path(path).name}.{uuid.uuid4().hex}.partial")
                   if local else Path(scratch) / Path(path).name)
        partial.parent.mkdir(parents=True, exist_ok=True)
        try:
            written = writer(partial, tiles, bbox, metadata)
            size = partial.stat().st_size
            if local:
                os.replace(partial, path)
            else:
                staged = f"{path}.partial"
                fs.put_file(str(partial), staged)
                fs.mv(staged, path)
        finally:
            partial.unlink(missing_ok=True)
    return written, size


def _e7(value: float) -> int:
    return round(value * 10_000_000)


def write_pmtiles(path: Path, tiles: Tiles, bbox: BBox, metadata: dict[str, Any]) -> int:
    """Write tiles (in Hilbert order) to a PMTiles v3 archive at ``path``; returns how many."""
    written = 0
    with path.open("wb") as f:
        writer = Writer(f)
        for tile, data, _ in tiles:
            if data:
                writer.write_tile(zxy_to_tileid(tile.z, tile.x, tile.y), data)
                written += 1
        if not written:
            raise TileError("every tile in that area and zoom range is empty: nothing to export")
        west, south, east, north = bbox
        writer.finalize({
            "tile_type": TileType.MVT, "tile_compression": Compression.GZIP,
            "min_lon_e7": _e7(west), "min_lat_e7": _e7(south),
            "max_lon_e7": _e7(east), "max_lat_e7": _e7(north),
            "center_zoom": metadata["minzoom"], "center_lon_e7": _e7((west + east) / 2),
            "center_lat_e7": _e7((south + north) / 2),
        }, metadata)
    return written


def write_mbtiles(path: Path, tiles: Tiles, bbox: BBox, metadata: dict[str, Any]) -> int:
    """Write tiles to an MBTiles 1.3 file at ``path`` (rows counted from the south); returns
    how many."""
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    try:
        db.executescript("""
            CREATE TABLE metadata (name TEXT, value TEXT);
            CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER,
                                tile_data BLOB);
            CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row);
        """)
        written = 0
        for tile, data, _ in tiles:
            if data:
                db.execute("INSERT INTO tiles VALUES (?, ?, ?, ?)",
                           (tile.z, tile.x, (1 << tile.z) - 1 - tile.y, data))
                written += 1
        if not written:
            raise TileError("every tile in that area and zoom range is empty: nothing to export")
        west, south, east, north = bbox
        rows = {
            "name": metadata["name"], "description": metadata["description"],
            "attribution": metadata["attribution"], "type": "baselayer", "version": "1.3",
            "format": "pbf", "bounds": f"{west},{south},{east},{north}",
            "center": f"{(west + east) / 2},{(south + north) / 2},{metadata['minzoom']}",
            "minzoom": str(metadata["minzoom"]), "maxzoom": str(metadata["maxzoom"]),
            "json": json.dumps({"vector_layers": metadata["vector_layers"]}),
        }
        db.executemany("INSERT INTO metadata VALUES (?, ?)", rows.items())
        db.commit()
    finally:
        db.close()
    return written
