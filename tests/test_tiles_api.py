"""Vector tiles over the catalog: the right layers, properties by zoom, grid errors, TileJSON."""

from __future__ import annotations

import geopandas as gpd
import mapbox_vector_tile
import morecantile
import pytest
from fastapi.testclient import TestClient
from pyproj import Transformer
from shapely.geometry import box
from sqlalchemy import text

from cim.app import create_app
from cim.history import update_object
from cim.ingest.pipeline import ImportOptions, import_file
from tests.test_import_formats import X0, Y0, write
from tests.test_tile_cache import wait_for_eviction
from tiles.grid import GRIDS

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
LON, LAT = Transformer.from_crs(4547, 4326, always_xy=True).transform(X0 + 50, Y0 + 10)


@pytest.fixture
def client(engine, settings, tmp_path, internal_pipe):
    buildings = gpd.GeoDataFrame(
        {"bid": ["B0", "B1"], "height": [12.0, 30.0], "usage": ["office", "school"],
         "name": ["East", "West"]},
        geometry=[box(X0, Y0, X0 + 20, Y0 + 15), box(X0 + 60, Y0, X0 + 80, Y0 + 15)],
        crs="EPSG:4547")
    import_file(engine, write(buildings, tmp_path / "b.gpkg", "GPKG"),
                ImportOptions(layer="buildings", id_field="bid", source="t"), city_crs=4547)
    with TestClient(create_app(settings)) as client:
        yield client


def decode(client, url: str) -> dict:
    response = client.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    return mapbox_vector_tile.decode(response.content)


def tile_url(z: int, collection: str | None = None) -> str:
    t = WEB_MERCATOR.tile(LON, LAT, z)
    prefix = f"/collections/{collection}" if collection else ""
    return f"{prefix}/tiles/WebMercatorQuad/{z}/{t.x}/{t.y}"


def test_base_map_tile_has_public_layers_with_properties_by_zoom(client):
    at16 = decode(client, tile_url(16))
    assert set(at16) == {"buildings"}  # drainage pipes are internal: not in public tiles
    props = {f["properties"]["id"]: f["properties"] for f in at16["buildings"]["features"]}
    assert (props["t:B1"]["height"], props["t:B1"]["use"]) == (30.0, "education")
    assert props["t:B0"]["name"] == "East"  # names from zoom 15 on
    at14 = decode(client, tile_url(14))
    assert "name" not in at14["buildings"]["features"][0]["properties"]
    assert at14["buildings"]["features"][0]["properties"]["height"] in (12.0, 30.0)


def test_low_zooms_carry_less(client, engine, tmp_path):
    """Below the layer's detail zoom: no sub-pixel footprints and no text ids, only the
    version id that every feature carries as its MVT id."""
    shed = gpd.GeoDataFrame({"bid": ["S"], "height": [2.5]},
                            geometry=[box(X0 + 40, Y0, X0 + 42, Y0 + 2)], crs="EPSG:4547")
    import_file(engine, write(shed, tmp_path / "s.gpkg", "GPKG"),
                ImportOptions(layer="buildings", id_field="bid", source="t"), city_crs=4547)
    at13 = decode(client, tile_url(13))["buildings"]["features"]
    assert sorted(f["properties"]["height"] for f in at13) == [12.0, 30.0]  # no 2 m shed
    assert all("id" not in f["properties"] and isinstance(f["id"], int) for f in at13)
    at15 = decode(client, tile_url(15))["buildings"]["features"]
    assert sorted(f["properties"]["id"] for f in at15) == ["t:B0", "t:B1", "t:S"]
    with engine.connect() as conn:
        vids = set(conn.scalars(text("SELECT vid FROM cim.buildings")))
    assert {f["id"] for f in at15} == vids


def test_the_cgcs2000_grid(client):
    grids = client.get("/tileMatrixSets").json()["tileMatrixSets"]
    assert [g["id"] for g in grids] == ["WebMercatorQuad", "CGCS2000Quad"]
    definition = client.get("/tileMatrixSets/CGCS2000Quad").json()
    assert "4490" in definition["crs"] and definition["tileMatrices"][0]["matrixWidth"] == 2
    t = GRIDS.get("CGCS2000Quad").tile(LON, LAT, 16)
    tile = decode(client, f"/tiles/CGCS2000Quad/16/{t.x}/{t.y}")
    assert len(tile["buildings"]["features"]) == 2
    assert client.get("/tiles/CGCS2000Quad/tilejson.json").status_code == 404


def test_zoom_range_and_empty_tiles(client):
    assert client.get(tile_url(12)).status_code == 204  # buildings start at zoom 13
    assert client.get("/tiles/WebMercatorQuad/16/0/0").status_code == 204


def test_collection_tiles(client):
    only = decode(client, tile_url(16, "buildings"))
    assert set(only) == {"buildings"} and len(only["buildings"]["features"]) == 2
    assert client.get(tile_url(16, "drainage_pipes")).status_code == 404


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/tiles/WebMercatorQuad/2/4/0", 404),
        ("/tiles/WebMercatorQuad/2/0/4", 404),
        ("/tiles/WorldCRS84Quad/2/0/0", 404),
        ("/tiles/CGCS2000Quad/2/8/0", 404),
        ("/tiles/WebMercatorQuad/99/0/0", 400),
        ("/tiles/WebMercatorQuad/2/-1/0", 400),
        ("/tiles/WebMercatorQuad/a/0/0", 400),
    ],
)
def test_tiles_outside_the_grid(client, url, status):
    response = client.get(url)
    assert response.status_code == status
    assert response.json()["code"] in ("NotFound", "InvalidParameterValue")


def test_tilejson(client):
    doc = client.get("/tiles/WebMercatorQuad/tilejson.json").json()
    assert doc["tilejson"] == "3.0.0"
    assert doc["tiles"][0].endswith("/tiles/WebMercatorQuad/{z}/{x}/{y}")
    ids = [layer["id"] for layer in doc["vector_layers"]]
    assert "buildings" in ids and "drainage_pipes" not in ids
    assert "OpenStreetMap" in doc["attribution"]


def test_maplibre_style_covers_the_public_catalog(client):
    style = client.get("/styles/default").json()
    assert style["version"] == 8
    assert style["sources"]["cim"]["url"].endswith("/tiles/WebMercatorQuad/tilejson.json")
    by_id = {layer["id"]: layer for layer in style["layers"]}
    assert "drainage_pipes" not in by_id and by_id["background"]["type"] == "background"
    buildings = by_id["buildings"]
    assert (buildings["type"], buildings["source-layer"]) == ("fill-extrusion", "buildings")
    colour = buildings["paint"]["fill-extrusion-color"]
    assert colour[0] == "match" and "residential" in colour
    assert buildings["paint"]["fill-extrusion-height"] == ["to-number", ["get", "height"], 0]
    assert by_id["roads"]["paint"]["line-width"] > 0
    # every style layer draws a source layer the tiles really carry
    tilejson = client.get("/tiles/WebMercatorQuad/tilejson.json").json()
    carried = {layer["id"] for layer in tilejson["vector_layers"]}
    assert {layer["source-layer"] for layer in style["layers"] if "source-layer" in layer} \
        == carried


def test_tiles_and_items_revalidate_with_etags(client, engine):
    first = client.get(tile_url(16))
    etag = first.headers["etag"]
    assert "max-age" in first.headers["cache-control"]
    again = client.get(tile_url(16), headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    item = client.get("/collections/buildings/items/t:B0")
    assert client.get("/collections/buildings/items/t:B0",
                      headers={"If-None-Match": item.headers["etag"]}).status_code == 304
    with engine.begin() as conn:
        update_object(conn, "buildings", "t:B0", {"height": 50.0})
    wait_for_eviction(client, tile_url(16))  # the tile cache learns of the edit by NOTIFY
    changed = client.get(tile_url(16), headers={"If-None-Match": etag,
                                                 "Cache-Control": "no-cache"})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
