"""Writes a 3D tileset folder incrementally: the quadtree of its features, each stale tile's
glb, tileset.json and ``manifest.json``.

Each tile's content is named in the manifest by a digest of what it draws: the version ids
of its features and a salt (the drawing's format and style, and anything else its meshes
depend on). Tiles whose digest is the one recorded at the last build are left as they are;
the rest are drawn by the caller and written atomically, then tileset.json, then the
manifest; files of tiles that no longer exist go last. So a reader of the folder never sees
a tileset.json naming a file that is not there yet.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import Connection

from tiles.threed.geodesy import metres_per_degree, to_ecef
from tiles.threed.hierarchy import Tile, quadtree, tileset_document

MANIFEST = "manifest.json"
TILESET = "tileset.json"

Progress = Callable[[str, float], None]
Draw = Callable[[list[Tile], dict[str, np.ndarray]], Iterator[tuple[Tile, bytes]]]
"""Given the stale tiles and every tile's ECEF centre, yields each stale tile's glb."""


@dataclass(frozen=True)
class BuildReport:
    buildings: int
    """Features in the tileset (buildings, pipes, ...)."""
    tiles: int
    written: int
    removed: int
    seconds: float


def fetch(conn: Connection, sql: str, **params: object) -> list[tuple]:
    """Plain tuples from the driver: SQLAlchemy's rows cost 20 times more to unpack here."""
    with conn.connection.dbapi_connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    temporary.replace(path)


def _digest(vids: np.ndarray, salt: str) -> str:
    h = hashlib.blake2b(f"{salt}|".encode(), digest_size=16)
    h.update(np.sort(vids).astype("<i8").tobytes())
    return h.hexdigest()


def _centre(region: np.ndarray) -> np.ndarray:
    return to_ecef(np.array([(region[0] + region[2]) / 2]),
                   np.array([(region[1] + region[3]) / 2]),
                   np.array([(region[4] + region[5]) / 2]))[0]


def visual_size(box: np.ndarray) -> np.ndarray:
    """Each feature's size in metres (its box's horizontal diagonal or its height, whichever
    is larger) from (n, 6) boxes: west, south, east, north, bottom, top."""
    kx, ky = metres_per_degree((box[:, 1] + box[:, 3]) / 2)
    return np.maximum(box[:, 5] - box[:, 4],
                      np.hypot((box[:, 2] - box[:, 0]) * kx, (box[:, 3] - box[:, 1]) * ky))


def write_tileset(out: Path, vids: np.ndarray, box: np.ndarray, salt: str, draw: Draw,
                  progress: Progress, leaf_size: int, full: bool, extras: dict[str, object]
                  ) -> BuildReport:
    """Bring the tileset in ``out`` up to date with the features ``vids`` and their boxes
    (n, 6); ``full`` rewrites every tile."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = {}
    before: dict[str, str] = {} if full else manifest.get("tiles", {})
    progress("planning", 0.05)
    size = visual_size(box)
    root = quadtree((box[:, 0] + box[:, 2]) / 2, (box[:, 1] + box[:, 3]) / 2, size, box,
                    leaf_size, leaf_size)
    tiles = root.walk() if root is not None else []
    digests = {t.name: _digest(vids[t.members], salt) for t in tiles}
    stale = [t for t in tiles
             if before.get(t.name) != digests[t.name] or not (out / f"{t.name}.glb").exists()]
    centres = {t.name: _centre(t.region) for t in tiles}
    todo = sum(len(t.members) for t in stale)
    done = 0
    for tile, glb in draw(stale, centres):
        write_atomic(out / f"{tile.name}.glb", glb)
        done += len(tile.members)
        progress(f"{len(stale)} tiles", 0.1 + 0.9 * done / max(todo, 1))
    if root is not None:
        top = float(max(size.max(), root.geometric_error))
        document = tileset_document(root, centres, top, extras)
        write_atomic(out / TILESET, json.dumps(document).encode())
    else:
        (out / TILESET).unlink(missing_ok=True)
    write_atomic(out / MANIFEST, json.dumps({"format": salt.split("|")[0],
                                             "tiles": digests}).encode())
    gone = set(manifest.get("tiles", {})) - set(digests)
    for name in gone:
        (out / f"{name}.glb").unlink(missing_ok=True)
    progress("done", 1.0)
    return BuildReport(len(vids), len(tiles), len(stale), len(gone),
                       time.perf_counter() - started)
