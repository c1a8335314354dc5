"""Infrastructure as 3D Tiles beside the buildings: bridges, water surfaces and the drainage
network below ground, each a tileset of its own (``TILESETS``) built like the buildings'
(quadtree, incremental by version ids, EXT_mesh_features ids into a property table).

Heights come from the model, and where it is silent from the terrain (the DEMs) and a
documented default:

* bridges (``structures`` of kind bridge): a deck ``DECK_THICKNESS_M`` thick whose top is
  ``deck_elevation``; unknown, the ground at the bridge's middle plus its ``clearance_m``
  (``DEFAULT_CLEARANCE_M`` when unknown) plus the deck. A line is drawn ``DECK_WIDTH_M``
  wide (the model keeps no bridge width), a polygon as it is;
* water bodies: a flat surface at ``normal_level``; unknown, the lowest ground along the
  shore;
* pipes: cylinders whose inside bottom follows ``upstream_invert`` to ``downstream_invert``
  along the line, ``diameter_m`` wide (a rectangular section drawn as a cylinder of its
  ``height_m``; ``DEFAULT_DIAMETER_M`` when neither is known); an unknown invert lies
  ``DEFAULT_DEPTH_M`` below the ground at that end;
* drainage nodes: upright shafts from ``invert_elevation`` to ``ground_elevation`` (unknown:
  the ground; invert unknown: ``DEFAULT_DEPTH_M`` below it), as wide as ``NODE_DIAMETERS_M``
  says for their kind.

Where no DEM covers a place either, its ground is taken as 0 m.

The features are read here, in one snapshot; the stale tiles are drawn in batches, each a
task (:func:`cim.batch.completed`: a Dask worker, given the features once, or a thread
here) that hands its glb files back to be staged and published with the tileset.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import shapely
from sqlalchemy import Connection, Engine

from cim.batch import completed, shared, slots
from layers.catalog import load_catalog
from layers.model import LayerDefinition
from tiles.terrain import DemFile, dems_within, sample_heights
from tiles.threed.glb import Property, write_glb
from tiles.threed.hierarchy import BATCHES_PER_SLOT, Tile, in_batches
from tiles.threed.shapes import DECK, PIPE, SHAFT, SURFACE, Parts, tile_mesh
from tiles.threed.writer import BuildReport, Draw, Progress, fetch, write_tileset

if TYPE_CHECKING:
    from dask.distributed import Client

FORMAT = "cim-infrastructure-glb/1"
"""Changing how features are drawn means changing this: every tile is rebuilt once."""
LEAF_SIZE = 500
"""Features in a leaf: a pipe of a few segments is some hundreds of vertices."""
TILESETS: dict[str, tuple[str, ...]] = {
    "bridges": ("bridges",),
    "water": ("water_bodies",),
    "drainage": ("drainage_pipes", "drainage_nodes"),
}
"""Each tileset and the catalog layers it draws: a reader must be cleared for all of them."""

DECK_THICKNESS_M = 1.2
DECK_WIDTH_M = 12.0
DEFAULT_CLEARANCE_M = 5.0
DEFAULT_DIAMETER_M = 0.3
DEFAULT_DEPTH_M = 2.0
NODE_DIAMETERS_M = {"manhole": 1.0, "inlet": 0.6, "outfall": 1.5, "pumping_station": 6.0}
DEFAULT_NODE_DIAMETER_M = 1.0

BRIDGES = """
    SELECT vid, id, name, kind, ST_AsBinary(geom), deck_elevation, clearance_m
    FROM cim.structures WHERE valid_to IS NULL AND kind = 'bridge' ORDER BY vid
"""
WATER = """
    SELECT vid, id, name, kind, ST_AsBinary(geom), normal_level
    FROM cim.water_bodies WHERE valid_to IS NULL ORDER BY vid
"""
PIPES = """
    SELECT vid, id, name, shape, ST_AsBinary(geom), coalesce(diameter_m, height_m),
           upstream_invert, downstream_invert
    FROM cim.drainage_pipes WHERE valid_to IS NULL ORDER BY vid
"""
NODES = """
    SELECT vid, id, name, kind, ST_AsBinary(geom), invert_elevation, ground_elevation
    FROM cim.drainage_nodes WHERE valid_to IS NULL ORDER BY vid
"""


@dataclass(frozen=True)
class Features:
    """One tileset's features: what is drawn (``parts``) and what each carries."""

    vids: np.ndarray
    """Version ids, made unique across the tables a tileset draws."""
    ids: list[str]
    collection: list[str]
    kind: list[str]
    name: list[str]
    colour: np.ndarray
    """(n, 4) RGBA bytes."""
    parts: Parts


class Ground:
    """Terrain heights at points, from the DEMs; remembers whether any were asked for."""

    def __init__(self, dems: list[DemFile]) -> None:
        self.dems, self.used = dems, False

    def at(self, points: np.ndarray) -> np.ndarray:
        """Heights at shapely points (lon/lat); 0 where no DEM covers them."""
        if not len(points):
            return np.zeros(0)
        self.used = True
        heights = sample_heights(self.dems, shapely.get_x(points), shapely.get_y(points))
        return np.nan_to_num(heights, nan=0.0)


def _floats(values: tuple) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _colours(layer: LayerDefinition, values: list[object]) -> np.ndarray:
    """RGBA of each feature as the layer's map style colours it (categories or ramp)."""
    style = layer.style

    def rgb(colour: str) -> list[int]:
        return [int(colour[i:i + 2], 16) for i in (1, 3, 5)]

    if style.categories:
        found = [rgb(style.categories.get(str(v), style.colour)) for v in values]
    elif style.ramp:
        stops = np.array([s.value for s in style.ramp])
        ramp = np.array([rgb(s.colour) for s in style.ramp], dtype=float)
        x = np.array([np.nan if v is None else v for v in values], dtype=float)
        x = np.where(np.isnan(x), stops[0], x)
        found = np.rint(np.column_stack([np.interp(x, stops, ramp[:, i]) for i in range(3)]))
    else:
        found = [rgb(style.colour)] * len(values)
    table = np.array(found, dtype=np.uint8).reshape(-1, 3)
    return np.column_stack([table, np.full(len(table), 255, np.uint8)])


def _strings(values: tuple) -> list[str]:
    return [v or "" for v in values]


def _middle(geoms: np.ndarray) -> np.ndarray:
    """Halfway along each line; a point inside each polygon."""
    lines = np.isin(shapely.get_type_id(geoms), [1, 5])
    middle = np.empty(len(geoms), dtype=object)
    middle[lines] = shapely.line_interpolate_point(geoms[lines], 0.5, normalized=True)
    middle[~lines] = shapely.point_on_surface(geoms[~lines])
    return middle


def _bridges(conn: Connection, ground: Ground, layer: LayerDefinition) -> Features:
    rows = fetch(conn, BRIDGES)
    vid, ids, name, kind, wkb, deck, clearance = zip(*rows, strict=True) if rows else [()] * 7
    geoms = shapely.from_wkb(np.array(wkb, dtype=object))
    top = _floats(deck)
    unknown = np.isnan(top)
    if unknown.any():
        middle = _middle(geoms[unknown])
        lift = np.nan_to_num(_floats(clearance)[unknown], nan=DEFAULT_CLEARANCE_M)
        top[unknown] = ground.at(middle) + lift + DECK_THICKNESS_M
    n = len(rows)
    parts = Parts(geoms, np.full(n, DECK), np.full(n, DECK_WIDTH_M), top - DECK_THICKNESS_M,
                  top, top, top)
    return Features(np.array(vid, dtype=np.int64), list(ids), ["bridges"] * n, _strings(kind),
                    _strings(name), _colours(layer, list(kind)), parts)


def _water(conn: Connection, ground: Ground, layer: LayerDefinition) -> Features:
    rows = fetch(conn, WATER)
    vid, ids, name, kind, wkb, normal = zip(*rows, strict=True) if rows else [()] * 6
    geoms = shapely.from_wkb(np.array(wkb, dtype=object))
    level = _floats(normal)
    unknown = np.flatnonzero(np.isnan(level))
    if len(unknown):
        shore, owner = shapely.get_coordinates(shapely.boundary(geoms[unknown]),
                                               return_index=True)
        heights = ground.at(shapely.points(shore))
        level[unknown] = pd.Series(heights).groupby(owner).min().reindex(
            range(len(unknown)), fill_value=0.0).to_numpy()
    n = len(rows)
    parts = Parts(geoms, np.full(n, SURFACE), np.zeros(n), level, level, level, level)
    return Features(np.array(vid, dtype=np.int64), list(ids), ["water_bodies"] * n,
                    _strings(kind), _strings(name), _colours(layer, list(kind)), parts)


def _drainage(conn: Connection, ground: Ground, pipes_layer: LayerDefinition,
              nodes_layer: LayerDefinition) -> Features:
    pipes, nodes = fetch(conn, PIPES), fetch(conn, NODES)
    p_vid, p_ids, p_name, p_shape, p_wkb, size, up, down = \
        zip(*pipes, strict=True) if pipes else [()] * 8
    n_vid, n_ids, n_name, n_kind, n_wkb, invert, surface = \
        zip(*nodes, strict=True) if nodes else [()] * 7
    lines = shapely.from_wkb(np.array(p_wkb, dtype=object))
    points = shapely.from_wkb(np.array(n_wkb, dtype=object))
    diameter = np.nan_to_num(_floats(size), nan=DEFAULT_DIAMETER_M)
    inverts = []
    for values, end in ((up, 0), (down, -1)):
        level = _floats(values)
        unknown = np.isnan(level)
        if unknown.any():
            level[unknown] = ground.at(shapely.get_point(lines[unknown], end)) - DEFAULT_DEPTH_M
        inverts.append(level)
    start, finish = inverts
    top = _floats(surface)
    if np.isnan(top).any():
        top[np.isnan(top)] = ground.at(points[np.isnan(top)])
    bottom = _floats(invert)
    bottom = np.where(np.isnan(bottom), top - DEFAULT_DEPTH_M, bottom)
    width = np.array([NODE_DIAMETERS_M.get(k, DEFAULT_NODE_DIAMETER_M) for k in n_kind])
    parts = Parts(
        np.concatenate([lines, points]),
        np.concatenate([np.full(len(pipes), PIPE), np.full(len(nodes), SHAFT)]),
        np.concatenate([diameter, width]).astype(float),
        np.concatenate([np.minimum(start, finish), bottom]),
        np.concatenate([np.maximum(start, finish) + diameter, top]),
        np.concatenate([start + diameter / 2, bottom]),
        np.concatenate([finish + diameter / 2, top]))
    # Pipes and nodes number their versions apart: even and odd keep them apart here.
    vids = np.concatenate([2 * np.array(p_vid, dtype=np.int64),
                           2 * np.array(n_vid, dtype=np.int64) + 1])
    return Features(
        vids, [*p_ids, *n_ids], ["drainage_pipes"] * len(pipes) + ["drainage_nodes"] * len(nodes),
        _strings(p_shape) + _strings(n_kind), _strings(p_name) + _strings(n_name),
        np.concatenate([_colours(pipes_layer, list(size)), _colours(nodes_layer, list(n_kind))]),
        parts)


def _tile_glb(features: Features, members: np.ndarray, centre: np.ndarray,
              class_name: str) -> bytes:
    mesh = tile_mesh(features.parts, members)
    local = mesh.positions - centre
    y_up = np.column_stack([local[:, 0], local[:, 2], -local[:, 1]])
    n = mesh.normals
    normals = np.column_stack([n[:, 0], n[:, 2], -n[:, 1]])
    parts = features.parts

    def pick(values: list[str]) -> list[str]:
        return [values[i] for i in members]

    columns = {
        "id": Property(pick(features.ids), required=True,
                       description="The feature's id in /collections/{collection}/items/{id}"),
        "collection": Property(pick(features.collection), required=True,
                               description="The collection the feature belongs to"),
        "kind": Property(pick(features.kind), no_data=""),
        "name": Property(pick(features.name), no_data=""),
        "bottom": Property(parts.bottom[members], "FLOAT64", required=True,
                           description="Lowest point drawn, m (the DEM's vertical datum)"),
        "top": Property(parts.top[members], "FLOAT64", required=True,
                        description="Highest point drawn, m (a water surface's level)"),
    }
    colours = features.colour[members][mesh.feature]
    return write_glb(y_up, normals, colours, mesh.feature, mesh.triangles, class_name, columns)


def _features(conn: Connection, name: str, ground: Ground,
              catalog: dict[str, LayerDefinition]) -> Features:
    if name == "bridges":
        return _bridges(conn, ground, catalog["bridges"])
    if name == "water":
        return _water(conn, ground, catalog["water_bodies"])
    return _drainage(conn, ground, catalog["drainage_pipes"], catalog["drainage_nodes"])


TileWork = tuple[str, np.ndarray, np.ndarray]
"""A tile to draw: its name, its features (indices into the tileset's) and ECEF centre."""


def draw_batch(_engine: Engine, features: Features, tiles: list[TileWork],
               class_name: str) -> list[bytes]:
    """A task: the glb of each tile (in the given order); needs no database."""
    return [_tile_glb(features, members, centre, class_name) for _, members, centre in tiles]


def _drawing(features: Features, name: str, engine: Engine, client: Client | None,
             threads: int) -> Draw:
    """Draws a tileset's stale tiles in batches of consecutive tiles, as tasks."""

    def draw(stale: list[Tile], centres: dict[str, np.ndarray]
             ) -> Iterator[tuple[Tile, bytes]]:
        todo = sum(len(t.members) for t in stale)
        size = max(1, math.ceil(todo / (slots(client, threads) * BATCHES_PER_SLOT)))
        batches = in_batches(stale, size)
        if not batches:
            return
        given = shared(client, features)
        calls = [(given, [(t.name, t.members, centres[t.name]) for t in batch], name)
                 for batch in batches]
        for i, glbs in completed(draw_batch, calls, engine, client, threads):
            yield from zip(batches[i], glbs, strict=True)

    return draw


def build_infrastructure(engine: Engine, folder: Path, storage_root: Path,
                         progress: Progress | None = None, full: bool = False,
                         leaf_size: int = LEAF_SIZE, client: Client | None = None,
                         threads: int = 1) -> dict[str, BuildReport]:
    """Build (or bring up to date) every infrastructure tileset, each in ``folder / name``,
    from one snapshot of the city; tiles are drawn on ``client``'s workers, or here on
    ``threads`` threads."""
    step = progress or (lambda stage, fraction: None)
    catalog = {layer.id: layer for layer in load_catalog()}
    reports = {}
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, \
            conn.begin():
        ground = Ground(dems_within(conn, storage_root))
        for part, name in enumerate(TILESETS):
            share = _share(step, part, len(TILESETS), name)
            share("reading", 0.0)
            ground.used = False
            features = _features(conn, name, ground, catalog)
            styles = [catalog[layer].style.model_dump(mode="json") for layer in TILESETS[name]]
            salt = "|".join([FORMAT, json.dumps(styles, sort_keys=True),
                             *([f"dems {[d.vid for d in ground.dems]}"] if ground.used else [])])
            reports[name] = write_tileset(folder / name, features.vids,
                                          features.parts.boxes(), salt,
                                          _drawing(features, name, engine, client, threads),
                                          share, leaf_size, full, {name: len(features.vids)})
    return reports


def _share(progress: Progress, part: int, parts: int, label: str) -> Progress:
    return lambda stage, fraction: progress(f"{label} {stage}", (part + fraction) / parts)
