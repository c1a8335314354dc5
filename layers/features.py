"""Feature queries over catalog layers, answered as GeoJSON built by PostgreSQL.

PostgreSQL assembles each page's features as JSON text, so Python never parses or
re-serialises a geometry. Identifiers come from validated catalog definitions and are
quoted; every value is a bound parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, text

from cim.schema.models import SRID
from layers.cql2 import SqlFilter
from layers.crs import CRS84, Crs
from layers.model import LayerDefinition


@dataclass(frozen=True)
class TimeFilter:
    """An instant (``start == end``), an interval, or None for the current city."""

    start: datetime | None
    end: datetime | None
    instant: bool = False


@dataclass(frozen=True)
class ItemsQuery:
    bbox: tuple[float, float, float, float] | None = None
    """In CRS84 (longitude, latitude)."""
    time: TimeFilter | None = None
    properties: list[str] | None = None
    limit: int = 10
    offset: int = 0
    ids: list[str] = field(default_factory=list)
    crs: Crs = CRS84
    filter: SqlFilter | None = None
    """A compiled CQL2 filter (:mod:`layers.cql2`)."""
    sortby: tuple[tuple[str, bool], ...] = ()
    """(catalog column, descending) pairs, before the id order that keeps pages stable."""


@dataclass(frozen=True)
class Page:
    features_json: str
    number_returned: int
    has_more: bool


def _q(identifier: str) -> str:
    return f'"{identifier}"'


def _relation(layer: LayerDefinition) -> str:
    return f"{_q(layer.source.schema_)}.{_q(layer.source.relation)}"


def _conditions(layer: LayerDefinition, query: ItemsQuery) -> tuple[list[str], dict]:
    where: list[str] = []
    params: dict = {}
    for i, (column, value) in enumerate(layer.source.where.items()):
        where.append(f"t.{_q(column)} = :w{i}")
        params[f"w{i}"] = value
    if layer.source.versioned:
        time = query.time
        if time is None:
            where.append("t.valid_to IS NULL")
        elif time.instant:
            where.append("t.valid_from <= :at AND (t.valid_to IS NULL OR t.valid_to > :at)")
            params["at"] = time.start
        else:
            if time.end is not None:
                where.append("t.valid_from <= :t_end")
                params["t_end"] = time.end
            if time.start is not None:
                where.append("(t.valid_to IS NULL OR t.valid_to > :t_start)")
                params["t_start"] = time.start
    if query.bbox is not None:
        geometry = _q(layer.source.geometry)
        box = f"ST_MakeEnvelope(:xmin, :ymin, :xmax, :ymax, {SRID})"
        where.append(f"t.{geometry} && {box} AND ST_Intersects(t.{geometry}, {box})")
        params.update(zip(("xmin", "ymin", "xmax", "ymax"), query.bbox, strict=True))
    if query.ids:
        where.append(f"t.{_q(layer.source.id_column)} = ANY(:ids)")
        params["ids"] = query.ids
    if query.filter is not None:
        where.append(f"({query.filter.sql})")
        params.update(query.filter.params)
    return where or ["TRUE"], params


def _geometry_sql(column: str, crs: Crs) -> str:
    """GeoJSON geometry in ``crs``, in that CRS's authority axis order."""
    geometry = f"t.{_q(column)}"
    if crs.srid != SRID:
        geometry = f"ST_Transform({geometry}, {crs.srid})"
    if crs.northing_first:
        geometry = f"ST_FlipCoordinates({geometry})"
    return f"ST_AsGeoJSON({geometry}, {crs.precision})::json"


def _feature_sql(layer: LayerDefinition, properties: list[str] | None, crs: Crs = CRS84) -> str:
    exposed = [p for p in layer.properties if properties is None or p.name in properties]
    props = ", ".join(f"'{p.name}', t.{_q(p.source_column)}" for p in exposed)
    id_column = _q(layer.source.id_column)
    # A versioned layer read over an interval may return several versions of one object.
    extra = ", 'valid_from', t.valid_from, 'valid_to', t.valid_to" \
        if layer.source.versioned else ""
    return (
        "json_build_object('type', 'Feature', 'id', t." + id_column + ", "
        f"'geometry', {_geometry_sql(layer.source.geometry, crs)}, "
        f"'properties', json_build_object({props}{extra}))"
    )


def read_page(conn: Connection, layer: LayerDefinition, query: ItemsQuery) -> Page:
    """One page of features, in sortby then id order, and whether another page follows
    (no count)."""
    where, params = _conditions(layer, query)
    keys = [f"t.{_q(column)} {'DESC' if descending else 'ASC'}"
            for column, descending in query.sortby]
    order = ", ".join([*keys, f"t.{_q(layer.source.id_column)}"])
    if layer.source.versioned:
        order += ", t.valid_from"
    sql = (
        "SELECT coalesce(json_agg(f.feature ORDER BY f.n) FILTER (WHERE f.n <= :limit), "
        "'[]')::text, count(*) FILTER (WHERE f.n <= :limit), count(*) > :limit FROM ("
        f"SELECT {_feature_sql(layer, query.properties, query.crs)} AS feature, "
        f"row_number() OVER () AS n FROM (SELECT * FROM {_relation(layer)} t "
        f"WHERE {' AND '.join(where)} ORDER BY {order} LIMIT :limit + 1 OFFSET :offset) t"
        ") f"
    )
    params.update(limit=query.limit, offset=query.offset)
    features, returned, more = conn.execute(text(sql), params).one()
    return Page(features, int(returned), bool(more))


def read_feature(conn: Connection, layer: LayerDefinition, feature_id: str,
                 time: TimeFilter | None = None,
                 crs: Crs = CRS84) -> tuple[str, int | None] | None:
    """One feature as GeoJSON text (the version current at ``time``) and its version id
    (None for unversioned sources), or None."""
    where, params = _conditions(layer, ItemsQuery(time=time, ids=[feature_id]))
    vid = "t.vid" if layer.source.versioned else "NULL::bigint"
    sql = (f"SELECT ({_feature_sql(layer, None, crs)})::text, {vid} FROM {_relation(layer)} t "
           f"WHERE {' AND '.join(where)} ORDER BY t.{_q(layer.source.id_column)} LIMIT 1")
    row = conn.execute(text(sql), params).first()
    return None if row is None else (row[0], row[1])


def estimated_extent(conn: Connection, layer: LayerDefinition) -> list[float] | None:
    """The layer's bbox from planner statistics (cheap at any size); None when unknown."""
    if layer.source.where:
        return None
    try:
        with conn.begin_nested():
            box = conn.execute(
                text("SELECT ST_XMin(b), ST_YMin(b), ST_XMax(b), ST_YMax(b) FROM "
                     "ST_EstimatedExtent(:schema, :table, :column) b"),
                {"schema": layer.source.schema_, "table": layer.source.relation,
                 "column": layer.source.geometry},
            ).one()
    except Exception:  # no statistics yet, or a view: no extent to offer
        return None
    return None if box[0] is None else [float(v) for v in box]
