"""Limits: per-key rate limits (429 + Retry-After), body size (413), statement timeouts (503),
and imported archives that would unpack to too much or escape their folder."""

from __future__ import annotations

import struct
import threading
import zipfile

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from cim.access import Role, create_key
from cim.app import create_app
from cim.limits import TokenBuckets
from cim.settings import LimitsSettings
from layers.model import Classification
from tests import test_features_api
from tests.conftest import snapshot
from tests.test_cli import cim, db_env
from tests.test_import_formats import X0, Y0, buildings_4547, zipped_shapefile

city = test_features_api.city  # fixture
__all__ = ["db_env"]  # a fixture, used by name


def app_with(settings, **limits):
    return create_app(settings.replace(limits=LimitsSettings(**limits)))


def test_token_buckets_allow_a_burst_then_the_rate():
    now = [0.0]
    buckets = TokenBuckets(rate=2.0, burst=3, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # one token comes back every 0.5 s
    assert buckets.take("b") == 0.0  # another key has its own bucket
    now[0] = 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0


def test_rate_limit_per_key_and_address_with_retry_after(city, settings):
    with city.begin() as conn:
        key = {"X-API-Key": create_key(conn, "busy", Role.viewer, Classification.public)}
    with TestClient(app_with(settings, requests_per_second=0.5, burst=3)) as client:
        assert [client.get("/collections").status_code for _ in range(3)] == [200] * 3
        refused = client.get("/collections/buildings/items")
        assert refused.status_code == 429
        assert refused.json()["code"] == "TooManyRequests"
        assert "from testclient" in refused.json()["description"]
        assert 1 <= int(refused.headers["Retry-After"]) <= 2
        # Guessing keys is charged to the address: refused keys do not get a fresh bucket.
        assert client.get("/collections", headers={"X-API-Key": "cim_guess"}
                          ).status_code == 429
        # The key has a bucket of its own; probes are never limited.
        assert [client.get("/collections", headers=key).status_code
                for _ in range(4)] == [200, 200, 200, 429]
        assert "'busy'" in client.get("/collections", headers=key).json()["description"]
        assert all(client.get(p).status_code in (200, 503)
                   for p in ["/health", "/ready", "/metrics"] * 3)


def test_rate_limit_can_be_switched_off(city, settings):
    with TestClient(app_with(settings, enabled=False, requests_per_second=0.1,
                             burst=1)) as client:
        assert {client.get("/collections").status_code for _ in range(5)} == {200}


def test_body_over_the_limit_is_413_and_changes_nothing(city, settings):
    with city.begin() as conn:
        key = {"Authorization": "Bearer " + create_key(conn, "ed", Role.editor,
                                                        Classification.public)}
    before = snapshot(city)
    big = b'{"type": "Feature", "properties": {"name": "' + b"x" * 3000 + b'"}}'
    with TestClient(app_with(settings, max_body_bytes=2000)) as client:
        declared = client.post("/collections/buildings/items", content=big,
                               headers={**key, "Content-Type": "application/geo+json"})
        assert declared.status_code == 413, declared.text
        assert declared.json()["code"] == "PayloadTooLarge"
        # Chunked (no Content-Length): counted as it arrives.
        streamed = client.post("/collections/buildings/items",
                               content=iter([big[:1500], big[1500:]]),
                               headers={**key, "Content-Type": "application/geo+json"})
        assert streamed.status_code == 413, streamed.text
    assert snapshot(city) == before


def test_statement_timeout_answers_503_naming_the_limit(city, settings):
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:  # a long writer: the request's read waits past its timeout
        with city.begin() as conn:
            conn.execute(text("LOCK TABLE cim.buildings IN ACCESS EXCLUSIVE MODE"))
            locked.set()
            release.wait(10)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        locked.wait(5)
        with TestClient(app_with(settings, statement_timeout_ms=300)) as client:
            response = client.get("/collections/buildings/items")
    finally:
        release.set()
        holder.join()
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["code"] == "ServiceUnavailable"
    assert "300 ms" in body["description"] and "SELECT" not in body["description"]


def _zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_zip_bomb_and_path_traversal_are_refused_by_cim_import(db_env, engine, tmp_path):
    before = snapshot(engine)
    bomb = _zip(tmp_path / "bomb.zip", {"a.shp": bytes(50_000_000)})
    result = cim("import", str(bomb), "--layer", "buildings", env=db_env)
    assert result.returncode == 2, result.stderr
    assert "zip bomb" in result.stderr
    # The same bomb with headers that lie (declaring 100 bytes): GDAL would inflate it all.
    liar = tmp_path / "liar.zip"
    liar.write_bytes(bomb.read_bytes().replace(struct.pack("<I", 50_000_000),
                                               struct.pack("<I", 100)))
    assert zipfile.ZipFile(liar).infolist()[0].file_size == 100
    result = cim("import", str(liar), "--layer", "buildings", env=db_env)
    assert result.returncode == 2 and "zip bomb" in result.stderr, result.stderr
    escape = _zip(tmp_path / "escape.zip", {"../../etc/a.shp": b"x"})
    result = cim("import", str(escape), "--layer", "buildings", env=db_env)
    assert result.returncode == 2 and "outside the archive" in result.stderr
    # An honest Shapefile above the configured total is refused too, naming the setting.
    good = zipped_shapefile(buildings_4547(), tmp_path)
    result = cim("import", str(good), "--layer", "buildings", "--id-field", "bid",
                 env={**db_env, "CIM_LIMITS_MAX_UNPACKED_BYTES": "100"})
    assert result.returncode == 2 and "CIM_LIMITS_MAX_UNPACKED_BYTES" in result.stderr
    assert snapshot(engine) == before
    result = cim("import", str(good), "--layer", "buildings", "--id-field", "bid", env=db_env)
    assert result.returncode == 0, result.stderr


def test_a_raster_too_big_to_read_is_refused(db_env, engine, tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    path = tmp_path / "huge.tif"  # 40 billion cells, a few kilobytes on disk (sparse)
    with rasterio.open(path, "w", driver="GTiff", width=200_000, height=200_000, count=1,
                       dtype="float32", crs="EPSG:4547", tiled=True, compress="deflate",
                       sparse_ok=True, transform=from_origin(X0, Y0, 1, 1)):
        pass
    assert path.stat().st_size < 10_000_000
    result = cim("import", str(path), "--layer", "dems", env=db_env)
    assert result.returncode == 2 and "CIM_LIMITS_MAX_RASTER_CELLS" in result.stderr
