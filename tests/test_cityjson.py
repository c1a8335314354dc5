import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import shapely

from cim.ingest.cityjson import read_cityjson
from cim.ingest.errors import ReaderError

FIXTURES = Path(__file__).parent / "fixtures"
TWO_BUILDINGS = FIXTURES / "two_buildings.city.json"
WUHAN = FIXTURES / "wuhan_4547.city.json"


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def write(tmp_path: Path, doc: Any, name: str = "test.city.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


def area_3d(polygon: shapely.Polygon) -> float:
    """Area of a planar 3D ring: half the norm of the summed cross products."""
    ring = np.asarray(polygon.exterior.coords)[:-1]
    ring = ring - ring[0]
    return 0.5 * float(np.linalg.norm(np.cross(ring, np.roll(ring, -1, axis=0)).sum(axis=0)))


@pytest.fixture(scope="module")
def buildings() -> pd.DataFrame:
    return read_cityjson(TWO_BUILDINGS).set_index("source_id", drop=False)


def test_reads_buildings_and_parts_only(buildings):
    assert list(buildings["source_id"]) == ["house-1", "office-2", "office-2-annexe"]
    assert list(buildings["cityobject_type"]) == ["Building", "Building", "BuildingPart"]
    assert buildings.attrs["skipped"] == {"Road": 1, "SolitaryVegetationObject": 1}


def test_heights_come_from_the_absolute_z_of_the_highest_lod(buildings):
    # House: ground at 1.5 m, eaves at 4.5 m, ridge at 6.5 m (scale 0.001 applied).
    assert buildings.loc["house-1", "ground_elevation"] == pytest.approx(1.5)
    assert buildings.loc["house-1", "height"] == pytest.approx(5.0)
    # Office: the LOD 2.2 box (1 m to 13 m) wins over the LOD 1.2 one (1 m to 12.5 m).
    assert buildings.loc["office-2", "lod"] == "2.2"
    assert buildings.loc["office-2", "height"] == pytest.approx(12.0)
    assert buildings.loc["office-2-annexe", "ground_elevation"] == pytest.approx(1.0)
    assert buildings.loc["office-2-annexe", "height"] == pytest.approx(6.0)


def test_footprints_are_2d_multipolygons_in_file_coordinates(buildings):
    footprints = buildings.geometry
    assert set(footprints.geom_type) == {"MultiPolygon"}
    assert not footprints.has_z.any()
    assert footprints.is_valid.all()
    # 10 × 6 m house, 8 × 8 m office, 4 × 4 m annexe; translate (85000, 446000) applied.
    assert list(footprints.area) == pytest.approx([60.0, 64.0, 16.0])
    assert footprints["house-1"].bounds == pytest.approx((85000, 446000, 85010, 446006))
    assert footprints["office-2-annexe"].bounds == pytest.approx((85028, 446002, 85032, 446006))


def test_geom_3d_keeps_every_surface_with_z(buildings):
    assert buildings["geom_3d"].dtype == object
    house = buildings.loc["house-1", "geom_3d"]
    assert house.geom_type == "MultiPolygon" and house.has_z
    assert len(house.geoms) == 7  # ground, four walls (two gables), two roof slopes
    z = shapely.get_coordinates(house, include_z=True)[:, 2]
    assert (z.min(), z.max()) == pytest.approx((1.5, 6.5))
    # Two roof slopes, each 10 m long and sqrt(3² + 2²) m up the slope.
    roof = [p for p in house.geoms if min(c[2] for c in p.exterior.coords) >= 4.5]
    assert [area_3d(p) for p in roof] == pytest.approx([10 * 13**0.5] * 2)


def test_part_links_to_its_parent(buildings):
    assert buildings.loc["office-2-annexe", "parent_id"] == "office-2"
    assert pd.isna(buildings.loc["house-1", "parent_id"])
    assert pd.isna(buildings.loc["office-2", "parent_id"])


def test_attributes_become_columns(buildings):
    assert buildings.loc["house-1", "roof_shape"] == "gabled"
    assert buildings.loc["office-2-annexe", "roof_shape"] == "flat"
    assert pd.isna(buildings.loc["office-2", "roof_shape"])
    assert buildings.loc["house-1", "function"] == "residential"
    assert buildings.loc["house-1", "yearOfConstruction"] == 1998
    # Nested objects are flattened; a name that clashes with a computed column is prefixed.
    assert buildings.loc["office-2", "owner.name"] == "Municipality"
    assert buildings.loc["office-2", "attributes.height"] == 99.0
    assert buildings.loc["office-2", "height"] == pytest.approx(12.0)


def test_crs_is_the_horizontal_part_of_the_reference_system(buildings):
    assert buildings.crs.to_epsg() == 28992  # of compound EPSG:7415 (RD New + NAP)


def test_multisolid_in_cgcs2000_gauss_kruger():
    gdf = read_cityjson(WUHAN)
    assert gdf.crs.to_epsg() == 4547
    row = gdf.iloc[0]
    assert row["lod"] == "1.2"
    # Two boxes, 10 × 10 × 15 m and 10 × 10 × 30 m side by side, on ground at 20 m.
    assert row["geometry"].area == pytest.approx(200.0)
    assert row["ground_elevation"] == pytest.approx(20.0)
    assert row["height"] == pytest.approx(30.0)
    assert len(row["geom_3d"].geoms) == 12
    assert row["name"] == "光谷测试楼"
    assert (row["info.source"], row["info.year"]) == ("survey", 2019)
    # The translate was picked ~10 m from (114.4 E, 30.5 N), in Wuhan's Optics Valley.
    centre = gdf.to_crs(4326).geometry.iloc[0].centroid
    assert (centre.x, centre.y) == pytest.approx((114.4001, 30.49996), abs=1e-4)


def test_footprint_from_roof_faces_without_ground_semantics(tmp_path):
    doc = load(TWO_BUILDINGS)
    doc["CityObjects"]["house-1"]["geometry"][0]["semantics"]["values"][0][0] = None
    gdf = read_cityjson(write(tmp_path, doc))
    house = gdf.set_index("source_id").geometry["house-1"]
    # The two roof slopes project onto the same 10 × 6 m rectangle; walls add nothing.
    assert house.area == pytest.approx(60.0)
    assert house.bounds == pytest.approx((85000, 446000, 85010, 446006))


def test_no_reference_system_means_no_crs(tmp_path):
    doc = load(TWO_BUILDINGS)
    del doc["metadata"]["referenceSystem"]
    assert read_cityjson(write(tmp_path, doc)).crs is None


def test_cityjson_seq(tmp_path):
    doc = load(TWO_BUILDINGS)
    header = {key: doc[key] for key in ("type", "version", "transform", "metadata")}
    header |= {"CityObjects": {}, "vertices": []}
    objects = doc["CityObjects"]
    features = [
        {
            "type": "CityJSONFeature",
            "id": "house-1",
            "CityObjects": {"house-1": objects["house-1"]},
            "vertices": doc["vertices"],
        },
        {
            "type": "CityJSONFeature",
            "id": "office-2",
            "CityObjects": {k: objects[k] for k in ("office-2", "office-2-annexe", "road-1")},
            "vertices": doc["vertices"],
        },
    ]
    text = "\n".join(json.dumps(d) for d in [header, *features]) + "\n"
    gdf = read_cityjson(write(tmp_path, text, "test.city.jsonl"))
    assert list(gdf["source_id"]) == ["house-1", "office-2", "office-2-annexe"]
    assert list(gdf["height"]) == pytest.approx([5.0, 12.0, 6.0])
    assert gdf.crs.to_epsg() == 28992
    assert gdf.attrs["skipped"] == {"Road": 1}


def _bad_index(doc: dict[str, Any]) -> dict[str, Any]:
    doc["CityObjects"]["house-1"]["geometry"][0]["boundaries"][0][0] = [[0, 3, 2, 30]]
    return doc


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda doc: '{"type": "CityJSON", "version": "2.0", ', "is not valid JSON"),
        (
            lambda doc: {"type": "FeatureCollection", "features": []},
            "expected a CityJSON object, found 'FeatureCollection'",
        ),
        (lambda doc: doc | {"version": "3.0"}, "unsupported CityJSON version '3.0'"),
        (lambda doc: {k: v for k, v in doc.items() if k != "vertices"}, "no 'vertices' array"),
        (_bad_index, "CityObject 'house-1' has a malformed geometry (IndexError: index 30"),
        (
            lambda doc: doc | {"metadata": {"referenceSystem": "EPSG:999999"}},
            "unknown referenceSystem 'EPSG:999999'",
        ),
    ],
    ids=["truncated", "not-cityjson", "version", "no-vertices", "bad-index", "bad-crs"],
)
def test_malformed_input_raises_reader_error(tmp_path, make, message):
    path = write(tmp_path, make(load(TWO_BUILDINGS)))
    with pytest.raises(ReaderError) as info:
        read_cityjson(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_missing_file_raises_reader_error(tmp_path):
    with pytest.raises(ReaderError, match=r"cannot read .*nowhere\.city\.json"):
        read_cityjson(tmp_path / "nowhere.city.json")
