"""The tile cache under a stream of edits: a render is refused only when an eviction since it
began covered its tile, and concurrent misses of one tile share one render."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient
from sqlalchemy import event, text

from cim.app import create_app
from tests.test_tile_cache import NEAR, city, tile_url  # noqa: F401 (city is a fixture)
from tiles.cache import EVICTIONS_KEPT, TileCache, TileKey, Tileset
from tiles.grid import GRIDS

WEB_MERCATOR = GRIDS.get("WebMercatorQuad")
BUILDINGS = Tileset.collection("buildings")


def key_at(lon: float, lat: float, z: int) -> TileKey:
    t = WEB_MERCATOR.tile(lon, lat, z)
    return TileKey(BUILDINGS.name, "WebMercatorQuad", z, t.x, t.y)


def around(lon: float, lat: float) -> tuple[float, float, float, float]:
    return lon - 1e-5, lat - 1e-5, lon + 1e-5, lat + 1e-5


def test_only_an_eviction_covering_the_tile_refuses_a_render_begun_before_it():
    cache = TileCache(memory_bytes=1_000_000)
    cache.active = True
    here, there = (114.40, 30.50), (114.45, 30.50)  # 4.8 km apart: other tiles at zoom 16
    key = key_at(*here, 16)
    started = cache.generation
    cache.evict({"buildings"}, [around(*there)])
    cache.evict({"roads"}, [around(*here)])  # a layer this tileset does not draw
    assert cache.put(BUILDINGS, key, b"tile", started)
    assert cache.in_memory(key) == b"tile"

    started = cache.generation
    cache.evict({"buildings"}, [around(*here)])
    assert cache.in_memory(key) is None
    assert cache.stale(key, BUILDINGS.layers, started)
    assert not cache.put(BUILDINGS, key, b"drawn before the edit", started)
    assert cache.put(BUILDINGS, key, b"drawn after it", cache.generation)

    # Past the evictions remembered, nothing tells what an old render missed: refused.
    started = cache.generation
    for _ in range(EVICTIONS_KEPT + 1):
        cache.evict({"buildings"}, [around(*there)])
    assert not cache.put(BUILDINGS, key, b"tile", started)


def test_concurrent_misses_of_one_tile_share_one_render(city, settings):  # noqa: F811
    url = tile_url(NEAR, 16, "buildings")
    with TestClient(create_app(settings)) as client:
        renders = []
        event.listen(client.app.state.read_engine, "before_cursor_execute",
                     lambda conn, cursor, sql, *rest: renders.append(sql)
                     if "ST_AsMVT" in sql else None)
        # The first render waits on a lock until every request has come in.
        with city.connect() as blocker, city.connect() as watcher, \
                ThreadPoolExecutor(8) as pool:
            blocker.execute(text("LOCK TABLE cim.buildings IN ACCESS EXCLUSIVE MODE"))
            answers = [pool.submit(client.get, url) for _ in range(8)]
            deadline = time.monotonic() + 30
            while not watcher.execute(text(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar():
                watcher.rollback()  # a fresh snapshot of pg_locks each time
                assert time.monotonic() < deadline, "no render reached the database"
                time.sleep(0.05)
            time.sleep(1.0)  # the other seven are waiting for it by now
            blocker.rollback()
            responses = [a.result(timeout=30) for a in answers]
        assert [r.status_code for r in responses] == [200] * 8
        assert {r.headers["x-cache"] for r in responses} == {"miss"}
        assert len({r.content for r in responses}) == 1
        assert len(renders) == 1
        assert client.get(url).headers["x-cache"] == "hit"


def test_a_render_overtaken_by_an_eviction_still_replaces_an_older_stale_copy():
    cache = TileCache(memory_bytes=1_000_000)
    cache.active = True
    here = (114.40, 30.50)
    key = key_at(*here, 16)
    assert cache.put(BUILDINGS, key, b"first", cache.generation)
    cache.evict({"buildings"}, [around(*here)])
    assert cache.in_memory(key) is None and cache.stale_copy(key)[0] == b"first"
    started = cache.generation  # a refresh begins, then another edit lands on the tile
    cache.evict({"buildings"}, [around(*here)])
    assert not cache.put(BUILDINGS, key, b"second", started)  # not fresh: not stored so
    assert cache.in_memory(key) is None
    assert cache.stale_copy(key)[0] == b"second"  # but newer than the copy readers had
    assert not cache.put(BUILDINGS, key, b"older", started - 1)
    assert cache.stale_copy(key)[0] == b"second"
    assert cache.put(BUILDINGS, key, b"fresh", cache.generation)
    assert cache.in_memory(key) == b"fresh" and cache.stale_copy(key) is None
