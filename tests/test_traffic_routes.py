"""Emergency routes on a traffic scenario's network: the fast middle road of the test square is
the way from its west end to its east end, until a flood scenario closes it."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from cim.access import Role, create_key
from cim.app import create_app
from layers.model import Classification
from tests.test_traffic_scenarios import (
    CIM,
    EAST,
    WEST,
    X,
    Y,
    flood_scenario,
    load_ladder,
    lonlat,
    run,
)

# Light traffic: every trip keeps to the quickest route, so routes have no ties.
OD = [(WEST, EAST, 300.0)]


@pytest.fixture
def scenarios(engine, settings, tmp_path) -> dict[str, int]:
    """A dry traffic scenario and one on the roads a flood scenario floods (the middle road
    closed at 0.4 m, the south street slowed at 0.1 m)."""
    load_ladder(engine, tmp_path)
    dry = run(engine, settings, od=OD)
    flood_id = flood_scenario(engine, {"t:m": 0.4, "t:s": 0.1})
    wet = run(engine, settings, od=OD, flood_scenario_id=flood_id)
    assert dry.status == wet.status == "succeeded", (dry.error, wet.error)
    return {"dry": dry.id, "wet": wet.id, "flood": flood_id}


@pytest.fixture
def app(scenarios, settings):
    with TestClient(create_app(settings)) as client:
        yield client


def query(origin: tuple[float, float], *ends: tuple[float, float], scenario: int) -> str:
    to = "&".join(f"to={lon},{lat}" for lon, lat in ends)
    return f"/routes?from={origin[0]},{origin[1]}&{to}&scenario={scenario}"


def test_flooded_roads_are_absent_from_emergency_routes(app, scenarios):
    depot, east, north_east = lonlat(-30, 300), lonlat(610, 300), lonlat(600, 590)
    dry = app.get(query(depot, east, north_east, scenario=scenarios["dry"]))
    assert dry.status_code == 200, dry.text
    assert dry.headers["content-type"].startswith("application/geo+json")
    body = dry.json()
    assert body["type"] == "FeatureCollection" and len(body["features"]) == 2
    fast = body["features"][0]["properties"]
    assert fast["reachable"] and fast["roads"] == ["t:m"]
    assert fast["length_m"] == pytest.approx(600.0, abs=0.1)
    assert body["from_snap_m"] == pytest.approx(30.0, abs=0.5)
    assert fast["snap_m"] == pytest.approx(10.0, abs=0.5)
    assert body["features"][0]["geometry"]["type"] == "LineString"

    wet = app.get(query(depot, east, north_east, scenario=scenarios["wet"])).json()
    for feature in wet["features"]:
        assert feature["properties"]["reachable"]
        assert "t:m" not in feature["properties"]["roads"]  # closed by the flood
    around = wet["features"][0]["properties"]
    assert around["roads"] == ["t:w", "t:n", "t:e"]  # the dry north side, not the wet south
    assert around["length_m"] == pytest.approx(1200.0, abs=0.1)
    assert around["travel_time_min"] > fast["travel_time_min"]
    # The route's line follows the roads it names: it passes the north-west corner.
    coordinates = wet["features"][0]["geometry"]["coordinates"]
    assert min(abs(lon - lonlat(0, 600)[0]) + abs(lat - lonlat(0, 600)[1])
               for lon, lat in coordinates) < 1e-9


def test_unreachable_and_far_destinations_are_reported_not_errors(app, scenarios):
    depot = lonlat(0, 300)
    far = lonlat(5000, 5000)
    body = app.get(query(depot, far, lonlat(600, 0), scenario=scenarios["wet"])).json()
    nowhere, reached = (f["properties"] for f in body["features"])
    assert not nowhere["reachable"] and body["features"][0]["geometry"] is None
    assert "500 m" in nowhere["reason"]
    assert reached["reachable"]


@pytest.mark.parametrize(("path", "status", "message"), [
    ("/routes?from=114.4&to=114.4,30.5&scenario={dry}", 400, "LON,LAT"),
    ("/routes?from=114.4,95&to=114.4,30.5&scenario={dry}", 400, "longitude, latitude"),
    ("/routes?from=114.4,30.5&to=abc,30.5&scenario={dry}", 400, "LON,LAT"),
    ("/routes?from=114.4,30.5&scenario={dry}", 400, "to"),
    ("/routes?from=114.4,30.5&to=114.4,30.5&scenario=999", 404, "no scenario 999"),
    ("/routes?from=114.4,30.5&to=114.4,30.5&scenario={flood}", 400, "traffic scenario"),
    ("/routes?from=0,0&to=114.4,30.5&scenario={dry}", 400, "from any open road"),
    ("/routes?from=114.4,30.5&" + "to=114.4,30.5&" * 201 + "scenario={dry}", 400, "at most 200"),
])
def test_bad_requests(app, scenarios, path, status, message):
    response = app.get(path.format(**scenarios))
    assert response.status_code == status, response.text
    assert message in response.json()["description"]


def add_hotspot(engine, flood_id: int) -> None:
    """One hotspot around the east end of the middle road."""
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO cim.flood_hotspots (scenario_id, rank, max_depth_m, area_m2, volume_m3, "
            "buildings, people, geom) SELECT :sid, 1, 0.5, 1600, 400, 0, 0, ST_Multi("
            "ST_Transform(ST_MakeEnvelope(:x - 20, :y - 20, :x + 20, :y + 20, 4547), 4326))"),
            {"sid": flood_id, "x": X + 600, "y": Y + 300})


def test_routes_to_hotspots_respect_the_readers_clearance(app, scenarios, engine):
    add_hotspot(engine, scenarios["flood"])
    with engine.begin() as conn:
        internal = {"X-API-Key": create_key(conn, "duty", Role.viewer, Classification.internal)}
        public = {"X-API-Key": create_key(conn, "public", Role.viewer, Classification.public)}
    depot, north = lonlat(-30, 300), lonlat(0, 590)
    path = query(depot, north, scenario=scenarios["wet"]) + f"&to=hotspots:{scenarios['flood']}"
    for headers in ({}, public):  # the hotspots layer is internal: as if it did not exist
        hidden = app.get(path, headers=headers)
        assert hidden.status_code == 404 and "hotspots" in hidden.json()["description"]
    found = app.get(path, headers=internal)
    assert found.status_code == 200, found.text
    north_route, hotspot = (f["properties"] for f in found.json()["features"])
    assert north_route["reachable"] and hotspot["reachable"]
    assert hotspot["roads"] == ["t:w", "t:n", "t:e"]  # around the closed middle road
    assert hotspot["length_m"] == pytest.approx(1200.0, abs=0.1)
    for to, status, message in (("hotspots:abc", 400, "hotspots:FLOOD_SCENARIO_ID"),
                                (f"hotspots:{scenarios['dry']}", 400, "from a flood scenario"),
                                ("hotspots:999", 404, "no scenario 999")):
        refused = app.get(query(depot, north, scenario=scenarios["wet"]) + f"&to={to}",
                          headers=internal)
        assert refused.status_code == status, refused.text
        assert message in refused.json()["description"]


def test_cli_routes(scenarios, engine, settings, tmp_path):
    env = {**os.environ, "COLUMNS": "200",
           "CIM_DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    out = tmp_path / "routes.geojson"
    depot, east = lonlat(0, 300), lonlat(600, 300)
    result = subprocess.run(
        [CIM, "traffic", "routes", "--scenario", str(scenarios["wet"]),
         "--from", f"{depot[0]},{depot[1]}", "--to", f"{east[0]},{east[1]}", "--out", str(out)],
        capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert "1200 m over 3 roads" in result.stderr
    assert json.loads(out.read_text())["features"][0]["properties"]["roads"] == [
        "t:w", "t:n", "t:e"]
    add_hotspot(engine, scenarios["flood"])
    spots = subprocess.run(
        [CIM, "traffic", "routes", "--scenario", str(scenarios["wet"]),
         "--from", f"{depot[0]},{depot[1]}", "--hotspots", str(scenarios["flood"])],
        capture_output=True, text=True, timeout=60, env=env)
    assert spots.returncode == 0, spots.stderr
    assert "1200 m over 3 roads" in spots.stderr
    missing = subprocess.run([CIM, "traffic", "routes", "--scenario", "999", "--from", "1,1",
                              "--to", "1,1"], capture_output=True, text=True, timeout=60,
                             env=env)
    assert missing.returncode == 4 and "no scenario 999" in missing.stderr
