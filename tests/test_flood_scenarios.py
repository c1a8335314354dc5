"""Flood scenarios on the city model: a tiny district (a bowl-shaped DEM, a road through the
bowl, houses on its rim, an inlet at its bottom) run from the CLI and through the API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from fastapi.testclient import TestClient
from pyproj import Transformer
from rasterio.transform import from_origin
from shapely.geometry import LineString, Point, box, mapping
from sqlalchemy import text

from cim.access import Role, create_key
from cim.app import create_app
from cim.ingest.dem import import_dem
from cim.ingest.observations import import_observations
from cim.ingest.pipeline import ImportOptions, import_file
from layers.model import Classification
from simulation import jobs
from simulation.flood.compare import compare
from simulation.flood.scenario import KIND, FloodInputs
from simulation.jobs import JobContext
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
    # One underpass dips through the bowl, one crosses the slope up by the office.
    underpasses = gpd.GeoDataFrame(
        {"sid": ["u1", "u2"], "kind": ["underpass", "underpass"],
         "name": ["Bowl underpass", "Slope underpass"]},
        geometry=[LineString([(CX - 36, CY - 6), (CX + 36, CY - 6)]),
                  LineString([(X0 + 40, Y0 - 12), (X0 + 90, Y0 - 12)])], crs="EPSG:4547")
    pipes = gpd.GeoDataFrame(
        {"pid": ["p1"], "from_node": ["t:in1"], "to_node": ["t:out1"], "diameter_m": [0.3],
         "upstream_invert": [27.0], "downstream_invert": [26.5], "length_m": [140.0]},
        geometry=[LineString([(CX + 3, CY + 3), (X0 + 20, Y0 - NY * CELL + 20)])],
        crs="EPSG:4547")
    for name, frame, key in (("buildings", houses, "bid"), ("roads", road, "rid"),
                             ("drainage_nodes", nodes, "nid"), ("drainage_pipes", pipes, "pid"),
                             ("structures", underpasses, "sid")):
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
        "arrival_time.tif", "depth_001800s.tif", "depth_003600s.tif", "max_depth.tif",
        "max_velocity.tif", "summary.json"]
    with rasterio.open(folder / "max_depth.tif") as src:
        assert src.crs.to_epsg() == 4547 and src.read(1).max() > 0.3
        deep = src.read(1) > 0.15
    with rasterio.open(folder / "arrival_time.tif") as src:
        arrival = src.read(1, masked=True)
    # Flooded cells have a time of first flooding within the hour; the others none.
    assert (~arrival.mask == deep).all() and arrival.min() > 0 and arrival.max() <= 3600
    with rasterio.open(folder / "max_velocity.tif") as src:
        assert 0 < src.read(1).max() < 5
    with district.connect() as conn:
        under = conn.execute(text("SELECT id, flood_class, max_depth_m FROM "
                                  "cim.flood_underpasses ORDER BY id")).all()
    assert [u[:2] for u in under] == [("1/t:u1", "closed"), ("1/t:u2", "passable")]
    assert under[0][2] > 0.3 and under[1][2] < 0.05
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
    ({"rain": {"kind": "hyetograph", "rows": [[0, 5], [0, 6]]}}, "increase strictly"),
    ({"rain": {"kind": "recorded", "start": "2020-01-01T00:00:00Z",
               "end": "2020-01-01T01:00:00Z"}}, "no rain gauge"),
    ({"rain": {"kind": "recorded", "start": "2020-01-01T00:00:00Z",
               "end": "2020-01-03T00:00:00Z"}}, "within 24 h"),
    ({"measures": {"green_roofs": [{"buildings": ["t:nope"], "retention_mm": 30}]}},
     "no current building"),
    ({"measures": {"storage_ponds": [{"area": {"type": "Point", "coordinates": [114, 30]},
                                      "volume_m3": 5}]}}, "Polygon"),
    ({"measures": {"drainage": {"inlet_factor": 0}}}, "inlet_factor"),
    ({"name": "night\u0000storm"}, "NUL character"),
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


def _run(engine, settings, **change) -> dict:
    """A scenario run in-process, as ``cim flood run`` runs it; returns its row."""
    inputs = FloodInputs.model_validate({**RUN, **change})
    ctx = JobContext(settings.storage.root, 4547)
    with engine.connect() as conn:
        KIND.check(conn, inputs, ctx)
        scenario_id = jobs.start_now(conn, KIND, inputs, "test")
        jobs.execute(conn, ctx, KIND, scenario_id, inputs)
    row = _scenario(engine, scenario_id)
    assert row["status"] == "succeeded", row["error"]
    return row


def _lonlat_box(x0: float, y0: float, x1: float, y1: float) -> dict:
    to_lonlat = Transformer.from_crs(4547, 4326, always_xy=True)
    return mapping(shapely.transform(box(x0, y0, x1, y1), to_lonlat.transform,
                                     interleaved=False))


def test_measures_lower_the_flooded_volume_and_compare(district, settings, keys):
    base = _run(district, settings)
    sponge = _run(district, settings, measures={
        "storage_ponds": [{"area": _lonlat_box(CX - 16, CY - 16, CX + 16, CY + 16),
                           "volume_m3": 1500}],
        "green_roofs": [{"buildings": ["t:h1", "t:h2"], "retention_mm": 40}],
        "permeable_pavement": [{"area": _lonlat_box(X0, Y0 - NY * CELL, CX - 40, Y0),
                                "infiltration_mm_h": 30}],
        "drainage": {"inlet_factor": 2, "pipe_factor": 2,
                     "pumps": [{"at": Transformer.from_crs(4547, 4326, always_xy=True)
                                .transform(CX, CY), "m3s": 0.05}]}})
    a, b = base["outputs"], sponge["outputs"]
    assert b["flooded_volume_m3"] < 0.8 * a["flooded_volume_m3"]
    assert b["mass_balance"]["retention"] > 0 and a["mass_balance"]["retention"] == 0
    assert b["mass_balance"]["drainage"] > a["mass_balance"]["drainage"]
    assert b["mass_balance"]["relative_error"] < 1e-12
    assert "storage pond: 1500 m³" in sponge["log"] and "green roofs: 2 buildings" in sponge["log"]
    # The stored city is untouched: the measures lived in the scenario's copy only.
    with district.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM cim.water_bodies")) == 0

    out = settings.storage.root / "difference.tif"
    with district.connect() as conn:
        result = compare(conn, JobContext(settings.storage.root, 4547), base["id"],
                         sponge["id"], out)
    assert result.flooded_volume_a_m3 == a["flooded_volume_m3"]
    assert result.shallower_cells > 0 and result.largest_fall_m > 0.1
    assert not result.roads_flooded_in_b_only
    with rasterio.open(out) as src:
        change = src.read(1, masked=True)
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    assert change.min() < -0.1  # shallower with the measures

    with TestClient(create_app(settings)) as app:
        body = app.get(f"/scenarios/{base['id']}/compare/{sponge['id']}")
        assert body.status_code == 200, body.text
        assert body.json()["shallower_cells"] == result.shallower_cells
        raster = app.get(body.json()["links"][0]["href"])
        assert raster.status_code == 200 and raster.content[:2] in (b"II", b"MM")
        assert app.get(f"/scenarios/{base['id']}/compare/99").status_code == 404
        with district.begin() as conn:
            conn.execute(text("UPDATE cim.scenarios SET status = 'failed' WHERE id = :id"),
                         {"id": sponge["id"]})
        refused = app.get(f"/scenarios/{base['id']}/compare/{sponge['id']}")
        assert refused.status_code == 409 and "succeeded" in refused.json()["description"]


def test_cli_compare(district, settings):
    base, wetter = _run(district, settings), _run(district, settings, peak=0.2)
    env = {**os.environ, "COLUMNS": "200", "CIM_STORAGE_ROOT": str(settings.storage.root),
           "CIM_DATABASE_URL": district.url.render_as_string(hide_password=False)}
    out = settings.storage.root / "cli-difference.tif"
    done = subprocess.run([CIM, "flood", "compare", str(base["id"]), str(wetter["id"]),
                           "--out", str(out)], capture_output=True, text=True, timeout=120,
                          env=env)
    assert done.returncode == 0, done.stderr
    assert "roads flooded in" in done.stderr and out.exists()
    missing = subprocess.run([CIM, "flood", "compare", str(base["id"]), "77"],
                             capture_output=True, text=True, timeout=120, env=env)
    assert missing.returncode != 0 and "no scenario 77" in missing.stderr


def test_inline_hyetograph_and_recorded_rain(district, settings, tmp_path):
    rows = [[0, 30.0], [30, 90.0], [60, 0.0]]  # 15 + 45 mm in an hour
    given = _run(district, settings, rain={"kind": "hyetograph", "rows": rows})
    assert given["outputs"]["rain_mm"] == pytest.approx(60.0)
    assert given["outputs"]["mass_balance"]["relative_error"] < 1e-12

    # Two gauges, west and east of the bowl, report every 10 minutes for an hour.
    gauges = gpd.GeoDataFrame(
        {"gid": ["g1", "g2"], "kind": ["rain_gauge", "rain_gauge"], "unit": ["mm/h", "mm/h"]},
        geometry=[Point(X0 + 10, CY), Point(X0 + NX * CELL - 10, CY)], crs="EPSG:4547")
    import_file(district, _gpkg(gauges, tmp_path / "gauges.gpkg"),
                ImportOptions(layer="sensors", id_field="gid", source="t"), city_crs=4547)
    start = datetime(2026, 6, 29, 14, tzinfo=UTC)
    readings = tmp_path / "readings.csv"
    readings.write_text("sensor_id,observed_at,value,quality\n" + "".join(
        f"{g},{(start + timedelta(minutes=m)).isoformat()},{v},0\n"
        for g, v in (("g1", 20.0), ("g2", 60.0)) for m in range(0, 60, 10)))
    import_observations(district, readings, source="t")
    window = {"kind": "recorded", "start": start.isoformat(),
              "end": (start + timedelta(hours=1)).isoformat(), "method": "thiessen"}
    recorded = _run(district, settings, rain=window)
    out = recorded["outputs"]
    # Thiessen: each half of the grid gets its own gauge's 20 or 60 mm.
    assert 20.0 < out["rain_mm"] < 60.0 and out["rain_mm"] == pytest.approx(40.0, abs=2.0)
    assert out["mass_balance"]["relative_error"] < 1e-12
    assert "from 2 gauges (thiessen)" in recorded["log"]
