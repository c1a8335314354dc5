"""Every bad input is refused with a message that says what is wrong, and the city is unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import LineString, Point, Polygon, box

from cim.ingest.dem import import_dem
from cim.ingest.errors import CrsError, ImportRejected, MappingError, ReaderError
from cim.ingest.observations import import_observations
from cim.ingest.pipeline import ImportOptions, import_file
from tests.conftest import snapshot
from tests.test_import_formats import X0, Y0, buildings_4547, write, zipped_shapefile


@pytest.fixture
def city(engine, tmp_path):
    """A city with something in it already, so 'unchanged' is a real claim."""
    import_file(engine, write(buildings_4547(), tmp_path / "seed.gpkg", "GPKG"),
                ImportOptions(layer="buildings", id_field="bid", source="t"), city_crs=4547)
    return engine


def rejected(city, path: Path, options: ImportOptions, error: type[Exception]) -> Exception:
    before = snapshot(city)
    with pytest.raises(error) as info:
        import_file(city, path, options, city_crs=4547)
    assert snapshot(city) == before
    return info.value


def bad_buildings(tmp_path: Path, change) -> Path:
    gdf = buildings_4547()
    gdf["HEIGHT"] = gdf["HEIGHT"] + 1  # would be an update of every building if accepted
    change(gdf)
    return write(gdf, tmp_path / "bad.gpkg", "GPKG")


def reasons(exc: ImportRejected) -> list[str]:
    return [r.reason for r in exc.report.rejected]


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")
def test_no_crs_needs_crs_option(city, tmp_path):
    path = zipped_shapefile(buildings_4547(), tmp_path, with_prj=False)
    exc = rejected(city, path, ImportOptions(layer="buildings", id_field="bid", source="t"),
                   CrsError)
    assert "--crs" in str(exc)
    # with --crs it reads, and the same buildings from another format are recognised unchanged
    report = import_file(city, path, ImportOptions(layer="buildings", id_field="bid", source="t",
                                                   crs="EPSG:4547", maps=["floors=building_l"]),
                         city_crs=4547)
    assert (report.inserted, report.updated, report.unchanged) == (0, 0, 5)


def test_contradicting_crs_is_refused(city, tmp_path):
    path = write(buildings_4547(), tmp_path / "b.gpkg", "GPKG")
    exc = rejected(city, path, ImportOptions(layer="buildings", crs="EPSG:3857"), CrsError)
    assert "contradicts" in str(exc)


def test_impossible_heights(city, tmp_path):
    def change(g):
        g.loc[1, "HEIGHT"] = -3.0
        g.loc[2, "HEIGHT"] = 5000.0

    exc = rejected(city, bad_buildings(tmp_path, change),
                   ImportOptions(layer="buildings", id_field="bid", source="t"), ImportRejected)
    assert reasons(exc) == ["height -3.0 outside 0.5..1000 (field 'HEIGHT')",
                            "height 5000.0 outside 0.5..1000 (field 'HEIGHT')"]


def test_min_height_above_height(city, tmp_path):
    def change(g):
        g["min_height"] = [0, 0, 0, 50, 0]

    exc = rejected(city, bad_buildings(tmp_path, change),
                   ImportOptions(layer="buildings", id_field="bid", source="t"), ImportRejected)
    assert reasons(exc) == ["min_height 50 is not below height 14"]


def test_duplicate_ids(city, tmp_path):
    def change(g):
        g.loc[3, "bid"] = "B0"

    exc = rejected(city, bad_buildings(tmp_path, change),
                   ImportOptions(layer="buildings", id_field="bid", source="t"), ImportRejected)
    assert reasons(exc) == ["duplicate id 'B0'"]
    assert exc.report.rejected[0].row == 3


def test_wrong_and_empty_geometry(city, tmp_path):
    gdf = buildings_4547()
    gdf["HEIGHT"] = gdf["HEIGHT"] + 1
    geoms = list(gdf.geometry)
    geoms[0] = Point(X0, Y0)
    geoms[1] = Polygon()
    # collinear "polygon": make_valid turns it into a line, so no polygon is left
    geoms[2] = Polygon([(X0, Y0), (X0 + 5, Y0), (X0 + 10, Y0), (X0, Y0)])
    gdf = gdf.set_geometry(gpd.GeoSeries(geoms, crs=gdf.crs))
    exc = rejected(city, write(gdf, tmp_path / "bad.gpkg", "GPKG"),
                   ImportOptions(layer="buildings", id_field="bid", source="t"), ImportRejected)
    got = reasons(exc)
    assert got[0] == "expected polygon geometry, got Point"
    assert got[1] == "empty or missing geometry"
    assert got[2].startswith("invalid geometry (Self-intersection")
    assert got[2].endswith("that repair cannot save")


def test_coordinates_in_the_wrong_crs(city, tmp_path):
    # metres declared as degrees: the classic mistake
    gdf = buildings_4547().set_crs(4326, allow_override=True)
    exc = rejected(city, write(gdf, tmp_path / "b.gpkg", "GPKG"),
                   ImportOptions(layer="buildings", id_field="bid"), ImportRejected)
    assert all("outside the Earth" in r for r in reasons(exc))


def test_skip_invalid_loads_the_rest_and_reports(city, tmp_path):
    def change(g):
        g.loc[0, "HEIGHT"] = -1.0

    report = import_file(city, bad_buildings(tmp_path, change),
                         ImportOptions(layer="buildings", id_field="bid", source="t",
                                       skip_invalid=True), city_crs=4547)
    assert [r.source_id for r in report.rejected] == ["B0"]
    assert report.updated == 4


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ImportOptions(layer="bridges"), "unknown layer 'bridges'"),
        (ImportOptions(layer="buildings", maps=["height"]), "expected COLUMN=SOURCE_FIELD"),
        (ImportOptions(layer="buildings", maps=["colour=HEIGHT"]), "has no column 'colour'"),
        (ImportOptions(layer="buildings", maps=["height=nope"]), "has no field 'nope'"),
        (ImportOptions(layer="buildings", id_field="nope"), "--id-field 'nope'"),
        (ImportOptions(layer="buildings", crs="EPSG:999999"), "unknown CRS"),
        (ImportOptions(layer="buildings", gcj02=True),
         "--gcj02 needs longitude/latitude input, not EPSG:4547"),
    ],
)
def test_bad_options(city, tmp_path, options, message):
    path = write(buildings_4547(), tmp_path / "b.gpkg", "GPKG")
    exc = rejected(city, path, options, (MappingError, CrsError))
    assert message in str(exc)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.gpkg", None, "no such file"),
        ("broken.gpkg", b"this is not a geopackage", "cannot read as GeoPackage"),
        ("broken.geojson", b'{"type": "FeatureCollection", "features": [', "cannot read"),
        ("empty.geojson", b'{"type": "FeatureCollection", "features": []}', "no features"),
        ("table.xlsx", b"PK", "unsupported file type '.xlsx'"),
    ],
)
def test_unreadable_files(city, tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    exc = rejected(city, path, ImportOptions(layer="buildings"), ReaderError)
    assert message in str(exc)


def test_multi_layer_file_needs_source_layer(city, tmp_path):
    path = write(buildings_4547(), tmp_path / "two.gpkg", "GPKG")
    roads = gpd.GeoDataFrame({"highway": ["primary"]},
                             geometry=[LineString([(X0, Y0), (X0 + 9, Y0)])], crs=4547)
    roads.to_file(path, layer="roads", driver="GPKG")
    exc = rejected(city, path, ImportOptions(layer="buildings"), ReaderError)
    assert "--source-layer" in str(exc)


def test_pipe_needs_one_line(city, tmp_path):
    from shapely.geometry import MultiLineString

    gdf = gpd.GeoDataFrame(
        {"id": ["p1"], "diameter": [0.6]},
        geometry=[MultiLineString([[(X0, Y0), (X0 + 5, Y0)], [(X0 + 50, Y0), (X0 + 60, Y0)]])],
        crs=4547)
    exc = rejected(city, write(gdf, tmp_path / "p.gpkg", "GPKG"),
                   ImportOptions(layer="drainage_pipes"), ImportRejected)
    assert reasons(exc) == ["a single linestring is needed, got 2 disconnected parts"]


def test_bad_dem_is_refused_and_leaves_no_file(city, settings, tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    path = tmp_path / "feet.tif"
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=1, dtype="float32",
                       crs="EPSG:4547", transform=from_origin(X0, Y0, 10, 10)) as dst:
        dst.write(np.full((8, 8), 12000.0, dtype="float32"), 1)
    before = snapshot(city)
    with pytest.raises(ImportRejected) as info:
        import_dem(city, path, settings.storage.root)
    assert "impossible" in info.value.report.rejected[0].reason
    assert snapshot(city) == before
    assert not list(settings.storage.root.glob("dems/*"))
    (tmp_path / "plain.txt").write_text("x")
    with pytest.raises(ReaderError, match="not a readable raster"):
        import_dem(city, tmp_path / "plain.txt", settings.storage.root)


def test_bad_observations(city, tmp_path):
    sensors = gpd.GeoDataFrame({"id": ["g1"], "kind": ["rain_gauge"]},
                               geometry=[Point(X0, Y0)], crs=4547)
    import_file(city, write(sensors, tmp_path / "s.gpkg", "GPKG"),
                ImportOptions(layer="sensors", source="net"), city_crs=4547)
    csv = tmp_path / "obs.csv"
    csv.write_text(
        "sensor_id,observed_at,value\n"
        "g1,2026-07-01T00:00:00+08:00,1.5\n"
        "g1,2026-07-01T01:00:00,2.0\n"
        "g2,2026-07-01T00:00:00+08:00,1.0\n"
        "g1,2026-07-01T02:00:00+08:00,lots\n"
    )
    before = snapshot(city)
    with pytest.raises(ImportRejected) as info:
        import_observations(city, csv, source="net")
    assert [r.reason for r in info.value.report.rejected] == [
        "observed_at has no UTC offset (write e.g. +08:00)", "no such sensor",
        "value is not a number"]
    assert snapshot(city) == before


def test_report_is_json_serialisable(city, tmp_path):
    def change(g):
        g.loc[0, "HEIGHT"] = -1.0

    exc = rejected(city, bad_buildings(tmp_path, change),
                   ImportOptions(layer="buildings", id_field="bid", source="t"), ImportRejected)
    data = json.loads(exc.report.model_dump_json())
    assert data["status"] == "rejected" and data["rejected"][0]["source_id"] == "B0"


def test_building_with_huge_extent_is_fine(city, tmp_path):
    # a 200 km polygon is odd but real (a district boundary mistaken for a building)
    gdf = gpd.GeoDataFrame({"bid": ["huge"], "HEIGHT": [10.0]},
                           geometry=[box(X0 - 1e5, Y0 - 1e5, X0 + 1e5, Y0 + 1e5)], crs=4547)
    report = import_file(city, write(gdf, tmp_path / "h.gpkg", "GPKG"),
                         ImportOptions(layer="buildings", id_field="bid", source="h"),
                         city_crs=4547)
    assert report.inserted == 1
