"""Keeps the tile cache true to the database: reads ``cim.changes`` and evicts what changed.

A listener thread holds its own connection with ``LISTEN cim_changes`` (the triggers of
migration 0003 notify it at each commit) and, on each notification, reads the changes
committed since the last snapshot it read at: rows whose transaction that snapshot did not
see. That is exact whatever order transactions commit in, and the snapshot is persisted in
the cache folder, so a restarted server first evicts what changed while it was down.

Each change's relation maps to the catalog layers drawn from it, views resolved to the tables
under them (``sensors_latest`` reads ``sensors`` and ``observations``). While the listener is
not connected and caught up, the cache is inactive: it cannot know what to evict.

With a read replica, tiles are rendered from the replica, so the changes are read there
too: notifications still come from the primary (a standby cannot LISTEN), and after one the
listener keeps reading until the replica has replayed the primary's WAL as of the notice.
Evicting on the notice alone would let a tile rendered from a lagging replica be cached
stale after its eviction.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections import defaultdict
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import psycopg
from sqlalchemy import Engine

from cim.settings import TilesSettings
from layers.catalog import Catalog
from tiles.cache import TileCache
from tiles.grid import BBox

log = logging.getLogger(__name__)

CHANNEL = "cim_changes"
STATE_FILE = "changes.json"
SAFETY_POLL_S = 30.0
"""Read the changes now and then even without a notification (cheap: an index probe)."""
RETRY_S = 5.0
SAVE_EVERY_S = 1.0
"""How often, at most, where the listener has got to is written down. Behind is safe: a
restarted server re-evicts what changed since (a stream of edits wrote it several times a
second, a rename each, a twentieth of the server's time under load)."""
WAKE_S = 0.5
"""How often the listener looks up from waiting to see whether it should stop."""

VIEW_SOURCES = """
    SELECT DISTINCT v.relname, t.relname FROM pg_rewrite r
    JOIN pg_class v ON v.oid = r.ev_class
    JOIN pg_namespace vn ON vn.oid = v.relnamespace
    JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
        AND d.refclassid = 'pg_class'::regclass
    JOIN pg_class t ON t.oid = d.refobjid
    JOIN pg_namespace tn ON tn.oid = t.relnamespace
    WHERE vn.nspname = 'cim' AND tn.nspname = 'cim' AND t.oid <> v.oid
"""
CHANGES = """
    SELECT f.epoch::text, pg_current_snapshot()::text, c.relation, ST_XMin(c.envelope),
           ST_YMin(c.envelope), ST_XMax(c.envelope), ST_YMax(c.envelope)
    FROM cim.change_feed f
    LEFT JOIN cim.changes c
      ON c.txid >= pg_snapshot_xmin(%(since)s::pg_snapshot)
     AND NOT pg_visible_in_snapshot(c.txid, %(since)s::pg_snapshot)
"""
"""The epoch, the snapshot now and the changes since ``since``, in one statement: it reads
the changes with the very snapshot it returns (a statement's snapshot is
``pg_current_snapshot()``), in one round trip instead of a read-only transaction's five.
Under a stream of edits every worker runs it after each commit."""


def layers_by_relation(conn: psycopg.Connection, catalog: Catalog) -> dict[str, set[str]]:
    """For each table of ``cim``, the catalog layers whose source reads it."""
    under: dict[str, set[str]] = defaultdict(set)
    for view, table in conn.execute(VIEW_SOURCES):
        under[view].add(table)

    def tables(relation: str, seen: frozenset[str] = frozenset()) -> set[str]:
        if relation not in under or relation in seen:
            return {relation}
        return {t for source in under[relation] for t in tables(source, seen | {relation})}

    found: dict[str, set[str]] = defaultdict(set)
    for layer in catalog:
        for table in tables(layer.source.relation):
            found[table].add(layer.id)
    return dict(found)


class Invalidator:
    """Feeds ``cache`` the database's changes: at start-up, then as they are committed."""

    def __init__(self, engine: Engine, catalog: Catalog, cache: TileCache,
                 folder: Path | None, read_engine: Engine | None = None) -> None:
        self.cache, self.catalog, self.root = cache, catalog, folder
        self._conninfo = _conninfo(engine)
        self._replica = (_conninfo(read_engine)
                         if read_engine is not None and read_engine is not engine else None)
        self._since: str | None = None
        self._epoch: str | None = None
        self._saved_at = 0.0
        self._layers: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Catch up now if the database answers (else the thread keeps trying), then listen."""
        try:
            self.sync()
        except psycopg.Error as exc:
            log.error("tile cache inactive until the database answers: %s", exc)
        self._thread = threading.Thread(target=self._listen, name="tile-invalidation",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.cache.active = False
        with self._lock:
            if self._epoch is not None:
                self._save()

    def sync(self) -> int:
        """Apply every change committed so far; returns how many tiles were evicted."""
        with psycopg.connect(self._replica or self._conninfo, autocommit=True) as conn:
            return self._catch_up(conn)

    def _reader(self, conn: psycopg.Connection) -> AbstractContextManager[psycopg.Connection]:
        """Where changes are read: the replica's own connection, else the listener's."""
        if self._replica is None:
            return nullcontext(conn)
        return psycopg.connect(self._replica, autocommit=True)

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn, \
                        self._reader(conn) as reader:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._catch_up(reader)  # whatever was committed before LISTEN took effect
                    waited, pending = 0.0, None
                    while not self._stop.is_set():
                        notified = any(True for _ in conn.notifies(timeout=WAKE_S,
                                                                   stop_after=1))
                        if notified:  # those already here are covered by the same read
                            for _ in conn.notifies(timeout=0):
                                pass
                        waited = 0.0 if notified else waited + WAKE_S
                        if notified and self._replica is not None:
                            pending = conn.execute(
                                "SELECT pg_current_wal_lsn()::text").fetchone()[0]
                        if notified or pending is not None or waited >= SAFETY_POLL_S:
                            # Asked before reading: the read then covers the notice's WAL.
                            replayed = pending is not None and reader.execute(
                                "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn",
                                (pending,)).fetchone()[0]
                            self._catch_up(reader)
                            waited = 0.0
                            if replayed:
                                pending = None
            except psycopg.Error as exc:
                self.cache.active = False  # changes may be missed until we are back
                log.warning("tile invalidation lost its connection (%s); retrying", exc)
                self._stop.wait(RETRY_S)

    def _catch_up(self, conn: psycopg.Connection) -> int:
        with self._lock:
            # Before the first attach ``since`` is NULL: the read names the epoch, no changes.
            found = conn.execute(CHANGES, {"since": self._since}).fetchall()
            epoch, snapshot = found[0][:2]
            if epoch != self._epoch:  # first, or another database: start from its own state
                self._attach(conn, epoch)
                found = conn.execute(CHANGES, {"since": self._since}).fetchall()
                snapshot = found[0][1]
            rows = [row[2:] for row in found if row[2] is not None]
            evicted = self._evict(rows)
            self._since = snapshot
            if rows and time.monotonic() - self._saved_at >= SAVE_EVERY_S:
                self._save()
            self.cache.active = True
            return evicted

    def _attach(self, conn: psycopg.Connection, epoch: str) -> None:
        """Bind the cache to this database: its folder, its layers, where we left off."""
        self._layers = layers_by_relation(conn, self.catalog)
        folder = self.root / epoch if self.root is not None else None
        since = None
        if folder is not None:
            try:
                since = json.loads((folder / STATE_FILE).read_text())["snapshot"]
            except (OSError, ValueError, KeyError):
                # Tiles without a record of what they have seen cannot be trusted.
                shutil.rmtree(folder, ignore_errors=True)
        if since is None:  # nothing cached yet: every committed change is already in the data
            since = conn.execute("SELECT pg_current_snapshot()::text").fetchone()[0]
        self.cache.attach(folder)
        self._epoch, self._since = epoch, since
        self._save()

    def _evict(self, rows: list[tuple]) -> int:
        by_relation: dict[str, list[BBox]] = defaultdict(list)
        for relation, *bbox in rows:
            by_relation[relation].append(tuple(bbox))
        evicted = 0
        for relation, bboxes in by_relation.items():
            layers = self._layers.get(relation)
            if layers:
                evicted += self.cache.evict(layers, bboxes)
        if rows:
            # At each commit of an edit stream: for a debugging session, not the log.
            log.debug("tile cache: %d changes, %d tiles evicted", len(rows), evicted)
        return evicted

    def _save(self) -> None:
        self._saved_at = time.monotonic()
        if self.cache.folder is None:
            return
        self.cache.folder.mkdir(parents=True, exist_ok=True)
        state = self.cache.folder / STATE_FILE
        temporary = state.with_name(f".{STATE_FILE}.{threading.get_ident()}")
        temporary.write_text(json.dumps({"snapshot": self._since}))
        temporary.replace(state)


def _conninfo(engine: Engine) -> str:
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def start_tile_cache(engine: Engine, catalog: Catalog, settings: TilesSettings,
                     read_engine: Engine | None = None) -> Invalidator | None:
    """The cache with its invalidation running (None when the cache is disabled); with a
    ``read_engine`` (the replica tiles are rendered from), changes are read there."""
    if not settings.enabled:
        return None
    invalidator = Invalidator(engine, catalog, TileCache(settings.memory_bytes),
                              settings.cache_dir, read_engine)
    invalidator.start()
    return invalidator
