"""The access matrix: every role and clearance, and the anonymous reader, gets exactly the
layers it may see (a hidden one is 404, as if absent) in listings, features, queryables,
vector tiles, the base map, TileJSON, the style and 3D Tiles (buildings, drainage); writes
and the audit log follow the role; a revoked key is refused at once."""

from __future__ import annotations

import itertools
import json

import geopandas as gpd
import mapbox_vector_tile
import morecantile
import pytest
from fastapi.testclient import TestClient
from pyproj import Transformer
from shapely.geometry import Point

from cim.access import Role, create_key, revoke_key
from cim.app import create_app
from cim.ingest.pipeline import ImportOptions, import_file
from cim.settings import AccessSettings
from layers.model import Classification
from tests import test_features_api
from tests.test_import_formats import X0, Y0, write
from tiles.threed.api import tilesets_folder
from tiles.threed.build import build_buildings
from tiles.threed.infrastructure import build_infrastructure

city = test_features_api.city  # fixture
LAYERS = {"buildings": Classification.public, "drainage_pipes": Classification.internal,
          "assets": Classification.restricted}
ORDER = [Classification.public, Classification.internal, Classification.restricted]
Z = 16


@pytest.fixture
def world(city, tmp_path, settings, internal_pipe):
    """Buildings (public), a pipe (internal), an asset (restricted), the 3D tileset, and one
    key per role and clearance."""
    asset = gpd.GeoDataFrame({"id": ["a1"], "asset_type": ["power"]},
                             geometry=[Point(X0 + 45, Y0 + 5)], crs="EPSG:4547")
    import_file(city, write(asset, tmp_path / "a.gpkg", "GPKG"),
                ImportOptions(layer="assets", source="t"), city_crs=4547)
    folder = tilesets_folder(settings.storage.root)
    build_buildings(city, folder / "buildings", leaf_size=4)
    build_infrastructure(city, folder, settings.storage.root)
    keys = {}
    with city.begin() as conn:
        for role, clearance in itertools.product(Role, ORDER):
            name = f"{role.value}-{clearance.value}"
            keys[name] = {"X-API-Key": create_key(conn, name, role, clearance)}
    return {"features": {"buildings": "t:B00", "drainage_pipes": internal_pipe,
                         "assets": "t:a1"}, "keys": keys}


def tile_path() -> str:
    lon, lat = Transformer.from_crs(4547, 4326, always_xy=True).transform(X0 + 40, Y0 + 5)
    t = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, Z)
    return f"WebMercatorQuad/{Z}/{t.x}/{t.y}"


def principals() -> list[tuple[str, Role | None, Classification]]:
    return [("anonymous", None, Classification.public)] + [
        (f"{r.value}-{c.value}", r, c) for r, c in itertools.product(Role, ORDER)]


def test_every_principal_sees_exactly_its_layers_everywhere(world, settings):
    tile = tile_path()
    with TestClient(create_app(settings)) as client:
        for name, _, clearance in principals():
            headers = world["keys"].get(name, {})
            allowed = {layer for layer, level in LAYERS.items()
                       if ORDER.index(level) <= ORDER.index(clearance)}
            listed = {c["id"] for c in client.get("/collections", headers=headers)
                      .json()["collections"]} & set(LAYERS)
            assert listed == allowed, name
            base = mapbox_vector_tile.decode(client.get(f"/tiles/{tile}",
                                                        headers=headers).content)
            assert set(base) & set(LAYERS) == allowed, name
            tilejson = json.dumps(client.get("/tiles/WebMercatorQuad/tilejson.json",
                                             headers=headers).json())
            style = json.dumps(client.get("/styles/default", headers=headers).json())
            for layer, feature in world["features"].items():
                visible = layer in allowed
                urls = [f"/collections/{layer}", f"/collections/{layer}/items",
                        f"/collections/{layer}/items/{feature}",
                        f"/collections/{layer}/queryables",
                        f"/collections/{layer}/tiles/{tile}"]
                statuses = [client.get(url, headers=headers).status_code for url in urls]
                assert statuses == ([200] * 5 if visible else [404] * 5), (name, layer)
                if visible:
                    page = client.get(f"/collections/{layer}/items", headers=headers).json()
                    assert page["numberReturned"] >= 1
                assert (f'"{layer}"' in tilejson) == visible, (name, layer)
                assert (f'"{layer}"' in style) == visible, (name, layer)
            # 3D Tiles: the buildings are public; the drainage network is internal.
            assert client.get("/3dtiles/buildings/tileset.json",
                              headers=headers).status_code == 200
            drainage = client.get("/3dtiles/drainage/tileset.json", headers=headers)
            assert drainage.status_code == (200 if "drainage_pipes" in allowed else 404), name
            if drainage.status_code == 200:
                glb = drainage.json()["root"]
                while "content" not in glb:
                    glb = glb["children"][0]
                assert client.get(f"/3dtiles/drainage/{glb['content']['uri']}",
                                  headers=headers).status_code == 200
            else:  # its content is as absent as the tileset
                assert client.get("/3dtiles/drainage/0-0-0.glb",
                                  headers=headers).status_code == 404


def test_writes_and_the_audit_log_follow_the_role(world, settings):
    body = {"type": "Feature", "properties": {"height": 99.0}}
    with TestClient(create_app(settings)) as client:
        for name, role, clearance in principals():
            headers = world["keys"].get(name, {})
            patched = client.patch("/collections/buildings/items/t:B01", json=body,
                                   headers=headers)
            expected = 401 if role is None else 200 if role in (Role.editor, Role.admin) \
                else 403
            assert patched.status_code == expected, (name, patched.text)
            # A layer above the key's clearance does not exist for it, even to an editor.
            hidden = client.patch("/collections/assets/items/t:a1",
                                  json={"type": "Feature", "properties": {"status": "x"}},
                                  headers=headers)
            if clearance is not Classification.restricted:
                assert hidden.status_code == 404, name
            audit = client.get("/audit", headers=headers)
            assert audit.status_code == (401 if role is None else 200 if role is Role.admin
                                         else 403), name
        log = client.get("/audit", params={"objectId": "t:B01", "limit": 2},
                         headers=world["keys"]["admin-public"]).json()
        assert [e["actor"] for e in log["entries"]] == ["admin-restricted", "admin-internal"]
        assert log["entries"][0]["after"]["height"] == 99.0 and log["next"]
        older = client.get(log["next"].replace("http://testserver", ""),
                           headers=world["keys"]["admin-public"]).json()["entries"]
        assert len(older) == 2 and older[0]["id"] < log["entries"][-1]["id"]
        assert client.get("/audit", params={"since": "not a time"},
                          headers=world["keys"]["admin-public"]).status_code == 400


def test_revoked_key_is_refused_at_once_and_anonymous_can_be_switched_off(world, settings):
    key = world["keys"]["viewer-internal"]
    with TestClient(create_app(settings)) as client:
        assert client.get("/collections/drainage_pipes", headers=key).status_code == 200
        with client.app.state.engine.begin() as conn:
            revoke_key(conn, "viewer-internal")
        refused = client.get("/collections/drainage_pipes", headers=key)
        assert refused.status_code == 401 and refused.json()["code"] == "Unauthorized"
        assert client.get(f"/tiles/{tile_path()}", headers=key).status_code == 401
    closed = settings.replace(access=AccessSettings(allow_anonymous=False))
    with TestClient(create_app(closed)) as client:
        for url in ["/collections", "/collections/buildings/items", f"/tiles/{tile_path()}",
                    "/3dtiles/buildings/tileset.json", "/collections/buildings/queryables"]:
            assert client.get(url).status_code == 401, url
        assert client.get("/3dtiles/buildings/tileset.json",
                          headers=world["keys"]["viewer-public"]).status_code == 200
        assert client.get("/health").status_code == 200
