"""Builds the buildings' 3D Tiles from the city model, rewriting only the tiles that changed.

A build reads every current building's box and heights (cheap: no geometry), lays out the
quadtree, and names each tile's content by a digest of what it draws: the version ids of
its buildings (an edit or import makes new versions), the colours, the format and, when
some building's ground was taken from the terrain, the DEMs' version ids
(:mod:`tiles.threed.writer`). Only the tiles whose digest changed are drawn from their
buildings' footprints. Everything is read in one REPEATABLE READ snapshot, so a build is of
one moment of the city.

Buildings whose ``geom_3d`` is a volume (CityJSON LOD1/LOD2 surfaces) are drawn from it as
it is (:mod:`tiles.threed.solids`); the others are extruded from footprint and heights.
A building's base is its ``ground_elevation``; where that is unknown, the lowest DEM height
at its footprint's box corners and centre (so it never floats above a slope), and 0 where
no DEM covers it either.

The stale tiles are drawn in batches, each a task (:func:`cim.batch.completed`: a Dask
worker anywhere, or a thread here) that reads its buildings in the build's own snapshot
(exported by PostgreSQL, so every task sees the same moment) and writes its glb files to the
build's staging folder; the tileset is published once every batch has succeeded.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import shapely
from sqlalchemy import Connection, Engine

from cim.batch import completed, slots
from layers.catalog import load_catalog
from tiles.terrain import dems_within, sample_heights
from tiles.threed.extrude import Footprints, Mesh, building_mesh, roof_codes
from tiles.threed.glb import Property, write_glb
from tiles.threed.hierarchy import BATCHES_PER_SLOT, in_batches
from tiles.threed.solids import is_solid, solid_mesh
from tiles.threed.writer import (
    MANIFEST,
    TILESET,
    BuildReport,
    Progress,
    fetch,
    plan_tileset,
    publish_tileset,
    staging_folder,
    write_atomic,
)

if TYPE_CHECKING:
    from dask.distributed import Client

__all__ = ["MANIFEST", "TILESET", "BuildReport", "build_buildings"]

FORMAT = "cim-buildings-glb/2"
"""Changing how a tile is drawn means changing this: every tile is rebuilt once."""
LEAF_SIZE = 500
"""Buildings in a leaf (and kept by a parent): a few hundred kB of glb, one draw call.
Additive refinement draws every ancestor of a visible tile whole, so this bounds what is
drawn off screen: 2,000 made street-level frames of the 470k city draw ~14,000 buildings."""
BATCH_BUILDINGS = 20_000
"""Most buildings one task reads from the database and draws."""
SNAPSHOT = re.compile(r"[0-9A-F]+-[0-9A-F]+(-[0-9]+)?")

SUMMARY = """
    SELECT vid, ST_XMin(b), ST_YMin(b), ST_XMax(b), ST_YMax(b), ground_elevation, min_height,
           height
    FROM (SELECT vid, coalesce(geom_3d, geom)::box2d AS b, ground_elevation, min_height, height
          FROM cim.buildings WHERE valid_to IS NULL) current
"""
DETAIL = """
    SELECT vid, id, ST_AsBinary(geom), min_height, height, roof_shape, roof_height, use,
           floors, name, ST_AsBinary(geom_3d)
    FROM cim.buildings WHERE vid = ANY(%(vids)s)
"""


def use_colours() -> tuple[dict[str, list[int]], list[int]]:
    """RGBA by ``use`` and the default, from the buildings layer's style in the catalog."""
    style = next(layer.style for layer in load_catalog() if layer.id == "buildings")

    def rgba(colour: str) -> list[int]:
        return [int(colour[i:i + 2], 16) for i in (1, 3, 5)] + [255]

    return {use: rgba(c) for use, c in style.categories.items()}, rgba(style.colour)


def _tile_glb(rows: list[tuple], ground: np.ndarray, centre: np.ndarray,
              colours: dict[str, list[int]], default: list[int]) -> bytes:
    """The glb of one tile's buildings (rows of DETAIL in feature order, standing on
    ``ground``)."""
    (_, ids, wkb, min_h, height, roof, roof_h, use, floors, name, wkb_3d) = zip(*rows,
                                                                                 strict=True)
    min_h = np.array(min_h, dtype=float)
    geoms_3d = shapely.from_wkb(np.array(wkb_3d, dtype=object))
    solid = is_solid(geoms_3d)
    blocks = np.flatnonzero(~solid)
    fp = Footprints(
        geoms=shapely.from_wkb(np.array(wkb, dtype=object))[blocks],
        bottom=(ground + min_h)[blocks], top=(ground + np.array(height, dtype=float))[blocks],
        roof=roof_codes(np.array(roof, dtype=object))[blocks],
        roof_height=np.array([np.nan if r is None else r for r in roof_h], dtype=float)[blocks],
        floor=(min_h > 0)[blocks])
    mesh = _joined(building_mesh(fp) if len(blocks) else Mesh.empty(), blocks,
                   solid_mesh(geoms_3d[solid], np.flatnonzero(solid)))
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


def _joined(blocks: Mesh, rows: np.ndarray, solids: Mesh) -> Mesh:
    """One mesh of the extruded buildings (whose feature indices count ``rows``) and of
    those drawn from their own solids."""
    return Mesh(np.concatenate([blocks.positions, solids.positions]),
                np.concatenate([blocks.normals, solids.normals]),
                np.concatenate([rows[blocks.feature], solids.feature]),
                np.concatenate([blocks.triangles,
                                solids.triangles + len(blocks.positions)]).astype(np.uint32))


def _summary(conn: Connection, storage_root: Path | None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Version ids, boxes (west, south, east, north, bottom, top), grounds, and the DEMs
    any ground was sampled from."""
    table = np.array(fetch(conn, SUMMARY), dtype=float).reshape(-1, 8)
    ground = table[:, 5]
    unknown = np.flatnonzero(np.isnan(ground))
    used: list[int] = []
    if len(unknown) and storage_root is not None:
        dems = dems_within(conn, storage_root)
        if dems:
            w, s, e, n = (table[unknown, i] for i in range(1, 5))
            lon = np.concatenate([w, e, e, w, (w + e) / 2])
            lat = np.concatenate([s, s, n, n, (s + n) / 2])
            heights = sample_heights(dems, lon, lat).reshape(5, -1)
            ground[unknown] = np.where(np.isnan(heights), np.inf, heights).min(axis=0)
            used = [d.vid for d in dems]
    ground = np.where(np.isfinite(ground), ground, 0.0)
    box = np.column_stack([table[:, 1:5], ground + table[:, 6], ground + table[:, 7]])
    return table[:, 0].astype(np.int64), box, ground, used


TileWork = tuple[str, np.ndarray, np.ndarray, np.ndarray]
"""A tile to draw: its name, its buildings' version ids and grounds, its ECEF centre."""


def draw_batch(engine: Engine, snapshot: str, tiles: list[TileWork],
               colours: dict[str, list[int]], default: list[int], staging: str) -> int:
    """A task: draw a batch of tiles from their buildings as of ``snapshot`` (exported by the
    build's transaction) into ``staging``; returns how many buildings it drew."""
    if not SNAPSHOT.fullmatch(snapshot):
        raise ValueError(f"not a PostgreSQL snapshot id: {snapshot!r}")
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, \
            conn.begin():
        conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        wanted = np.concatenate([vids for _, vids, _, _ in tiles])
        rows = {r[0]: r for r in fetch(conn, DETAIL, vids=wanted.tolist())}
    for name, vids, ground, centre in tiles:
        glb = _tile_glb([rows[v] for v in vids], ground, centre, colours, default)
        write_atomic(Path(staging) / f"{name}.glb", glb)
    return len(wanted)


def build_buildings(engine: Engine, out: Path, progress: Progress | None = None,
                    leaf_size: int = LEAF_SIZE, full: bool = False,
                    storage_root: Path | None = None, client: Client | None = None,
                    threads: int = 1) -> BuildReport:
    """Build (or bring up to date) the buildings' tileset in ``out``; ``full`` rewrites
    every tile. With ``storage_root`` (where the DEMs are), buildings without a
    ``ground_elevation`` stand on the terrain. Tiles are drawn on ``client``'s workers, or
    here on ``threads`` threads."""
    started = time.perf_counter()
    step = progress or (lambda stage, fraction: None)
    colours, default = use_colours()
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, \
            conn.begin():
        step("reading", 0.0)
        vids, box, ground, dems = _summary(conn, storage_root)
        snapshot = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
        salt = "|".join([FORMAT, json.dumps([colours, default], sort_keys=True),
                         *([f"dems {dems}"] if dems else [])])
        step("planning", 0.05)
        plan = plan_tileset(out, vids, box, salt, leaf_size, full)
        todo = sum(len(t.members) for t in plan.stale)
        batches = in_batches(plan.stale, min(BATCH_BUILDINGS, max(
            1, math.ceil(todo / (slots(client, threads) * BATCHES_PER_SLOT)))))
        # Largest first (tasks start in the order given): the small ones fill in at the end,
        # so the workers finish together rather than waiting on one big last batch.
        batches.sort(key=lambda batch: -sum(len(t.members) for t in batch))
        staging = staging_folder(out)
        calls = [(snapshot, [(t.name, vids[t.members], ground[t.members], plan.centres[t.name])
                             for t in batch], colours, default, str(staging))
                 for batch in batches]
        done = 0
        try:
            for _, drawn in completed(draw_batch, calls, engine, client, threads):
                done += drawn
                step(f"{len(plan.stale)} tiles", 0.1 + 0.9 * done / max(todo, 1))
            report = publish_tileset(out, plan, staging, salt, {"buildings": len(vids)},
                                     started)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    step("done", 1.0)
    return report
