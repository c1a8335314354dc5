"""SQLAlchemy engines for the configured database (external URL or the embedded cluster)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from cim.db.cluster import Cluster
from cim.db.errors import DatabaseError, DatabaseNotRunningError, PostgisMissingError
from cim.settings import DatabaseSettings

log = logging.getLogger(__name__)

MIN_POSTGIS = (3, 0)
READER_NAME = "cim-replica-reads"


def cluster_for(settings: DatabaseSettings) -> Cluster:
    return Cluster(settings.data_dir, settings.pg_bin, settings.port)


def _driver_url(value: str, variable: str) -> str:
    """A configured URL with psycopg as its driver; raises naming the setting when malformed."""
    try:
        url = make_url(value)
    except ArgumentError:
        raise DatabaseError(
            f"{variable} is not a database URL "
            "(expected postgresql://user:password@host:port/database)"
        ) from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def database_url(settings: DatabaseSettings) -> str:
    """The URL to connect to: ``CIM_DATABASE_URL`` if set, else the running embedded cluster."""
    if settings.url is not None:
        return _driver_url(settings.url.get_secret_value(), "CIM_DATABASE_URL")
    status = cluster_for(settings).status()
    if status.url is None:
        raise DatabaseNotRunningError(
            f"the embedded database in {settings.data_dir} is not running: "
            "start it with `cim db start`, or set CIM_DATABASE_URL"
        )
    return f"{status.url}/{settings.name}"


def redacted(url: str) -> str:
    """The URL with its password hidden, for logs and messages."""
    return make_url(url).render_as_string(hide_password=True)


def _engine_arguments(url: str, settings: DatabaseSettings, connect_args: dict[str, str],
                      kwargs: dict) -> dict:
    options = "-c max_parallel_workers_per_gather=0 -c jit=off"
    if settings.statement_timeout_ms:
        options += f" -c statement_timeout={settings.statement_timeout_ms}"
    log.debug("connecting to %s", redacted(url))
    # No overflow: connections opened past the pool are closed on return, and a server
    # under load would then pay for a fresh session on most requests.
    pool = {"pool_size": settings.pool_size, "max_overflow": 0}
    return {"connect_args": {"options": options, **connect_args}, **pool, **kwargs}


def _engine(url: str, settings: DatabaseSettings, connect_args: dict[str, str],
            **kwargs) -> Engine:
    return create_engine(url, **_engine_arguments(url, settings, connect_args, kwargs))


def make_engine(settings: DatabaseSettings, **kwargs) -> Engine:
    return _engine(database_url(settings), settings, {}, **kwargs)


def make_async_engine(settings: DatabaseSettings, replica: bool = False,
                      **kwargs) -> AsyncEngine | None:
    """The engine requests' own queries run on: psycopg's async driver on the event loop,
    so a query waits without holding a worker thread (each thread's wake-up waited for the
    GIL behind the loop). ``replica``: on ``CIM_DATABASE_REPLICA_URL`` (None without one).
    The sync engines stay for the CLI, jobs, tile renders and the cache's listener."""
    if replica:
        target = _replica(settings)
        if target is None:
            return None
        url, connect_args = target
    else:
        url, connect_args = database_url(settings), {}
    return create_async_engine(url, **_engine_arguments(url, settings, connect_args, kwargs))


def autocommit(engine: Engine) -> Connection:
    """A connection for one read statement: in autocommit it costs no BEGIN and ROLLBACK
    round trips (on the hot paths: tile renders, feature pages, key checks)."""
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


@asynccontextmanager
async def autocommit_async(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """:func:`autocommit` on an async engine."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


def make_read_engine(settings: DatabaseSettings, **kwargs) -> Engine | None:
    """An engine on the streaming replica (``CIM_DATABASE_REPLICA_URL``); None without one.

    Its sessions are named, so the replica's ``pg_stat_activity`` shows the API's readers."""
    target = _replica(settings)
    if target is None:
        return None
    url, connect_args = target
    return _engine(url, settings, connect_args, **kwargs)


def _replica(settings: DatabaseSettings) -> tuple[str, dict[str, str]] | None:
    """The replica's URL and its sessions' connect arguments (named), or None without one."""
    if settings.replica_url is None:
        return None
    url = _driver_url(settings.replica_url.get_secret_value(), "CIM_DATABASE_REPLICA_URL")
    return url, {"application_name": READER_NAME}


@dataclass(frozen=True)
class ReplicaLag:
    """How far the replica's replay is behind the primary."""

    seconds: float | None
    """Since the last replayed commit when WAL is pending, 0 when caught up; None: unknown."""
    bytes: int


def replica_lag(primary: Connection, replica: Connection) -> ReplicaLag:
    """The replica's replay lag behind the primary's current WAL position.

    The primary's position is read first, so a replica that has replayed it is caught up
    even when the primary is idle or the stream is down. Otherwise the lag is the age of the
    last replayed commit: after a long quiet spell it overstates a fresh write's delay until
    that write is replayed (milliseconds when streaming)."""
    if primary.scalar(text("SELECT pg_is_in_recovery()")):
        raise DatabaseError("CIM_DATABASE_URL names a server in recovery: writes need the "
                            "primary")
    position = primary.scalar(text("SELECT pg_current_wal_lsn()::text"))
    row = replica.execute(text(
        "SELECT pg_is_in_recovery(), "
        "greatest(pg_wal_lsn_diff(CAST(:p AS pg_lsn), pg_last_wal_replay_lsn()), 0)::bigint, "
        "extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8"
    ), {"p": position}).one()
    in_recovery, behind, age = row
    if not in_recovery:  # the "replica" is a primary (or a proxy to one): nothing to replay
        return ReplicaLag(0.0, 0)
    if behind == 0:
        return ReplicaLag(0.0, 0)
    return ReplicaLag(None if age is None else max(age, 0.0), int(behind))


def ensure_database(settings: DatabaseSettings) -> None:
    """Create the embedded cluster's database with PostGIS if missing (no-op for external)."""
    if settings.url is not None:
        return
    server = make_url(database_url(settings)).set(database="postgres")
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": settings.name}
            )
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{settings.name}"'))
                log.info("created database %s", settings.name)
    finally:
        engine.dispose()


def postgis_version(conn: Connection) -> str:
    """The PostGIS version of the database; raises with what to do when it is missing."""
    available = conn.scalar(
        text("SELECT default_version FROM pg_available_extensions WHERE name = 'postgis'")
    )
    if available is None:
        raise PostgisMissingError(
            "the PostGIS extension is not available on this PostgreSQL server: install the "
            "postgis package for its version (Debian: postgresql-<ver>-postgis-3)"
        )
    installed = conn.scalar(text("SELECT extversion FROM pg_extension WHERE extname = 'postgis'"))
    version = installed or available
    if tuple(int(p) for p in version.split(".")[:2]) < MIN_POSTGIS:
        raise PostgisMissingError(f"PostGIS {version} is too old: 3.0 or newer is needed")
    return version


@contextmanager
def connect(settings: DatabaseSettings) -> Iterator[Connection]:
    """A connection in a transaction that commits on success; the engine is disposed after."""
    engine = make_engine(settings)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()
