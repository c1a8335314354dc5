"""What a filter or a sort may name in a layer: its queryables (OGC API - Features Part 3).

The catalog alone says which properties exist (the exposed properties, the id, the geometry
and, for versioned layers, the version interval); the live columns only give their types,
read once per layer from ``information_schema``. Every queryable carries the catalog
identifier of its column, so SQL built from it never holds a name a client typed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, text

from layers.errors import InvalidParameter
from layers.model import LayerDefinition

Kind = Literal["string", "integer", "number", "boolean", "timestamp", "date", "geometry"]
GEOMETRY = "geometry"
"""The geometry's queryable name, whatever its column is called."""

_KINDS: dict[str, Kind] = {
    "smallint": "integer", "integer": "integer", "bigint": "integer",
    "real": "number", "double precision": "number", "numeric": "number",
    "boolean": "boolean",
    "text": "string", "character varying": "string", "character": "string",
    "timestamp with time zone": "timestamp", "timestamp without time zone": "timestamp",
    "date": "date",
}
_SCHEMA_TYPES: dict[Kind, dict[str, str]] = {
    "string": {"type": "string"}, "integer": {"type": "integer"},
    "number": {"type": "number"}, "boolean": {"type": "boolean"},
    "timestamp": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
}


@dataclass(frozen=True)
class Queryable:
    name: str
    column: str
    """A validated catalog identifier (``[a-z][a-z0-9_]*``)."""
    kind: Kind
    title: str


@dataclass(frozen=True)
class Queryables:
    layer: LayerDefinition
    fields: dict[str, Queryable]
    geometry_type: str
    """PostGIS's name for the geometry column's type (``MULTIPOLYGON``, ``GEOMETRY``...)."""

    def get(self, name: str) -> Queryable:
        field = self.fields.get(name)
        if field is None:
            raise InvalidParameter(f"{name!r} is not a queryable of {self.layer.id}; it has "
                                   + ", ".join(sorted(self.fields)))
        return field


def load_queryables(conn: Connection, layer: LayerDefinition) -> Queryables:
    """The layer's queryables, typed from its relation's columns. A property whose column
    has a type filters cannot compare (JSON, arrays) is left out."""
    src = layer.source
    where = {"schema": src.schema_, "table": src.relation}
    types = dict(conn.execute(text(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = :schema AND table_name = :table"), where).all())
    geometry_type = conn.scalar(text(
        "SELECT type FROM geometry_columns WHERE f_table_schema = :schema "
        "AND f_table_name = :table AND f_geometry_column = :column"),
        {**where, "column": src.geometry}) or "GEOMETRY"
    candidates = [(GEOMETRY, src.geometry, "Geometry"), ("id", src.id_column, "Feature id")]
    if src.versioned:
        candidates += [("valid_from", "valid_from", "Version valid from"),
                       ("valid_to", "valid_to", "Version valid until (empty while current)")]
    candidates += [(p.name, p.source_column, p.title) for p in layer.properties]
    fields: dict[str, Queryable] = {}
    for name, column, title in candidates:
        kind: Kind | None = "geometry" if name == GEOMETRY else _KINDS.get(types.get(column, ""))
        if kind is not None:
            fields[name] = Queryable(name, column, kind, title)
    return Queryables(layer, fields, geometry_type.upper())


def schema_document(queryables: Queryables, url: str) -> dict[str, Any]:
    """The queryables as the JSON Schema Part 3 asks for."""
    properties: dict[str, Any] = {}
    for field in queryables.fields.values():
        if field.kind == "geometry":
            kind = queryables.geometry_type.lower()
            shape = {"format": "geometry-" + ("any" if kind == "geometry" else kind)}
        else:
            shape = dict(_SCHEMA_TYPES[field.kind])
        properties[field.name] = {"title": field.title, **shape}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": url,
        "type": "object",
        "title": queryables.layer.title,
        "properties": properties,
        "additionalProperties": False,
    }


def parse_sortby(value: str, queryables: Queryables) -> tuple[tuple[str, bool], ...]:
    """``sortby=+height,-name`` as (column, descending) pairs. A bare or ``+`` name sorts
    ascending; a ``+`` that reached us as a space (form encoding) is the same."""
    keys: list[tuple[str, bool]] = []
    seen: set[str] = set()
    for part in value.split(","):
        name = part.strip()
        descending = name.startswith("-")
        name = name[1:] if name[:1] in "+-" else name
        if not name:
            raise InvalidParameter(f"sortby {value!r}: an empty sort key")
        field = queryables.get(name)
        if field.kind == "geometry":
            raise InvalidParameter(f"sortby: {name!r} is a geometry and cannot be sorted")
        if name in seen:
            raise InvalidParameter(f"sortby: {name!r} is named twice")
        seen.add(name)
        keys.append((field.column, descending))
    return tuple(keys)
