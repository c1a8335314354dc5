"""Load checked rows into a versioned table with COPY, keeping history.

A source the table has never seen is copied straight into the table. Otherwise rows go
through a staging table and are merged: a current version whose content differs is closed
(``valid_to = now()``) and its successor inserted, unchanged objects are left alone, new
objects are inserted. On an empty table the indexes are dropped during the load and rebuilt
in bulk afterwards. Everything runs in the caller's transaction, so a failure leaves the
table as it was.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from sqlalchemy import Connection, text

from cim.schema.models import SCHEMA, CityObject

BOOKKEEPING = ("vid", "valid_from", "valid_to", "import_id")
COPY_BATCH_ROWS = 50_000
BULK_ROWS = 20_000
"""From this many rows on, foreign keys are checked once after the load, not per row."""
CSV_OPTIONS = pacsv.WriteOptions(include_header=False, quoting_style="needed")


def content_columns(model: type[CityObject]) -> list[str]:
    """Columns whose values make an object's content (all but version bookkeeping)."""
    return [c.name for c in model.__table__.columns if c.name not in BOOKKEEPING]


def qualified(model: type[CityObject]) -> str:
    return f'"{SCHEMA}"."{model.__tablename__}"'


def _quoted(columns: list[str], alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(f'{prefix}"{c}"' for c in columns)


@dataclass(frozen=True)
class MergeCounts:
    inserted: int
    updated: int
    unchanged: int
    deleted: int


def copy_frame(conn: Connection, table: str, frame: pd.DataFrame,
               progress: Callable[[float], None] | None = None) -> None:
    """COPY a frame's columns into ``table`` as CSV (NULL is an empty unquoted field).

    Batches are formatted by Arrow (outside the GIL) while the server parses the previous
    one, so Python and PostgreSQL work side by side.
    """
    cursor = conn.connection.dbapi_connection.cursor()
    sql = f"COPY {table} ({_quoted(list(frame.columns))}) FROM STDIN WITH (FORMAT csv)"
    with cursor.copy(sql) as copy:
        for start in range(0, len(frame), COPY_BATCH_ROWS):
            batch = pa.Table.from_pandas(frame.iloc[start:start + COPY_BATCH_ROWS],
                                         preserve_index=False)
            sink = io.BytesIO()
            pacsv.write_csv(batch, sink, CSV_OPTIONS)
            copy.write(sink.getbuffer())
            if progress:
                progress(min(1.0, (start + COPY_BATCH_ROWS) / len(frame)))


def _exists(conn: Connection, model: type[CityObject], where: str = "TRUE",
            **params: str) -> bool:
    return bool(conn.scalar(text(
        f"SELECT EXISTS (SELECT 1 FROM {qualified(model)} WHERE {where})"), params))


def _drop_indexes(conn: Connection, model: type[CityObject]) -> list[str]:
    """Drop the table's non-primary-key indexes, returning the DDL that recreates them."""
    rows = conn.execute(
        text(
            "SELECT c.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x "
            "JOIN pg_class c ON c.oid = x.indexrelid "
            "WHERE x.indrelid = CAST(:table AS regclass) AND NOT x.indisprimary"
        ),
        {"table": qualified(model)},
    ).all()
    for name, _ in rows:
        conn.execute(text(f'DROP INDEX "{SCHEMA}"."{name}"'))
    return [definition for _, definition in rows]


def _drop_foreign_keys(conn: Connection, model: type[CityObject]) -> list[str]:
    """Drop the table's foreign keys, returning the DDL that re-adds (and re-checks) them.

    A per-row foreign-key check costs more than the rest of a bulk COPY; one re-check of
    the whole table afterwards is a single join.
    """
    table = qualified(model)
    rows = conn.execute(
        text("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
             "WHERE conrelid = CAST(:table AS regclass) AND contype = 'f'"),
        {"table": table},
    ).all()
    for name, _ in rows:
        conn.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
    return [f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'
            for name, definition in rows]


def _merge_staged(conn: Connection, model: type[CityObject], columns: list[str],
                  import_id: int) -> tuple[int, int]:
    """Close changed versions and insert successors and new objects; (updated, written)."""
    table = qualified(model)
    content = [c for c in columns if c != "id"]
    updated = conn.execute(text(
        f"UPDATE {table} t SET valid_to = now() FROM cim_stage s "
        f"WHERE t.id = s.id AND t.valid_to IS NULL "
        f"AND ({_quoted(content, 't')}) IS DISTINCT FROM ({_quoted(content, 's')})"
    )).rowcount
    written = conn.execute(
        text(
            f"INSERT INTO {table} ({_quoted(columns)}, import_id) "
            f"SELECT {_quoted(columns, 's')}, :import_id FROM cim_stage s "
            f"WHERE NOT EXISTS (SELECT 1 FROM {table} t "
            f"WHERE t.id = s.id AND t.valid_to IS NULL)"
        ),
        {"import_id": import_id},
    ).rowcount
    return updated, written


def merge(
    conn: Connection,
    model: type[CityObject],
    frame: pd.DataFrame,
    import_id: int,
    *,
    source: str,
    replace: bool = False,
    progress: Callable[[str, float], None] | None = None,
) -> MergeCounts:
    """Merge ``frame`` (content columns, geometries as hex EWKB) from ``source``."""
    step = progress or (lambda stage, fraction: None)
    table = qualified(model)
    columns = [c for c in content_columns(model) if c in frame.columns]
    rebuild = [] if _exists(conn, model) else _drop_indexes(conn, model)
    if len(frame) >= BULK_ROWS:
        rebuild += _drop_foreign_keys(conn, model)

    staged = _exists(conn, model, "source = :source", source=source)
    if not staged:
        # Nothing of this source yet: every row is a new object, no merge needed.
        copy_frame(conn, table, frame[columns].assign(import_id=import_id),
                   lambda f: step("copy", f))
        updated, written = 0, len(frame)
    else:
        conn.execute(text(
            f"CREATE TEMP TABLE cim_stage ON COMMIT DROP AS "
            f"SELECT {_quoted(columns)} FROM {table} WITH NO DATA"
        ))
        copy_frame(conn, "cim_stage", frame[columns], lambda f: step("copy", f))
        conn.execute(text("CREATE INDEX ON cim_stage (id)"))
        conn.execute(text("ANALYZE cim_stage"))
        step("merge", 0.0)
        updated, written = _merge_staged(conn, model, columns, import_id)

    deleted = 0
    if replace and staged:
        deleted = conn.execute(
            text(
                f"UPDATE {table} t SET valid_to = now() WHERE t.source = :source "
                f"AND t.valid_to IS NULL "
                f"AND NOT EXISTS (SELECT 1 FROM cim_stage s WHERE s.id = t.id)"
            ),
            {"source": source},
        ).rowcount
    step("index", 0.0)
    for definition in rebuild:
        conn.execute(text(definition))
    conn.execute(text(f"ANALYZE {table}"))
    if staged:
        conn.execute(text("DROP TABLE cim_stage"))
    return MergeCounts(inserted=written - updated, updated=updated,
                       unchanged=len(frame) - written, deleted=deleted)

