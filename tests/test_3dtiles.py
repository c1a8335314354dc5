"""3D Tiles of buildings: valid glb (Khronos validator), a valid tileset.json, vertices and
feature ids true to the database, pitched roofs, holes, incremental rebuilds, HTTP."""

from __future__ import annotations

import itertools
import json
import shutil
import struct
import subprocess
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from fastapi.testclient import TestClient
from pyproj import Transformer
from shapely.geometry import LineString, MultiPolygon, box
from sqlalchemy import text

from cim.access import Role, create_key
from cim.app import create_app
from cim.history import update_object
from cim.ingest.pipeline import ImportOptions, import_file
from layers.model import Classification
from tests.test_cli import cim
from tests.test_import_formats import X0, Y0, write
from tiles.threed.api import tilesets_folder
from tiles.threed.build import MANIFEST, TILESET, build_buildings
from tiles.threed.geodesy import to_ecef
from tiles.threed.infrastructure import build_infrastructure

NODE_TOOLS = Path(__file__).parent / "node"
TO_GEODETIC = Transformer.from_crs(4978, 4979, always_xy=True)
COMPONENTS = {5126: "<f4", 5121: "u1", 5123: "<u2", 5125: "<u4"}
WIDTH = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}


def _buildings() -> gpd.GeoDataFrame:
    """Spread over ~1.5 km so a leaf size of 2 makes a tree of several levels."""
    rows = []
    for i in range(4):
        for j in range(3):
            x, y = X0 + 400 * i + 37 * j, Y0 + 350 * j + 11 * i
            rows.append({"bid": f"B{i}{j}", "height": 10.0 + 3 * i + j, "usage": "office",
                         "ground_elevation": 20.0 + j, "geometry": box(x, y, x + 20, y + 12)})
    courtyard = box(X0, Y0 + 900, X0 + 60, Y0 + 960).difference(
        box(X0 + 20, Y0 + 920, X0 + 40, Y0 + 940))
    rows += [
        {"bid": "HOLE", "height": 24.0, "usage": "residential", "name": "Courtyard",
         "geometry": courtyard},
        {"bid": "TWO", "height": 8.0, "usage": "school",
         "geometry": MultiPolygon([box(X0 + 200, Y0 + 900, X0 + 210, Y0 + 910),
                                   box(X0 + 230, Y0 + 900, X0 + 240, Y0 + 910)])},
        {"bid": "GABLE", "height": 9.0, "usage": "residential", "roof_shape": "gabled",
         "roof_height": 3.0, "floors": 2, "geometry": box(X0 + 300, Y0 + 900, X0 + 316,
                                                          Y0 + 908)},
        {"bid": "HIP", "height": 12.0, "usage": "commercial", "roof_shape": "hipped",
         "roof_height": 4.0, "geometry": box(X0 + 340, Y0 + 900, X0 + 364, Y0 + 912)},
        {"bid": "BRIDGE", "height": 15.0, "min_height": 6.0, "usage": "public",
         "geometry": box(X0 + 400, Y0 + 900, X0 + 430, Y0 + 906)},
    ]
    return gpd.GeoDataFrame(rows, crs="EPSG:4547")


@pytest.fixture
def city(engine, tmp_path):
    import_file(engine, write(_buildings(), tmp_path / "b.gpkg", "GPKG"),
                ImportOptions(layer="buildings", id_field="bid", source="t"), city_crs=4547)
    return engine


def _build(engine, out: Path):
    return build_buildings(engine, out, leaf_size=2)


def read_glb(data: bytes) -> tuple[dict, dict[int, np.ndarray], bytes]:
    """The glTF JSON, every accessor as an array, and the binary chunk."""
    magic, version, length = struct.unpack_from("<4sII", data)
    assert (magic, version, length) == (b"glTF", 2, len(data))
    json_length, _ = struct.unpack_from("<I4s", data, 12)
    gltf = json.loads(data[20:20 + json_length])
    binary = data[28 + json_length:]
    arrays = {}
    for i, acc in enumerate(gltf["accessors"]):
        view = gltf["bufferViews"][acc["bufferView"]]
        width = WIDTH[acc["type"]]
        arrays[i] = np.frombuffer(binary, COMPONENTS[acc["componentType"]],
                                  acc["count"] * width, view["byteOffset"]).reshape(-1, width)
    return gltf, arrays, binary


def property_table(gltf: dict, binary: bytes) -> dict[str, list]:
    table = gltf["extensions"]["EXT_structural_metadata"]["propertyTables"][0]
    schema = gltf["extensions"]["EXT_structural_metadata"]["schema"]["classes"][table["class"]]
    # A column left out of the table is all no data (strings: "").
    columns: dict[str, list] = {name: [prop.get("noData")] * table["count"]
                                for name, prop in schema["properties"].items()}
    for name, prop in table["properties"].items():
        view = gltf["bufferViews"][prop["values"]]
        raw = binary[view["byteOffset"]:view["byteOffset"] + view["byteLength"]]
        if schema["properties"][name]["type"] == "STRING":
            offsets_view = gltf["bufferViews"][prop["stringOffsets"]]
            offsets = np.frombuffer(binary, "<u4", table["count"] + 1,
                                    offsets_view["byteOffset"])
            columns[name] = [raw[a:b].decode() for a, b in itertools.pairwise(offsets)]
        else:
            dtype = {"FLOAT64": "<f8", "INT32": "<i4"}[schema["properties"][name]["componentType"]]
            columns[name] = np.frombuffer(raw, dtype).tolist()
    return columns


def tiles_of(document: dict) -> list[tuple[dict, np.ndarray, dict | None]]:
    """Every tile with its composed ECEF translation and its parent."""
    found = []

    def walk(tile: dict, offset: np.ndarray, parent: dict | None) -> None:
        here = offset + np.array(tile.get("transform", [0] * 16)[12:15], dtype=float)
        found.append((tile, here, parent))
        for child in tile.get("children", []):
            walk(child, here, tile)

    walk(document["root"], np.zeros(3), None)
    return found


def decoded(out: Path) -> dict[str, dict]:
    """Per building id: its vertices in lon/lat/height, its vertex normals (ECEF), its
    property row and its tile."""
    document = json.loads((out / TILESET).read_text())
    result: dict[str, dict] = {}
    for tile, offset, _ in tiles_of(document):
        if "content" not in tile:
            continue
        gltf, arrays, binary = read_glb((out / tile["content"]["uri"]).read_bytes())
        attributes = gltf["meshes"][0]["primitives"][0]["attributes"]
        local = arrays[attributes["POSITION"]].astype(float)
        ecef = np.column_stack([local[:, 0], -local[:, 2], local[:, 1]]) + offset  # y-up
        lon, lat, h = TO_GEODETIC.transform(ecef[:, 0], ecef[:, 1], ecef[:, 2])
        feature = arrays[attributes["_FEATURE_ID_0"]][:, 0].astype(int)
        table = property_table(gltf, binary)
        for row, building in enumerate(table["id"]):
            mine = feature == row
            assert building not in result, f"{building} drawn twice"
            result[building] = {
                "lonlat": np.column_stack([lon[mine], lat[mine]]), "h": h[mine],
                "props": {k: v[row] for k, v in table.items()}, "tile": tile["content"]["uri"],
            }
    return result


def test_ecef_matches_pyproj():
    lon, lat, h = np.array([114.3, -70.0, 0.0]), np.array([30.55, -45.0, 89.9]), \
        np.array([25.0, -100.0, 8000.0])
    expected = np.column_stack(Transformer.from_crs(4979, 4978, always_xy=True)
                               .transform(lon, lat, h))
    assert np.abs(to_ecef(lon, lat, h) - expected).max() < 1e-6


def validator_reports(glbs: list[str]) -> dict[str, dict]:
    """Khronos' glTF validator's report on each glb, by path (run with Node from tests/node)."""
    node = shutil.which("node")
    assert node, "Node.js is needed to validate glb (scripts/bootstrap.sh installs it)"
    assert (NODE_TOOLS / "node_modules" / "gltf-validator").is_dir(), \
        "run `npm ci` in tests/node (scripts/bootstrap.sh does)"
    run = subprocess.run([node, str(NODE_TOOLS / "validate-gltf.mjs"), *glbs],
                         capture_output=True, text=True, check=True, timeout=120)
    reports = json.loads(run.stdout)
    assert set(reports) == set(glbs)
    return reports


def test_every_glb_passes_the_khronos_validator(city, tmp_path):
    out = tmp_path / "3d"
    _build(city, out)
    glbs = sorted(str(p) for p in out.glob("*.glb"))
    assert len(glbs) >= 5
    for glb, report in validator_reports(glbs).items():
        assert report["numErrors"] == 0, (glb, report["errors"])
        assert report["numWarnings"] == 0, (glb, report["warnings"])


def _inside(inner: list[float], outer: list[float]) -> bool:
    return (outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2]
            and inner[3] <= outer[3] and outer[4] <= inner[4] and inner[5] <= outer[5])


def test_tileset_follows_the_3d_tiles_rules(city, tmp_path):
    out = tmp_path / "3d"
    _build(city, out)
    document = json.loads((out / TILESET).read_text())
    assert document["asset"]["version"] == "1.1"
    assert document["geometricError"] >= document["root"]["geometricError"]
    assert document["root"]["refine"] in ("ADD", "REPLACE")
    everything = decoded(out)
    tiles = tiles_of(document)
    assert len(tiles) >= 5 and any(t.get("children") for t, _, _ in tiles)
    for tile, _, parent in tiles:
        region = tile["boundingVolume"]["region"]
        assert -np.pi <= region[0] <= region[2] <= np.pi
        assert -np.pi / 2 <= region[1] <= region[3] <= np.pi / 2 and region[4] <= region[5]
        assert tile.get("refine", "ADD") in ("ADD", "REPLACE")  # upper case only
        assert tile["geometricError"] >= 0
        if parent is not None:
            assert tile["geometricError"] <= parent["geometricError"]
            assert _inside(region, parent["boundingVolume"]["region"])
        if not tile.get("children"):
            assert tile["geometricError"] == 0
        if "content" in tile:
            assert (out / tile["content"]["uri"]).is_file()  # the URI resolves
            mine = [b for b in everything.values() if b["tile"] == tile["content"]["uri"]]
            lonlat = np.radians(np.concatenate([b["lonlat"] for b in mine]))
            h = np.concatenate([b["h"] for b in mine])
            tolerance = 1e-9  # radians, ~6 mm
            assert lonlat[:, 0].min() >= region[0] - tolerance
            assert lonlat[:, 1].min() >= region[1] - tolerance
            assert lonlat[:, 0].max() <= region[2] + tolerance
            assert lonlat[:, 1].max() <= region[3] + tolerance
            assert h.min() >= region[4] - 0.01 and h.max() <= region[5] + 0.01


def _database(engine) -> dict[str, dict]:
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT id, ST_AsBinary(geom), coalesce(ground_elevation, 0), min_height, height, "
            "use, floors, name FROM cim.buildings WHERE valid_to IS NULL")).all()
    return {r[0]: {"geom": shapely.from_wkb(r[1]), "bottom": r[2] + r[3], "top": r[2] + r[4],
                   "height": r[4], "use": r[5], "floors": r[6], "name": r[7]} for r in rows}


def _metres(lonlat: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Horizontal distances in metres between lon/lat rows and a point (small extents)."""
    dx = (lonlat[:, 0] - at[0]) * 111_320 * np.cos(np.radians(at[1]))
    return np.hypot(dx, (lonlat[:, 1] - at[1]) * 110_574)


def test_vertices_and_feature_ids_match_the_database(city, tmp_path):
    out = tmp_path / "3d"
    _build(city, out)
    stored, drawn = _database(city), decoded(out)
    assert set(drawn) == set(stored)  # every building once, feature ids -> the right rows
    for building, record in stored.items():
        mine = drawn[building]
        props = mine["props"]
        assert props["height"] == record["height"]
        assert props["use"] == (record["use"] or "")
        assert props["floors"] == (-1 if record["floors"] is None else record["floors"])
        assert props["name"] == (record["name"] or "")
        assert mine["h"].min() == pytest.approx(record["bottom"], abs=0.01)
        assert mine["h"].max() == pytest.approx(record["top"], abs=0.01)
        eaves = record["top"] - (3.0 if building == "t:GABLE" else 4.0 if building == "t:HIP"
                                 else 0.0)
        for corner in shapely.get_coordinates(record["geom"]):
            near = _metres(mine["lonlat"], corner) < 0.01
            heights = mine["h"][near]
            assert len(heights), f"{building}: corner {corner} not drawn"
            assert heights.min() == pytest.approx(record["bottom"], abs=0.01)
            assert heights.max() == pytest.approx(eaves, abs=0.01)


def test_holes_and_parts(city, tmp_path):
    out = tmp_path / "3d"
    _build(city, out)
    stored, drawn = _database(city), decoded(out)
    hole = stored["t:HOLE"]["geom"].geoms[0].interiors[0]
    courtyard = shapely.Polygon(hole).buffer(-0.05)
    vertices = shapely.points(drawn["t:HOLE"]["lonlat"])
    assert not shapely.contains(courtyard, vertices).any()
    at_hole = _metres(drawn["t:HOLE"]["lonlat"], np.array(hole.coords[0])) < 0.01
    assert drawn["t:HOLE"]["h"][at_hole].max() == pytest.approx(stored["t:HOLE"]["top"],
                                                                 abs=0.01)
    parts = stored["t:TWO"]["geom"].geoms
    points = shapely.points(drawn["t:TWO"]["lonlat"])
    for part in parts:
        assert shapely.intersects(part.buffer(1e-7), points).any()


def test_normals_point_outwards(city, tmp_path):
    """Winding agrees with the normals; a wall's normal leaves its footprint (into the
    courtyard for a hole's walls), roofs face up and floors down."""
    out = tmp_path / "3d"
    _build(city, out)
    stored = _database(city)
    for tile, offset, _ in tiles_of(json.loads((out / TILESET).read_text())):
        gltf, arrays, binary = read_glb((out / tile["content"]["uri"]).read_bytes())
        primitive = gltf["meshes"][0]["primitives"][0]
        attributes = primitive["attributes"]
        y_up = arrays[attributes["POSITION"]].astype(float)
        p = np.column_stack([y_up[:, 0], -y_up[:, 2], y_up[:, 1]]) + offset
        n = arrays[attributes["NORMAL"]].astype(float)
        n = np.column_stack([n[:, 0], -n[:, 2], n[:, 1]])
        triangles = arrays[primitive["indices"]].reshape(-1, 3)
        ids = np.array(property_table(gltf, binary)["id"])
        building = ids[arrays[attributes["_FEATURE_ID_0"]][:, 0].astype(int)[triangles[:, 0]]]
        a, b, c = p[triangles[:, 0]], p[triangles[:, 1]], p[triangles[:, 2]]
        face = np.cross(b - a, c - a)
        face /= np.linalg.norm(face, axis=1, keepdims=True)
        normal = n[triangles[:, 0]]
        assert np.all((face * normal).sum(axis=1) > 0.99)  # winding = normal
        middle = (a + b + c) / 3
        up = middle / np.linalg.norm(middle, axis=1, keepdims=True)  # near enough, ~0.2°
        vertical = (normal * up).sum(axis=1)
        walls = np.abs(vertical) < 0.01
        for sign, expect_inside in ((1, False), (-1, True)):
            probe = middle[walls] + sign * 0.05 * normal[walls]
            lon, lat, _ = TO_GEODETIC.transform(*probe.T)
            inside = [stored[i]["geom"].contains(shapely.Point(x, y))
                      for i, x, y in zip(building[walls], lon, lat, strict=True)]
            assert np.all(np.array(inside) == expect_inside)
        _, _, h = TO_GEODETIC.transform(*middle.T)
        bottom = np.array([stored[i]["bottom"] for i in building])
        assert np.all(vertical[~walls & (h > bottom + 0.01)] > 0.5)  # roofs up
        assert np.all(vertical[~walls & (h <= bottom + 0.01)] < -0.99)  # floors down


def test_an_edit_rewrites_only_its_tile(city, tmp_path):
    out = tmp_path / "3d"
    first = _build(city, out)
    assert first.written == first.tiles
    before = {p.name: p.read_bytes() for p in out.glob("*.glb")}
    tile_of = {b: d["tile"] for b, d in decoded(out).items()}
    again = _build(city, out)
    assert again.written == 0  # nothing changed: nothing written
    with city.begin() as conn:
        update_object(conn, "buildings", "t:B00", {"height": 10.5, "use": "industrial"})
    third = _build(city, out)
    after = {p.name: p.read_bytes() for p in out.glob("*.glb")}
    changed = {name for name in after if after[name] != before.get(name)}
    assert changed == {tile_of["t:B00"]}
    assert third.written == 1 and set(after) == set(before)
    assert decoded(out)["t:B00"]["props"]["use"] == "industrial"
    manifest = json.loads((out / MANIFEST).read_text())
    assert set(manifest["tiles"]) == {name.removesuffix(".glb") for name in after}


def test_served_with_etags(city, settings):
    out = tilesets_folder(settings.storage.root) / "buildings"
    with TestClient(create_app(settings)) as client:
        missing = client.get("/3dtiles/buildings/tileset.json")
        assert missing.status_code == 404 and "build-3d" in missing.json()["description"]
        _build(city, out)
        response = client.get("/3dtiles/buildings/tileset.json")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert "max-age" in response.headers["cache-control"]
        etag = response.headers["etag"]
        again = client.get("/3dtiles/buildings/tileset.json", headers={"If-None-Match": etag})
        assert again.status_code == 304
        uri = response.json()["root"]["content"]["uri"]
        glb = client.get(f"/3dtiles/buildings/{uri}")
        assert glb.status_code == 200 and glb.headers["content-type"] == "model/gltf-binary"
        assert glb.content == (out / uri).read_bytes() and glb.headers["etag"]
        assert client.get("/3dtiles/buildings/9-9-9.glb").status_code == 404
        assert client.get("/3dtiles/buildings/..%2Ftileset.glb").status_code == 404


def test_cli_builds_then_rewrites_nothing(city, tmp_path):
    out = tmp_path / "cli"
    env = {"CIM_DATABASE_URL": city.url.render_as_string(hide_password=False)}
    first = cim("tiles", "build-3d", "--out", str(out), env=env)
    assert first.returncode == 0, first.stderr
    assert "buildings: 17 features in 1 tiles: 1 written" in first.stderr
    second = cim("tiles", "build-3d", "--out", str(out), env=env)
    assert "buildings: 17 features in 1 tiles: 0 written, 0 removed, 1 unchanged" \
        in second.stderr
    assert json.loads((out / "buildings" / TILESET).read_text())["asset"]["version"] == "1.1"


def test_listing_names_the_built_tilesets_a_reader_may_see(city, settings, tmp_path):
    pipes = gpd.GeoDataFrame({"pid": ["P1"], "diameter_m": [0.6]}, crs="EPSG:4547",
                             geometry=[LineString([(X0, Y0 - 20), (X0 + 60, Y0 - 20)])])
    import_file(city, write(pipes, tmp_path / "pipes.gpkg", "GPKG"),
                ImportOptions(layer="drainage_pipes", id_field="pid", source="t"), city_crs=4547)
    folder = tilesets_folder(settings.storage.root)
    with TestClient(create_app(settings)) as client:
        assert client.get("/3dtiles").json() == {"tilesets": []}  # nothing built yet
        _build(city, folder / "buildings")
        build_infrastructure(city, folder, settings.storage.root)
        with city.begin() as conn:
            key = {"X-API-Key": create_key(conn, "engineer", Role.viewer,
                                           Classification.internal)}
        anonymous = client.get("/3dtiles").json()["tilesets"]
        internal = client.get("/3dtiles", headers=key).json()["tilesets"]
    built = {p.parent.name for p in folder.glob(f"*/{TILESET}")}
    assert {"buildings", "drainage"} <= built
    # The drainage network is internal: listed only for a key that may see it.
    assert {t["id"] for t in anonymous} == built - {"drainage"}
    assert {t["id"] for t in internal} == built
    drainage = next(t for t in internal if t["id"] == "drainage")
    assert drainage["layers"] == ["drainage_pipes", "drainage_nodes"]
    assert drainage["href"].endswith("/3dtiles/drainage/tileset.json")


def test_a_batch_of_concave_footprints_only_is_triangulated():
    """No convex piece at all (no fan to draw) once made the whole tile fail."""
    from tiles.threed.extrude import _triangulate

    ell = shapely.Polygon([(0, 0), (20, 0), (20, 10), (10, 10), (10, 30), (0, 30)])
    xy, _, tri = _triangulate(np.array([ell]))
    a, b, c = xy[tri[:, 0]], xy[tri[:, 1]], xy[tri[:, 2]]
    area = ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))
    assert len(tri) == 4 and (area > 0).all() and area.sum() / 2 == pytest.approx(ell.area)
