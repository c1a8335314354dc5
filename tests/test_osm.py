from pathlib import Path

import geopandas as gpd
import osmium
import pytest
from pyproj import Geod

from cim.ingest.errors import ReaderError
from cim.ingest.osm import LAYERS, read_osm

OSM = Path(__file__).parent / "fixtures" / "wuhan_sample.osm"


@pytest.fixture(scope="module")
def pbf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The XML fixture rewritten as PBF with pyosmium's writer."""
    path = tmp_path_factory.mktemp("osm") / "wuhan_sample.osm.pbf"
    with osmium.SimpleWriter(path) as writer:
        for obj in osmium.FileProcessor(OSM):
            writer.add(obj)
    return path


def by_id(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    return gdf.set_index("source_id", drop=False)


def test_buildings_from_ways_parts_and_multipolygons():
    gdf = by_id(read_osm(OSM, "buildings"))
    assert sorted(gdf.index) == ["relation/200", "way/100", "way/110"]
    assert gdf.crs.to_epsg() == 4326
    assert set(gdf.geom_type) == {"MultiPolygon"}
    house = gdf.loc["way/100"]
    assert house["building"] == "residential"
    assert (house["building:levels"], house["height"], house["roof:shape"]) == ("6", "20", "flat")
    assert (house["addr:street"], house["addr:housenumber"]) == ("珞喻路", "1037")
    assert house["name"] == "测试楼"
    part = gdf.loc["way/110"]
    assert (part["building:part"], part["min_height"], part["building:min_level"]) == (
        "yes",
        "5",
        "2",
    )
    assert gdf["building"].isna()["way/110"]


def test_building_footprint_size():
    footprint = by_id(read_osm(OSM, "buildings")).geometry["way/100"]
    # 0.0002° × 0.0002° at 30.55° N on WGS84, where a degree is N·cos φ·π/180 ≈ 95 950 m
    # east and M·π/180 ≈ 110 863 m north: 19.19 m × 22.17 m.
    area, _ = Geod(ellps="WGS84").geometry_area_perimeter(footprint)
    assert abs(area) == pytest.approx(19.19 * 22.173, rel=1e-3)


def test_multipolygon_relation_keeps_its_hole():
    courtyard = by_id(read_osm(OSM, "buildings")).loc["relation/200"]
    polygon = courtyard.geometry.geoms[0]
    assert len(courtyard.geometry.geoms) == 1
    assert len(polygon.interiors) == 1
    # 0.0004° square outer ring minus 0.0002° square inner ring, in degrees².
    assert polygon.area == pytest.approx(0.0004**2 - 0.0002**2, rel=1e-6)
    assert courtyard["building:levels"] == "3"
    assert courtyard["name"] == "Courtyard House"


def test_truncated_features_are_counted_not_read():
    gdf = read_osm(OSM, "buildings")
    assert "way/108" not in set(gdf["source_id"])
    assert gdf.attrs["skipped"] == {"way: missing nodes": 1, "relation: not assembled": 1}


def test_roads_with_their_tags():
    gdf = by_id(read_osm(OSM, "roads"))
    # The footway is no road; tertiary way 109 lost a node to truncation.
    assert sorted(gdf.index) == ["way/103", "way/104"]
    assert gdf.attrs["skipped"] == {"way: missing nodes": 1}
    assert set(gdf.geom_type) == {"LineString"}
    primary = gdf.loc["way/103"]
    assert list(primary.geometry.coords) == [
        (114.299, 30.549),
        (114.303, 30.549),
        (114.305, 30.5492),
    ]
    tags = ("highway", "lanes", "maxspeed", "oneway", "bridge", "layer", "surface", "name")
    assert tuple(primary[list(tags)]) == (
        "primary",
        "4",
        "60",
        "yes",
        "yes",
        "1",
        "asphalt",
        "珞喻路",
    )
    assert gdf["lanes"].isna()["way/104"]


def test_water_bodies_and_waterways():
    lakes = read_osm(OSM, "water_bodies")
    assert list(lakes["source_id"]) == ["way/106", "way/111"]
    assert (lakes["landuse"][1], lakes["name"][1]) == ("reservoir", "Test Reservoir")
    assert (lakes["natural"][0], lakes["water"][0], lakes["name"][0]) == ("water", "lake", "沙湖")
    # Triangle with a 0.002° base and 0.0015° height.
    assert lakes.geom_type[0] == "MultiPolygon"
    assert lakes.geometry[0].area == pytest.approx(0.002 * 0.0015 / 2, rel=1e-6)

    rivers = read_osm(OSM, "waterways")
    assert list(rivers["source_id"]) == ["way/107"]
    assert (rivers["waterway"][0], rivers["width"][0], rivers["name"][0]) == (
        "river",
        "1500",
        "长江",
    )
    assert len(rivers.geometry[0].coords) == 3


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_pbf_reads_the_same_as_xml(pbf, layer):
    xml_gdf, pbf_gdf = read_osm(OSM, layer), read_osm(pbf, layer)
    assert len(pbf_gdf) > 0
    assert list(pbf_gdf["source_id"]) == list(xml_gdf["source_id"])
    assert pbf_gdf.geom_equals(xml_gdf.geometry).all()
    assert pbf_gdf.drop(columns="geometry").equals(xml_gdf.drop(columns="geometry"))
    assert pbf_gdf.attrs["skipped"] == xml_gdf.attrs["skipped"]


def test_a_layer_with_no_features_is_an_empty_frame(tmp_path):
    path = tmp_path / "nodes.osm"
    path.write_text(
        '<osm version="0.6"><node id="1" version="1" lat="30.5" lon="114.3"/></osm>',
        encoding="utf-8",
    )
    gdf = read_osm(path, "roads")
    assert len(gdf) == 0
    assert {"source_id", "highway", "maxspeed", "geometry"} <= set(gdf.columns)
    assert gdf.crs.to_epsg() == 4326


def test_unknown_layer_lists_the_supported_ones():
    with pytest.raises(ReaderError, match="buildings, roads, water_bodies, waterways"):
        read_osm(OSM, "trees")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("broken.osm", "<osm version='0.6'><node id=", "is not a readable OSM file"),
        ("broken.osm.pbf", "not a protobuf at all", "is not a readable OSM file"),
        ("roads.geojson", "{}", "not an OSM file"),
    ],
)
def test_unreadable_files_raise_reader_error(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ReaderError, match=message):
        read_osm(path, "roads")


def test_missing_file_raises_reader_error(tmp_path):
    with pytest.raises(ReaderError, match="no such file"):
        read_osm(tmp_path / "absent.osm.pbf", "roads")
