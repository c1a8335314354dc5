"""Offline tile pyramids: PMTiles v3 (the ``pmtiles`` package's writer) or MBTiles 1.3.

Both hold the gzip-compressed MVT tiles as the cache stores them and TileJSON's
``vector_layers`` in their metadata, so MapLibre, GDAL and tippecanoe's tools read them.
Empty tiles are left out (readers take a missing tile as empty). The archive is written
beside its final name and renamed into place, so a failed export leaves no half file.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import morecantile
from pmtiles.tile import Compression, TileType, zxy_to_tileid
from pmtiles.writer import Writer

from tiles.errors import TileError
from tiles.grid import BBox

FORMATS = (".pmtiles", ".mbtiles")
Tiles = Iterable[tuple[morecantile.Tile, bytes, bool]]


def pmtiles_order(tiles: list[morecantile.Tile]) -> list[morecantile.Tile]:
    """Tiles in PMTiles' Hilbert order, so the archive is clustered."""
    return sorted(tiles, key=lambda t: zxy_to_tileid(t.z, t.x, t.y))


def _e7(value: float) -> int:
    return round(value * 10_000_000)


def write_pmtiles(path: Path, tiles: Tiles, bbox: BBox, metadata: dict[str, Any]) -> int:
    """Write tiles (in :func:`pmtiles_order`) to a PMTiles v3 archive; returns how many."""
    partial = path.with_name(f".{path.name}.partial")
    written = 0
    try:
        with partial.open("wb") as f:
            writer = Writer(f)
            for tile, data, _ in tiles:
                if data:
                    writer.write_tile(zxy_to_tileid(tile.z, tile.x, tile.y), data)
                    written += 1
            if not written:
                raise TileError("every tile in that area and zoom range is empty: "
                                "nothing to export")
            west, south, east, north = bbox
            writer.finalize({
                "tile_type": TileType.MVT, "tile_compression": Compression.GZIP,
                "min_lon_e7": _e7(west), "min_lat_e7": _e7(south),
                "max_lon_e7": _e7(east), "max_lat_e7": _e7(north),
                "center_zoom": metadata["minzoom"], "center_lon_e7": _e7((west + east) / 2),
                "center_lat_e7": _e7((south + north) / 2),
            }, metadata)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
    return written


def write_mbtiles(path: Path, tiles: Tiles, bbox: BBox, metadata: dict[str, Any]) -> int:
    """Write tiles to an MBTiles 1.3 file (rows counted from the south); returns how many."""
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    db = sqlite3.connect(partial)
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
    except BaseException:
        db.close()
        partial.unlink(missing_ok=True)
        raise
    db.close()
    os.replace(partial, path)
    return written
