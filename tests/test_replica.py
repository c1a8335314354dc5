"""Reads from a streaming replica: a real primary and replica on loopback behind `cim serve`.

Anonymous reads must be served by the replica and writes by the primary; an editor reads the
primary (its own writes at once); an edit reaches the replica's readers, tiles included, once
replayed. Replay is paused on the replica (never broken) to tell the two servers apart.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import morecantile
import pytest
from sqlalchemy import Engine, create_engine, text

from cim.access import Role, create_key
from cim.db.cluster import Cluster
from cim.db.engine import READER_NAME, ensure_database, make_engine, make_read_engine
from cim.db.errors import DatabaseError
from cim.schema.migrate import upgrade
from cim.settings import DatabaseSettings
from layers.model import Classification
from tests.servers import cim_serve
from tests.test_cli import cim

LON, LAT = 114.4001, 30.5001
SQUARE = {"type": "MultiPolygon", "coordinates": [[[
    [114.40, 30.50], [114.4002, 30.50], [114.4002, 30.5002], [114.40, 30.5002],
    [114.40, 30.50]]]]}
TILE = morecantile.tms.get("WebMercatorQuad").tile(LON, LAT, 16)
TILE_PATH = f"/collections/buildings/tiles/WebMercatorQuad/16/{TILE.x}/{TILE.y}"
MAX_LAG_S = 1.0


@dataclass
class Pair:
    folder: Path
    primary: Cluster
    database: DatabaseSettings
    primary_engine: Engine
    replica_url: str
    replica_engine: Engine


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.2)


def caught_up(pair: Pair) -> bool:
    with pair.primary_engine.connect() as p, pair.replica_engine.connect() as r:
        position = p.scalar(text("SELECT pg_current_wal_lsn()::text"))
        return bool(r.scalar(text("SELECT pg_last_wal_replay_lsn() >= CAST(:p AS pg_lsn)"),
                             {"p": position}))


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    # Not under pytest's tmp dir: that is private to root, and the servers run as postgres.
    folder = Path(tempfile.mkdtemp(prefix="cim-replica-"))
    folder.chmod(0o755)
    primary = Cluster(folder / "primary")
    replica: Cluster | None = None
    engines: list[Engine] = []
    try:
        primary.start()
        database = DatabaseSettings(data_dir=primary.data_dir)
        ensure_database(database)
        engines.append(make_engine(database))
        upgrade(engines[0])
        replica = primary.make_replica(folder / "replica")
        assert replica.is_replica
        replica_url = f"{replica.start().url}/{database.name}"
        engines.append(create_engine(replica_url, isolation_level="AUTOCOMMIT"))
        found = Pair(folder, primary, database, engines[0], replica_url, engines[1])
        wait_for(lambda: caught_up(found), 30, "the replica replays the migrated primary")
        yield found
    finally:
        for engine in engines:
            engine.dispose()
        if replica is not None:
            replica.destroy()
        primary.destroy()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def server(pair: Pair) -> Iterator[str]:
    env = {"CIM_DATABASE_URL": pair.primary_engine.url.render_as_string(hide_password=False),
           "CIM_DATABASE_REPLICA_URL": pair.replica_url,
           "CIM_DATABASE_REPLICA_MAX_LAG_S": str(MAX_LAG_S),
           "CIM_STORAGE_ROOT": str(pair.folder / "files"),
           "CIM_TILES_CACHE_DIR": str(pair.folder / "tiles")}
    with cim_serve(env, probe="/ready") as base:
        yield base


@pytest.fixture
def editor(pair: Pair) -> dict[str, str]:
    with pair.primary_engine.begin() as conn:
        name = f"editor-{time.monotonic_ns()}"
        secret = create_key(conn, name, Role.editor, Classification.public)
    return {"Authorization": f"Bearer {secret}"}


def building_scans(engine: Engine) -> int:
    """The server's own count of scans of cim.buildings (its statistics, flushed by each
    session at least every 10 s)."""
    with engine.connect() as conn:
        return int(conn.scalar(text(
            "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables "
            "WHERE schemaname = 'cim' AND relname = 'buildings'")))


def test_anonymous_reads_are_served_by_the_replica(pair, server):
    before = building_scans(pair.replica_engine)
    page = httpx.get(f"{server}/collections/buildings/items", params={"limit": 3})
    assert page.status_code == 200, page.text
    # The replica's own statistics count the API's read, made by its named sessions.
    wait_for(lambda: building_scans(pair.replica_engine) > before, 30,
             "the replica counts a scan of buildings")
    with pair.replica_engine.connect() as conn:
        readers = conn.scalar(text("SELECT count(*) FROM pg_stat_activity "
                                   "WHERE application_name = :n"), {"n": READER_NAME})
    assert readers > 0
    with pair.primary_engine.connect() as conn:
        on_primary = conn.scalar(text("SELECT count(*) FROM pg_stat_activity "
                                      "WHERE application_name = :n"), {"n": READER_NAME})
    assert on_primary == 0
    ready = httpx.get(f"{server}/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["replica"] is True and ready.json()["replica_lag_s"] == 0


def test_an_edit_reaches_replica_readers_after_replay(pair, server, editor):
    tile = httpx.get(f"{server}{TILE_PATH}")
    assert tile.status_code == 204, tile.text  # no building there yet
    assert httpx.get(f"{server}{TILE_PATH}").headers["x-cache"] == "hit"

    with pair.replica_engine.connect() as conn:
        conn.execute(text("SELECT pg_wal_replay_pause()"))
    try:
        created = httpx.post(f"{server}/collections/buildings/items", headers=editor, json={
            "type": "Feature", "geometry": SQUARE, "properties": {"height": 21.0}})
        assert created.status_code == 201, created.text
        location = created.headers["location"]

        # The editor reads the primary: its own write at once.
        own = httpx.get(location, headers=editor)
        assert own.status_code == 200, own.text
        assert own.json()["properties"]["height"] == 21.0
        # Anonymous readers read the replica, which has not replayed the write.
        assert httpx.get(location).status_code == 404
        time.sleep(MAX_LAG_S + 0.5)
        assert httpx.get(f"{server}{TILE_PATH}").status_code == 204
        ready = httpx.get(f"{server}/ready")
        assert ready.status_code == 503, ready.text
        assert ready.json()["replica"] is False
        assert ready.json()["replica_lag_bytes"] > 0
        assert ready.json()["replica_lag_s"] > MAX_LAG_S
    finally:
        with pair.replica_engine.connect() as conn:
            conn.execute(text("SELECT pg_wal_replay_resume()"))

    wait_for(lambda: httpx.get(location).status_code == 200, 30,
             "the edit is served from the replica")
    assert httpx.get(location).json()["properties"]["height"] == 21.0
    # The stale empty tile cached while the replica lagged is evicted once it has replayed.
    wait_for(lambda: httpx.get(f"{server}{TILE_PATH}").status_code == 200, 30,
             "the tile shows the new building")
    wait_for(lambda: httpx.get(f"{server}/ready").status_code == 200, 30,
             "the replica is ready again")


def test_a_malformed_replica_url_is_refused_by_name():
    with pytest.raises(DatabaseError, match="CIM_DATABASE_REPLICA_URL"):
        make_read_engine(DatabaseSettings(replica_url="not a url"))
    assert make_read_engine(DatabaseSettings(replica_url="")) is None


def test_cli_makes_starts_and_stops_a_replica(pair):
    env = {"CIM_DATABASE_DATA_DIR": str(pair.primary.data_dir)}
    folder = pair.folder / "cli-replica"
    made = cim("db", "replica", str(folder), env=env)
    try:
        assert made.returncode == 0, made.stderr
        url = made.stdout.strip().removeprefix("CIM_DATABASE_REPLICA_URL=")
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                assert conn.scalar(text("SELECT pg_is_in_recovery()")) is True
                assert conn.scalar(text("SELECT count(*) FROM cim.buildings")) is not None
        finally:
            engine.dispose()
        assert cim("db", "replica", str(folder), env=env).returncode == 0  # starts again
        stopped = cim("db", "replica", str(folder), "--stop", env=env)
        assert stopped.returncode == 0, stopped.stderr
        assert not Cluster(folder).status().running
        refused = cim("db", "replica", str(pair.primary.data_dir), env=env)
        assert refused.returncode == 2 and "not a replica" in refused.stderr
    finally:
        Cluster(folder).destroy()
