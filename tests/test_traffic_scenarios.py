"""Traffic scenarios on the city model: a square of streets with a fast road across its middle
run from the CLI, as a job through the API, with closures by id, by area and by a flood
scenario's water, and with trips that can no longer arrive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from fastapi.testclient import TestClient
from pyproj import Transformer
from shapely.geometry import LineString, box, mapping
from sqlalchemy import Engine, text

from cim.access import Role, create_key
from cim.app import create_app
from cim.ingest.pipeline import ImportOptions, import_file
from layers.model import Classification
from simulation import jobs
from simulation.traffic.closures import pregnolato_kmh, speed_fraction
from simulation.traffic.scenario import KIND, TrafficInputs
from tests.conftest import snapshot

CIM = str(Path(sys.executable).parent / "cim")
X, Y, CRS = 538_200.0, 3_374_100.0, 4547  # multiples of the 300 m zone grid
TO_LONLAT = Transformer.from_crs(CRS, 4326, always_xy=True)
# Zones of the 300 m grid: the west and east ends of the middle road, the corners.
WEST, EAST, NE, SE = "grid:0_1", "grid:2_1", "grid:2_2", "grid:2_0"
OD = [(WEST, EAST, 1500.0)]


def lonlat(x: float, y: float) -> tuple[float, float]:
    return TO_LONLAT.transform(X + x, Y + y)


def load_ladder(engine: Engine, tmp_path: Path) -> Engine:
    """West, east, south and north streets around a 600 m square, a fast primary road
    across its middle and a footway across the square. From the middle road's west end to
    its east end, three routes share no road, the middle one the quickest (0.6 min against
    2.4 min free-flow round either side)."""
    def road(rid: str, cls: str, a: tuple[float, float], b: tuple[float, float], **kw) -> dict:
        return {"rid": rid, "road_class": cls, "lanes": kw.get("lanes", np.nan),
                "max_speed_kmh": kw.get("speed", np.nan), "oneway": False,
                "geometry": LineString([(X + a[0], Y + a[1]), (X + b[0], Y + b[1])])}

    rows = [road("w", "residential", (0, 0), (0, 600)),
            road("e", "residential", (600, 0), (600, 600)),
            road("s", "residential", (0, 0), (600, 0)),
            road("n", "residential", (0, 600), (600, 600)),
            road("m", "primary", (0, 300), (600, 300), lanes=4.0, speed=60.0),
            road("foot", "footway", (0, 0), (600, 600))]
    path = tmp_path / "ladder.gpkg"
    gpd.GeoDataFrame(rows, crs=CRS).to_file(path, driver="GPKG")
    import_file(engine, path, ImportOptions(layer="roads", id_field="rid", source="t"),
                city_crs=CRS)
    return engine


def flood_scenario(engine: Engine, depths: dict[str, float]) -> int:
    """A succeeded flood scenario whose results put this much water on these roads."""
    with engine.begin() as conn:
        scenario_id = conn.scalar(text(
            "INSERT INTO cim.scenarios (kind, inputs, status, progress, created_by) "
            "VALUES ('flood', '{}', 'succeeded', 100, 't') RETURNING id"))
        for road_id, depth in depths.items():
            conn.execute(text(
                "INSERT INTO cim.flood_roads (scenario_id, road_id, max_depth_m, flood_class, "
                "flooded_length_m, geom) SELECT :sid, id, :depth, :class, 0, ST_Multi(geom) "
                "FROM cim.roads WHERE id = :road"),
                {"sid": scenario_id, "road": road_id, "depth": depth,
                 "class": "closed" if depth > 0.3 else "with_care"})
    return scenario_id


def run(engine: Engine, settings, **inputs) -> jobs.ScenarioRecord:
    """A traffic scenario run in the foreground, as ``cim traffic run`` does."""
    model = TrafficInputs(grid_m=300.0, gap=1e-6, **inputs)
    ctx = jobs.JobContext(settings.storage.root, CRS)
    with engine.connect() as conn:
        KIND.check(conn, model, ctx)
        scenario_id = jobs.start_now(conn, KIND, model, "t")
        jobs.execute(conn, ctx, KIND, scenario_id, model)
        return jobs.get(conn, scenario_id)


def links(engine: Engine, scenario_id: int) -> dict[str, dict]:
    """Per road, summed over its links: volumes before/after and the statuses."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT road_id, status, volume_before, volume_after, free_speed_kmh, max_depth_m "
            "FROM cim.traffic_links WHERE scenario_id = :id"), {"id": scenario_id}).all()
    roads: dict[str, dict] = {}
    for road_id, status, before, after, speed, depth in rows:
        entry = roads.setdefault(road_id, {"status": set(), "before": 0.0, "after": 0.0,
                                           "speed": set(), "depth": depth})
        entry["status"].add(status)
        entry["before"] += before or 0.0
        entry["after"] = None if after is None else (entry["after"] or 0.0) + after
        entry["speed"].add(round(speed, 6))
    return roads


@pytest.fixture
def ladder(engine, tmp_path):
    return load_ladder(engine, tmp_path)


def test_pregnolato_depth_speed_function():
    assert pregnolato_kmh([0.0, 100.0, 200.0]) == pytest.approx([86.94, 40.65, 12.36], abs=0.01)
    assert pregnolato_kmh([299.0, 300.0, 500.0])[1:].tolist() == [0.0, 0.0]
    assert pregnolato_kmh(299.0) > 0
    assert speed_fraction(0.0) == pytest.approx(1.0)


def test_closing_a_road_moves_its_flow_and_raises_travel_time(ladder, settings):
    record = run(ladder, settings, od=OD, close_roads=["t:m", "t:foot"])
    assert record.status == "succeeded", record.error
    assert "1 roads to close are not in the car network (not for cars" in record.log
    before, after = record.outputs["before"], record.outputs["after"]
    assert before["trips"] == after["trips"] == 1500.0
    assert before["unserved_trips"] == after["unserved_trips"] == 0.0
    assert before["relative_gap"] <= 1e-6 and after["relative_gap"] <= 1e-6
    assert after["vehicle_hours"] > before["vehicle_hours"]
    roads = links(ladder, record.id)
    assert roads["t:m"]["status"] == {"closed"} and roads["t:m"]["after"] is None
    assert roads["t:m"]["before"] > 100  # it carried traffic before
    # Its flow went round by the outer streets.
    for street in ("t:s", "t:n"):
        assert roads[street]["after"] > roads[street]["before"]
    assert roads["t:s"]["after"] + roads["t:n"]["after"] == pytest.approx(1500.0, rel=1e-6)
    assert record.outputs["links"] == {"road_links": 14, "closed": 2}
    assert "vehicle-hours" in record.log


def test_flooded_roads_slow_down_or_close(ladder, settings):
    flood_id = flood_scenario(ladder, {"t:m": 0.4, "t:s": 0.1})
    record = run(ladder, settings, od=OD, flood_scenario_id=flood_id)
    assert record.status == "succeeded", record.error
    roads = links(ladder, record.id)
    assert roads["t:m"]["status"] == {"closed"} and roads["t:m"]["depth"] == 0.4
    assert roads["t:s"]["status"] == {"flooded"}
    (speed,) = roads["t:s"]["speed"]
    assert speed == pytest.approx(30.0 * 40.6548 / 86.9448, rel=1e-4)
    assert roads["t:n"]["status"] == {"open"}
    # The slowed south street now carries less than the dry north one.
    assert roads["t:s"]["after"] < roads["t:n"]["after"]
    assert record.outputs["after"]["vehicle_hours"] > record.outputs["before"]["vehicle_hours"]


def test_closed_areas_and_unserved_trips(ladder, settings):
    # A box around the west end of the middle road closes the three roads that reach it.
    x0, y0 = lonlat(-50, 250)
    x1, y1 = lonlat(50, 350)
    area = mapping(box(x0, y0, x1, y1))
    record = run(ladder, settings, od=[*OD, (NE, SE, 200.0)], close_areas=[area])
    assert record.status == "succeeded", record.error
    after = record.outputs["after"]
    assert after["unserved_trips"] == 1500.0 and after["trips"] == 1700.0
    assert record.outputs["before"]["unserved_trips"] == 0.0
    roads = links(ladder, record.id)
    assert roads["t:m"]["status"] == roads["t:w"]["status"] == {"closed"}
    assert roads["t:s"]["status"] == roads["t:n"]["status"] == {"open"}
    assert roads["t:e"]["after"] == pytest.approx(2 * 200.0, rel=1e-6)  # both halves of it


def test_demand_from_buildings_changes_and_new_roads(ladder, settings, tmp_path):
    houses = gpd.GeoDataFrame(
        {"bid": ["home", "work"], "use": ["residential", "office"], "floors": [20, 20],
         "height": [60.0, 80.0]},
        geometry=[box(X + 20, Y + 20, X + 80, Y + 80), box(X + 620, Y + 620, X + 680, Y + 680)],
        crs=CRS)
    path = tmp_path / "houses.gpkg"
    houses.to_file(path, driver="GPKG")
    import_file(ladder, path, ImportOptions(layer="buildings", id_field="bid", source="t"),
                city_crs=CRS)
    diagonal = [lonlat(0, 0), lonlat(600, 600)]
    record = run(ladder, settings, demand_scale=1.5,
                 change_roads=[{"road_id": "t:n", "lanes": 4, "max_speed_kmh": 50}],
                 add_roads=[{"coordinates": diagonal, "road_class": "primary"}])
    assert record.status == "succeeded", record.error
    # 60 m × 60 m × 20 floors each: 72,000 m² of floor area, at the table's rates.
    produced = 720.0 * (1.2 + 0.4) * 0.1
    assert record.outputs["before"]["trips"] == pytest.approx(produced, rel=1e-6)
    assert record.outputs["after"]["trips"] == pytest.approx(1.5 * produced, rel=1e-6)
    assert "gravity" in record.log and record.outputs["demand"] == "city model"
    roads = links(ladder, record.id)
    assert roads["t:n"]["status"] == {"changed"} and roads["t:n"]["speed"] == {50.0}
    assert roads["new:1"]["status"] == {"added"} and roads["new:1"]["after"] > 0
    assert record.outputs["links"] == {"road_links": 16, "changed": 2, "added": 2}


def test_cli_runs_a_scenario_with_a_progress_bar(ladder, settings, tmp_path):
    od = tmp_path / "od.csv"
    od.write_text(f"origin,destination,trips\n{WEST},{EAST},1500\n")
    env = {**os.environ, "COLUMNS": "200", "CIM_STORAGE_ROOT": str(settings.storage.root),
           "CIM_DATABASE_URL": ladder.url.render_as_string(hide_password=False)}
    new = tmp_path / "new.geojson"
    new.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"road_class": "primary", "oneway": True},
        "geometry": {"type": "LineString", "coordinates": [lonlat(0, 0), lonlat(600, 600)]}}]}))
    result = subprocess.run([CIM, "traffic", "run", "--od", str(od), "--close", "t:m",
                             "--change", "t:n:lanes=4,max_speed_kmh=50", "--add", str(new),
                             "--grid", "300"], capture_output=True, text=True, timeout=120,
                            env=env)
    assert result.returncode == 0, result.stderr
    assert "scenario 1: done" in result.stderr and "scenario 1 succeeded" in result.stderr
    assert "after:" in result.stderr
    with ladder.connect() as conn:
        statuses = dict(conn.execute(text(
            "SELECT status, count(*) FROM cim.traffic_links WHERE scenario_id = 1 "
            "GROUP BY status")).all())
    assert statuses == {"open": 10, "closed": 2, "changed": 2, "added": 1}
    wrong = subprocess.run([CIM, "traffic", "run", "--od", str(od), "--change", "t:n:wings=2"],
                           capture_output=True, text=True, timeout=120, env=env)
    assert wrong.returncode == 2 and "wings" in wrong.stderr
    bad = subprocess.run([CIM, "traffic", "run", "--od", str(od), "--close", "t:nowhere",
                          "--grid", "300"], capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 2 and "t:nowhere" in bad.stderr


@pytest.fixture
def app(ladder, settings):
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def analyst(ladder) -> dict[str, str]:
    with ladder.begin() as conn:
        return {"X-API-Key": create_key(conn, "analyst", Role.analyst,
                                        Classification.internal)}


def test_api_queues_a_traffic_job_and_serves_its_layer(app, analyst):
    body = {"od": [list(row) for row in OD], "close_roads": ["t:m"], "grid_m": 300}
    created = app.post("/scenarios/traffic", json=body, headers=analyst)
    assert created.status_code == 201, created.text
    scenario_id = created.json()["id"]
    deadline = time.monotonic() + 60
    while (done := app.get(f"/scenarios/{scenario_id}").json())["status"] not in (
            "succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert done["status"] == "succeeded", done["error"]
    assert done["outputs"]["after"]["vehicle_hours"] > done["outputs"]["before"][
        "vehicle_hours"]
    layer = next(link["href"] for link in done["links"] if "traffic_links" in link["href"])
    features = app.get(layer + "&limit=100").json()["features"]
    assert len(features) == 14
    closed = [f for f in features if f["properties"]["road_id"] == "t:m"]
    assert {f["properties"]["status"] for f in closed} == {"closed"}
    assert all(f["properties"]["volume_after"] is None for f in closed)
    assert features[0]["geometry"]["type"] == "LineString"


@pytest.mark.parametrize(("change", "message"), [
    ({"close_roads": ["t:nowhere"]}, "t:nowhere"),
    ({"flood_scenario_id": 99}, "no flood scenario 99"),
    ({"close_areas": [{"type": "Point", "coordinates": [114.0, 30.0]}]}, "Polygon"),
    ({"close_areas": [{"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1],
                                                            [0, 0]]]}]}, "not a valid polygon"),
    ({"demand_scale": 0}, "demand_scale"),
    ({"od": [["a", "b", -1]]}, "not negative"),
    ({"change_roads": [{"road_id": "t:m"}]}, "changes nothing"),
    ({"admin_level": "ward"}, "ward"),
    ({"od": [[WEST, "grid:9_9", 10.0], ["nowhere", EAST, 5.0]], "grid_m": 300},
     "2 zone ids of the OD matrix are not zones of the network: grid:9_9, nowhere"),
    ({"gap": 0.5}, "gap"),
    ({"close_roads": ["t:m\u0000"]}, "close_roads"),
    ({"area": [114.5, 30.5, 114.4, 30.6]}, "west < east"),
])
def test_bad_inputs_are_400_and_store_nothing(app, analyst, ladder, change, message):
    before = snapshot(ladder)
    response = app.post("/scenarios/traffic", json={"od": [list(r) for r in OD], **change},
                        headers=analyst)
    assert response.status_code == 400, response.text
    assert message in response.json()["description"]
    assert snapshot(ladder) == before
