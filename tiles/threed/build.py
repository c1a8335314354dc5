"""Builds the buildings' 3D Tiles from the city model, rewriting only the tiles that changed.

A build reads every current building's box and heights (cheap: no geometry), lays out the
quadtree, and names each tile's content by a digest of what it draws: the version ids of
its buildings (an edit or import makes new versions), the colours and the format. Tiles
whose digest is the one recorded at the last build (``manifest.json``) are left as they are;
the rest are built from their buildings' footprints and written atomically, then
tileset.json, then the manifest; files of tiles that no longer exist go last. So an edit
rewrites the few tiles holding the buildings it changed, and a reader of the folder never
sees a tileset.json naming a file that is not there yet. Everything is read in one
REPEATABLE READ snapshot, so a build is of one moment of the city.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from sqlalchemy import Connection, Engine

from layers.catalog import load_catalog
from tiles.threed.extrude import Footprints, building_mesh, roof_codes
from tiles.threed.geodesy import metres_per_degree, to_ecef
from tiles.threed.glb import Property, write_glb
from tiles.threed.hierarchy import Tile, quadtree, tileset_document

FORMAT = "cim-buildings-glb/1"
"""Changing how a tile is drawn means changing this: every tile is rebuilt once."""
MANIFEST = "manifest.json"
TILESET = "tileset.json"
LEAF_SIZE = 2000
"""Buildings in a leaf (and kept by a parent): ~1-2 MB of glb, one draw call."""
BATCH_BUILDINGS = 20_000
"""Buildings read from the database at once while writing tiles."""

SUMMARY = """
    SELECT vid, ST_XMin(b), ST_YMin(b), ST_XMax(b), ST_YMax(b),
           coalesce(ground_elevation, 0) + min_height, coalesce(ground_elevation, 0) + height
    FROM (SELECT vid, geom::box2d AS b, ground_elevation, min_height, height
          FROM cim.buildings WHERE valid_to IS NULL) current
"""
DETAIL = """
    SELECT vid, id, ST_AsBinary(geom), coalesce(ground_elevation, 0) AS ground, min_height,
           height, roof_shape, roof_height, use, floors, name
    FROM cim.buildings WHERE vid = ANY(%(vids)s)
"""

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class BuildReport:
    buildings: int
    tiles: int
    written: int
    removed: int
    seconds: float


def use_colours() -> tuple[dict[str, list[int]], list[int]]:
    """RGBA by ``use`` and the default, from the buildings layer's style in the catalog."""
    style = next(layer.style for layer in load_catalog() if layer.id == "buildings")

    def rgba(colour: str) -> list[int]:
        return [int(colour[i:i + 2], 16) for i in (1, 3, 5)] + [255]

    return {use: rgba(c) for use, c in style.categories.items()}, rgba(style.colour)


def _digest(vids: np.ndarray, style: str) -> str:
    h = hashlib.blake2b(f"{FORMAT}|{style}|".encode(), digest_size=16)
    h.update(np.sort(vids).astype("<i8").tobytes())
    return h.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    temporary.replace(path)


def _tile_glb(rows: list[tuple], centre: np.ndarray, colours: dict[str, list[int]],
              default: list[int]) -> bytes:
    """The glb of one tile's buildings (rows of DETAIL in feature order)."""
    (_, ids, wkb, ground, min_h, height, roof, roof_h, use, floors, name) = zip(*rows,
                                                                                 strict=True)
    ground = np.array(ground, dtype=float)
    min_h = np.array(min_h, dtype=float)
    fp = Footprints(
        geoms=shapely.from_wkb(np.array(wkb, dtype=object)),
        bottom=ground + min_h, top=ground + np.array(height, dtype=float),
        roof=roof_codes(np.array(roof, dtype=object)),
        roof_height=np.array([np.nan if r is None else r for r in roof_h], dtype=float),
        floor=min_h > 0)
    mesh = building_mesh(fp)
    local = mesh.positions - centre
    y_up = np.column_stack([local[:, 0], local[:, 2], -local[:, 1]])
    n = mesh.normals
    normals = np.column_stack([n[:, 0], n[:, 2], -n[:, 1]])
    palette = np.array([colours.get(u, default) if u else default for u in use], dtype=np.uint8)
    columns = {
        "id": Property(list(ids), required=True,
                       description="The building's id in /collections/buildings/items/{id}"),
        "height": Property(np.array(height, dtype=float), "FLOAT64", required=True,
                           description="Top above the ground, m"),
        "use": Property([u or "" for u in use], no_data=""),
        "floors": Property([-1 if f is None else f for f in floors], "INT32", no_data=-1),
        "name": Property([s or "" for s in name], no_data=""),
    }
    return write_glb(y_up, normals, palette[mesh.feature], mesh.feature, mesh.triangles,
                     "building", columns)


def _rows(conn: Connection, sql: str, **params: object) -> list[tuple]:
    """Plain tuples from the driver: SQLAlchemy's rows cost 20 times more to unpack here."""
    with conn.connection.dbapi_connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _summary(conn: Connection) -> tuple[np.ndarray, np.ndarray]:
    rows = _rows(conn, SUMMARY)
    table = np.array(rows, dtype=float).reshape(-1, 7)
    return table[:, 0].astype(np.int64), table[:, 1:]


def _centre(region: np.ndarray) -> np.ndarray:
    return to_ecef(np.array([(region[0] + region[2]) / 2]),
                   np.array([(region[1] + region[3]) / 2]),
                   np.array([(region[4] + region[5]) / 2]))[0]


def build_buildings(engine: Engine, out: Path, progress: Progress | None = None,
                    leaf_size: int = LEAF_SIZE, full: bool = False) -> BuildReport:
    """Build (or bring up to date) the buildings' tileset in ``out``; ``full`` rewrites
    every tile."""
    started = time.perf_counter()
    step = progress or (lambda stage, fraction: None)
    out.mkdir(parents=True, exist_ok=True)
    colours, default = use_colours()
    style = json.dumps([colours, default], sort_keys=True)
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = {}
    before: dict[str, str] = {} if full else manifest.get("tiles", {})

    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, \
            conn.begin():
        step("reading", 0.0)
        vids, box = _summary(conn)
        kx, ky = metres_per_degree((box[:, 1] + box[:, 3]) / 2)
        size = np.maximum(box[:, 5] - box[:, 4],
                          np.hypot((box[:, 2] - box[:, 0]) * kx, (box[:, 3] - box[:, 1]) * ky))
        step("planning", 0.05)
        root = quadtree((box[:, 0] + box[:, 2]) / 2, (box[:, 1] + box[:, 3]) / 2, size, box,
                        leaf_size, leaf_size)
        tiles = root.walk() if root is not None else []
        digests = {t.name: _digest(vids[t.members], style) for t in tiles}
        stale = [t for t in tiles
                 if before.get(t.name) != digests[t.name] or not (out / f"{t.name}.glb").exists()]
        centres = {t.name: _centre(t.region) for t in tiles}
        todo = sum(len(t.members) for t in stale)
        done = 0
        for batch in _batches(stale):
            wanted = np.concatenate([vids[t.members] for t in batch])
            rows = {r[0]: r for r in _rows(conn, DETAIL, vids=wanted.tolist())}
            for tile in batch:
                glb = _tile_glb([rows[v] for v in vids[tile.members]], centres[tile.name],
                                colours, default)
                _write_atomic(out / f"{tile.name}.glb", glb)
                done += len(tile.members)
                step(f"{len(stale)} tiles", 0.1 + 0.9 * done / max(todo, 1))

    if root is not None:
        top = float(max(size.max(), root.geometric_error))
        document = tileset_document(root, centres, top, {"buildings": len(vids)})
        _write_atomic(out / TILESET, json.dumps(document).encode())
    else:
        (out / TILESET).unlink(missing_ok=True)
    _write_atomic(out / MANIFEST, json.dumps({"format": FORMAT, "tiles": digests}).encode())
    gone = set(manifest.get("tiles", {})) - set(digests)
    for name in gone:
        (out / f"{name}.glb").unlink(missing_ok=True)
    step("done", 1.0)
    return BuildReport(len(vids), len(tiles), len(stale), len(gone),
                       time.perf_counter() - started)


def _batches(tiles: list[Tile]) -> list[list[Tile]]:
    batches: list[list[Tile]] = [[]]
    count = 0
    for tile in tiles:
        if count >= BATCH_BUILDINGS:
            batches.append([])
            count = 0
        batches[-1].append(tile)
        count += len(tile.members)
    return [b for b in batches if b]
