"""The demo city generator: determinism, layers and columns, and the plausibility of what it
makes (no database needed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import rasterio
import shapely
from pyproj import Transformer

from cim.demo.frame import load_real_data
from cim.demo.generate import DemoFiles, generate_city
from cim.schema.models import CITY_CLASSES

# The real building sample near Optics Valley Square: generated buildings stay out of it.
SAMPLE_BBOX_LONLAT = (114.383, 30.501, 114.406, 30.515)

REQUIRED = {
    "roads": {"road_class", "lanes", "max_speed_kmh", "oneway", "bridge", "tunnel", "capacity_vph"},
    "buildings": {
        "use",
        "floors",
        "height",
        "min_height",
        "year_built",
        "roof_shape",
        "status",
        "address_id",
        "ground_elevation",
    },
    "water_bodies": {"kind", "area_m2", "normal_level", "warning_level"},
    "drainage_nodes": {"kind", "invert_elevation", "ground_elevation", "capacity_m3s"},
    "drainage_pipes": {
        "shape",
        "diameter_m",
        "upstream_invert",
        "downstream_invert",
        "length_m",
        "roughness",
        "material",
        "from_node",
        "to_node",
    },
    "catchments": {"outlet_node", "area_m2", "impervious_fraction"},
    "structures": {"kind", "road_id", "clearance_m", "low_point_elevation", "length_m"},
    "assets": {"asset_type", "subtype", "status"},
    "sensors": {"kind", "unit", "status", "target_id"},
    "addresses": {"full_address", "street", "house_number", "postcode", "admin_code"},
    "admin_units": {"level", "code", "parent_code"},
}
REFERENCES = [
    ("buildings", "address_id", "addresses"),
    ("drainage_pipes", "from_node", "drainage_nodes"),
    ("drainage_pipes", "to_node", "drainage_nodes"),
    ("catchments", "outlet_node", "drainage_nodes"),
    ("structures", "road_id", "roads"),
]


@dataclass
class City:
    files: DemoFiles
    layers: dict[str, gpd.GeoDataFrame]
    dem: np.ndarray
    transform: rasterio.Affine
    readings: pd.DataFrame

    def sample(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        col = (np.asarray(x) - self.transform.c) // self.transform.a
        row = (np.asarray(y) - self.transform.f) // self.transform.e
        return self.dem[row.astype(int), col.astype(int)]


def _open(files: DemoFiles) -> City:
    layers = {
        name: pyogrio.read_dataframe(files.vector, layer=name)
        for name, _ in pyogrio.list_layers(files.vector)
    }
    with rasterio.open(files.dem) as src:
        dem, transform = src.read(1), src.transform
    return City(files, layers, dem, transform, pd.read_csv(files.observations))


def _make(tmp_path_factory: pytest.TempPathFactory, **kwargs: int | None) -> City:
    return _open(generate_city(tmp_path_factory.mktemp("demo"), **kwargs))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> City:
    return _make(tmp_path_factory, seed=11, buildings=400)


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> City:
    return _make(tmp_path_factory)


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> City:
    # Large enough for the district to reach the real building sample's box.
    return _make(tmp_path_factory, seed=5, buildings=110_000)


def _same(a: gpd.GeoDataFrame, b: gpd.GeoDataFrame) -> bool:
    geometry_equal = np.array_equal(
        shapely.to_wkb(a.geometry.values), shapely.to_wkb(b.geometry.values)
    )
    return geometry_equal and a.drop(columns="geometry").equals(b.drop(columns="geometry"))


def test_same_seed_same_city_other_seed_other_city(
    small: City, tmp_path_factory: pytest.TempPathFactory
) -> None:
    again = _make(tmp_path_factory, seed=11, buildings=400)
    assert again.layers.keys() == small.layers.keys()
    for name, layer in small.layers.items():
        assert _same(layer, again.layers[name]), name
    assert np.array_equal(small.dem, again.dem)
    assert small.files.observations.read_bytes() == again.files.observations.read_bytes()
    assert small.files.summary == again.files.summary

    other = _make(tmp_path_factory, seed=12, buildings=400)
    assert not _same(small.layers["buildings"], other.layers["buildings"])
    assert not np.array_equal(small.dem, other.dem)


def test_every_layer_is_there_with_its_columns(small: City) -> None:
    assert set(small.layers) == set(REQUIRED)
    for name, layer in small.layers.items():
        assert len(layer), name
        assert layer.crs.to_epsg() == 4547
        assert REQUIRED[name] | {"source_id", "name"} <= set(layer.columns), name
        model_columns = set(CITY_CLASSES[name].__table__.columns.keys())
        assert set(layer.columns) - {"geometry"} <= model_columns, name
        assert layer["source_id"].is_unique, name
        info = pyogrio.read_info(small.files.vector, layer=name)
        assert info["geometry_name"] == "geometry", name
    buildings = pyogrio.read_info(small.files.vector, layer="buildings")
    assert buildings["geometry_type"] == "MultiPolygon"
    assert small.files.summary["buildings"] == len(small.layers["buildings"])
    assert small.files.summary["observations"] == len(small.readings)


def test_references_resolve(small: City) -> None:
    layers = small.layers
    for layer, column, target in REFERENCES:
        values = layers[layer][column].dropna()
        assert len(values) and values.isin(layers[target]["source_id"]).all(), (layer, column)
    targets = pd.concat([layers[t]["source_id"] for t in ("water_bodies", "structures", "roads")])
    assert layers["sensors"]["target_id"].dropna().isin(targets).all()
    assert small.readings["sensor_id"].isin(layers["sensors"]["source_id"]).all()
    admin = layers["admin_units"]
    assert layers["addresses"]["admin_code"].isin(admin["code"]).all()
    assert admin["parent_code"][admin["level"] != "district"].isin(admin["code"]).all()


def test_buildings_are_valid_apart_and_plausible(district: City) -> None:
    buildings = district.layers["buildings"]
    assert 15_000 <= len(buildings) <= 30_000
    geoms = buildings.geometry.values
    assert shapely.is_valid(geoms).all()
    left, right = shapely.STRtree(geoms).query(geoms, "intersects")
    assert (left == right).all(), "footprints overlap"

    floors, height = buildings["floors"], buildings["height"]
    assert (floors >= 1).all()
    known = height.notna()
    assert 0.02 < 1 - known.mean() < 0.09  # some heights are left for the importer
    ratio = height[known] / floors[known]
    assert ratio.between(2.5, 12.0).all()
    assert (height[known] < 200).all()
    residential = buildings["use"] == "residential"
    assert (residential & (floors >= 18)).sum() > 100  # high-rise residential towers
    assert (buildings.loc[buildings["use"] == "industrial", "floors"] <= 3).all()
    assert set(buildings["use"]) == {
        "residential",
        "commercial",
        "office",
        "industrial",
        "public",
        "education",
        "healthcare",
    }
    assert (buildings["roof_shape"] == "flat").mean() > 0.5
    assert (buildings["status"] == "existing").mean() > 0.9
    years = buildings["year_built"].dropna()
    assert years.between(1995, 2024).mean() > 0.85
    assert (buildings["min_height"] == 0).all()
    ground = buildings["ground_elevation"]
    assert ground.between(district.dem.min(), district.dem.max()).all()


def test_dem_is_plausible_and_streets_lie_below_plots(district: City) -> None:
    with rasterio.open(district.files.dem) as src:
        assert src.crs.to_epsg() == 4547
        assert src.nodata == -9999
        assert src.dtypes[0] == "float32"
    assert district.dem.min() > 26 and district.dem.max() < 52
    assert district.files.summary["dem_cells"] == district.dem.size

    roads = district.layers["roads"]
    lines = roads.geometry.values[~roads["bridge"].to_numpy()]
    mid = shapely.get_coordinates(shapely.line_interpolate_point(lines, 0.5, normalized=True))
    a = shapely.get_coordinates(shapely.get_point(lines, 0))
    b = shapely.get_coordinates(shapely.get_point(lines, -1))
    across = (b - a)[:, ::-1] * [-1, 1] / np.linalg.norm(b - a, axis=1)[:, None]
    street = district.sample(*mid.T)
    plots = (district.sample(*(mid + 25 * across).T) + district.sample(*(mid - 25 * across).T)) / 2
    assert 0.1 < np.mean(plots - street) < 0.6


def test_water_sits_in_its_basin(district: City) -> None:
    water = district.layers["water_bodies"]
    assert {"lake"} <= set(water["kind"])
    assert (water["normal_level"] < water["warning_level"]).all()
    for polygon, normal in zip(water.geometry.values, water["normal_level"], strict=True):
        inside = shapely.get_coordinates(shapely.point_on_surface(polygon))
        assert district.sample(*inside.T)[0] < normal
        bank = shapely.get_coordinates(shapely.buffer(polygon, 40).exterior)
        assert np.median(district.sample(*bank.T)) > normal


def test_structures(district: City) -> None:
    structures = district.layers["structures"]
    underpasses = structures[structures["kind"] == "underpass"]
    bridges = structures[structures["kind"] == "bridge"]
    assert len(underpasses) and len(bridges)
    depth = underpasses["deck_elevation"] - underpasses["low_point_elevation"]
    assert (depth > 3).all()  # the trench where waterlogging happens
    roads = district.layers["roads"].set_index("source_id")
    assert roads.loc[underpasses["road_id"], "tunnel"].all()
    assert roads.loc[bridges["road_id"], "bridge"].all()


def test_drainage_flows_downhill_to_outfalls(district: City) -> None:
    pipes, nodes = district.layers["drainage_pipes"], district.layers["drainage_nodes"]
    assert (pipes["upstream_invert"] > pipes["downstream_invert"]).all()
    assert pipes["diameter_m"].between(0.3, 2.0).all()
    assert (pipes["length_m"] > 0).all()
    assert set(nodes["kind"]) >= {"manhole", "inlet", "outfall", "pumping_station"}
    assert (nodes["invert_elevation"] < nodes["ground_elevation"]).all()
    assert nodes.loc[nodes["kind"] == "pumping_station", "capacity_m3s"].gt(0).all()
    # Every pipe leads on to an outfall, and each node has one pipe out at most.
    assert pipes["from_node"].is_unique
    outfalls = set(nodes.loc[nodes["kind"] == "outfall", "source_id"])
    downstream = dict(zip(pipes["from_node"], pipes["to_node"], strict=True))
    for start in pipes["from_node"].iloc[::97]:
        node = start
        while node in downstream:
            node = downstream[node]
        assert node in outfalls
    lake_outfall = nodes[(nodes["kind"] == "outfall") & nodes["name"].str.contains("排口")]
    assert len(lake_outfall)
    catchments = district.layers["catchments"]
    assert catchments["impervious_fraction"].between(0, 1).all()


def test_streets_join_the_real_roads(district: City) -> None:
    real = load_real_data()
    roads = district.layers["roads"]
    ends = shapely.get_point(roads.geometry.values, -1)
    starts = shapely.get_point(roads.geometry.values, 0)
    network = shapely.multilinestrings(real.roads.geometry)
    on_real = (shapely.distance(ends, network) < 0.5) | (shapely.distance(starts, network) < 0.5)
    assert on_real.sum() >= 10
    assert set(roads["road_class"]) == {
        "primary",
        "secondary",
        "tertiary",
        "residential",
        "service",
    }
    assert (roads["name"].str.len() > 0).all()


def test_observations(small: City) -> None:
    readings = small.readings
    assert list(readings.columns) == ["sensor_id", "observed_at", "value", "quality"]
    assert readings["observed_at"].str.endswith("+08:00").all()
    times = pd.to_datetime(readings["observed_at"])
    assert times.min() == pd.Timestamp("2026-06-24T00:00+08:00")
    assert times.max() == pd.Timestamp("2026-06-30T23:00+08:00")
    sensors = small.layers["sensors"].set_index("source_id")
    kind = readings["sensor_id"].map(sensors["kind"])
    assert set(kind) == {"rain_gauge", "water_level", "traffic_counter", "bridge_monitor"}
    assert readings.groupby("sensor_id").size().max() == 7 * 24
    rain = readings.loc[kind == "rain_gauge", "value"]
    assert (rain == 0).mean() > 0.5 and rain.max() > 20  # mostly dry, one storm
    assert readings["quality"].isin([0, 1]).all()


def test_scaling_gives_the_buildings_asked_for(large: City) -> None:
    assert len(large.layers["buildings"]) == 110_000
    assert len(large.layers["addresses"]) == 110_000


def test_buildings_keep_out_of_the_real_sample(large: City) -> None:
    to_metric = Transformer.from_crs("EPSG:4326", "EPSG:4547", always_xy=True)
    sample = shapely.box(*to_metric.transform_bounds(*SAMPLE_BBOX_LONLAT))
    district = large.layers["admin_units"].query("level == 'district'").geometry.iloc[0]
    assert district.intersects(sample)  # the test means something
    assert not shapely.intersects(large.layers["buildings"].geometry.values, sample).any()


def test_progress_is_reported(tmp_path: Path) -> None:
    calls: list[tuple[str, float]] = []
    generate_city(tmp_path, buildings=200, progress=lambda s, f: calls.append((s, f)))
    fractions = [f for _, f in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(calls) >= 4
