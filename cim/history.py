"""Versioned edits and time travel over the city model.

An edit never changes a version in place: :func:`update_object` closes the current version
and writes its successor, :func:`delete_object` only closes it. :func:`as_of` turns any
query over a city object table into "the city as it was at that moment".
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from geoalchemy2.shape import from_shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import (
    BindParameter,
    Connection,
    Select,
    TextClause,
    and_,
    bindparam,
    or_,
    select,
    text,
)

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


class StaleVersion(HistoryError):
    """The object's current version is none of those the writer expected (If-Match)."""


class BusyObject(HistoryError):
    """Other writers changed the object each time a write was about to apply."""


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


@dataclass(frozen=True)
class Audit:
    """Who writes, and as what action: a write given one appends itself, with the versions
    before and after, to ``cim.audit_log`` in the same statement."""

    actor: str
    action: str


ATTEMPTS = 3
"""A write whose object another writer changed in between (and that named no version to
expect) is tried again on the new version; past this many the object is too busy."""


def _as_json(alias: str) -> str:
    """A version row as JSON, its geometry as GeoJSON (for the audit log)."""
    return (f"to_jsonb({alias}) - 'geom' - 'geom_3d' || "
            f"jsonb_build_object('geometry', ST_AsGeoJSON({alias}.geom)::jsonb)")


def _logged(audit: Audit | None, before: str | None, after: str | None) -> str:
    """A CTE appending the write to the audit log (nothing without ``audit``); ``before``
    and ``after`` name the CTEs that return the versions."""
    if audit is None:
        return ""
    vid = [f"{cte}.vid" if cte else "NULL::bigint" for cte in (before, after)]
    row = [_as_json(cte) if cte else "NULL::jsonb" for cte in (before, after)]
    return (", logged AS (INSERT INTO cim.audit_log (actor, action, layer, object_id, "
            "before_vid, after_vid, before, after) SELECT :actor, :action, :layer, "
            f"{before or after}.id, {vid[0]}, {vid[1]}, {row[0]}, {row[1]} "
            f"FROM {', '.join(cte for cte in (before, after) if cte)})")


def _audit_params(audit: Audit | None, layer: str) -> dict[str, str]:
    return {} if audit is None else {"actor": audit.actor, "action": audit.action,
                                     "layer": layer}


def _closing(model: type[CityObject], only: Mapping[str, Any],
             expected: Collection[int] | None) -> tuple[str, dict[str, Any]]:
    """The CTE ``closed``: the object's current version closed (valid_to = now()) if it has
    the ``only`` column values and, given ``expected``, is one of those versions."""
    conditions = [f' AND "{column}" = :only_{i}' for i, column in enumerate(only)]
    params: dict[str, Any] = {f"only_{i}": v for i, v in enumerate(only.values())}
    if expected is not None:
        conditions.append(" AND vid = ANY(:expected)")
        params["expected"] = list(expected)
    return (f"closed AS (UPDATE {qualified(model)} SET valid_to = now() WHERE id = :id "
            f"AND valid_to IS NULL{''.join(conditions)} RETURNING *)", params)


def _refusal(conn: Connection, model: type[CityObject], object_id: str,
             only: Mapping[str, Any], expected: Collection[int] | None) -> None:
    """Why a closing matched nothing: raises if the object is missing or at another
    version; returns if it is current and as expected now (another write came between)."""
    columns = "".join(f', "{column}"' for column in only)
    row = conn.execute(text(f"SELECT vid{columns} FROM {qualified(model)} "
                            "WHERE id = :id AND valid_to IS NULL"), {"id": object_id}).first()
    if row is None or any(row[i + 1] != v for i, v in enumerate(only.values())):
        raise ObjectNotFound(f"{model.__tablename__} has no current object {object_id!r}")
    if expected is not None and row[0] not in expected:
        raise StaleVersion(f"{object_id} has changed since it was read (version {row[0]} is "
                           "current); read it again")


def _closed_by(conn: Connection, model: type[CityObject], object_id: str,
               statement: TextClause, params: dict[str, Any], only: Mapping[str, Any],
               expected: Collection[int] | None) -> int:
    """Run a statement that closes the object's current version; its one value (a
    ``vid``), after finding out why one that matched nothing did, and trying again."""
    for _ in range(ATTEMPTS):
        vid = conn.execute(statement, {"id": object_id, **params}).scalar()
        if vid is not None:
            return int(vid)
        _refusal(conn, model, object_id, only, expected)
    raise BusyObject(f"{object_id} changed {ATTEMPTS} times while it was written; try again")


def update_object(conn: Connection, layer: str, object_id: str, changes: dict[str, Any], *,
                  only: Mapping[str, Any] | None = None,
                  expected: Collection[int] | None = None,
                  audit: Audit | None = None) -> int:
    """Write a new version of an object with ``changes``; returns the new version's ``vid``.

    One statement closes the current version, writes its successor and the audit entry:
    atomic without a transaction around it. The object must have the ``only`` column
    values (else it is not found) and, given ``expected``, be at one of those versions
    (else :class:`StaleVersion`)."""
    model, only = model_for(layer), only or {}
    values = _values(model, changes)
    closing, params = _closing(model, only, expected)
    columns = content_columns(model)
    selected = [f":v_{c}" if c in values else f'o."{c}"' for c in columns]
    col_list = ", ".join(f'"{c}"' for c in columns)
    statement = text(
        f"WITH {closing}, written AS (INSERT INTO {qualified(model)} "
        f"({col_list}, import_id, valid_from) "
        f"SELECT {', '.join(selected)}, NULL, now() FROM closed o RETURNING *)"
        f"{_logged(audit, 'closed', 'written')} SELECT vid FROM written"
    ).bindparams(*[_bind(model, k) for k in values])
    params |= {f"v_{k}": v for k, v in values.items()} | _audit_params(audit, layer)
    return _closed_by(conn, model, object_id, statement, params, only, expected)


def create_object(conn: Connection, layer: str, source: str, source_id: str,
                  values: dict[str, Any], *, audit: Audit | None = None) -> tuple[str, int]:
    """Write the first version of a new object ``SOURCE:SOURCE_ID``; returns (id, vid)."""
    model = model_for(layer)
    checked = _values(model, values)
    object_id = f"{source}:{source_id}"
    missing = sorted(c.name for c in model.__table__.columns
                     if not c.nullable and c.server_default is None and not c.primary_key
                     and c.name not in (*IMMUTABLE, "cim_level", *checked))
    if missing:
        raise HistoryError(f"{layer} needs {', '.join(missing)}")
    row = {"source": source, "source_id": source_id, "id": object_id,
           "cim_level": model.cim_level_default, **{f"v_{k}": v for k, v in checked.items()},
           **_audit_params(audit, layer)}
    columns = ["id", "source", "source_id", "cim_level", *checked]
    placeholders = [":id", ":source", ":source_id", ":cim_level", *(f":v_{k}" for k in checked)]
    col_list = ", ".join(f'"{c}"' for c in columns)
    # The unique index on current ids decides, not a read before: two creates of one id
    # race safely, and the write is one statement.
    vid = conn.execute(
        text(f"WITH created AS (INSERT INTO {qualified(model)} ({col_list}) "
             f"VALUES ({', '.join(placeholders)}) ON CONFLICT (id) WHERE valid_to IS NULL "
             f"DO NOTHING RETURNING *){_logged(audit, None, 'created')} "
             "SELECT vid FROM created")
        .bindparams(*[_bind(model, k) for k in checked]),
        row,
    ).scalar()
    if vid is None:
        raise ObjectExists(f"{layer} has a current object {object_id!r} already")
    return object_id, int(vid)


def _bind(model: type[CityObject], column: str) -> BindParameter:
    return bindparam(f"v_{column}", type_=model.__table__.columns[column].type)


def delete_object(conn: Connection, layer: str, object_id: str, *,
                  only: Mapping[str, Any] | None = None,
                  expected: Collection[int] | None = None,
                  audit: Audit | None = None) -> int:
    """Terminate an object: its last version stays, closed at now(); returns that version's
    ``vid``. ``only``, ``expected`` and ``audit`` as for :func:`update_object`."""
    model, only = model_for(layer), only or {}
    closing, params = _closing(model, only, expected)
    statement = text(f"WITH {closing}{_logged(audit, 'closed', None)} "
                     "SELECT vid FROM closed")
    return _closed_by(conn, model, object_id, statement, params | _audit_params(audit, layer),
                      only, expected)


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

