"""Mapbox Vector Tiles of catalog layers, encoded by PostGIS (``ST_AsMVT``).

A tile holds each requested layer whose zoom range covers it, with only the properties the
catalog exposes from that zoom on. Geometry is clipped and snapped to the tile's 4096 grid
by ``ST_AsMVTGeom`` (which also drops what collapses below a grid cell); the index filter
runs in the storage CRS so the GiST index is used.
"""

from __future__ import annotations

import morecantile
from sqlalchemy import Connection, text

from cim.schema.models import SRID
from layers.model import LayerDefinition

EXTENT = 4096
BUFFER = 64
MAX_FEATURES = 20_000  # per layer and tile: a ceiling on the densest low-zoom tiles


def _q(identifier: str) -> str:
    return f'"{identifier}"'


def tile_bounds(tms: morecantile.TileMatrixSet, z: int, x: int, y: int) -> tuple[float, ...]:
    bounds = tms.xy_bounds(morecantile.Tile(x, y, z))
    return bounds.left, bounds.bottom, bounds.right, bounds.top


def _layer_sql(layer: LayerDefinition, z: int, index: int, srid: int) -> tuple[str, dict]:
    src = layer.source
    props = [p for p in layer.properties if p.min_zoom <= z]
    columns = "".join(f", t.{_q(p.source_column)} AS {_q(p.name)}" for p in props)
    where = [f"t.{_q(src.geometry)} && ST_Transform(ST_MakeEnvelope(:xmin, :ymin, :xmax, :ymax, "
             f":srid), {SRID})"]
    params: dict = {}
    for i, (column, value) in enumerate(src.where.items()):
        where.append(f"t.{_q(column)} = :w{index}_{i}")
        params[f"w{index}_{i}"] = value
    if src.versioned:
        where.append("t.valid_to IS NULL")
    sql = (
        f"(SELECT ST_AsMVT(q, :name{index}, {EXTENT}, 'geom') FROM ("
        f"SELECT t.{_q(src.id_column)}::text AS id{columns}, ST_AsMVTGeom("
        f"ST_Transform(t.{_q(src.geometry)}, :srid), "
        f"ST_MakeEnvelope(:xmin, :ymin, :xmax, :ymax, :srid), {EXTENT}, {BUFFER}, true) AS geom "
        f"FROM {_q(src.schema_)}.{_q(src.relation)} t WHERE {' AND '.join(where)} "
        f"LIMIT {MAX_FEATURES}) q WHERE q.geom IS NOT NULL)"
    )
    params[f"name{index}"] = layer.id
    return sql, params


def render_tile(conn: Connection, layers: list[LayerDefinition],
                tms: morecantile.TileMatrixSet, z: int, x: int, y: int) -> bytes:
    """One tile with every given layer that is drawn at zoom ``z`` (empty bytes if none)."""
    drawn = [layer for layer in layers if layer.min_zoom <= z <= layer.max_zoom]
    if not drawn:
        return b""
    srid = tms.crs.to_epsg()
    xmin, ymin, xmax, ymax = tile_bounds(tms, z, x, y)
    params: dict = {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax, "srid": srid}
    parts = []
    for i, layer in enumerate(drawn):
        sql, layer_params = _layer_sql(layer, z, i, srid)
        parts.append(f"coalesce({sql}, ''::bytea)")
        params.update(layer_params)
    # MVT layers are independent protobuf messages: concatenated, they make one tile.
    return bytes(conn.execute(text("SELECT " + " || ".join(parts)), params).scalar_one())
