"""Tests run against a real PostGIS: a throwaway embedded cluster, or ``CIM_TEST_DATABASE_URL``.

The cluster is created once per session in a fresh folder and migrated to head; every test
that takes ``engine`` starts from empty city tables.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import LineString
from sqlalchemy import Engine, text

from cim.db.cluster import Cluster
from cim.db.engine import ensure_database, make_engine
from cim.ingest.pipeline import ImportOptions, import_file
from cim.schema.migrate import upgrade
from cim.schema.models import SCHEMA, Base
from cim.settings import (
    CitySettings,
    DatabaseSettings,
    Settings,
    StorageSettings,
    TilesSettings,
)

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    # Not under pytest's tmp dir: that is private to root, and the server runs as postgres.
    path = Path(tempfile.mkdtemp(prefix="cim-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(workdir: Path) -> Iterator[Settings]:
    external = os.environ.get("CIM_TEST_DATABASE_URL")
    database = DatabaseSettings(url=external, data_dir=workdir / "pgdata", port=0)
    cluster = None
    if external is None:
        cluster = Cluster(database.data_dir)
        cluster.start()
        ensure_database(database)
    yield Settings(database=database, city=CitySettings(),
                   storage=StorageSettings(root=workdir / "files"),
                   tiles=TilesSettings(cache_dir=workdir / "tiles"))
    if cluster is not None:
        cluster.destroy()


@pytest.fixture(scope="session")
def migrated_engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.database)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(migrated_engine: Engine, settings: Settings) -> Engine:
    """The migrated database with every city table emptied."""
    tables = ", ".join(f'"{SCHEMA}"."{t.name}"' for t in Base.metadata.sorted_tables)
    with migrated_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    shutil.rmtree(settings.storage.root, ignore_errors=True)
    return migrated_engine


def snapshot(engine: Engine) -> dict[str, str]:
    """A digest of every city table's full contents, to prove a failed import changed nothing."""
    digests = {}
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            digests[table.name] = conn.scalar(text(
                f'SELECT md5(coalesce(string_agg(t::text, \'|\' ORDER BY t::text), \'\')) '
                f'FROM "{SCHEMA}"."{table.name}" t'
            ))
    return digests


@pytest.fixture
def internal_pipe(engine: Engine, tmp_path: Path) -> str:
    """One drainage pipe: a layer classified internal, hidden from anonymous readers."""
    x, y = 538_500.0, 3_374_500.0
    pipes = gpd.GeoDataFrame({"id": ["p1"], "diameter": [0.6]},
                             geometry=[LineString([(x, y), (x + 80, y)])], crs="EPSG:4547")
    path = tmp_path / "pipes.gpkg"
    pipes.to_file(path, driver="GPKG")
    import_file(engine, path, ImportOptions(layer="drainage_pipes", source="t"), city_crs=4547)
    return "t:p1"


def object_ids(engine: Engine, tile_layer: dict) -> list[str]:
    """The object ids of a decoded MVT buildings layer. Low-zoom tiles carry only each
    feature's version id (its MVT id), so the text id is looked up by it."""
    with engine.connect() as conn:
        ids = dict(conn.execute(text("SELECT vid, id FROM cim.buildings")).all())
    return [ids[f["id"]] for f in tile_layer["features"]]
