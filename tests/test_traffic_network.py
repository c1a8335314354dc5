"""The car network built from roads imported into the real PostGIS test database."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from shapely.geometry import LineString, box
from typer.testing import CliRunner

from cim.cli.main import app
from cim.ingest.pipeline import ImportOptions, import_file
from simulation.traffic.assignment import Demand, assign
from simulation.traffic.network import DEFAULTS, network_from_database

X, Y = 538_000.0, 3_374_000.0
CRS = 4547


def road(rid: str, road_class: str, coords: list[tuple[float, float]], **values) -> dict:
    row = {"rid": rid, "road_class": road_class, "lanes": np.nan, "max_speed_kmh": np.nan,
           "oneway": False, "bridge": False, "capacity_vph": np.nan,
           "geometry": LineString([(X + x, Y + y) for x, y in coords])}
    return row | values


@pytest.fixture
def roads(engine, tmp_path: Path):
    """A 3 × 3 street grid 200 m apart; a bridge over the middle street from the bottom
    street to the top one; a one-way loop on the east side; a footway."""
    rows = [road(f"h{i}", "residential", [(0, 200 * i), (400, 200 * i)]) for i in range(3)]
    rows += [road(f"v{i}", "primary", [(200 * i, 0), (200 * i, 400)], lanes=4.0,
                  max_speed_kmh=50.0) for i in range(3)]
    rows += [road("bridge", "secondary", [(100, 0), (100, 400)], bridge=True),
             road("ow", "tertiary", [(400, 400), (500, 400), (500, 200), (400, 200)],
                  oneway=True, lanes=2.0, capacity_vph=1000.0),
             road("foot", "footway", [(0, 0), (400, 400)])]
    path = tmp_path / "roads.gpkg"
    gpd.GeoDataFrame(rows, crs=CRS).to_file(path, driver="GPKG")
    import_file(engine, path, ImportOptions(layer="roads", id_field="rid", source="t"),
                city_crs=CRS)
    return engine


def node_near(nodes: gpd.GeoDataFrame, x: float, y: float) -> np.ndarray:
    return np.flatnonzero(shapely.distance(nodes.geometry.values,
                                           shapely.Point(X + x, Y + y)) < 0.05)


def test_network_from_the_city_model(roads):
    built = network_from_database(roads, CRS, grid_m=300.0)
    links, nodes, report = built.links, built.nodes, built.report
    road_links = links[~links["connector"]]
    assert report.excluded == {"footway": 1} and report.car_roads == 8
    assert report.dropped_links == 0 and report.ramp_cuts == 2
    # The bridge crosses the middle street with no junction, and joins the streets it ends on.
    assert node_near(nodes, 100, 200).size == 0
    bottom, top = node_near(nodes, 100, 0), node_near(nodes, 100, 400)
    assert bottom.size == 1 and top.size == 1
    bridge = road_links[road_links["road_id"] == "t:bridge"]
    assert sorted(zip(bridge["from_node"], bridge["to_node"], strict=True)) == sorted(
        [(bottom[0], top[0]), (top[0], bottom[0])])
    assert bridge["length_m"].to_numpy() == pytest.approx([400.0, 400.0], abs=0.05)
    # The one-way road has one link, along its drawn direction.
    oneway = road_links[road_links["road_id"] == "t:ow"]
    assert len(oneway) == 1
    assert oneway["from_node"].iloc[0] == node_near(nodes, 400, 400)[0]
    assert oneway["to_node"].iloc[0] == node_near(nodes, 400, 200)[0]
    assert oneway["capacity_vph"].iloc[0] == 1000.0  # data, all of it one way
    # Defaults by class where data is missing; a two-way road's totals split in half.
    street = road_links[road_links["road_id"] == "t:h1"]
    residential = DEFAULTS["residential"]
    assert (street["speed_kmh"] == residential.speed_kmh).all()
    assert (street["capacity_vph"] == residential.lanes * residential.lane_capacity_vph / 2).all()
    assert street["free_flow_min"].sum() == pytest.approx(2 * 400 / 1000 / 30 * 60, rel=1e-6)
    primary = road_links[road_links["road_id"] == "t:v1"]
    assert (primary["speed_kmh"] == 50.0).all()
    assert (primary["capacity_vph"] == 4 * DEFAULTS["primary"].lane_capacity_vph / 2).all()
    # Grid zones with centroids joined both ways; the network carries traffic.
    network = built.network
    assert network.num_zones == len(built.zones) >= 4 and not network.through_zones
    assert (links.loc[links["connector"], "road_class"] == "connector").all()
    trips = np.full((network.num_zones, network.num_zones), 50.0)
    result = assign(network, Demand(trips))
    assert result.converged and result.vehicle_km > 0


def test_zones_from_administrative_units(roads, tmp_path):
    units = gpd.GeoDataFrame(
        {"uid": ["west", "east", "far"], "level": ["subdistrict"] * 3},
        geometry=[box(X - 50, Y - 50, X + 250, Y + 450), box(X + 250, Y - 50, X + 550, Y + 450),
                  box(X + 900, Y, X + 1000, Y + 100)], crs=CRS)
    path = tmp_path / "units.gpkg"
    units.to_file(path, driver="GPKG")
    import_file(roads, path, ImportOptions(layer="admin_units", id_field="uid", source="a"),
                city_crs=CRS)
    built = network_from_database(roads, CRS, admin_level="subdistrict", connectors=3)
    assert sorted(built.zones["zone_id"]) == ["a:east", "a:far", "a:west"]
    assert built.report.zones_without_nodes == 1  # "far" joins the nearest node outside it
    connectors = built.links[built.links["connector"]]
    assert len(connectors) == 2 * (3 + 3 + 1)


def test_cli_writes_the_network(roads, tmp_path):
    out = tmp_path / "net.gpkg"
    env = {"CIM_DATABASE_URL": roads.url.render_as_string(hide_password=False)}
    result = CliRunner().invoke(app, ["traffic", "network", "--out", str(out), "--grid", "300"],
                                env=env)
    assert result.exit_code == 0, result.output
    assert "roads are for cars" in result.output
    links = gpd.read_file(out, layer="links")
    assert links.crs.to_epsg() == CRS and {"from_node", "to_node", "capacity_vph"} <= set(links)
    assert len(gpd.read_file(out, layer="nodes")) > 0
    bad = CliRunner().invoke(app, ["traffic", "network", "--out", str(tmp_path / "n.shp")],
                             env=env)
    assert bad.exit_code == 2 and "GeoPackage" in bad.output


def test_an_area_keeps_the_roads_touching_it(roads):
    from pyproj import Transformer

    from simulation.traffic.errors import TrafficInputError

    to_lonlat = Transformer.from_crs(CRS, 4326, always_xy=True)
    # A box over the east edge of the grid and the one-way loop beyond it.
    west, south = to_lonlat.transform(X + 350, Y + 150)
    east, north = to_lonlat.transform(X + 550, Y + 450)
    built = network_from_database(roads, CRS, grid_m=300.0, area=(west, south, east, north))
    assert set(built.links["road_id"].dropna()) == {"t:ow", "t:h1", "t:h2", "t:v2"}
    far = to_lonlat.transform(X + 50_000, Y)
    with pytest.raises(TrafficInputError, match="no current roads in the area"):
        network_from_database(roads, CRS, area=(*far, far[0] + 0.01, far[1] + 0.01))
