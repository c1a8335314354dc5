"""Sensor observations from CSV (``sensor_id,observed_at,value[,quality]``), bulk-copied.

Readings are facts at a time, not versioned objects: a reading already stored for the same
sensor and time is left as it is and counted as unchanged.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine, text

from cim.ingest.errors import ImportRejected, ReaderError
from cim.ingest.registry import close_import, open_import
from cim.ingest.report import ImportReport, Rejection
from cim.schema.models import SCHEMA, Provenance

REQUIRED = ("sensor_id", "observed_at", "value")


def import_observations(engine: Engine, path: Path, *, source: str,
                        provenance: Provenance = Provenance.real,
                        skip_invalid: bool = False) -> ImportReport:
    """Load readings of sensors of ``source`` (sensor ids are that source's own ids)."""
    started = time.perf_counter()
    report = ImportReport(path=str(path), format="CSV", layer="observations", source=source)
    try:
        # Times as text: pandas reads a column of numbers as epochs, not ISO 8601.
        frame = pd.read_csv(path, dtype={"sensor_id": "string", "observed_at": "string"})
    except (OSError, ValueError) as exc:
        raise ReaderError(f"{path.name}: cannot read as CSV: {exc}") from None
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ReaderError(f"{path.name} lacks column(s) {', '.join(missing)}; "
                          f"expected {', '.join(REQUIRED)}[,quality]")
    report.features_read = len(frame)
    times = pd.to_datetime(frame["observed_at"], errors="coerce", utc=True, format="ISO8601")
    values = pd.to_numeric(frame["value"], errors="coerce")
    reasons = np.full(len(frame), None, dtype=object)
    reasons[values.isna().to_numpy()] = "value is not a number"
    reasons[times.isna().to_numpy()] = "observed_at is not an ISO 8601 time"
    offset = frame["observed_at"].astype(str).str.contains(r"(?:Z|[+-]\d\d:?\d\d)$")
    naive = times.notna() & ~offset
    reasons[naive.to_numpy()] = "observed_at has no UTC offset (write e.g. +08:00)"
    frame = frame.assign(sensor_id=source + ":" + frame["sensor_id"],
                         observed_at=times,
                         value=values,
                         quality=frame.get("quality", pd.Series(0, index=frame.index)))

    with engine.begin() as conn:
        known = {r[0] for r in conn.execute(text(
            f'SELECT id FROM "{SCHEMA}".sensors WHERE valid_to IS NULL AND source = :s'),
            {"s": source})}
        unknown = ~frame["sensor_id"].isin(known).to_numpy()
        reasons[unknown & (reasons == None)] = "no such sensor"  # noqa: E711
        bad = reasons != None  # noqa: E711
        report.rejected = [Rejection(row=int(i), source_id=str(frame["sensor_id"].iloc[i]),
                                     reason=str(reasons[i])) for i in np.flatnonzero(bad)]
        if bad.any() and not skip_invalid:
            report.status = "rejected"
            raise ImportRejected(report)
        good = frame.loc[~bad, ["sensor_id", "observed_at", "value", "quality"]]
        report.import_id = open_import(conn, report, provenance)
        conn.execute(text("CREATE TEMP TABLE cim_obs (LIKE cim.observations) ON COMMIT DROP"))
        buffer = io.StringIO()
        good.to_csv(buffer, header=False, index=False, date_format="%Y-%m-%dT%H:%M:%S%z")
        cursor = conn.connection.dbapi_connection.cursor()
        with cursor.copy("COPY cim_obs (sensor_id, observed_at, value, quality) "
                         "FROM STDIN WITH (FORMAT csv)") as copy:
            copy.write(buffer.getvalue())
        report.inserted = conn.execute(text(
            f'INSERT INTO "{SCHEMA}".observations SELECT * FROM cim_obs '
            "ON CONFLICT (sensor_id, observed_at) DO NOTHING")).rowcount
        report.unchanged = len(good) - report.inserted
        conn.execute(text(f'ANALYZE "{SCHEMA}".observations'))
        report.status = "completed"
        report.seconds = time.perf_counter() - started
        close_import(conn, report)
    return report
