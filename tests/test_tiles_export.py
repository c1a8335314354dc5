"""``cim tiles seed`` and ``cim tiles export`` as a user runs them, read back by other tools."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import mapbox_vector_tile
import morecantile
import pytest
from fastapi.testclient import TestClient
from pmtiles.reader import MmapSource, Reader, all_tiles
from pmtiles.tile import Compression, TileType
from sqlalchemy import text

from cim.app import create_app
from cim.settings import TilesSettings
from layers.catalog import load_catalog
from layers.model import Classification
from tests.conftest import object_ids
from tests.test_import_formats import X0, Y0
from tests.test_tile_cache import FAR, NEAR, buildings, load
from tiles.cache import Tileset

CIM = str(Path(sys.executable).parent / "cim")
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
# Around both buildings, with a margin.
BBOX = (NEAR[0] - 0.002, NEAR[1] - 0.002, FAR[0] + 0.002, FAR[1] + 0.002)


@pytest.fixture
def city(engine, tmp_path):
    load(engine, buildings(tmp_path, "city", {"NEAR": (X0, Y0), "FAR": (X0 + 6_000, Y0)}))
    return engine


@pytest.fixture
def env(city, tmp_path) -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200",
            "CIM_DATABASE_URL": city.url.render_as_string(hide_password=False),
            "CIM_TILES_CACHE_DIR": str(tmp_path / "cache")}


def cim(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CIM, "tiles", *args], capture_output=True, text=True, timeout=300,
                          env=env)


def pyramid(min_zoom: int, max_zoom: int) -> list[morecantile.Tile]:
    return [t for z in range(min_zoom, max_zoom + 1) for t in WEB_MERCATOR.tiles(*BBOX, [z])]


def bbox_arg() -> str:
    return ",".join(f"{v:.6f}" for v in BBOX)


def features(engine, tile: bytes) -> set[str]:
    decoded = mapbox_vector_tile.decode(gzip.decompress(tile))
    return set(object_ids(engine, decoded["buildings"])) if "buildings" in decoded else set()


@pytest.mark.parametrize("command", [[], ["seed"], ["export"]])
def test_help(command):
    result = subprocess.run([CIM, "tiles", *command, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "Usage" in result.stdout


def test_seed_fills_the_cache_the_server_then_hits(env, city, settings, tmp_path):
    result = cim(env, "seed", "--min-zoom", "12", "--max-zoom", "15", "--bbox", bbox_arg())
    assert result.returncode == 0, result.stderr
    expected = pyramid(12, 15)
    stored = list((tmp_path / "cache").glob("*/base-*/WebMercatorQuad/*/*/*.mvt.gz"))
    assert len(stored) == len(expected)
    assert f"{len(expected):,} tiles" in result.stderr and "seed" in result.stderr
    again = cim(env, "seed", "--min-zoom", "12", "--max-zoom", "15", "--bbox", bbox_arg())
    assert f"0 rendered, {len(expected):,} already cached" in again.stderr

    layer = cim(env, "seed", "--min-zoom", "16", "--max-zoom", "16", "--layer", "buildings")
    assert layer.returncode == 0, layer.stderr
    collection = list((tmp_path / "cache").glob("*/buildings/WebMercatorQuad/16/*/*.mvt.gz"))
    with city.connect() as conn:  # by default, the extent of the data
        extent = conn.execute(text("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) "
                                   "FROM (SELECT ST_Extent(geom) e FROM cim.buildings) q")).one()
    assert len(collection) == len(list(WEB_MERCATOR.tiles(*extent, [16])))

    served = settings.replace(tiles=TilesSettings(cache_dir=tmp_path / "cache"))
    with TestClient(create_app(served)) as client:
        t = WEB_MERCATOR.tile(*NEAR, 15)
        response = client.get(f"/tiles/WebMercatorQuad/15/{t.x}/{t.y}")
        assert response.headers["x-cache"] == "hit"  # the server's keys are the seed's keys
        assert features(city, gzip.compress(response.content)) == {"t:NEAR"}
        public = [layer.id for layer in load_catalog().visible_to(Classification.public)]
        assert {p.parent.parent.parent.parent.name for p in stored} == {
            Tileset.base_map(public).name}


@pytest.mark.parametrize(("args", "code", "message"), [
    (["seed", "--min-zoom", "14", "--max-zoom", "12"], 2, "zooms"),
    (["seed", "--min-zoom", "1", "--max-zoom", "2", "--bbox", "1,2,3"], 2, "bbox"),
    (["seed", "--min-zoom", "1", "--max-zoom", "2", "--layer", "nope"], 4, "no collection"),
    (["seed", "--min-zoom", "1", "--max-zoom", "2", "--layer", "drainage_pipes"], 4,
     "no collection"),  # internal: not served to anonymous readers, so not seeded
    (["export", "out.geojson", "--min-zoom", "1", "--max-zoom", "2"], 2, ".pmtiles"),
])
def test_bad_arguments_exit_with_a_message(env, args, code, message):
    result = cim(env, *args)
    assert result.returncode == code, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_pmtiles_export_reads_back(env, city, tmp_path):
    out = tmp_path / "city.pmtiles"
    result = cim(env, "export", str(out), "--min-zoom", "13", "--max-zoom", "16",
                 "--bbox", bbox_arg())
    assert result.returncode == 0, result.stderr
    with out.open("rb") as f:
        source = MmapSource(f)
        reader = Reader(source)
        header = reader.header()
        assert (header["tile_type"], header["tile_compression"]) == (TileType.MVT,
                                                                     Compression.GZIP)
        assert (header["min_zoom"], header["max_zoom"]) == (13, 16)
        layers = {layer["id"] for layer in reader.metadata()["vector_layers"]}
        assert "buildings" in layers and "drainage_pipes" not in layers
        for z in (13, 16):
            near, far = WEB_MERCATOR.tile(*NEAR, z), WEB_MERCATOR.tile(*FAR, z)
            assert features(city, reader.get(z, near.x, near.y)) == {"t:NEAR"}
            assert features(city, reader.get(z, far.x, far.y)) == {"t:FAR"}
        stored = list(all_tiles(source))
    # Empty tiles are left out: only those holding a building (two per zoom) are stored.
    assert len(stored) == 8 and all(features(city, data) for _, data in stored)


def test_mbtiles_export_reads_back_in_sqlite_and_gdal(env, city, tmp_path):
    out = tmp_path / "city.mbtiles"
    result = cim(env, "export", str(out), "--min-zoom", "14", "--max-zoom", "15",
                 "--bbox", bbox_arg())
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(out) as db:
        metadata = dict(db.execute("SELECT name, value FROM metadata"))
        assert metadata["format"] == "pbf" and metadata["minzoom"] == "14"
        assert "buildings" in {v["id"] for v in json.loads(metadata["json"])["vector_layers"]}
        near = WEB_MERCATOR.tile(*NEAR, 15)
        row = (1 << 15) - 1 - near.y  # MBTiles counts rows from the south
        (data,) = db.execute("SELECT tile_data FROM tiles WHERE zoom_level = 15 AND "
                             "tile_column = ? AND tile_row = ?", (near.x, row)).fetchone()
        assert features(city, data) == {"t:NEAR"}
        assert db.execute("SELECT count(*) FROM tiles").fetchone() == (4,)
    if shutil.which("ogrinfo") is None:
        pytest.skip("GDAL's ogrinfo is not installed")
    info = subprocess.run(["ogrinfo", "-ro", "-al", "-so", str(out)], capture_output=True,
                          text=True, timeout=120)
    assert info.returncode == 0, info.stderr
    assert "Layer name: buildings" in info.stdout
    assert "Feature Count: 2" in info.stdout
