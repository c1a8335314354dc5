"""OGC API - Features over the catalog: through the app, and with OWSLib against a real server."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import httpx
import morecantile
import pytest
from fastapi.testclient import TestClient
from shapely.geometry import box

from cim.app import create_app
from cim.history import update_object
from cim.ingest.pipeline import ImportOptions, import_file
from tests.servers import cim_serve
from tests.test_import_formats import X0, Y0, write

N_BUILDINGS = 25


@pytest.fixture
def city(engine, tmp_path, internal_pipe):
    buildings = gpd.GeoDataFrame(
        {"bid": [f"B{i:02d}" for i in range(N_BUILDINGS)],
         "height": [10.0 + i for i in range(N_BUILDINGS)],
         "usage": ["office"] * N_BUILDINGS},
        geometry=[box(X0 + 30 * i, Y0, X0 + 30 * i + 20, Y0 + 15) for i in range(N_BUILDINGS)],
        crs="EPSG:4547")
    import_file(engine, write(buildings, tmp_path / "b.gpkg", "GPKG"),
                ImportOptions(layer="buildings", id_field="bid", source="t"), city_crs=4547)
    return engine


@pytest.fixture
def client(city, settings):
    with TestClient(create_app(settings)) as client:
        yield client


def test_landing_conformance_and_collections(client):
    rels = {link["rel"] for link in client.get("/").json()["links"]}
    assert {"service-desc", "conformance", "data"} <= rels
    conforms = client.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson" in conforms
    ids = [c["id"] for c in client.get("/collections").json()["collections"]]
    assert "buildings" in ids
    assert "drainage_pipes" not in ids  # internal: anonymous readers do not see it
    assert client.get("/collections/drainage_pipes").status_code == 404
    assert client.get("/collections/drainage_pipes/items").status_code == 404


def test_items_page_through_with_next_links_without_counting(client):
    url, seen, pages = "/collections/buildings/items?limit=10", [], 0
    while url:
        response = client.get(url)
        assert response.headers["content-type"] == "application/geo+json"
        page = response.json()
        assert page["type"] == "FeatureCollection"
        assert page["numberReturned"] == len(page["features"])
        assert "numberMatched" not in page
        seen += [f["id"] for f in page["features"]]
        url = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
        pages += 1
    assert pages == 3 and seen == sorted(seen) and len(set(seen)) == N_BUILDINGS


def test_bbox_properties_and_single_item(client):
    page = client.get("/collections/buildings/items", params={
        "bbox": "114.3,30.0,114.5,31.0", "limit": 100}).json()
    assert page["numberReturned"] == N_BUILDINGS
    narrow = client.get("/collections/buildings/items", params={
        "bbox": "0,0,1,1"}).json()
    assert narrow["features"] == [] and narrow["numberReturned"] == 0
    only = client.get("/collections/buildings/items", params={
        "properties": "height", "limit": 1}).json()["features"][0]
    assert set(only["properties"]) == {"height", "valid_from", "valid_to"}
    item = client.get("/collections/buildings/items/t:B03").json()
    assert item["properties"]["height"] == 13.0 and item["properties"]["use"] == "office"
    assert item["geometry"]["type"] == "MultiPolygon"


def test_datetime_reads_the_city_as_it_was(client, city):
    before = datetime.now(UTC)
    time.sleep(0.01)
    with city.begin() as conn:
        update_object(conn, "buildings", "t:B00", {"height": 99.0})
    now = client.get("/collections/buildings/items/t:B00").json()
    then = client.get("/collections/buildings/items/t:B00",
                      params={"datetime": before.isoformat()}).json()
    assert (now["properties"]["height"], then["properties"]["height"]) == (99.0, 10.0)
    versions = client.get("/collections/buildings/items", params={
        "datetime": f"{before.isoformat()}/..", "limit": 100}).json()
    heights = [f["properties"]["height"] for f in versions["features"] if f["id"] == "t:B00"]
    assert heights == [10.0, 99.0]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"bbox": "1,2,3"}, "four (or six)"),
        ({"bbox": "a,b,c,d"}, "four (or six)"),
        ({"bbox": "10,0,5,1"}, "antimeridian"),
        ({"bbox": "0,-100,1,1"}, "latitudes"),
        ({"bbox": "nan,0,1,1"}, "finite"),
        ({"limit": "abc"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"datetime": "yesterday"}, "RFC 3339"),
        ({"datetime": "2026-02-01/2026-01-01"}, "ends before it starts"),
        ({"datetime": ".."}, "cannot be open"),
        ({"properties": "colour"}, "unknown properties colour"),
    ],
)
def test_bad_parameters_are_400_with_an_ogc_body(client, params, message):
    response = client.get("/collections/buildings/items", params=params)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "InvalidParameterValue" and message in body["description"]


def test_unknown_things_are_404(client):
    assert client.get("/collections/castles").json()["code"] == "NotFound"
    assert client.get("/collections/buildings/items/t:nope").status_code == 404
    assert client.get("/collections/buildings/items/t%00B01").status_code == 404


def test_huge_offsets_are_refused_not_crashed(client):
    response = client.get("/collections/buildings/items", params={"offset": str(10**30)})
    assert response.status_code == 400 and "offset" in response.json()["description"]


@pytest.fixture
def server(city, settings):
    with cim_serve({"CIM_DATABASE_URL": city.url.render_as_string(hide_password=False)}) as base:
        yield base


def test_owslib_reads_the_api(server):
    from owslib.ogcapi.features import Features

    api = Features(server)
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in \
        api.conformance()["conformsTo"]
    assert "buildings" in [c["id"] for c in api.collections()["collections"]]
    page = api.collection_items("buildings", limit=5)
    assert page["numberReturned"] == 5
    within = api.collection_items("buildings", bbox=[114.0, 30.0, 115.0, 31.0], limit=100)
    assert within["numberReturned"] == N_BUILDINGS
    assert api.collection_item("buildings", "t:B07")["properties"]["height"] == 17.0


def gdal(*args: str) -> str:
    if shutil.which("ogrinfo") is None:
        pytest.fail("ogrinfo not found: `make test` installs gdal-bin (Debian) when run as root")
    result = subprocess.run(["ogrinfo", "-ro", *args], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_gdal_reads_collections_items_and_tiles(server, tmp_path):
    listing = gdal("-q", f"OAPIF:{server}")
    assert "buildings" in listing and "drainage_pipes" not in listing
    summary = gdal("-so", "-al", f"OAPIF:{server}", "buildings", "-spat", "114.0", "30.0",
                   "115.0", "31.0")
    assert f"Feature Count: {N_BUILDINGS}" in summary
    lon, lat = 114.402, 30.4901  # the first buildings
    tile = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 14)
    path = tmp_path / "tile.pbf"
    path.write_bytes(httpx.get(f"{server}/tiles/WebMercatorQuad/14/{tile.x}/{tile.y}").content)
    mvt = gdal("-al", "-so", "-oo", "Z=14", "-oo", f"X={tile.x}", "-oo", f"Y={tile.y}",
               f"MVT:{path}")
    assert "Layer name: buildings" in mvt


def test_schemathesis_finds_no_server_error(server):
    """Hundreds of generated requests over the whole OpenAPI document: never a 500."""
    cli = str(Path(sys.executable).parent / "schemathesis")
    result = subprocess.run(
        [cli, "run", f"{server}/openapi.json", "--checks", "not_a_server_error",
         "--max-examples", "30", "--workers", "1", "--seed", "42"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout
