"""Tile pyramids and 3D Tiles (buildings and infrastructure) on a two-worker Dask LocalCluster
(separate processes): the same bytes as the single-process path, and a failed run publishes
nothing."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import morecantile
import numpy as np
import psycopg
import pytest
from dask.distributed import Client
from shapely.geometry import LineString, Point, box
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from cim.batch import batch_client, shared
from cim.history import update_object
from cim.ingest.pipeline import ImportOptions, import_file
from cim.settings import BatchSettings
from layers.catalog import load_catalog
from layers.model import Classification
from tests.test_3d_infrastructure import X0, Y0, _import
from tests.test_3dtiles import _buildings
from tests.test_cli import cim
from tests.test_import_formats import write
from tiles.cache import Tileset
from tiles.pyramid import data_bbox, seed_pyramid, tiles_in
from tiles.threed.build import build_buildings
from tiles.threed.infrastructure import TILESETS, build_infrastructure

GRID = "WebMercatorQuad"


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with batch_client(BatchSettings(threads_per_worker=1), workers=2) as client:
        yield client


@pytest.fixture
def city(engine, tmp_path):
    import_file(engine, write(_buildings(), tmp_path / "b.gpkg", "GPKG"),
                ImportOptions(layer="buildings", id_field="bid", source="t"), city_crs=4547)
    return engine


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def base_map() -> list[tuple[Tileset, list]]:
    public = load_catalog().visible_to(Classification.public)
    return [(Tileset.base_map(layer.id for layer in public), public)]


def pyramid(engine: Engine, min_zoom: int, max_zoom: int) -> list[morecantile.Tile]:
    layers = base_map()[0][1]
    return tiles_in(morecantile.tms.get(GRID), data_bbox(engine, layers), min_zoom, max_zoom)


@contextmanager
def renamed(engine: Engine, column: str) -> Iterator[None]:
    """A buildings column the tile and 3D queries read, renamed away: those tasks fail."""
    with engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE cim.buildings RENAME COLUMN {column} TO {column}_x"))
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE cim.buildings RENAME COLUMN {column}_x TO {column}"))


def no_progress(stage: str, fraction: float) -> None:
    pass


def test_two_workers_seed_the_same_tiles(city, client, tmp_path):
    tiles = pyramid(city, 11, 17)
    alone, spread = tmp_path / "alone" / "epoch", tmp_path / "spread" / "epoch"
    assert seed_pyramid(city, alone, base_map(), GRID, tiles, no_progress) == (len(tiles), 0)
    assert seed_pyramid(city, spread, base_map(), GRID, tiles, no_progress, client) == (
        len(tiles), 0)
    assert len(client.scheduler_info()["workers"]) == 2
    # Workers keep glibc's own trimming (cim.batch._worker_environ), not Dask's.
    assert not any(client.run(lambda: "MALLOC_TRIM_THRESHOLD_" in os.environ).values())
    stored = contents(spread)
    assert len([name for name in stored if name.endswith(".mvt.gz")]) == len(tiles)
    assert stored == contents(alone)
    assert [p.name for p in spread.parent.iterdir()] == ["epoch"]  # no staging left
    again = seed_pyramid(city, spread, base_map(), GRID, tiles, no_progress, client)
    assert again == (0, len(tiles))


def test_a_failed_seed_leaves_the_cache_as_it_was(city, client, tmp_path):
    folder = tmp_path / "cache" / "epoch"
    seed_pyramid(city, folder, base_map(), GRID, pyramid(city, 12, 12), no_progress)
    before = contents(folder)
    # Zoom 11 draws no buildings and renders; zoom 13 draws them and fails.
    with renamed(city, "height"), pytest.raises(DBAPIError, match="height"):
        seed_pyramid(city, folder, base_map(), GRID, pyramid(city, 11, 13), no_progress,
                     client)
    assert contents(folder) == before
    assert [p.name for p in folder.parent.iterdir()] == ["epoch"]


def test_two_workers_build_the_same_3d_tileset(city, client, tmp_path):
    alone = build_buildings(city, tmp_path / "alone", leaf_size=2)
    spread = build_buildings(city, tmp_path / "spread", leaf_size=2, client=client)
    assert spread.tiles == alone.tiles == spread.written > 3
    files = contents(tmp_path / "spread")
    assert files == contents(tmp_path / "alone")
    assert {"tileset.json", "manifest.json"} < set(files)


def test_a_failed_3d_build_leaves_the_tileset_as_it_was(city, client, tmp_path):
    out = tmp_path / "3d"
    build_buildings(city, out, leaf_size=2, client=client)
    before = contents(out)
    with city.begin() as conn:
        update_object(conn, "buildings", "t:B00", {"height": 10.5})
    # The drawing tasks read their rows through the driver: its error comes back as it is.
    with renamed(city, "roof_shape"), pytest.raises(psycopg.Error, match="roof_shape"):
        build_buildings(city, out, leaf_size=2, client=client)
    assert contents(out) == before  # no glb replaced, no staging folder left
    after = build_buildings(city, out, leaf_size=2, client=client)
    assert after.written == 1 and contents(out) != before


def test_export_on_a_given_scheduler_writes_the_single_process_archive(city, client,
                                                                        tmp_path):
    env = {"CIM_DATABASE_URL": city.url.render_as_string(hide_password=False),
           "CIM_TILES_ENABLED": "false"}
    args = ["tiles", "export", "--min-zoom", "12", "--max-zoom", "16"]
    alone = cim(*args[:2], str(tmp_path / "alone.pmtiles"), *args[2:], "--in-process",
                env=env)
    assert alone.returncode == 0, alone.stderr
    spread = cim(*args[:2], str(tmp_path / "spread.pmtiles"), *args[2:], "--scheduler",
                 client.scheduler.address, env=env)
    assert spread.returncode == 0, spread.stderr
    assert "connecting to the Dask scheduler" in spread.stderr
    assert (tmp_path / "spread.pmtiles").read_bytes() == (tmp_path / "alone.pmtiles").read_bytes()

    previous = (tmp_path / "spread.pmtiles").read_bytes()
    with renamed(city, "height"):
        failed = cim(*args[:2], str(tmp_path / "spread.pmtiles"), *args[2:], "--scheduler",
                     client.scheduler.address, env=env)
    assert failed.returncode != 0 and "height" in failed.stderr
    assert (tmp_path / "spread.pmtiles").read_bytes() == previous
    assert sorted(p.name for p in tmp_path.glob("*.pmtiles*")) == ["alone.pmtiles",
                                                                   "spread.pmtiles"]


def test_a_shared_input_outlives_the_workers_that_held_it(client):
    given = shared(client, np.arange(1000))
    assert client.submit(np.sum, given, pure=False).result() == 499500
    time.sleep(3)  # past a round of the active memory manager (2 s): it drops extra copies
    pids = client.run(os.getpid)
    for worker in client.who_has([given])[given.key]:
        os.kill(pids[worker], signal.SIGKILL)
    assert client.submit(np.sum, given, pure=False).result(timeout=120) == 499500
    client.wait_for_workers(2, timeout=120)  # the nannies restart them for later tests


def test_in_process_and_a_scheduler_are_refused(city, tmp_path):
    env = {"CIM_DATABASE_URL": city.url.render_as_string(hide_password=False)}
    result = cim("tiles", "build-3d", "--out", str(tmp_path / "3d"), "--in-process",
                 "--scheduler", "tcp://127.0.0.1:1", env=env)
    assert result.returncode == 2 and "--in-process" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "3d").exists()


def test_a_worker_killed_mid_seed_costs_only_its_tasks(city, client, tmp_path):
    tiles = pyramid(city, 11, 17)
    alone, spread = tmp_path / "alone" / "epoch", tmp_path / "spread" / "epoch"
    seed_pyramid(city, alone, base_map(), GRID, tiles, no_progress)
    victim = next(iter(client.run(os.getpid).values()))
    killed = []

    def kill_once(stage: str, fraction: float) -> None:
        if not killed:  # after the first block: the rest is queued or running on both
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    assert seed_pyramid(city, spread, base_map(), GRID, tiles, kill_once, client) == (
        len(tiles), 0)
    assert killed and contents(spread) == contents(alone)
    client.wait_for_workers(2, timeout=120)  # the nanny restarts it for later tests


@pytest.fixture
def infrastructure(engine, tmp_path):
    """Bridges, lakes, pipes and manholes spread out, so a leaf size of 2 makes several tiles
    per tileset; heights partly unknown (drawn on the 0 m ground: no DEM)."""
    _import(engine, tmp_path, "structures", [
        {"fid_": f"B{i}", "kind": "bridge", "clearance_m": 4.0 + i,
         "deck_elevation": 30.0 if i % 2 else None,
         "geometry": LineString([(X0 + 300 * i, Y0), (X0 + 300 * i + 80, Y0 + 20)])}
        for i in range(5)])
    _import(engine, tmp_path, "water_bodies", [
        {"fid_": f"W{i}", "kind": "lake", "normal_level": 20.0 + i,
         "geometry": box(X0 + 250 * i, Y0 + 500, X0 + 250 * i + 90, Y0 + 580)}
        for i in range(5)])
    _import(engine, tmp_path, "drainage_nodes", [
        {"fid_": f"M{i}", "kind": "manhole", "ground_elevation": 21.0,
         "geometry": Point(X0 + 200 * i, Y0 + 900)} for i in range(6)])
    _import(engine, tmp_path, "drainage_pipes", [
        {"fid_": f"P{i}", "diameter_m": 0.4 + 0.1 * i, "upstream_invert": 19.0 - 0.1 * i,
         "geometry": LineString([(X0 + 200 * i, Y0 + 900), (X0 + 200 * i + 200, Y0 + 900)])}
        for i in range(5)])
    return engine


def test_two_workers_build_the_same_infrastructure_tilesets(infrastructure, settings, client,
                                                            tmp_path):
    alone = build_infrastructure(infrastructure, tmp_path / "alone", settings.storage.root,
                                 leaf_size=2)
    spread = build_infrastructure(infrastructure, tmp_path / "spread", settings.storage.root,
                                  leaf_size=2, client=client)
    assert list(spread) == list(alone) == list(TILESETS)
    for name in TILESETS:
        assert spread[name].tiles == alone[name].tiles == spread[name].written >= 3, name
        assert spread[name].buildings == alone[name].buildings
    files = contents(tmp_path / "spread")
    assert files == contents(tmp_path / "alone")
    assert {f"{name}/tileset.json" for name in TILESETS} < set(files)
    assert not [name for name in files if ".staging-" in name]
    # A rerun on the cluster after an edit redraws only the tiles that changed.
    with infrastructure.begin() as conn:
        update_object(conn, "water_bodies", "t:W0", {"normal_level": 25.0})
    again = build_infrastructure(infrastructure, tmp_path / "spread", settings.storage.root,
                                 leaf_size=2, client=client)
    assert again["bridges"].written == again["drainage"].written == 0
    assert 0 < again["water"].written < again["water"].tiles


def test_build_3d_on_a_scheduler_writes_the_in_process_tilesets(city, infrastructure, settings,
                                                                client, tmp_path):
    env = {"CIM_DATABASE_URL": city.url.render_as_string(hide_password=False),
           "CIM_STORAGE_ROOT": str(settings.storage.root)}
    alone = cim("tiles", "build-3d", "--out", str(tmp_path / "alone"), "--in-process", env=env)
    assert alone.returncode == 0, alone.stderr
    spread = cim("tiles", "build-3d", "--out", str(tmp_path / "spread"), "--scheduler",
                 client.scheduler.address, env=env)
    assert spread.returncode == 0, spread.stderr
    assert "connecting to the Dask scheduler" in spread.stderr
    files = contents(tmp_path / "spread")
    assert files == contents(tmp_path / "alone")
    assert {f"{name}/tileset.json" for name in ["buildings", *TILESETS]} < set(files)
