"""Flood scenarios on the city model: a tiny district (a bowl-shaped DEM, a road through the
bowl, houses on its rim, an inlet at its bottom) run from the CLI and through the API."""

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
import rasterio
from fastapi.testclient import TestClient
from rasterio.transform import from_origin
from shapely.geometry import LineString, Point, box
from sqlalchemy import text

from cim.access import Role, create_key
from cim.app import create_app
from cim.ingest.dem import import_dem
from cim.ingest.pipeline import ImportOptions, import_file
from layers.model import Classification
from tests.conftest import snapshot

CIM = str(Path(sys.executable).parent / "cim")
X0, Y0, CELL, NX, NY = 538_000.0, 3_375_000.0, 4.0, 64, 48  # a 256 m × 192 m DEM
CX, CY = X0 + NX * CELL / 2, Y0 - NY * CELL / 2  # the bowl's centre
# Small and quick: a one-hour 100-year storm on 8 m cells.
RUN = {"return_period": 100, "duration_h": 1, "cell_m": 8, "map_every_min": 30}


def _gpkg(frame: gpd.GeoDataFrame, path: Path) -> Path:
    frame.to_file(path, driver="GPKG")
    return path


@pytest.fixture
def district(engine, settings, tmp_path):
    """Ground rising 0.4 % away from a 1.5 m deep bowl; everything runs into the bowl."""
    y, x = np.mgrid[0:NY, 0:NX] * CELL
    r = np.hypot(X0 + x + CELL / 2 - CX, Y0 - y - CELL / 2 - CY)
    z = 30.0 + 0.004 * r - 1.5 * np.clip(1 - (r / 40.0) ** 2, 0, None)
    dem = tmp_path / "tiny_dem.tif"
    with rasterio.open(dem, "w", driver="GTiff", width=NX, height=NY, count=1,
                       dtype="float32", crs="EPSG:4547", transform=from_origin(X0, Y0, CELL, CELL),
                       nodata=-9999.0) as dst:
        dst.write(z.astype(np.float32), 1)
    import_dem(engine, dem, settings.storage.root, name="tiny", source="t")
    houses = gpd.GeoDataFrame(
        {"bid": ["h1", "h2", "h3"], "height": [9.0, 9.0, 30.0], "floors": [3, 3, 10],
         "use": ["residential", "residential", "office"]},
        geometry=[box(CX - 30, CY + 14, CX - 18, CY + 24), box(CX + 18, CY - 24, CX + 30, CY - 14),
                  box(X0 + 8, Y0 - 30, X0 + 28, Y0 - 10)], crs="EPSG:4547")
    road = gpd.GeoDataFrame({"rid": ["r1"], "road_class": ["residential"], "name": ["Bowl St"]},
                            geometry=[LineString([(X0 + 10, CY), (X0 + NX * CELL - 10, CY)])],
                            crs="EPSG:4547")
    nodes = gpd.GeoDataFrame(
        {"nid": ["in1", "out1"], "kind": ["inlet", "outfall"], "capacity_m3s": [0.05, None]},
        geometry=[Point(CX + 3, CY + 3), Point(X0 + 20, Y0 - NY * CELL + 20)], crs="EPSG:4547")
    pipes = gpd.GeoDataFrame(
        {"pid": ["p1"], "from_node": ["t:in1"], "to_node": ["t:out1"], "diameter_m": [0.3],
         "upstream_invert": [27.0], "downstream_invert": [26.5], "length_m": [140.0]},
        geometry=[LineString([(CX + 3, CY + 3), (X0 + 20, Y0 - NY * CELL + 20)])],
        crs="EPSG:4547")
    for name, frame, key in (("buildings", houses, "bid"), ("roads", road, "rid"),
                             ("drainage_nodes", nodes, "nid"), ("drainage_pipes", pipes, "pid")):
        import_file(engine, _gpkg(frame, tmp_path / f"{name}.gpkg"),
                    ImportOptions(layer=name, id_field=key, source="t"), city_crs=4547)
    return engine


def _scenario(engine, scenario_id: int) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT * FROM cim.scenarios WHERE id = :id"),
                                 {"id": scenario_id}).mappings().one())


def test_cli_run_publishes_roads_buildings_hotspots_and_rasters(district, settings):
    env = {**os.environ, "COLUMNS": "200", "CIM_STORAGE_ROOT": str(settings.storage.root),
           "CIM_DATABASE_URL": district.url.render_as_string(hide_password=False)}
    result = subprocess.run([CIM, "flood", "run", "--return-period", "100", "--duration", "1h",
                             "--cell", "8m", "--every", "30min"],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert "scenario 1 succeeded" in result.stderr
    scenario = _scenario(district, 1)
    assert scenario["status"] == "succeeded" and scenario["progress"] == 100
    budget = scenario["outputs"]["mass_balance"]
    assert budget["drainage"] > 0 and budget["infiltration"] > 0
    assert budget["relative_error"] < 1e-12
    with district.connect() as conn:
        road = conn.execute(text("SELECT road_id, flood_class, max_depth_m FROM cim.flood_roads "
                                 "WHERE scenario_id = 1")).one()
        houses = conn.execute(text("SELECT building_id, floors_affected, people "
                                   "FROM cim.flood_buildings ORDER BY building_id")).all()
        top = conn.execute(text("SELECT rank, people, ST_Contains(geom, ST_Transform("
                                "ST_SetSRID(ST_MakePoint(:x, :y), 4547), 4326)) "
                                "FROM cim.flood_hotspots WHERE rank = 1"),
                           {"x": CX, "y": CY}).one()
    assert road[:2] == ("t:r1", "closed") and road[2] > 0.3  # the road through the bowl
    assert [h[0] for h in houses] == ["t:h1", "t:h2"]  # on the rim, not the office up the slope
    assert all(h[1] >= 1 and h[2] > 0 for h in houses)
    assert top[0] == 1 and top[1] == pytest.approx(sum(h[2] for h in houses)) and top[2]
    folder = settings.storage.root / "scenarios" / "1"
    assert sorted(p.name for p in folder.iterdir()) == [
        "depth_001800s.tif", "depth_003600s.tif", "max_depth.tif", "summary.json"]
    with rasterio.open(folder / "max_depth.tif") as src:
        assert src.crs.to_epsg() == 4547 and src.read(1).max() > 0.3
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no staging left


@pytest.fixture
def app(district, settings):
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def keys(district) -> dict[Role, dict[str, str]]:
    with district.begin() as conn:
        return {role: {"X-API-Key": create_key(conn, role.value, role, Classification.internal)}
                for role in (Role.viewer, Role.analyst)}


def _wait(app: TestClient, scenario_id: int, statuses: set[str], timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = app.get(f"/scenarios/{scenario_id}").json()
        if body["status"] in statuses:
            return body
        time.sleep(0.2)
    raise AssertionError(f"scenario {scenario_id} still {body['status']}: {body['log']}")


def test_api_queues_a_job_the_worker_runs_and_serves_its_layers(app, keys):
    created = app.post("/scenarios/flood", json=RUN, headers=keys[Role.analyst])
    assert created.status_code == 201, created.text
    scenario_id = created.json()["id"]
    assert created.headers["Location"].endswith(f"/scenarios/{scenario_id}")
    done = _wait(app, scenario_id, {"succeeded", "failed"})
    assert done["status"] == "succeeded", done["error"]
    assert done["progress"] == 100 and "water budget" in done["log"]
    assert done["created_by"] == "analyst" and done["inputs"]["return_period"] == 100
    links = {link["title"]: link["href"] for link in done["links"]}
    raster = app.get(links["max_depth.tif"])
    assert raster.status_code == 200 and raster.content[:2] in (b"II", b"MM")
    roads = app.get(f"/collections/flood_roads/items?filter=scenario_id={scenario_id}").json()
    assert [(f["properties"]["road_id"], f["properties"]["flood_class"])
            for f in roads["features"]] == [("t:r1", "closed")]
    assert roads["features"][0]["id"] == f"{scenario_id}/t:r1"
    other = app.get(f"/collections/flood_roads/items?filter=scenario_id={scenario_id + 1}")
    assert other.json()["features"] == []
    # Buildings and hotspots are internal: a key with that clearance sees them.
    assert app.get("/collections/flood_hotspots/items").status_code == 404
    spots = app.get(f"/collections/flood_hotspots/items?filter=scenario_id={scenario_id}",
                    headers=keys[Role.viewer]).json()
    assert [f["properties"]["rank"] for f in spots["features"]] == [1]
    assert app.get(f"/scenarios/{scenario_id}/files/..%2F..%2Fsecret").status_code == 404
    assert app.post(f"/scenarios/{scenario_id}/rerun",
                    headers=keys[Role.analyst]).status_code == 409  # it succeeded
    assert app.delete(f"/scenarios/{scenario_id}", headers=keys[Role.analyst]).status_code == 204
    assert app.get(f"/scenarios/{scenario_id}").status_code == 404
    assert app.get("/collections/flood_roads/items").json()["features"] == []


@pytest.mark.parametrize(("change", "message"), [
    ({"return_period": 500}, "return_period"),
    ({"duration_h": 30}, "duration_h"),
    ({"cell_m": 0.1}, "cell_m"),
    ({"area": [100.0, 10.0, 100.1, 10.1]}, "outside every registered DEM"),
    ({"area": [114.5, 30.5, 114.4, 30.6]}, "west < east"),
    ({"rain": "lots"}, "rain"),
])
def test_bad_inputs_are_400_and_create_nothing(app, keys, district, change, message):
    before = snapshot(district)
    response = app.post("/scenarios/flood", json={**RUN, **change}, headers=keys[Role.analyst])
    assert response.status_code == 400, response.text
    assert message in response.json()["description"]
    assert snapshot(district) == before


def test_only_analysts_and_admins_run_scenarios(app, keys, district):
    assert app.post("/scenarios/flood", json=RUN).status_code == 401
    refused = app.post("/scenarios/flood", json=RUN, headers=keys[Role.viewer])
    assert refused.status_code == 403 and "analyst" in refused.json()["description"]
    with district.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM cim.scenarios")) == 0


def test_a_job_killed_mid_run_is_failed_at_restart_and_can_be_rerun(district, settings, keys):
    # A run whose process died: status running, and nobody holds its lock.
    with district.begin() as conn:
        conn.execute(text("INSERT INTO cim.scenarios (kind, inputs, status, progress, "
                          "created_by, started_at) VALUES ('flood', CAST(:inputs AS jsonb), "
                          "'running', 42, 'someone', now())"), {"inputs": json.dumps(RUN)})
    with TestClient(create_app(settings)) as app:
        failed = app.get("/scenarios/1").json()
        assert failed["status"] == "failed" and "rerun" in failed["error"]
        assert app.post("/scenarios/1/cancel", headers=keys[Role.analyst]).status_code == 409
        assert app.post("/scenarios/1/rerun", headers=keys[Role.viewer]).status_code == 403
        queued = app.post("/scenarios/1/rerun", headers=keys[Role.analyst])
        assert queued.status_code == 200 and queued.json()["error"] is None
        assert _wait(app, 1, {"succeeded", "failed"})["status"] == "succeeded"


def test_a_cancelled_job_publishes_nothing(district, settings, keys):
    with TestClient(create_app(settings)) as app:
        app.app.state.scenario_worker.stop()  # keep the job queued
        created = app.post("/scenarios/flood", json=RUN, headers=keys[Role.analyst]).json()
        cancelled = app.post(f"/scenarios/{created['id']}/cancel", headers=keys[Role.analyst])
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert app.get(f"/scenarios/{created['id']}/files/max_depth.tif").status_code == 404
    with district.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM cim.flood_roads")) == 0
