"""Load checked rows into a versioned table with COPY, keeping history.

A current version whose content differs from the incoming row is closed
(``valid_to = now()``) and its successor inserted; unchanged objects are left alone; new
objects are inserted. On an empty table the indexes are dropped during the load and rebuilt
in bulk afterwards. Everything runs in the caller's transaction, so a failure leaves the
table as it was.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from types import TracebackType
from typing import Any, cast

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import Copy
from psycopg.copy import QueuedLibpqWriter
from sqlalchemy import Connection, text

from cim.schema.models import SCHEMA, CityObject

BOOKKEEPING = ("vid", "valid_from", "valid_to", "import_id")
COPY_BATCH_ROWS = 50_000
BULK_ROWS = 20_000
"""Loading an empty table with this many rows, foreign keys are checked once afterwards."""
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


class Loader:
    """Streams frames of checked rows into a model's table, then settles history.

    Open it inside the import's transaction, ``write`` frames (content columns, geometries
    as hex EWKB) as they are ready, and read ``counts`` after the ``with`` block. COPY data
    goes out through a writer thread, so PostgreSQL parses one batch while Python checks
    the next. A source the table has never seen is copied straight into the table; otherwise
    rows go to a staging table and are merged with history on exit.
    """

    def __init__(self, conn: Connection, model: type[CityObject], import_id: int, *,
                 source: str, replace: bool = False, expected_rows: int = 0) -> None:
        self.conn, self.model, self.import_id = conn, model, import_id
        self.source, self.replace, self.expected_rows = source, replace, expected_rows
        self.rows = 0
        self.counts: MergeCounts | None = None
        self._columns: list[str] = []
        self._copy: Copy | None = None
        self._copy_context: Any = None

    def __enter__(self) -> Loader:
        conn, model = self.conn, self.model
        # Imports into one table take turns: each decides from what the table holds.
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:t))"),
                     {"t": qualified(model)})
        # Only an empty table is rebuilt around the load: dropping an index or constraint
        # locks the table, and readers of a populated one must not wait for an import.
        self._rebuild = []
        if not _exists(conn, model):
            self._rebuild = _drop_indexes(conn, model)
            if self.expected_rows >= BULK_ROWS:
                self._rebuild += _drop_foreign_keys(conn, model)
        self.staged = _exists(conn, model, "source = :source", source=self.source)
        return self

    def _open(self, frame: pd.DataFrame) -> None:
        self._columns = [c for c in content_columns(self.model) if c in frame.columns]
        target = qualified(self.model)
        columns = list(self._columns)
        if self.staged:
            self.conn.execute(text(
                f"CREATE TEMP TABLE cim_stage ON COMMIT DROP AS "
                f"SELECT {_quoted(columns)} FROM {target} WITH NO DATA"
            ))
            target = "cim_stage"
        else:
            columns.append("import_id")
        cursor = self.conn.connection.dbapi_connection.cursor()
        sql = f"COPY {target} ({_quoted(columns)}) FROM STDIN WITH (FORMAT csv)"
        self._copy_context = cursor.copy(sql, writer=QueuedLibpqWriter(cursor))
        self._copy = self._copy_context.__enter__()

    def write(self, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        if self._copy is None:
            self._open(frame)
        frame = frame[self._columns]
        if not self.staged:
            frame = frame.assign(import_id=self.import_id)
        for start in range(0, len(frame), COPY_BATCH_ROWS):
            batch = pa.Table.from_pandas(frame.iloc[start:start + COPY_BATCH_ROWS],
                                         preserve_index=False)
            sink = io.BytesIO()
            pacsv.write_csv(batch, sink, CSV_OPTIONS)
            self._copy.write(sink.getvalue())
        self.rows += len(frame)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._copy_context is not None:
            self._copy_context.__exit__(kind, error, trace)
        if error is not None:
            return
        conn, table = self.conn, qualified(self.model)
        updated, written, deleted = 0, self.rows, 0
        if self.staged and self._columns:
            conn.execute(text("CREATE INDEX ON cim_stage (id)"))
            conn.execute(text("ANALYZE cim_stage"))
            updated, written = _merge_staged(conn, self.model, self._columns, self.import_id)
            if self.replace:
                deleted = conn.execute(
                    text(f"UPDATE {table} t SET valid_to = now() WHERE t.source = :source "
                         "AND t.valid_to IS NULL "
                         "AND NOT EXISTS (SELECT 1 FROM cim_stage s WHERE s.id = t.id)"),
                    {"source": self.source},
                ).rowcount
            conn.execute(text("DROP TABLE cim_stage"))
        for definition in self._rebuild:
            conn.execute(text(definition))
        conn.execute(text(f"ANALYZE {table}"))
        self.counts = MergeCounts(inserted=written - updated, updated=updated,
                                  unchanged=self.rows - written, deleted=deleted)


def merge(conn: Connection, model: type[CityObject], frame: pd.DataFrame, import_id: int, *,
          source: str, replace: bool = False) -> MergeCounts:
    """Load one frame (see :class:`Loader`)."""
    with Loader(conn, model, import_id, source=source, replace=replace,
                expected_rows=len(frame)) as loader:
        loader.write(frame)
    return cast(MergeCounts, loader.counts)
