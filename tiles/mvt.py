"""Mapbox Vector Tiles of catalog layers, encoded by PostGIS (``ST_AsMVT``).

A tile holds each requested layer whose zoom range covers it, with only the properties the
catalog exposes from that zoom on (the text id too, from the layer's ``id_min_zoom``; the
version id is always the MVT feature id). Below a layer's ``detail_zoom``, features smaller
than its ``drop_below_px`` are left out before any work is spent on them. Geometry is clipped
and snapped to the tile's 4096 grid by ``ST_AsMVTGeom`` (which also drops what collapses
below a grid cell); the index filter runs in the storage CRS so the GiST index is used.
"""

from __future__ import annotations

import morecantile
from sqlalchemy import Connection, text

from cim.schema.models import SRID
from layers.model import LayerDefinition

EXTENT = 4096
BUFFER = 64
MAX_FEATURES = 20_000  # per layer and tile: a ceiling on the densest low-zoom tiles
TILE_PIXELS = 512  # how wide MapLibre and deck.gl draw a vector tile


def _q(identifier: str) -> str:
    return f'"{identifier}"'


def tile_bounds(tms: morecantile.TileMatrixSet, z: int, x: int, y: int) -> tuple[float, ...]:
    bounds = tms.xy_bounds(morecantile.Tile(x, y, z))
    return bounds.left, bounds.bottom, bounds.right, bounds.top


def _layer_sql(layer: LayerDefinition, z: int, index: int, srid: int,
               pixel: tuple[float, float]) -> tuple[str, dict]:
    src = layer.source
    geometry = f"t.{_q(src.geometry)}"
    columns = [f"t.{_q(p.source_column)} AS {_q(p.name)}"
               for p in layer.properties if p.min_zoom <= z]
    if z >= layer.tiles.id_min_zoom:
        columns.insert(0, f"t.{_q(src.id_column)}::text AS id")
    # The version id is the MVT feature id: 8 bytes, where the text id is a tile's bulk.
    feature_id = "'vid'" if src.versioned else "NULL"
    if src.versioned:
        columns.insert(0, "t.vid")
    where = [f"{geometry} && ST_Transform(ST_MakeEnvelope(:xmin, :ymin, :xmax, :ymax, "
             f":srid), {SRID})"]
    params: dict = {}
    if z < layer.tiles.detail_zoom and layer.tiles.drop_below_px > 0:
        where.append(f"(ST_XMax({geometry}) - ST_XMin({geometry}) >= :dx{index} OR "
                     f"ST_YMax({geometry}) - ST_YMin({geometry}) >= :dy{index})")
        params[f"dx{index}"] = pixel[0] * layer.tiles.drop_below_px
        params[f"dy{index}"] = pixel[1] * layer.tiles.drop_below_px
    for i, (column, value) in enumerate(src.where.items()):
        where.append(f"t.{_q(column)} = :w{index}_{i}")
        params[f"w{index}_{i}"] = value
    if src.versioned:
        where.append("t.valid_to IS NULL")
    sql = (
        f"(SELECT ST_AsMVT(q, :name{index}, {EXTENT}, 'geom', {feature_id}) FROM ("
        f"SELECT {''.join(c + ', ' for c in columns)}ST_AsMVTGeom("
        f"ST_Transform({geometry}, :srid), "
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
    west, south, east, north = tms.bounds(morecantile.Tile(x, y, z))
    pixel = ((east - west) / TILE_PIXELS, (north - south) / TILE_PIXELS)  # in storage degrees
    params: dict = {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax, "srid": srid}
    parts = []
    for i, layer in enumerate(drawn):
        sql, layer_params = _layer_sql(layer, z, i, srid, pixel)
        parts.append(f"coalesce({sql}, ''::bytea)")
        params.update(layer_params)
    # MVT layers are independent protobuf messages: concatenated, they make one tile.
    return bytes(conn.execute(text("SELECT " + " || ".join(parts)), params).scalar_one())
