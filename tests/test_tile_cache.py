"""The server-side tile cache: hits, gzip, eviction exactly where edits and imports land, and
stale tiles served for a bounded time while they are re-rendered, less often while edits
keep evicting them."""

from __future__ import annotations

import gzip
import time

import geopandas as gpd
import mapbox_vector_tile
import morecantile
import pytest
from fastapi.testclient import TestClient
from pyproj import Transformer
from shapely.geometry import box
from sqlalchemy import event, text

import tiles.api
from cim.app import create_app
from cim.history import update_object
from cim.ingest.pipeline import ImportOptions, import_file
from layers.catalog import load_catalog
from layers.model import Classification
from layers.responses import digest_of
from tests.conftest import object_ids
from tests.test_import_formats import X0, Y0, write
from tiles.api import accepts_gzip
from tiles.cache import TileCache, TileKey, Tileset

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
TO_LONLAT = Transformer.from_crs(4547, 4326, always_xy=True)
NEAR = TO_LONLAT.transform(X0 + 10, Y0 + 10)
FAR = TO_LONLAT.transform(X0 + 6_000, Y0 + 10)  # 6 km east: other tiles from zoom 13 on


def buildings(tmp_path, name: str, places: dict[str, tuple[float, float]],
              height: float = 12.0) -> gpd.GeoDataFrame:
    frame = gpd.GeoDataFrame(
        {"bid": list(places), "height": [height] * len(places)},
        geometry=[box(x, y, x + 20, y + 15) for x, y in places.values()], crs="EPSG:4547")
    return write(frame, tmp_path / f"{name}.gpkg", "GPKG")


def load(engine, path, source: str = "t") -> None:
    import_file(engine, path, ImportOptions(layer="buildings", id_field="bid", source=source),
                city_crs=4547)


@pytest.fixture
def city(engine, tmp_path):
    """A building near (X0, Y0) and one 6 km east of it."""
    load(engine, buildings(tmp_path, "city", {"NEAR": (X0, Y0), "FAR": (X0 + 6_000, Y0)}))
    return engine


def tile_url(place: tuple[float, float], z: int, collection: str | None = None) -> str:
    t = WEB_MERCATOR.tile(*place, z)
    prefix = f"/collections/{collection}" if collection else ""
    return f"{prefix}/tiles/WebMercatorQuad/{z}/{t.x}/{t.y}"


FRESH = {"Cache-Control": "no-cache"}
"""A reader that takes no stale tile."""


def fetch(client, url: str, headers: dict[str, str] | None = None) -> tuple[str, dict]:
    """X-Cache of the response and the decoded tile."""
    response = client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    return response.headers["x-cache"], mapbox_vector_tile.decode(response.content)


def heights(client, tile: dict) -> dict[str, float]:
    layer = tile["buildings"]
    return dict(zip(object_ids(client.app.state.engine, layer),
                    (f["properties"]["height"] for f in layer["features"]), strict=True))


def cache_key(url: str) -> TileKey:
    """The cache key of an anonymous reader's tile URL."""
    parts = url.strip("/").split("/")
    if parts[0] == "collections":
        name, (tms, z, x, y) = parts[1], parts[3:7]
    else:
        public = load_catalog().visible_to(Classification.public)
        name, (tms, z, x, y) = Tileset.base_map(layer.id for layer in public).name, parts[1:5]
    return TileKey(name, tms, int(z), int(x), int(y))


def wait_for_eviction(client, url: str, timeout: float = 10.0) -> None:
    """Block until the app's listener thread has evicted the tile at ``url`` (other changes,
    committed earlier, may move the cache's generation first: only this tile tells)."""
    cache, key = client.app.state.tile_cache, cache_key(url)
    deadline = time.monotonic() + timeout
    while cache.in_memory(key) is not None:
        assert time.monotonic() < deadline, "the listener did not evict within the timeout"
        time.sleep(0.01)


URLS = {tile_url(NEAR, 16): True, tile_url(NEAR, 14): True, tile_url(FAR, 16): False,
        tile_url(FAR, 14): False, tile_url(NEAR, 16, "buildings"): True,
        tile_url(FAR, 16, "buildings"): False}
"""Tiles to cache, and whether they hold the building near (X0, Y0)."""
NEAR_16 = tile_url(NEAR, 16)


def warm(client) -> None:
    for url in URLS:
        assert fetch(client, url)[0] == "miss"
        assert fetch(client, url)[0] == "hit"


def assert_only_near_evicted(client, new_height: float) -> None:
    """The tiles near the change are drawn again for a reader that takes no stale tile; the
    far ones are still hits."""
    for url, near in URLS.items():
        state, tile = fetch(client, url, FRESH)
        assert state == ("miss" if near else "hit"), url
        if near:
            assert heights(client, tile)["t:NEAR"] == new_height


def test_second_request_is_a_hit_with_the_same_etag_and_gzip(city, settings):
    with TestClient(create_app(settings)) as client:
        first = client.get(NEAR_16)
        second = client.get(NEAR_16)
        assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
        assert first.headers["etag"] == second.headers["etag"]
        assert first.headers["content-encoding"] == "gzip"
        assert "Accept-Encoding" in first.headers["vary"]
        assert heights(client, mapbox_vector_tile.decode(second.content)) == {"t:NEAR": 12.0}
        assert client.get(NEAR_16, headers={"If-None-Match": first.headers["etag"]}
                          ).status_code == 304
        plain = client.get(NEAR_16, headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers and plain.headers["x-cache"] == "hit"
        assert mapbox_vector_tile.decode(plain.content) == mapbox_vector_tile.decode(
            second.content)
        empty = tile_url(NEAR, 12)  # buildings start at zoom 13
        assert client.get(empty).status_code == 204
        assert client.get(empty).headers["x-cache"] == "hit"
        collections = client.get("/collections")
        assert collections.headers["content-encoding"] == "gzip"  # JSON goes through gzip


def render_counter(client) -> list[str]:
    """The tile renders the app sends to the database from now on."""
    renders: list[str] = []
    event.listen(client.app.state.read_engine, "before_cursor_execute",
                 lambda conn, cursor, sql, *rest: renders.append(sql)
                 if "ST_AsMVT" in sql else None)
    return renders


def test_an_edit_refreshes_only_the_tiles_it_touches(city, settings):
    near = [url for url, is_near in URLS.items() if is_near]
    with TestClient(create_app(settings)) as client:
        warm(client)
        renders = render_counter(client)
        with city.begin() as conn:
            update_object(conn, "buildings", "t:NEAR", {"height": 50.0})
        wait_for_eviction(client, NEAR_16)  # the listener thread, on NOTIFY
        # A reader is answered at once from the stale copy, told not to keep it, while one
        # render refreshes the tile in the background.
        for url in near:
            response = client.get(url)
            assert response.headers["x-cache"] == "stale", url
            assert response.headers["cache-control"].endswith("max-age=0")
            assert heights(client, mapbox_vector_tile.decode(response.content))["t:NEAR"] \
                == 12.0
        deadline = time.monotonic() + settings.tiles.max_stale_s
        for url in near:  # refreshed well within the bound
            while (answer := fetch(client, url))[0] != "hit":
                assert answer[0] == "stale", url
                assert time.monotonic() < deadline, f"{url} was not refreshed"
                time.sleep(0.02)
            assert heights(client, answer[1])["t:NEAR"] == 50.0
        for url in URLS:
            assert fetch(client, url)[0] == "hit", url
        assert len(renders) == len(near)  # one refresh each; the far tiles were not drawn

        # A reader that takes no stale tile waits for the render and sees the edit at once.
        with city.begin() as conn:
            update_object(conn, "buildings", "t:NEAR", {"height": 61.0})
        wait_for_eviction(client, NEAR_16)
        assert_only_near_evicted(client, 61.0)


def test_a_stale_tile_is_served_no_longer_than_the_bound(city, settings):
    bounded = settings.replace(tiles=settings.tiles.model_copy(update={"max_stale_s": 0.0}))
    with TestClient(create_app(bounded)) as client:
        warm(client)
        with city.begin() as conn:
            update_object(conn, "buildings", "t:NEAR", {"height": 50.0})
        wait_for_eviction(client, NEAR_16)
        state, tile = fetch(client, NEAR_16)
        assert state == "miss" and heights(client, tile)["t:NEAR"] == 50.0


def test_an_import_evicts_only_the_tiles_it_touches(city, settings, tmp_path):
    with TestClient(create_app(settings)) as client:
        warm(client)
        generation = client.app.state.tile_cache.generation
        # The same source again: the staged merge closes the old version, inserts the new.
        load(city, buildings(tmp_path, "again", {"NEAR": (X0, Y0), "FAR": (X0 + 6_000, Y0)},
                             height=12.0))
        assert client.app.state.tile_cache.generation == generation  # nothing changed
        load(city, buildings(tmp_path, "new", {"NEAR": (X0, Y0)}, height=33.0))
        wait_for_eviction(client, NEAR_16)
        assert_only_near_evicted(client, 33.0)


def test_a_restarted_server_evicts_what_changed_while_it_was_down(city, settings):
    with TestClient(create_app(settings)) as client:
        warm(client)
    with city.begin() as conn:
        update_object(conn, "buildings", "t:NEAR", {"height": 41.0})
    with TestClient(create_app(settings)) as client:
        assert_only_near_evicted(client, 41.0)  # FAR tiles come back from the disk cache


def test_a_new_reading_evicts_its_sensor_tile(engine, settings):
    lon, lat = NEAR
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO cim.sensors (id, source, cim_level, kind, geom) VALUES "
            "('s:1', 's', 1, 'rain_gauge', ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))"),
            {"lon": lon, "lat": lat})
    url = tile_url(NEAR, 16, "sensors")
    with TestClient(create_app(settings)) as client:
        fetch(client, url)
        assert fetch(client, url)[0] == "hit"
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO cim.observations (sensor_id, observed_at, value) "
                              "VALUES ('s:1', now(), 3.5)"))
        wait_for_eviction(client, url)
        state, tile = fetch(client, url, FRESH)
        assert state == "miss"
        assert tile["sensors"]["features"][0]["properties"]["latest_value"] == 3.5


def test_one_import_records_one_small_envelope_per_place(engine, tmp_path):
    load(engine, buildings(tmp_path, "two", {"NEAR": (X0, Y0), "FAR": (X0 + 6_000, Y0)}))
    with engine.connect() as conn:
        widths = conn.execute(text(
            "SELECT ST_XMax(envelope) - ST_XMin(envelope) FROM cim.changes "
            "WHERE txid = (SELECT max(txid) FROM cim.changes) AND relation = 'buildings'"
        )).scalars().all()
    assert len(widths) == 2 and max(widths) < 0.001  # not one box 6 km wide


def test_memory_is_bounded_in_bytes_least_recently_used_first():
    cache = TileCache(memory_bytes=3_000)
    cache.active = True
    tileset = Tileset.collection("buildings")
    keys = [TileKey("buildings", "WebMercatorQuad", 16, x, 0) for x in range(4)]
    for key in keys[:3]:
        assert cache.put(tileset, key, b"x" * 700, cache.generation)
    cache.get(keys[0])  # now the most recently used
    cache.put(tileset, keys[3], b"x" * 700, cache.generation)
    assert [cache.get(k) is not None for k in keys] == [True, False, True, True]
    assert not cache.put(tileset, keys[1], b"y", cache.generation - 1)  # rendered before


def test_base_maps_are_keyed_by_their_layers():
    assert Tileset.base_map(["roads", "buildings"]) == Tileset.base_map(["buildings", "roads"])
    assert Tileset.base_map(["roads"]).name != Tileset.base_map(["roads", "buildings"]).name


@pytest.mark.parametrize(("header", "expected"), [
    ("gzip, deflate", True), ("br;q=1.0, gzip;q=0.5", True), ("*", True),
    ("gzip;q=0", False), ("identity", False), ("", False)])
def test_accept_encoding(header, expected):
    assert accepts_gzip(header) is expected


def test_tiles_are_stored_compressed(city, settings):
    with TestClient(create_app(settings)) as client:
        client.get(NEAR_16)
        t = WEB_MERCATOR.tile(*NEAR, 16)
        stored = client.app.state.tile_cache.get(
            TileKey(Tileset.collection("buildings").name, "WebMercatorQuad", 16, t.x, t.y))
        assert stored is None  # only the base map was asked for
        client.get(tile_url(NEAR, 16, "buildings"))
        stored = client.app.state.tile_cache.get(
            TileKey("buildings", "WebMercatorQuad", 16, t.x, t.y))
        assert "buildings" in mapbox_vector_tile.decode(gzip.decompress(stored))


def test_a_held_tile_is_hashed_once_and_again_when_it_changes():
    cache = TileCache(memory_bytes=10_000)
    cache.active = True
    key = TileKey("buildings", "WebMercatorQuad", 16, 0, 0)
    first, second = b"a" * 100, b"b" * 100
    cache.put(Tileset.collection("buildings"), key, first, cache.generation)
    held = cache.in_memory(key)
    assert cache.digest(key, held) == cache.digest(key, held) == digest_of(first)
    cache.put(Tileset.collection("buildings"), key, second, cache.generation)
    assert cache.digest(key, cache.in_memory(key)) == digest_of(second)


def test_a_tile_evicted_again_soon_after_its_refresh_is_refreshed_less_often(
        city, settings, monkeypatch):
    monkeypatch.setattr(tiles.api, "REFRESH_SPACING_S", 2.0)  # slack for a loaded machine
    with TestClient(create_app(settings)) as client:
        warm(client)
        renders = render_counter(client)

        def edit(height: float) -> None:
            with city.begin() as conn:
                update_object(conn, "buildings", "t:NEAR", {"height": height})
            wait_for_eviction(client, NEAR_16)

        def refresh(height: float) -> float:
            """When a stale answer started a refresh, which then landed with ``height``."""
            assert fetch(client, NEAR_16)[0] == "stale"
            began = time.monotonic()
            while (answer := fetch(client, NEAR_16))[0] != "hit":
                assert time.monotonic() - began < settings.tiles.max_stale_s
                time.sleep(0.02)
            assert heights(client, answer[1])["t:NEAR"] == height
            return began

        edit(50.0)
        first = refresh(50.0)
        edit(60.0)  # evicted again within 2 s of that refresh
        assert time.monotonic() - first < 2.0
        time.sleep(max(0.0, first + 2.05 - time.monotonic()))
        second = refresh(60.0)
        edit(70.0)  # and again: the next waits 4 s
        time.sleep(max(0.0, second + 2.5 - time.monotonic()))
        assert fetch(client, NEAR_16)[0] == "stale"
        time.sleep(0.2)
        assert len(renders) == 2
        time.sleep(max(0.0, second + 4.05 - time.monotonic()))
        refresh(70.0)
        assert len(renders) == 3
