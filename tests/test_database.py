"""The embedded cluster, PostGIS checks, migrations and the app's readiness, for real."""

from __future__ import annotations

import stat
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text

from cim.app import create_app
from cim.db.cluster import Cluster, check_postgis_installed, find_pg_bin
from cim.db.engine import database_url, ensure_database, make_engine, postgis_version
from cim.db.errors import ClusterError, DatabaseError, PostgisMissingError
from cim.schema.migrate import current_revision, downgrade, head_revision, upgrade
from cim.schema.models import CITY_CLASSES, SCHEMA
from cim.settings import DatabaseSettings, Settings


def test_cluster_lifecycle_on_a_free_port():
    folder = Path(tempfile.mkdtemp(prefix="cim-cluster-"))
    folder.chmod(0o755)
    cluster = Cluster(folder / "pgdata")
    try:
        assert not cluster.status().initialised
        state = cluster.start()
        assert state.running and state.port
        assert cluster.start().port == state.port  # starting twice is harmless
        db = DatabaseSettings(data_dir=folder / "pgdata")
        ensure_database(db)
        engine = make_engine(db)
        with engine.connect() as conn:
            assert postgis_version(conn).startswith("3.")
            assert conn.scalar(text("SHOW max_parallel_workers_per_gather")) == "0"
            assert conn.scalar(text("SHOW listen_addresses")) == "127.0.0.1"
        engine.dispose()
        cluster.stop()
        assert not cluster.status().running
        with pytest.raises(DatabaseError, match="cim db start"):
            database_url(db)
    finally:
        cluster.destroy()
    assert not (folder / "pgdata").exists()


def _start_port(data_dir: Path) -> int | None:
    return Cluster(data_dir).start().port


def test_two_starts_at_once_make_one_cluster():
    """Two processes starting the same fresh cluster together: one initialises and starts
    it, the other finds it running (before, both ran initdb and one failed)."""
    folder = Path(tempfile.mkdtemp(prefix="cim-cluster-"))
    folder.chmod(0o755)
    cluster = Cluster(folder / "pgdata")
    try:
        with ProcessPoolExecutor(2) as pool:
            ports = list(pool.map(_start_port, [cluster.data_dir] * 2))
        state = cluster.status()
        assert state.running and ports == [state.port, state.port]
        assert cluster.log_file.read_text().count("database system is ready") == 1
    finally:
        cluster.destroy()
    assert not cluster.lock_file.exists()


def test_refuses_a_non_empty_folder():
    folder = Path(tempfile.mkdtemp(prefix="cim-cluster-"))
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(ClusterError, match="not an empty cluster directory"):
        Cluster(folder).init()
    assert (folder / "notes.txt").read_text() == "mine"


def test_missing_postgis_names_the_package(tmp_path):
    """A PostgreSQL install without PostGIS: a pg_config whose share folder lacks it."""
    real = find_pg_bin()
    fake = tmp_path / "15" / "bin"
    fake.mkdir(parents=True)
    (fake / "initdb").symlink_to(real / "initdb")
    (tmp_path / "share" / "extension").mkdir(parents=True)
    config = fake / "pg_config"
    config.write_text(f"#!/bin/sh\necho {tmp_path / 'share'}\n")
    config.chmod(config.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(PostgisMissingError, match="apt-get install postgresql-15-postgis-3"):
        check_postgis_installed(fake)


def test_migrations_down_and_up(migrated_engine):
    assert current_revision(migrated_engine) == head_revision()
    downgrade(migrated_engine, "base")
    try:
        assert SCHEMA not in inspect(migrated_engine).get_schema_names()
    finally:
        upgrade(migrated_engine)
    tables = set(inspect(migrated_engine).get_table_names(schema=SCHEMA))
    assert set(CITY_CLASSES) | {"imports", "observations"} <= tables


def test_external_url_is_used_as_given(migrated_engine):
    url = migrated_engine.url.render_as_string(hide_password=False).replace(
        "postgresql+psycopg", "postgresql")
    assert database_url(DatabaseSettings(url=url)).startswith("postgresql+psycopg://")
    with pytest.raises(DatabaseError, match="not a database URL"):
        database_url(DatabaseSettings(url="::nonsense::"))


def test_app_health_and_readiness(migrated_engine, settings):
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").json() == {"status": "ok"}
        ready = client.get("/ready")
        assert ready.status_code == 200 and ready.json()["database"] is True
        landing = client.get("/").json()
        assert "OpenStreetMap" in landing["attribution"]
        assert client.get("/openapi.json").status_code == 200


def test_app_not_ready_without_database(tmp_path):
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    app = create_app(Settings(database=DatabaseSettings(url=url)))
    with TestClient(app) as client:
        assert client.get("/ready").status_code == 503
