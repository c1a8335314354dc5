"""The retention policy of scenario results: finished scenarios past an age, then the oldest
while their files take more than a bound, are deleted with their rows and files. Queued and
running scenarios are never touched."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, text

from simulation import jobs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retention:
    keep_days: float = 0.0
    """Finished scenarios older than this go (0: no age limit)."""
    max_bytes: int = 0
    """The oldest finished scenarios go while all scenarios' files take more (0: no bound)."""


def folder_bytes(ctx: jobs.JobContext, scenario_id: int) -> int:
    folder = jobs.scenario_folder(ctx, scenario_id)
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def prune(conn: Connection, ctx: jobs.JobContext, retention: Retention,
          now: datetime | None = None) -> list[int]:
    """Delete what the policy says must go; returns the ids deleted, oldest first."""
    rows = conn.execute(text(
        "SELECT id, status IN ('queued', 'running') AS active, "
        "COALESCE(finished_at, created_at) AS ended FROM cim.scenarios ORDER BY ended, id")).all()
    conn.rollback()
    now = now or conn.scalar(text("SELECT now()"))
    sizes = {row.id: folder_bytes(ctx, row.id) for row in rows}
    total = sum(sizes.values())
    cutoff = now - timedelta(days=retention.keep_days) if retention.keep_days else None
    doomed = []
    for row in rows:
        if row.active:
            continue
        too_old = cutoff is not None and row.ended < cutoff
        too_big = retention.max_bytes > 0 and total > retention.max_bytes
        if not (too_old or too_big):
            continue
        doomed.append(row.id)
        total -= sizes[row.id]
    for scenario_id in doomed:
        jobs.delete(conn, ctx, scenario_id)
    if doomed:
        log.info("retention: deleted scenarios %s (%d bytes of files remain)", doomed, total)
    return doomed
