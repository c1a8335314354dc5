"""OGC API - Features Part 2: responses in other CRSs, bboxes given in other CRSs."""

from __future__ import annotations

import pytest
from pyproj import Transformer

from tests import test_features_api
from tests.test_features_api import N_BUILDINGS
from tests.test_import_formats import X0, Y0

EPSG = "http://www.opengis.net/def/crs/EPSG/0/"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
city, client = test_features_api.city, test_features_api.client  # fixtures


def corner_near(client, expected: list[float], **params) -> tuple[list[float], str]:
    """The vertex of building B00 nearest ``expected``, and the response's Content-Crs."""
    response = client.get("/collections/buildings/items/t:B00", params=params)
    assert response.status_code == 200, response.text
    ring = response.json()["geometry"]["coordinates"][0][0]
    nearest = min(ring, key=lambda v: (v[0] - expected[0]) ** 2 + (v[1] - expected[1]) ** 2)
    return nearest, response.headers["content-crs"]


def test_collections_offer_the_crs_list_and_part2_conformance(client):
    collection = client.get("/collections/buildings").json()
    assert collection["crs"][0] == CRS84
    assert {f"{EPSG}{code}" for code in (4326, 3857, 4490, 4547)} <= set(collection["crs"])
    assert collection["storageCrs"] == CRS84
    assert "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs" in \
        client.get("/conformance").json()["conformsTo"]


@pytest.mark.parametrize("code", [4326, 4490, 4547])
def test_authority_axis_order_is_northing_first(client, code):
    """EPSG:4326, 4490 and the CGCS2000 Gauss-Kruger grid list latitude/northing first."""
    lon, lat = Transformer.from_crs(4547, 4326, always_xy=True).transform(X0, Y0)
    expected = [Y0, X0] if code == 4547 else [lat, lon]
    corner, header = corner_near(client, expected, crs=f"{EPSG}{code}")
    assert header == f"<{EPSG}{code}>"
    assert corner == pytest.approx(expected, abs=0.02 if code == 4547 else 1e-6)


def test_web_mercator_and_default_crs84_are_easting_first(client):
    lon, lat = Transformer.from_crs(4547, 4326, always_xy=True).transform(X0, Y0)
    x, y = Transformer.from_crs(4547, 3857, always_xy=True).transform(X0, Y0)
    corner, header = corner_near(client, [x, y], crs="EPSG:3857")
    assert header == f"<{EPSG}3857>" and corner == pytest.approx([x, y], abs=0.02)
    corner, header = corner_near(client, [lon, lat])
    assert header == f"<{CRS84}>" and corner == pytest.approx([lon, lat], abs=1e-6)


def test_bbox_crs_selects_in_the_city_grid_and_in_lat_lon(client):
    # The first three buildings, 30 m apart, given in EPSG:4547 (northing, easting).
    grid_box = f"{Y0 - 1},{X0 - 1},{Y0 + 16},{X0 + 75}"
    page = client.get("/collections/buildings/items",
                      params={"bbox": grid_box, "bbox-crs": f"{EPSG}4547"}).json()
    assert sorted(f["id"] for f in page["features"]) == ["t:B00", "t:B01", "t:B02"]
    lon, lat = Transformer.from_crs(4547, 4326, always_xy=True).transform(X0 + 10, Y0 + 7)
    lat_lon_box = f"{lat - 1e-5},{lon - 1e-5},{lat + 1e-5},{lon + 1e-5}"
    page = client.get("/collections/buildings/items",
                      params={"bbox": lat_lon_box, "bbox-crs": f"{EPSG}4326"}).json()
    assert [f["id"] for f in page["features"]] == ["t:B00"]
    every = client.get("/collections/buildings/items", params={
        "bbox": "-2e7,-2e7,2e7,2e7", "bbox-crs": "EPSG:3857", "limit": 100}).json()
    assert every["numberReturned"] == N_BUILDINGS


@pytest.mark.parametrize("params", [
    {"crs": "EPSG:2000"},
    {"crs": "http://www.opengis.net/def/crs/EPSG/0/4547x"},
    {"crs": ""},
    {"bbox": "1,2,3,4", "bbox-crs": "EPSG:9999999"},
    {"bbox": "3400000,600000,3300000,500000", "bbox-crs": f"{EPSG}4547"},
])
def test_unknown_crs_and_inverted_boxes_are_400(client, params):
    response = client.get("/collections/buildings/items", params=params)
    assert response.status_code == 400
    assert response.json()["code"] == "InvalidParameterValue"
