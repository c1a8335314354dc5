"""Demand: trip ends from floor area by use, the gravity model calibrated by Hyman's method,
imported OD matrices."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import Point, box

from cim.ingest.pipeline import ImportOptions, import_file
from simulation.traffic.demand import (
    RATES,
    TripEnds,
    distribute,
    furness,
    od_matrix,
    read_floor_area,
    read_od_csv,
    served,
    trip_ends,
)
from simulation.traffic.errors import TrafficInputError
from tests.test_traffic_assignment import two_routes

X, Y, CRS = 538_200.0, 3_374_100.0, 4547


def zones() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"zone_id": ["a", "b"]},
                            geometry=[box(X, Y, X + 300, Y + 300),
                                      box(X + 300, Y, X + 600, Y + 300)], crs=CRS)


def test_trip_ends_follow_floor_area_by_use():
    buildings = gpd.GeoDataFrame(
        {"use": ["residential", "office", "warehouse", "office"],
         "floor_area_m2": [10_000.0, 5_000.0, 1_000.0, 7_000.0]},
        # The warehouse lies outside both zones: it counts in the nearest one, b; the last
        # office is more than 1 km from both, out of the network's reach.
        geometry=[Point(X + 100, Y + 100), Point(X + 400, Y + 100), Point(X + 700, Y + 100),
                  Point(X + 5000, Y)], crs=CRS)
    ends = trip_ends(buildings, zones(), peak_hour_factor=0.1)
    home, work, other = RATES["residential"], RATES["office"], RATES["other"]
    assert ends.produced == pytest.approx(
        [100 * home.produced * 0.1, (50 * work.produced + 10 * other.produced) * 0.1])
    attracted = np.array([100 * home.attracted, 50 * work.attracted + 10 * other.attracted])
    assert ends.attracted == pytest.approx(attracted * ends.produced.sum() / attracted.sum())
    assert ends.attracted.sum() == pytest.approx(ends.produced.sum())
    assert ends.floor_area["other"] == pytest.approx([0.0, 1000.0])
    assert ends.left_out_m2 == 7000.0


def test_furness_meets_both_margins():
    produced, attracted = np.array([100.0, 50.0, 30.0]), np.array([20.0, 60.0, 100.0])
    weight = np.exp(-0.3 * np.array([[1.0, 3.0, 5.0], [3.0, 1.0, 2.0], [5.0, 2.0, 1.0]]))
    trips, iterations = furness(produced, attracted, weight)
    assert trips.sum(axis=1) == pytest.approx(produced, rel=1e-5)
    assert trips.sum(axis=0) == pytest.approx(attracted, rel=1e-5)
    assert iterations < 200


def test_hyman_calibration_reaches_the_target_mean_trip_time():
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 10, (12, 2))
    cost = 2.0 * np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1)) + 1.0
    ends = TripEnds(rng.uniform(10, 100, 12), rng.uniform(10, 100, 12), {})
    ends = TripEnds(ends.produced, ends.attracted * ends.produced.sum() / ends.attracted.sum(),
                    {})
    fitted = distribute(ends, cost, mean_trip_min=6.0)
    trips = fitted.demand.trips
    assert np.sum(trips * cost) / trips.sum() == pytest.approx(6.0, rel=0.005)
    assert fitted.beta > 0 and fitted.iterations <= 10 and fitted.note is None
    assert trips.sum(axis=1) == pytest.approx(ends.produced, rel=1e-4)
    # A shorter target needs a stronger deterrence.
    assert distribute(ends, cost, mean_trip_min=4.0).beta > fitted.beta
    with pytest.raises(TrafficInputError, match="more than this network allows"):
        distribute(ends, cost, mean_trip_min=60.0)
    with pytest.raises(TrafficInputError, match="produce no trips"):
        distribute(TripEnds(np.zeros(12), np.zeros(12), {}), cost)


def test_scenes_too_small_to_calibrate_fall_back_to_no_deterrence(caplog):
    # One zone: every trip stays in it and takes no time.
    with caplog.at_level("WARNING", logger="simulation.traffic.demand"):
        alone = distribute(TripEnds(np.array([10.0]), np.array([10.0]), {}), np.zeros((1, 1)))
    assert alone.beta == 0.0 and alone.note is not None and "no trip time" in alone.note
    assert alone.demand.trips.tolist() == [[10.0]]
    assert "β not calibrated, 0 (no deterrence)" in caplog.text
    # One zone produces, the other attracts: every trip goes from a to b whatever β.
    cost = np.array([[1.0, 5.0], [5.0, 1.0]])
    fixed = distribute(TripEnds(np.array([10.0, 0.0]), np.array([0.0, 10.0]), {}), cost)
    assert fixed.beta == 0.0 and "fix the mean trip time at 5 min" in fixed.note
    assert fixed.demand.trips == pytest.approx(np.array([[0.0, 10.0], [0.0, 0.0]]))
    assert fixed.mean_trip_min == pytest.approx(5.0)
    # An explicit target stays an error: the user asked for something the scene cannot give.
    with pytest.raises(TrafficInputError, match="more than this network allows"):
        distribute(TripEnds(np.array([10.0]), np.array([10.0]), {}), np.zeros((1, 1)),
                   mean_trip_min=5.0)


def test_od_matrix_from_rows_and_csv(tmp_path: Path):
    demand = od_matrix([("a", "b", 10.0), ("a", "b", 5.0), ("b", "a", 2.5)], ["a", "b"])
    assert demand.trips.tolist() == [[0.0, 15.0], [2.5, 0.0]] and demand.total == 17.5
    with pytest.raises(TrafficInputError, match=r"1 zone ids .*: c"):
        od_matrix([("a", "c", 1.0)], ["a", "b"])
    good = tmp_path / "od.csv"
    good.write_text("origin,destination,trips\na,b,12\nb,a,3.5\n")
    assert read_od_csv(good) == [("a", "b", 12.0), ("b", "a", 3.5)]
    bad = tmp_path / "bad.csv"
    bad.write_text("origin,destination,trips\na,b,12\nb,a,lots\n")
    with pytest.raises(TrafficInputError, match="line 3: trips 'lots'"):
        read_od_csv(bad)
    header = tmp_path / "header.csv"
    header.write_text("from,to,n\na,b,1\n")
    with pytest.raises(TrafficInputError, match="origin,destination,trips"):
        read_od_csv(header)


def test_served_leaves_out_trips_no_path_joins():
    network, demand = two_routes()
    both = od_matrix([("0", "1", 100.0), ("1", "0", 40.0)], ["0", "1"])
    kept, unserved = served(network, both)  # links only run from zone 0 to zone 1
    assert kept.trips.tolist() == [[0.0, 100.0], [0.0, 0.0]] and unserved == 40.0
    assert served(network, demand)[1] == 0.0


def test_floor_area_from_the_city_model(engine, tmp_path: Path):
    frame = gpd.GeoDataFrame(
        {"bid": ["h", "o", "x"], "use": ["residential", "office", None],
         "floors": [10, None, 2], "height": [30.0, 12.0, 7.0]},
        geometry=[box(X, Y, X + 20, Y + 10), box(X + 100, Y, X + 110, Y + 10),
                  box(X + 200, Y, X + 205, Y + 10)], crs=CRS)
    path = tmp_path / "b.gpkg"
    frame.to_file(path, driver="GPKG")
    import_file(engine, path, ImportOptions(layer="buildings", id_field="bid", source="t"),
                city_crs=CRS)
    with engine.connect() as conn:
        read = read_floor_area(conn, CRS).sort_values("floor_area_m2")
    # Footprint × floors; floors from height / 3 m where missing; no use counts as other.
    assert read["floor_area_m2"].to_numpy() == pytest.approx([100.0, 400.0, 2000.0], rel=1e-3)
    assert read["use"].tolist() == ["other", "office", "residential"]
