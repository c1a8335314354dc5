"""The ``imports`` table: one row per import that changed the city, with its report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, update

from cim.ingest.report import ImportReport
from cim.schema.models import Import, Provenance


def open_import(conn: Connection, report: ImportReport, provenance: Provenance) -> int:
    """Record a starting import (inside the import's transaction) and return its id."""
    return int(conn.execute(
        insert(Import).values(
            path=report.path, format=report.format, layer=report.layer, source=report.source,
            input_crs=report.input_crs, provenance=provenance.value,
        ).returning(Import.id)
    ).scalar_one())


def _storable(value: Any) -> Any:
    """``value`` with NUL characters written out as ``\\x00``: jsonb refuses them, and a
    rejection report must be able to quote the bad value a file carried."""
    if isinstance(value, str):
        return value.replace("\x00", "\\x00")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


def close_import(conn: Connection, report: ImportReport) -> None:
    conn.execute(
        update(Import).where(Import.id == report.import_id).values(
            status=report.status, finished_at=datetime.now(UTC),
            report=_storable(report.model_dump(mode="json")),
        )
    )
