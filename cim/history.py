"""Versioned edits and time travel over the city model.

An edit never changes a version in place: :func:`update_object` closes the current version
and writes its successor, :func:`delete_object` only closes it. :func:`as_of` turns any
query over a city object table into "the city as it was at that moment".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from geoalchemy2.shape import from_shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import BindParameter, Connection, Select, and_, bindparam, or_, select, text

from cim.ingest.geometry import check_and_repair, coerce
from cim.ingest.load import content_columns, qualified
from cim.schema.models import CITY_CLASSES, SRID, CityObject

IMMUTABLE = ("id", "source", "source_id")


class HistoryError(Exception):
    """An edit that cannot be applied (unknown layer, object or column)."""


class ObjectNotFound(HistoryError):
    """No current version of the object exists (never created, or deleted)."""


class ObjectExists(HistoryError):
    """A new object's id is taken by a current object."""


def model_for(layer: str) -> type[CityObject]:
    try:
        return CITY_CLASSES[layer]
    except KeyError:
        raise HistoryError(
            f"unknown layer {layer!r}; layers: {', '.join(sorted(CITY_CLASSES))}"
        ) from None


def valid_at(model: type[CityObject], when: datetime | None = None) -> Any:
    """SQL condition: the version was current at ``when`` (now when None)."""
    if when is None:
        return model.valid_to.is_(None)
    return and_(model.valid_from <= when, or_(model.valid_to.is_(None), model.valid_to > when))


def as_of(query: Select, model: type[CityObject], when: datetime | None) -> Select:
    """Restrict a query over ``model`` to the versions current at ``when``."""
    return query.where(valid_at(model, when))


def _values(model: type[CityObject], changes: dict[str, Any]) -> dict[str, Any]:
    columns = set(content_columns(model))
    unknown = set(changes) - columns
    if unknown:
        raise HistoryError(
            f"{model.__tablename__} has no column {', '.join(sorted(unknown))}"
        )
    fixed = set(changes) & set(IMMUTABLE)
    if fixed:
        raise HistoryError(f"{', '.join(sorted(fixed))} cannot change: it identifies the object")
    return {
        k: from_shape(_checked(model, k, v), srid=SRID) if isinstance(v, BaseGeometry) else v
        for k, v in changes.items()
    }


def _checked(model: type[CityObject], column: str, shape: BaseGeometry) -> BaseGeometry:
    """The edited geometry repaired and shaped like the column, or a clear refusal."""
    kind = model.geometry_kind if column == "geom" else "GEOMETRY"
    geoms, rejected, _ = check_and_repair(np.array([shape], dtype=object), kind)
    if rejected[0] is None:
        geoms, rejected = coerce(geoms, kind)
    if rejected[0] is not None:
        raise HistoryError(f"{column}: {rejected[0]}")
    return geoms[0]


def _close(conn: Connection, model: type[CityObject], object_id: str) -> int:
    """Close the object's current version (valid_to = now()); returns its ``vid``."""
    closed = conn.execute(
        text(f"UPDATE {qualified(model)} SET valid_to = now() "
             "WHERE id = :id AND valid_to IS NULL RETURNING vid"),
        {"id": object_id},
    ).scalar()
    if closed is None:
        raise ObjectNotFound(f"{model.__tablename__} has no current object {object_id!r}")
    return int(closed)


def update_object(conn: Connection, layer: str, object_id: str,
                  changes: dict[str, Any]) -> int:
    """Write a new version of an object with ``changes``; returns the new version's ``vid``."""
    model = model_for(layer)
    values = _values(model, changes)
    table = qualified(model)
    closed = _close(conn, model, object_id)
    columns = content_columns(model)
    selected = [f":v_{c}" if c in values else f'o."{c}"' for c in columns]
    params = {f"v_{k}": v for k, v in values.items()}
    col_list = ", ".join(f'"{c}"' for c in columns)
    new_vid = conn.execute(
        text(
            f"INSERT INTO {table} ({col_list}, import_id, valid_from) "
            f"SELECT {', '.join(selected)}, NULL, now() FROM {table} o WHERE o.vid = :old "
            "RETURNING vid"
        ).bindparams(*[_bind(model, k) for k in values]),
        {"old": closed, **params},
    ).scalar_one()
    return int(new_vid)


def create_object(conn: Connection, layer: str, source: str, source_id: str,
                  values: dict[str, Any]) -> tuple[str, int]:
    """Write the first version of a new object ``SOURCE:SOURCE_ID``; returns (id, vid)."""
    model = model_for(layer)
    checked = _values(model, values)
    object_id = f"{source}:{source_id}"
    if conn.execute(text(f"SELECT 1 FROM {qualified(model)} WHERE id = :id AND "
                         "valid_to IS NULL"), {"id": object_id}).first():
        raise ObjectExists(f"{layer} has a current object {object_id!r} already")
    missing = sorted(c.name for c in model.__table__.columns
                     if not c.nullable and c.server_default is None and not c.primary_key
                     and c.name not in (*IMMUTABLE, "cim_level", *checked))
    if missing:
        raise HistoryError(f"{layer} needs {', '.join(missing)}")
    row = {"source": source, "source_id": source_id, "id": object_id,
           "cim_level": model.cim_level_default, **{f"v_{k}": v for k, v in checked.items()}}
    columns = ["id", "source", "source_id", "cim_level", *checked]
    placeholders = [":id", ":source", ":source_id", ":cim_level", *(f":v_{k}" for k in checked)]
    col_list = ", ".join(f'"{c}"' for c in columns)
    vid = conn.execute(
        text(f"INSERT INTO {qualified(model)} ({col_list}) "
             f"VALUES ({', '.join(placeholders)}) RETURNING vid")
        .bindparams(*[_bind(model, k) for k in checked]),
        row,
    ).scalar_one()
    return object_id, int(vid)


def _bind(model: type[CityObject], column: str) -> BindParameter:
    return bindparam(f"v_{column}", type_=model.__table__.columns[column].type)


def delete_object(conn: Connection, layer: str, object_id: str) -> None:
    """Terminate an object: its last version stays, closed at now()."""
    _close(conn, model_for(layer), object_id)


def read_object(conn: Connection, layer: str, object_id: str,
                when: datetime | None = None) -> dict[str, Any] | None:
    """The object as it was at ``when`` (now by default), or None if it did not exist."""
    model = model_for(layer)
    row = conn.execute(
        as_of(select(model.__table__).where(model.id == object_id), model, when)
    ).mappings().first()
    return dict(row) if row is not None else None


def versions(conn: Connection, layer: str, object_id: str) -> list[dict[str, Any]]:
    """Every version of an object, oldest first."""
    model = model_for(layer)
    rows = conn.execute(
        select(model.__table__).where(model.id == object_id).order_by(model.valid_from,
                                                                       model.vid)
    ).mappings().all()
    return [dict(r) for r in rows]

