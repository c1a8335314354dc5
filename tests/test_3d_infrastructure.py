"""Infrastructure as 3D Tiles: bridges, water surfaces and the drainage network below ground,
valid (Khronos validator), at the heights the model (or the terrain) gives, with feature ids,
rebuilt incrementally, served with the layers' classifications; buildings without a ground
elevation standing on the terrain."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from fastapi.testclient import TestClient
from pyproj import Transformer
from rasterio.transform import from_origin
from shapely.geometry import LineString, Point, box
from sqlalchemy import text

from cim.access import Role, create_key
from cim.app import create_app
from cim.history import update_object
from cim.ingest.dem import import_dem
from cim.ingest.pipeline import ImportOptions, import_file
from layers.model import Classification
from tests.conftest import FIXTURES
from tests.test_3dtiles import _inside, decoded, read_glb, tiles_of, validator_reports
from tests.test_cli import cim
from tiles.raster import COPIES
from tiles.threed.api import tilesets_folder
from tiles.threed.build import build_buildings
from tiles.threed.infrastructure import (
    DECK_THICKNESS_M,
    DEFAULT_DEPTH_M,
    DEFAULT_DIAMETER_M,
    TILESETS,
    build_infrastructure,
)
from tiles.threed.writer import TILESET

X0, Y0, CELL, SIZE = 538_000.0, 3_375_000.0, 5.0, 600
TO_LONLAT = Transformer.from_crs(4547, 4326, always_xy=True)


def ground(x: float) -> float:
    """The DEM: a plane rising 1 % to the east from 20 m."""
    return 20.0 + 0.01 * (x - X0)


def _import(engine, tmp_path, layer: str, rows: list[dict]) -> None:
    path = tmp_path / f"{layer}.gpkg"
    gpd.GeoDataFrame(rows, crs="EPSG:4547").to_file(path, driver="GPKG")
    import_file(engine, path, ImportOptions(layer=layer, id_field="fid_", source="t"),
                city_crs=4547)


@pytest.fixture
def city(engine, settings, tmp_path):
    n = int(SIZE / CELL)
    x = X0 + (np.arange(n) + 0.5) * CELL
    dem = tmp_path / "plane.tif"
    with rasterio.open(dem, "w", driver="GTiff", width=n, height=n, count=1, dtype="float32",
                       crs="EPSG:4547", transform=from_origin(X0, Y0 + SIZE, CELL, CELL)) as dst:
        dst.write(np.tile(ground(x), (n, 1)).astype(np.float32), 1)
    import_dem(engine, dem, settings.storage.root, name="plane", source="t")
    _import(engine, tmp_path, "structures", [
        {"fid_": "B1", "kind": "bridge", "name": "High St bridge", "deck_elevation": 31.2,
         "clearance_m": 5.0, "geometry": LineString([(X0 + 100, Y0 + 100), (X0 + 200, Y0 + 100)])},
        {"fid_": "B2", "kind": "bridge", "clearance_m": 6.0,
         "geometry": LineString([(X0 + 300, Y0 + 300), (X0 + 380, Y0 + 300)])},
        {"fid_": "U1", "kind": "underpass", "geometry": LineString([(X0 + 10, Y0 + 10),
                                                                    (X0 + 60, Y0 + 10)])},
    ])
    _import(engine, tmp_path, "water_bodies", [
        {"fid_": "W1", "kind": "lake", "name": "East Lake", "normal_level": 22.5,
         "geometry": box(X0 + 400, Y0 + 50, X0 + 500, Y0 + 150)},
        {"fid_": "W2", "kind": "pond",
         "geometry": box(X0 + 50, Y0 + 400, X0 + 150, Y0 + 500).difference(
             box(X0 + 90, Y0 + 440, X0 + 110, Y0 + 460))},  # an island
    ])
    _import(engine, tmp_path, "drainage_nodes", [
        {"fid_": "M1", "kind": "manhole", "invert_elevation": 19.0, "ground_elevation": 21.0,
         "geometry": Point(X0 + 100, Y0 + 200)},
        {"fid_": "I1", "kind": "inlet", "geometry": Point(X0 + 360, Y0 + 200)},
    ])
    _import(engine, tmp_path, "drainage_pipes", [
        {"fid_": "P1", "diameter_m": 0.6, "upstream_invert": 19.0, "downstream_invert": 18.5,
         "geometry": LineString([(X0 + 100, Y0 + 200), (X0 + 150, Y0 + 200),
                                 (X0 + 150, Y0 + 260)])},
        {"fid_": "P2", "geometry": LineString([(X0 + 300, Y0 + 200), (X0 + 360, Y0 + 200)])},
    ])
    _import(engine, tmp_path, "buildings", [
        {"fid_": "ON_DEM", "height": 10.0, "geometry": box(X0 + 220, Y0 + 420, X0 + 240,
                                                           Y0 + 430)},
        {"fid_": "KNOWN", "height": 10.0, "ground_elevation": 50.0,
         "geometry": box(X0 + 260, Y0 + 420, X0 + 280, Y0 + 430)},
    ])
    return engine


def _build(engine, settings, out):
    return build_infrastructure(engine, out, settings.storage.root, leaf_size=2)


def _lonlat(x: float, y: float) -> np.ndarray:
    return np.array(TO_LONLAT.transform(x, y))


def _near(drawn: dict, x: float, y: float, metres: float) -> np.ndarray:
    at = _lonlat(x, y)
    dx = (drawn["lonlat"][:, 0] - at[0]) * 111_320 * np.cos(np.radians(at[1]))
    dy = (drawn["lonlat"][:, 1] - at[1]) * 110_574
    return drawn["h"][np.hypot(dx, dy) < metres]


def test_every_glb_passes_the_khronos_validator(city, settings, tmp_path):
    out = tmp_path / "3d"
    reports = _build(city, settings, out)
    assert set(reports) == set(TILESETS) == {"bridges", "water", "drainage"}
    glbs = sorted(str(p) for p in out.glob("*/*.glb"))
    assert len(glbs) >= 5
    for glb, report in validator_reports(glbs).items():
        assert report["numErrors"] == 0, (glb, report["errors"])
        assert report["numWarnings"] == 0, (glb, report["warnings"])


def test_tilesets_follow_the_3d_tiles_rules(city, settings, tmp_path):
    out = tmp_path / "3d"
    _build(city, settings, out)
    for name in TILESETS:
        document = json.loads((out / name / TILESET).read_text())
        assert document["asset"]["version"] == "1.1"
        everything = decoded(out / name)
        for tile, _, parent in tiles_of(document):
            region = tile["boundingVolume"]["region"]
            if parent is not None:
                assert tile["geometricError"] <= parent["geometricError"]
                assert _inside(region, parent["boundingVolume"]["region"])
            mine = [b for b in everything.values() if b["tile"] == tile["content"]["uri"]]
            lonlat = np.radians(np.concatenate([b["lonlat"] for b in mine]))
            h = np.concatenate([b["h"] for b in mine])
            assert lonlat[:, 0].min() >= region[0] - 1e-9 and lonlat[:, 0].max() <= region[2] + 1e-9
            assert lonlat[:, 1].min() >= region[1] - 1e-9 and lonlat[:, 1].max() <= region[3] + 1e-9
            assert h.min() >= region[4] - 0.01 and h.max() <= region[5] + 0.01


def test_heights_ids_and_properties(city, settings, tmp_path):
    out = tmp_path / "3d"
    _build(city, settings, out)
    bridges, water, drainage = (decoded(out / name) for name in ("bridges", "water", "drainage"))
    assert set(bridges) == {"t:B1", "t:B2"}  # the underpass is not a bridge
    assert set(water) == {"t:W1", "t:W2"}
    assert set(drainage) == {"t:P1", "t:P2", "t:M1", "t:I1"}
    # Bridges: the deck's top where the model says; else ground + clearance + deck.
    b1 = bridges["t:B1"]
    assert b1["h"].max() == pytest.approx(31.2, abs=0.01)
    assert b1["h"].min() == pytest.approx(31.2 - DECK_THICKNESS_M, abs=0.01)
    b2_top = ground(X0 + 340) + 6.0 + DECK_THICKNESS_M
    assert bridges["t:B2"]["h"].max() == pytest.approx(b2_top, abs=0.05)
    assert b1["props"] | {"bottom": 0} == {"id": "t:B1", "collection": "bridges",
                                           "kind": "bridge", "name": "High St bridge",
                                           "top": pytest.approx(31.2), "bottom": 0}
    # Water: flat at its normal level; without one, at the lowest shore.
    assert water["t:W1"]["h"] == pytest.approx(22.5, abs=0.01)
    assert water["t:W2"]["h"] == pytest.approx(ground(X0 + 50), abs=0.05)
    # Pipes: the inside bottom follows the inverts; defaults below the ground.
    p1 = drainage["t:P1"]
    assert _near(p1, X0 + 100, Y0 + 200, 1.0).min() == pytest.approx(19.0, abs=0.03)
    assert _near(p1, X0 + 150, Y0 + 260, 1.0).min() == pytest.approx(18.5, abs=0.03)
    assert p1["h"].max() == pytest.approx(19.0 + 0.6, abs=0.03)
    p2 = drainage["t:P2"]
    start, end = ground(X0 + 300) - DEFAULT_DEPTH_M, ground(X0 + 360) - DEFAULT_DEPTH_M
    assert _near(p2, X0 + 300, Y0 + 200, 0.5).min() == pytest.approx(start, abs=0.05)
    assert _near(p2, X0 + 360, Y0 + 200, 0.5).max() == pytest.approx(
        end + DEFAULT_DIAMETER_M, abs=0.05)
    assert p1["props"]["collection"] == "drainage_pipes"
    # Shafts: from the invert up to the ground.
    m1 = drainage["t:M1"]
    assert (m1["h"].min(), m1["h"].max()) == (pytest.approx(19.0, abs=0.01),
                                              pytest.approx(21.0, abs=0.01))
    assert m1["props"]["collection"] == "drainage_nodes" and m1["props"]["kind"] == "manhole"
    i1 = drainage["t:I1"]
    assert i1["h"].max() == pytest.approx(ground(X0 + 360), abs=0.05)
    assert i1["h"].min() == pytest.approx(ground(X0 + 360) - DEFAULT_DEPTH_M, abs=0.05)


def test_an_edit_rewrites_only_its_tile(city, settings, tmp_path):
    out = tmp_path / "3d"
    first = _build(city, settings, out)
    before = {p: p.read_bytes() for p in out.glob("*/*.glb")}
    again = _build(city, settings, out)
    assert all(r.written == 0 for r in again.values())
    with city.begin() as conn:
        update_object(conn, "drainage_pipes", "t:P1", {"downstream_invert": 18.0})
    third = _build(city, settings, out)
    assert third["drainage"].written == 1 and third["bridges"].written == 0
    after = {p: p.read_bytes() for p in out.glob("*/*.glb")}
    changed = {p for p in after if after[p] != before.get(p)}
    assert len(changed) == 1 and next(iter(changed)).parent.name == "drainage"
    assert sum(r.tiles for r in first.values()) == len(after)
    p1 = decoded(out / "drainage")["t:P1"]
    assert _near(p1, X0 + 150, Y0 + 260, 1.0).min() == pytest.approx(18.0, abs=0.03)


def test_served_with_each_layers_classification(city, settings):
    _build(city, settings, tilesets_folder(settings.storage.root))
    with TestClient(create_app(settings)) as client:
        for name in ("bridges", "water"):
            response = client.get(f"/3dtiles/{name}/tileset.json")
            assert response.status_code == 200 and "max-age" in response.headers["cache-control"]
            uri = response.json()["root"]["content"]["uri"]
            glb = client.get(f"/3dtiles/{name}/{uri}")
            assert glb.status_code == 200 and glb.headers["content-type"] == "model/gltf-binary"
        # The drainage network is internal: anonymous readers are told it does not exist.
        hidden = client.get("/3dtiles/drainage/tileset.json")
        assert hidden.status_code == 404 and hidden.json()["code"] == "NotFound"
        with client.app.state.engine.begin() as conn:
            key = {"X-API-Key": create_key(conn, "engineer", Role.viewer,
                                           Classification.internal)}
        seen = client.get("/3dtiles/drainage/tileset.json", headers=key)
        assert seen.status_code == 200 and seen.headers["cache-control"].startswith("private")
        uri = seen.json()["root"]["content"]["uri"]
        assert client.get(f"/3dtiles/drainage/{uri}").status_code == 404
        assert client.get(f"/3dtiles/drainage/{uri}", headers=key).status_code == 200
        assert client.get("/3dtiles/sewers/tileset.json", headers=key).status_code == 404


def test_buildings_without_a_ground_elevation_stand_on_the_terrain(city, settings, tmp_path):
    out = tmp_path / "buildings"
    build_buildings(city, out, storage_root=settings.storage.root)
    drawn = decoded(out)
    # The lowest DEM cell under the footprint's corners: its west edge.
    assert drawn["t:ON_DEM"]["h"].min() == pytest.approx(ground(X0 + 220), abs=0.03)
    assert drawn["t:ON_DEM"]["h"].max() == pytest.approx(ground(X0 + 220) + 10, abs=0.03)
    assert drawn["t:KNOWN"]["h"].min() == pytest.approx(50.0, abs=0.01)
    # Without the DEMs' folder the old convention holds: ground 0.
    flat = build_buildings(city, tmp_path / "flat", full=True)
    assert flat.written == flat.tiles
    assert decoded(tmp_path / "flat")["t:ON_DEM"]["h"].min() == pytest.approx(0.0, abs=0.01)


def test_winding_agrees_with_the_normals(city, settings, tmp_path):
    """Every triangle faces the way its vertices' normals say (outwards, for solids)."""
    out = tmp_path / "3d"
    _build(city, settings, out)
    for name in TILESETS:
        for glb in (out / name).glob("*.glb"):
            gltf, arrays, _ = read_glb(glb.read_bytes())
            primitive = gltf["meshes"][0]["primitives"][0]
            p = arrays[primitive["attributes"]["POSITION"]].astype(float)
            n = arrays[primitive["attributes"]["NORMAL"]].astype(float)
            t = arrays[primitive["indices"]].reshape(-1, 3)
            face = np.cross(p[t[:, 1]] - p[t[:, 0]], p[t[:, 2]] - p[t[:, 0]])
            face /= np.linalg.norm(face, axis=1, keepdims=True)
            assert ((face * n[t].mean(axis=1)).sum(axis=1) > 0.9).all(), glb


@pytest.mark.parametrize(("fixture", "count"), [("wuhan_4547.city.json", 1),
                                              ("two_buildings.city.json", 3)])
def test_cityjson_solids_are_drawn_as_they_are(engine, tmp_path, fixture, count):
    """LOD1.2 blocks of two heights in Wuhan; a gabled LOD2.2 house and an office with an
    annexe in the Netherlands (one city at a time: a tile spanning continents would need
    more than float32 offsets)."""
    import_file(engine, FIXTURES / fixture, ImportOptions(layer="buildings", source="cj"),
                city_crs=4547)
    out = tmp_path / "solids"
    build_buildings(engine, out)
    with engine.connect() as conn:
        stored = dict(conn.execute(text(
            "SELECT id, ST_AsBinary(geom_3d) FROM cim.buildings")).all())
    drawn = decoded(out)
    assert set(drawn) == set(stored) and len(stored) == count
    for building, wkb in stored.items():
        corners = shapely.get_coordinates(shapely.from_wkb(wkb), include_z=True)
        mine = drawn[building]
        assert mine["h"].min() == pytest.approx(corners[:, 2].min(), abs=0.01)
        assert mine["h"].max() == pytest.approx(corners[:, 2].max(), abs=0.01)  # the ridge
        for lon, lat, z in corners:  # every corner of every surface is drawn where it is
            near = np.hypot((mine["lonlat"][:, 0] - lon) * 96_000,
                            (mine["lonlat"][:, 1] - lat) * 111_000) < 0.01
            assert np.abs(mine["h"][near] - z).min() < 0.01, (building, lon, lat, z)
    for glb, report in validator_reports([str(p) for p in out.glob("*.glb")]).items():
        assert report["numErrors"] == 0 and report["numWarnings"] == 0, (glb, report)
    # Closed and facing out: a solid's triangles enclose a positive volume.
    document = json.loads((out / TILESET).read_text())
    for tile, _, _ in tiles_of(document):
        gltf, arrays, _ = read_glb((out / tile["content"]["uri"]).read_bytes())
        primitive = gltf["meshes"][0]["primitives"][0]
        p = arrays[primitive["attributes"]["POSITION"]].astype(float)
        t = arrays[primitive["indices"]].reshape(-1, 3)
        feature = arrays[primitive["attributes"]["_FEATURE_ID_0"]][:, 0].astype(int)
        for row in np.unique(feature):
            mine = t[feature[t[:, 0]] == row]
            a, b, c = (p[mine[:, i]] - p[mine].reshape(-1, 3).mean(axis=0) for i in range(3))
            assert np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6 > 1.0


def test_cli_builds_every_tileset_and_readies_the_terrain(city, settings):
    env = {"CIM_DATABASE_URL": city.url.render_as_string(hide_password=False),
           "CIM_STORAGE_ROOT": str(settings.storage.root)}
    first = cim("tiles", "build-3d", env=env)
    assert first.returncode == 0, first.stderr
    for line in ("buildings: 2 features", "bridges: 2 features", "water: 2 features",
                 "drainage: 4 features in 1 tiles: 1 written"):
        assert line in first.stderr
    folder = tilesets_folder(settings.storage.root)
    assert {p.parent.name for p in folder.glob("*/tileset.json")} == {
        "buildings", "bridges", "water", "drainage"}
    assert len(list((settings.storage.root / COPIES).glob("*.tif"))) == 1  # the DEM's copy
    again = cim("tiles", "build-3d", env=env)
    assert "drainage: 4 features in 1 tiles: 0 written, 0 removed, 1 unchanged" in again.stderr
