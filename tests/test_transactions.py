"""OGC API - Features Part 4: writes behind keys, versioned, audited, never half done."""

from __future__ import annotations

import json

import mapbox_vector_tile
import morecantile
import pytest
from fastapi.testclient import TestClient
from pyproj import Transformer
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from cim.access import Role, create_key, revoke_key
from cim.app import create_app
from cim.history import versions
from cim.settings import AccessSettings
from layers.model import Classification
from tests import test_features_api
from tests.conftest import snapshot
from tests.test_import_formats import X0, Y0

SQUARE = {"type": "MultiPolygon", "coordinates": [[[
    [114.40, 30.50], [114.4002, 30.50], [114.4002, 30.5002], [114.40, 30.5002],
    [114.40, 30.50]]]]}
city, client = test_features_api.city, test_features_api.client  # fixtures


def feature(geometry=SQUARE, **properties) -> dict:
    return {"type": "Feature", "geometry": geometry, "properties": properties}


@pytest.fixture
def keys(city):
    with city.begin() as conn:
        return {role: {"Authorization": "Bearer " + create_key(
                    conn, role.value, role, Classification.public)}
                for role in (Role.viewer, Role.editor)}


@pytest.fixture
def editor(keys):
    return keys[Role.editor]


def decoded(response) -> dict:
    """The layers of a vector tile response (the test client has inflated its gzip)."""
    assert response.status_code == 200, response.text
    return mapbox_vector_tile.decode(response.content)


def audit(engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(text("SELECT actor, action, object_id, before_vid IS NOT NULL, "
                                 "after_vid IS NOT NULL FROM cim.audit_log ORDER BY id")).all()


def test_create_replace_update_delete_keep_every_version_and_audit(client, city, editor):
    created = client.post("/collections/buildings/items", headers=editor,
                          json=feature(height=12.5, use="office") | {"id": "new-1"})
    assert created.status_code == 201, created.text
    location = created.headers["location"]
    assert location.endswith("/collections/buildings/items/api:new-1")
    read = client.get(location)
    assert read.json()["properties"]["height"] == 12.5
    assert read.json()["geometry"]["coordinates"] == SQUARE["coordinates"]

    patched = client.patch(location, headers=editor | {"If-Match": read.headers["etag"]},
                           json={"type": "Feature", "properties": {"height": 20}})
    assert patched.status_code == 200, patched.text
    after_patch = client.get(location).json()["properties"]
    assert (after_patch["height"], after_patch["use"]) == (20, "office")

    replaced = client.put(location, headers=editor, json=feature(height=7.0))
    assert replaced.status_code == 200, replaced.text
    after_put = client.get(location).json()["properties"]
    assert (after_put["height"], after_put["use"]) == (7.0, None)  # PUT resets what it omits

    assert client.delete(location, headers=editor).status_code == 204
    assert client.get(location).status_code == 404
    with city.connect() as conn:
        heights = [v["height"] for v in versions(conn, "buildings", "api:new-1")]
    assert heights == [12.5, 20.0, 7.0]
    assert audit(city) == [("editor", "create", "api:new-1", False, True),
                           ("editor", "update", "api:new-1", True, True),
                           ("editor", "replace", "api:new-1", True, True),
                           ("editor", "delete", "api:new-1", True, False)]
    with city.connect() as conn:  # each entry holds both versions, geometry as GeoJSON
        logged = conn.execute(text(
            "SELECT (before->>'height')::float, (after->>'height')::float, "
            "after->'geometry'->>'type', before->>'valid_to' = after->>'valid_from', "
            "after ? 'geom' FROM cim.audit_log WHERE action = 'update'")).one()
    assert tuple(logged) == (12.5, 20.0, "MultiPolygon", True, False)


def test_ids_with_slashes_round_trip(client, editor):
    created = client.post("/collections/buildings/items", headers=editor,
                          json=feature(height=3.0) | {"id": "way/77"})
    assert created.status_code == 201, created.text
    assert client.get("/collections/buildings/items/api:way%2F77").json()["id"] == "api:way/77"
    assert client.delete("/collections/buildings/items/api:way/77",
                         headers=editor).status_code == 204


def test_a_stale_if_match_is_412_and_changes_nothing(client, city, editor):
    etag = client.get("/collections/buildings/items/t:B01").headers["etag"]
    first = client.patch("/collections/buildings/items/t:B01", headers=editor | {
        "If-Match": etag}, json={"type": "Feature", "properties": {"height": 30.0}})
    assert first.status_code == 200
    before = snapshot(city)
    second = client.patch("/collections/buildings/items/t:B01", headers=editor | {
        "If-Match": etag}, json={"type": "Feature", "properties": {"height": 40.0}})
    assert second.status_code == 412 and second.json()["code"] == "PreconditionFailed"
    assert snapshot(city) == before
    fresh = client.get("/collections/buildings/items/t:B01").headers["etag"]
    assert client.delete("/collections/buildings/items/t:B01",
                         headers=editor | {"If-Match": fresh}).status_code == 204


def test_a_layer_drawn_from_part_of_a_table_writes_only_that_part(client, city, editor):
    line = {"type": "LineString", "coordinates": [[114.40, 30.50], [114.401, 30.50]]}
    made = {kind: client.post(f"/collections/{layer}/items", headers=editor,
                              json=feature(line, clearance_m=4.5) | {"id": kind})
            for kind, layer in (("bridge", "bridges"), ("underpass", "underpasses"))}
    assert [r.status_code for r in made.values()] == [201, 201]
    bridge = made["bridge"].headers["location"]
    underpass_through_bridges = bridge.replace("api:bridge", "api:underpass")
    before = snapshot(city)
    for method in ("PATCH", "DELETE"):
        refused = client.request(method, underpass_through_bridges, headers=editor,
                                 json={"type": "Feature", "properties": {"clearance_m": 1.0}})
        assert refused.status_code == 404, refused.text
    assert snapshot(city) == before
    patched = client.patch(bridge, headers=editor,
                           json={"type": "Feature", "properties": {"clearance_m": 5.0}})
    assert patched.status_code == 200, patched.text
    with city.connect() as conn:
        assert conn.execute(text(
            "SELECT kind, clearance_m FROM cim.structures WHERE valid_to IS NULL ORDER BY id")
        ).all() == [("bridge", 5.0), ("underpass", 4.5)]


def test_geometry_in_the_city_grid_with_content_crs(client, editor):
    grid = {"type": "Polygon", "coordinates": [[
        [Y0 + 100, X0 + 5], [Y0 + 100, X0 + 25], [Y0 + 120, X0 + 25], [Y0 + 120, X0 + 5],
        [Y0 + 100, X0 + 5]]]}  # EPSG:4547 is northing first
    created = client.post("/collections/buildings/items", json=feature(grid, height=3.0),
                          headers=editor | {
                              "Content-Crs": "<http://www.opengis.net/def/crs/EPSG/0/4547>"})
    assert created.status_code == 201, created.text
    ring = client.get(created.headers["location"]).json()["geometry"]["coordinates"][0][0]
    lon, lat = Transformer.from_crs(4547, 4326, always_xy=True).transform(X0 + 5, Y0 + 100)
    assert min(abs(v[0] - lon) + abs(v[1] - lat) for v in ring) < 1e-7


@pytest.mark.parametrize(("body", "message"), [
    ("not json", "not a GeoJSON Feature"),
    ({"type": "FeatureCollection", "features": []}, "not a GeoJSON Feature"),
    (feature(height=5, colour="red"), "no properties colour"),
    (feature(height="tall"), "is not a float"),
    (feature(height=True), "is not a float"),
    (feature(), "height cannot be null"),
    (feature(geometry=None, height=5), "no geometry"),
    (feature(geometry={"type": "Point", "coordinates": [114.4, 30.5]}, height=5), "geom"),
    (feature(geometry={"type": "Polygon", "coordinates": "x"}, height=5), "not valid GeoJSON"),
    (feature(geometry={"type": "Polygon", "coordinates": []}, height=5), "empty"),
])
def test_bad_features_are_400_and_change_nothing(client, city, editor, body, message):
    before = snapshot(city)
    content = body if isinstance(body, str) else json.dumps(body)
    response = client.post("/collections/buildings/items", headers=editor, content=content)
    assert response.status_code == 400, response.text
    assert message in response.json()["description"]
    assert snapshot(city) == before


def test_who_may_write_what(client, city, keys, internal_pipe, settings):
    body = feature(height=5.0)
    anonymous = client.post("/collections/buildings/items", json=body)
    assert anonymous.status_code == 401
    viewer = client.post("/collections/buildings/items", json=body, headers=keys[Role.viewer])
    assert viewer.status_code == 403
    editor = keys[Role.editor]
    # A public-clearance editor does not learn that the internal pipes exist.
    assert client.delete(f"/collections/drainage_pipes/items/{internal_pipe}",
                         headers=editor).status_code == 404
    sensor = client.post("/collections/sensors/items", headers=editor,
                         json=feature({"type": "Point", "coordinates": [114.4, 30.5]}))
    assert sensor.status_code == 405  # a view with the latest reading: computed, not stored
    assert client.patch("/collections/buildings/items/t:nope", headers=editor,
                        json={"type": "Feature", "properties": {"height": 1}}).status_code == 404
    with city.begin() as conn:
        revoke_key(conn, "editor")
    assert client.post("/collections/buildings/items", json=body,
                       headers=editor).status_code == 401
    assert audit(city) == []


def test_clearance_shows_internal_layers_and_anonymous_can_be_switched_off(
        city, settings, internal_pipe):
    with city.begin() as conn:
        insider = {"X-API-Key": create_key(conn, "insider", Role.viewer,
                                           Classification.internal)}
    closed = settings.replace(access=AccessSettings(allow_anonymous=False))
    with TestClient(create_app(closed)) as client:
        assert client.get("/collections").status_code == 401
        ids = [c["id"] for c in client.get("/collections", headers=insider).json()[
            "collections"]]
        assert "drainage_pipes" in ids and "assets" not in ids  # assets are restricted
        pipe = client.get(f"/collections/drainage_pipes/items/{internal_pipe}", headers=insider)
        assert pipe.status_code == 200
        lon, lat = Transformer.from_crs(4547, 4326, always_xy=True).transform(X0 + 40, Y0)
        t = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 16)
        path = f"/tiles/WebMercatorQuad/16/{t.x}/{t.y}"
        assert client.get(path).status_code == 401
        layers = set(decoded(client.get(path, headers=insider)))
        assert "drainage_pipes" in layers
        assert "drainage_pipes" in json.dumps(client.get(
            "/tiles/WebMercatorQuad/tilejson.json", headers=insider).json())
    with TestClient(create_app(settings)) as client:  # anonymous: public layers only
        assert "drainage_pipes" not in decoded(client.get(path))
        assert client.get(f"/collections/drainage_pipes/tiles/WebMercatorQuad/16/{t.x}/{t.y}"
                          ).status_code == 404
        assert "drainage_pipes" not in json.dumps(client.get(
            "/tiles/WebMercatorQuad/tilejson.json").json())


def test_the_audit_log_is_append_only(client, city, editor):
    client.post("/collections/buildings/items", headers=editor, json=feature(height=4.0))
    with pytest.raises(DBAPIError, match="append-only"), city.begin() as conn:
        conn.execute(text("UPDATE cim.audit_log SET actor = 'someone else'"))
    assert [row[0] for row in audit(city)] == ["editor"]


def test_keyed_reads_are_private_and_cors_is_configurable(city, settings, keys):
    origin = "https://planning.example"
    open_to = settings.replace(server={"cors_origins": [origin]})
    with TestClient(create_app(open_to)) as client:
        url = "/collections/buildings/items/t:B00"
        assert client.get(url).headers["cache-control"].startswith("public")
        assert client.get(url, headers=keys[Role.viewer]).headers[
            "cache-control"].startswith("private")
        preflight = client.options(url, headers={
            "Origin": origin, "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "authorization,if-match"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == origin
        read = client.get(url, headers={"Origin": origin})
        assert "etag" in read.headers["access-control-expose-headers"].lower()
        other = client.get(url, headers={"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in other.headers
