"""Load checked rows into a versioned table: COPY into a staging table, then merge.

The merge keeps history: a current version whose content changed is closed
(``valid_to = now()``) and a new version written; unchanged objects are left alone; new
objects are inserted. It all runs inside the caller's transaction, so a failure leaves the
table as it was. On an empty table the indexes are dropped during the load and rebuilt in
bulk afterwards, which is what makes a first city-scale import fast.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Connection, text

from cim.schema.models import SCHEMA, CityObject

BOOKKEEPING = ("vid", "valid_from", "valid_to", "import_id", "content_hash")
COPY_CHUNK = 8 << 20


def content_columns(model: type[CityObject]) -> list[str]:
    """Columns whose values make an object's content (all but version bookkeeping)."""
    return [c.name for c in model.__table__.columns if c.name not in BOOKKEEPING]


def content_hash_sql(model: type[CityObject], alias: str) -> str:
    """SQL digest of a row's content: one definition for imports and edits alike."""
    cols = ", ".join(f'{alias}."{c}"' for c in content_columns(model))
    return f"md5(ROW({cols})::text)"


def qualified(model: type[CityObject]) -> str:
    return f'"{SCHEMA}"."{model.__tablename__}"'


@dataclass(frozen=True)
class MergeCounts:
    inserted: int
    updated: int
    unchanged: int
    deleted: int


def _copy_csv(conn: Connection, table: str, columns: list[str], frame: pd.DataFrame,
              progress: Callable[[float], None] | None) -> None:
    """Stream the frame as CSV through COPY (empty unquoted fields are NULL)."""
    buffer = io.StringIO()
    frame.to_csv(buffer, header=False, index=False, columns=columns)
    data = buffer.getvalue().encode()
    del buffer
    col_list = ", ".join(f'"{c}"' for c in columns)
    cursor = conn.connection.dbapi_connection.cursor()
    with cursor.copy(f"COPY {table} ({col_list}) FROM STDIN WITH (FORMAT csv)") as copy:
        for start in range(0, len(data), COPY_CHUNK):
            copy.write(data[start:start + COPY_CHUNK])
            if progress:
                progress(min(1.0, (start + COPY_CHUNK) / max(len(data), 1)))


def _table_is_empty(conn: Connection, model: type[CityObject]) -> bool:
    return not conn.scalar(text(f"SELECT EXISTS (SELECT 1 FROM {qualified(model)})"))


def _drop_indexes(conn: Connection, model: type[CityObject]) -> list[str]:
    """Drop the table's non-primary-key indexes, returning their definitions."""
    rows = conn.execute(
        text(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i "
            "JOIN pg_class c ON c.relname = i.indexname "
            "JOIN pg_index x ON x.indexrelid = c.oid "
            "WHERE i.schemaname = :schema AND i.tablename = :table AND NOT x.indisprimary"
        ),
        {"schema": SCHEMA, "table": model.__tablename__},
    ).all()
    for name, _ in rows:
        conn.execute(text(f'DROP INDEX "{SCHEMA}"."{name}"'))
    return [definition for _, definition in rows]


def merge(
    conn: Connection,
    model: type[CityObject],
    frame: pd.DataFrame,
    import_id: int,
    *,
    replace_source: str | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> MergeCounts:
    """Merge ``frame`` (content columns, geometries as hex EWKB) into the model's table."""
    table = qualified(model)
    columns = [c for c in content_columns(model) if c in frame.columns]
    quoted = [f'"{c}"' for c in columns]
    col_list = ", ".join(quoted)
    conn.execute(text(
        f"CREATE TEMP TABLE cim_stage ON COMMIT DROP AS "
        f"SELECT {col_list} FROM {table} WITH NO DATA"
    ))
    _copy_csv(conn, "cim_stage", columns, frame,
              (lambda f: progress("copy", f)) if progress else None)
    conn.execute(text("CREATE INDEX ON cim_stage (id)"))
    conn.execute(text("ANALYZE cim_stage"))
    if progress:
        progress("merge", 0.0)

    rebuild: list[str] = []
    if _table_is_empty(conn, model):
        rebuild = _drop_indexes(conn, model)

    updated = conn.execute(text(
        f"UPDATE {table} t SET valid_to = now() FROM cim_stage s "
        f"WHERE t.id = s.id AND t.valid_to IS NULL "
        f"AND t.content_hash <> {content_hash_sql(model, 's')}"
    )).rowcount
    written = conn.execute(
        text(
            f"INSERT INTO {table} ({col_list}, content_hash, import_id, valid_from) "
            f"SELECT {', '.join(f's.{c}' for c in quoted)}, "
            f"{content_hash_sql(model, 's')}, :import_id, now() FROM cim_stage s "
            f"WHERE NOT EXISTS (SELECT 1 FROM {table} t "
            f"WHERE t.id = s.id AND t.valid_to IS NULL)"
        ),
        {"import_id": import_id},
    ).rowcount
    deleted = 0
    if replace_source is not None:
        deleted = conn.execute(
            text(
                f"UPDATE {table} t SET valid_to = now() WHERE t.source = :source "
                f"AND t.valid_to IS NULL "
                f"AND NOT EXISTS (SELECT 1 FROM cim_stage s WHERE s.id = t.id)"
            ),
            {"source": replace_source},
        ).rowcount
    if progress:
        progress("index", 0.0)
    for definition in rebuild:
        conn.execute(text(definition))
    conn.execute(text(f"ANALYZE {table}"))
    conn.execute(text("DROP TABLE cim_stage"))
    return MergeCounts(
        inserted=written - updated,
        updated=updated,
        unchanged=len(frame) - written,
        deleted=deleted,
    )
