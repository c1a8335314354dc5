"""Writes a 3D tileset folder incrementally: the quadtree of its features, each stale tile's
glb, tileset.json and ``manifest.json``.

Each tile's content is named in the manifest by a digest of what it draws: the version ids
of its features and a salt (the drawing's format and style, and anything else its meshes
depend on). Tiles whose digest is the one recorded at the last build are left as they are;
the rest are drawn by the caller (here, or by tasks anywhere) into a staging folder inside
the tileset's. Only when every one is drawn are they renamed into place, then tileset.json,
then the manifest written atomically; files of tiles that no longer exist go last. So a
failed build leaves the folder as it was, and a reader never sees a tileset.json naming a
file that is not there yet.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
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


@dataclass(frozen=True)
class Plan:
    """What a build of a tileset folder will do."""

    root: Tile | None
    tiles: list[Tile]
    stale: list[Tile]
    """The tiles to draw: new, changed, or with their file missing."""
    digests: dict[str, str]
    centres: dict[str, np.ndarray]
    top: float
    """The tileset's geometric error."""
    recorded: frozenset[str]
    """The tiles the last build recorded."""
    features: int


def plan_tileset(out: Path, vids: np.ndarray, box: np.ndarray, salt: str, leaf_size: int,
                 full: bool) -> Plan:
    """The quadtree of the features ``vids`` with their boxes (n, 6), and which of its tiles
    differ from what ``out`` holds (all of them when ``full``)."""
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = {}
    before: dict[str, str] = {} if full else manifest.get("tiles", {})
    size = visual_size(box)
    root = quadtree((box[:, 0] + box[:, 2]) / 2, (box[:, 1] + box[:, 3]) / 2, size, box,
                    leaf_size, leaf_size)
    tiles = root.walk() if root is not None else []
    digests = {t.name: _digest(vids[t.members], salt) for t in tiles}
    stale = [t for t in tiles
             if before.get(t.name) != digests[t.name] or not (out / f"{t.name}.glb").exists()]
    top = float(max(size.max(), root.geometric_error)) if root is not None else 0.0
    return Plan(root, tiles, stale, digests, {t.name: _centre(t.region) for t in tiles}, top,
                frozenset(manifest.get("tiles", {})), len(vids))


def staging_folder(out: Path) -> Path:
    """A new folder inside ``out`` for this build's glb files (the server never serves it)."""
    staging = out / f".staging-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    return staging


def publish_tileset(out: Path, plan: Plan, staging: Path, salt: str,
                    extras: dict[str, object], started: float) -> BuildReport:
    """Move every stale tile's glb from ``staging`` into ``out``, then write tileset.json and
    the manifest and remove the files of tiles that are gone."""
    missing = [t.name for t in plan.stale if not (staging / f"{t.name}.glb").is_file()]
    if missing:
        raise RuntimeError(f"{len(missing)} tiles were not drawn (first: {missing[0]})")
    for tile in plan.stale:
        os.replace(staging / f"{tile.name}.glb", out / f"{tile.name}.glb")
    if plan.root is not None:
        document = tileset_document(plan.root, plan.centres, plan.top, extras)
        write_atomic(out / TILESET, json.dumps(document).encode())
    else:
        (out / TILESET).unlink(missing_ok=True)
    write_atomic(out / MANIFEST, json.dumps({"format": salt.split("|")[0],
                                             "tiles": plan.digests}).encode())
    gone = plan.recorded - set(plan.digests)
    for name in gone:
        (out / f"{name}.glb").unlink(missing_ok=True)
    return BuildReport(plan.features, len(plan.tiles), len(plan.stale), len(gone),
                       time.perf_counter() - started)


def write_tileset(out: Path, vids: np.ndarray, box: np.ndarray, salt: str, draw: Draw,
                  progress: Progress, leaf_size: int, full: bool, extras: dict[str, object]
                  ) -> BuildReport:
    """Bring the tileset in ``out`` up to date with the features ``vids`` and their boxes
    (n, 6), drawing the stale tiles here with ``draw``; ``full`` rewrites every tile."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    progress("planning", 0.05)
    plan = plan_tileset(out, vids, box, salt, leaf_size, full)
    todo = sum(len(t.members) for t in plan.stale)
    done = 0
    staging = staging_folder(out)
    try:
        for tile, glb in draw(plan.stale, plan.centres):
            write_atomic(staging / f"{tile.name}.glb", glb)
            done += len(tile.members)
            progress(f"{len(plan.stale)} tiles", 0.1 + 0.9 * done / max(todo, 1))
        report = publish_tileset(out, plan, staging, salt, extras, started)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    progress("done", 1.0)
    return report
