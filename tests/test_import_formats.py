"""Import of each vector format, in an awkward CRS, through the real pipeline into PostGIS."""

from __future__ import annotations

import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import Polygon, box
from sqlalchemy import text

from cim.ingest.pipeline import ImportOptions, import_file

# Around Optics Valley, in CGCS2000 / Gauss-Kruger CM 114E (EPSG:4547) metres.
X0, Y0 = 538_500.0, 3_374_500.0


def buildings_4547(n: int = 5) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "bid": [f"B{i}" for i in range(n)],
            "HEIGHT": [10.0 + i for i in range(n)],
            "building:levels": [3 + i for i in range(n)],
            "usage": ["apartments", "office", "warehouse", "school", "mall"][:n],
            "note": [f"note {i}" for i in range(n)],
        },
        geometry=[box(X0 + 30 * i, Y0, X0 + 30 * i + 20, Y0 + 15) for i in range(n)],
        crs="EPSG:4547",
    )


def write(gdf: gpd.GeoDataFrame, path: Path, driver: str) -> Path:
    gdf.to_file(path, driver=driver)
    return path


def zipped_shapefile(gdf: gpd.GeoDataFrame, folder: Path, with_prj: bool = True) -> Path:
    shp = folder / "shp"
    shp.mkdir()
    gdf.to_file(shp / "buildings.shp")
    archive = folder / "buildings.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for part in shp.iterdir():
            if with_prj or part.suffix != ".prj":
                z.write(part, part.name)
    return archive


@pytest.mark.parametrize(
    ("maker", "maps"),
    [
        (lambda g, d: write(g, d / "b.gpkg", "GPKG"), []),
        (lambda g, d: write(g.to_crs(4326), d / "b.geojson", "GeoJSON"), []),
        (lambda g, d: write(g, d / "b.fgb", "FlatGeobuf"), []),
        # Shapefile cuts field names to 10 characters: --map points at the cut name.
        (lambda g, d: zipped_shapefile(g, d), ["floors=building_l"]),
    ],
    ids=["gpkg", "geojson", "flatgeobuf", "zipped-shapefile"],
)
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")
def test_vector_formats_import_with_mapping_and_crs(engine, tmp_path, maker, maps):
    gdf = buildings_4547()
    path = maker(gdf, tmp_path)
    report = import_file(engine, path, ImportOptions(layer="buildings", id_field="bid",
                                                     source="t", maps=maps), city_crs=4547)
    assert report.inserted == 5 and not report.rejected
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT id, height, floors, use, attributes->>'note', ST_SRID(geom), "
            "ST_Area(ST_Transform(geom, 4547)) FROM cim.buildings ORDER BY id")).all()
    assert [r[0] for r in rows] == [f"t:B{i}" for i in range(5)]
    assert [r[1] for r in rows] == [10.0, 11.0, 12.0, 13.0, 14.0]
    assert [r[2] for r in rows] == [3, 4, 5, 6, 7]
    assert [r[3] for r in rows] == ["residential", "office", "industrial", "education",
                                    "commercial"]
    assert rows[0][4] == "note 0"  # an unmapped field is kept, not dropped
    assert {r[5] for r in rows} == {4326}
    assert all(abs(r[6] - 300.0) < 0.01 for r in rows)


def test_gauss_kruger_round_trip_within_a_millimetre(engine, tmp_path):
    gdf = buildings_4547()
    import_file(engine, write(gdf, tmp_path / "b.gpkg", "GPKG"),
                ImportOptions(layer="buildings", id_field="bid", source="t"), city_crs=4547)
    with engine.connect() as conn:
        wkb = conn.execute(text("SELECT ST_AsBinary(geom) FROM cim.buildings ORDER BY id"))
        stored = shapely.from_wkb(list(wkb.scalars()))
    back = Transformer.from_crs(4326, 4547, always_xy=True)
    coords = shapely.get_coordinates(stored)
    x, y = back.transform(coords[:, 0], coords[:, 1])
    expected = shapely.get_coordinates(shapely.multipolygons(
        [[p] for p in gdf.geometry.to_numpy()]))
    assert np.abs(np.column_stack([x, y]) - expected).max() < 1e-3


def test_gcj02_input_is_converted_to_wgs84_within_two_metres(engine, tmp_path):
    from cim.ingest.gcj02 import wgs84_to_gcj02

    true_lon, true_lat = np.array([114.40, 114.41]), np.array([30.50, 30.51])
    glon, glat = wgs84_to_gcj02(true_lon, true_lat)
    gdf = gpd.GeoDataFrame({"sid": ["a", "b"], "kind": ["rain_gauge", "water_level"]},
                           geometry=gpd.points_from_xy(glon, glat), crs=None)
    path = write(gdf.set_crs(4326), tmp_path / "s.geojson", "GeoJSON")
    report = import_file(engine, path, ImportOptions(layer="sensors", id_field="sid",
                                                     gcj02=True), city_crs=4547)
    assert report.input_crs == "GCJ-02"
    with engine.connect() as conn:
        pts = conn.execute(text("SELECT ST_X(geom), ST_Y(geom) FROM cim.sensors ORDER BY id")).all()
    to_m = Transformer.from_crs(4326, 4547, always_xy=True)
    got = np.array(to_m.transform(*np.array(pts).T))
    want = np.array(to_m.transform(true_lon, true_lat))
    assert np.hypot(*(got - want)).max() < 2.0
    # and the offset being undone is the real one (hundreds of metres), not a no-op
    raw = np.array(to_m.transform(glon, glat))
    assert np.hypot(*(raw - want)).min() > 100


def test_invalid_geometry_is_repaired_and_reported(engine, tmp_path):
    bowtie = Polygon([(X0, Y0), (X0 + 10, Y0 + 10), (X0 + 10, Y0), (X0, Y0 + 10), (X0, Y0)])
    gdf = buildings_4547(2)
    gdf.loc[1, "geometry"] = bowtie
    report = import_file(engine, write(gdf, tmp_path / "b.gpkg", "GPKG"),
                         ImportOptions(layer="buildings", id_field="bid"), city_crs=4547)
    assert report.inserted == 2
    assert [r.source_id for r in report.repaired] == ["B1"]
    assert "Self-intersection" in report.repaired[0].reason
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT bool_and(ST_IsValid(geom)) FROM cim.buildings"))


def test_missing_heights_are_derived_and_flagged(engine, tmp_path):
    gdf = buildings_4547(3)
    gdf["HEIGHT"] = [np.nan, np.nan, 20.0]
    gdf["building:levels"] = [10, None, None]
    gdf["usage"] = ["apartments", "office", "office"]
    import_file(engine, write(gdf, tmp_path / "b.gpkg", "GPKG"),
                ImportOptions(layer="buildings", id_field="bid", source="t"), city_crs=4547)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT height, height_estimated FROM cim.buildings ORDER BY id")).all()
    assert rows == [(30.0, True), (32.0, True), (20.0, False)]


def test_linestring_z_keeps_its_heights(engine, tmp_path):
    from shapely.geometry import LineString

    gdf = gpd.GeoDataFrame(
        {"id": [1], "highway": ["primary"], "lanes": ["3"], "maxspeed": ["50 mph"]},
        geometry=[LineString([(X0, Y0, 35.5), (X0 + 100, Y0, 36.0)])], crs="EPSG:4547")
    import_file(engine, write(gdf, tmp_path / "r.gpkg", "GPKG"),
                ImportOptions(layer="roads", source="t"), city_crs=4547)
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT road_class, lanes, round(max_speed_kmh::numeric, 1), ST_ZMin(geom_3d), "
            "ST_ZMax(geom_3d), ST_NDims(geom) FROM cim.roads")).one()
    assert row == ("primary", 3, pytest.approx(80.5, abs=0.1), 35.5, 36.0, 2)


def test_dem_becomes_a_registered_cog(engine, settings, tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    from cim.ingest.dem import import_dem

    path = tmp_path / "dem.tif"
    data = (35 + np.random.default_rng(1).random((64, 64)) * 5).astype("float32")
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=1,
                       dtype="float32", crs="EPSG:4547", nodata=-9999,
                       transform=from_origin(X0, Y0 + 640, 10, 10)) as dst:
        dst.write(data, 1)
    report = import_dem(engine, path, settings.storage.root)
    assert report.inserted == 1
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT path, crs_epsg, resolution, min_elevation, max_elevation FROM cim.dems")).one()
    cog = settings.storage.root / row[0]
    with rasterio.open(cog) as src:
        assert src.crs.to_epsg() == 4547
        assert src.profile.get("tiled") and src.overviews(1) is not None
        assert np.allclose(src.read(1), data)
    assert row[1:] == (4547, 10.0, pytest.approx(float(data.min())),
                       pytest.approx(float(data.max())))
    again = import_dem(engine, path, settings.storage.root)
    assert again.unchanged == 1 and again.inserted == 0


def test_missing_measures_are_computed_in_the_city_crs_and_given_ones_kept(engine, tmp_path):
    gdf = gpd.GeoDataFrame(
        {"id": ["a", "b"], "kind": ["pond", "lake"], "area_m2": [None, 123.0]},
        geometry=[box(X0, Y0, X0 + 100, Y0 + 50), box(X0 + 500, Y0, X0 + 510, Y0 + 10)],
        crs="EPSG:4547")
    import_file(engine, write(gdf, tmp_path / "w.gpkg", "GPKG"),
                ImportOptions(layer="water_bodies", source="t"), city_crs=4547)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT area_m2, attributes FROM cim.water_bodies ORDER BY id")).all()
    assert rows[0][0] == pytest.approx(5000.0, rel=1e-6)
    assert rows[1][0] == 123.0
    assert rows[0][1] == {} and rows[1][1] == {}
