"""Comparing two traffic scenarios on the test square: A closes the fast middle road, B floods
the south street shut, C adds a diagonal road; over HTTP (the one comparison route of every
kind) and from the CLI."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from cim.app import create_app
from tests.conftest import snapshot
from tests.test_traffic_scenarios import (
    CIM,
    OD,
    flood_scenario,
    load_ladder,
    lonlat,
    run,
)


def per_link(engine: Engine, scenario_id: int) -> dict[tuple[str, bytes], dict]:
    """A scenario's links keyed by road and directed geometry, as stored."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT road_id, ST_AsBinary(geom), status, volume_after, voc_after, "
            "speed_after_kmh, delay_after_s FROM cim.traffic_links WHERE scenario_id = :id"),
            {"id": scenario_id}).all()
    return {(r[0], bytes(r[1])): {"status": r[2], "volume": r[3], "voc": r[4], "speed": r[5],
                                  "delay": r[6]} for r in rows}


@pytest.fixture
def pair(engine, settings, tmp_path) -> dict[str, int]:
    load_ladder(engine, tmp_path)
    closed = run(engine, settings, od=OD, close_roads=["t:m"])
    flood_id = flood_scenario(engine, {"t:s": 0.4})
    flooded = run(engine, settings, od=OD, flood_scenario_id=flood_id)
    added = run(engine, settings, od=OD, close_roads=["t:m"], add_roads=[
        {"coordinates": [lonlat(0, 0), lonlat(600, 600)], "road_class": "primary"}])
    for record in (closed, flooded, added):
        assert record.status == "succeeded", record.error
    return {"a": closed.id, "b": flooded.id, "c": added.id, "flood": flood_id}


@pytest.fixture
def app(pair, settings):
    with TestClient(create_app(settings)) as client:
        yield client


def test_comparison_over_http(app, pair, engine):
    a, b = pair["a"], pair["b"]
    response = app.get(f"/scenarios/{a}/compare/{b}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["kind"] == "traffic" and (body["a"], body["b"]) == (a, b)
    with engine.connect() as conn:
        outputs = {i: conn.scalar(text("SELECT outputs FROM cim.scenarios WHERE id = :id"),
                                  {"id": i}) for i in (a, b)}
    for side, scenario in (("totals_a", a), ("totals_b", b)):
        for name in ("vehicle_hours", "vehicle_km", "unserved_trips", "trips"):
            assert body[side][name] == pytest.approx(outputs[scenario]["after"][name])
    assert body["totals_change"]["vehicle_hours"] == pytest.approx(
        outputs[b]["after"]["vehicle_hours"] - outputs[a]["after"]["vehicle_hours"])
    assert (body["links_compared"], body["links_in_a_only"], body["links_in_b_only"]) == (
        14, 0, 0)
    links_a, links_b = per_link(engine, a), per_link(engine, b)
    # The middle road is closed in A only; in B it carries the traffic the south street lost.
    (middle,) = body["closed_in_a_only"]
    assert middle["road_id"] == "t:m" and middle["links"] == 2
    assert middle["volume_in_other"] == pytest.approx(sum(
        v["volume"] for (road, _), v in links_b.items() if road == "t:m"))
    assert middle["volume_in_other"] > 100
    (south,) = body["closed_in_b_only"]
    assert south["road_id"] == "t:s" and south["volume_in_other"] == pytest.approx(sum(
        v["volume"] for (road, _), v in links_a.items() if road == "t:s"))
    top = body["largest_changes"][0]
    assert abs(top["volume_change"]) == max(abs(c["volume_change"])
                                           for c in body["largest_changes"])

    (link,) = body["links"]
    assert link["href"].endswith(f"/scenarios/{a}/compare/{b}/links.geojson")
    geojson = app.get(link["href"])
    assert geojson.status_code == 200
    assert geojson.headers["content-type"].startswith("application/geo+json")
    features = geojson.json()["features"]
    assert len(features) == 14
    # Every link's figures are A's and B's stored ones, and the change is B − A.
    by_key = {}
    for (road, wkb), figures in links_a.items():
        by_key.setdefault(road, []).append((figures, links_b[(road, wkb)]))
    for feature in features:
        p = feature["properties"]
        assert feature["geometry"]["type"] == "LineString"
        pairs = by_key[p["road_id"]]
        matches = [(fa, fb) for fa, fb in pairs if fa["volume"] == p["volume_a"]
                   and fb["volume"] == p["volume_b"] and fa["status"] == p["status_a"]]
        assert matches, p
        fa, fb = matches[0]
        assert p["volume_change"] == pytest.approx((fb["volume"] or 0) - (fa["volume"] or 0))
        if fa["speed"] is not None and fb["speed"] is not None:
            assert p["speed_change_kmh"] == pytest.approx(fb["speed"] - fa["speed"])
            assert p["delay_change_s"] == pytest.approx(fb["delay"] - fa["delay"])
        else:
            assert p["speed_change_kmh"] is None


def test_links_in_one_scenario_only(app, pair):
    body = app.get(f"/scenarios/{pair['a']}/compare/{pair['c']}").json()
    # C adds the diagonal both ways; the closures are the same.
    assert (body["links_compared"], body["links_in_a_only"], body["links_in_b_only"]) == (
        14, 0, 2)
    assert body["closed_in_a_only"] == body["closed_in_b_only"] == []
    new = [c for c in body["largest_changes"] if c["road_id"] == "new:1"]
    assert new and new[0]["link_a"] is None and new[0]["volume_b"] > 0


def test_mixed_kinds_unfinished_and_unknown_are_refused(app, pair, engine):
    before = snapshot(engine)
    mixed = app.get(f"/scenarios/{pair['a']}/compare/{pair['flood']}")
    assert mixed.status_code == 409 and "one kind" in mixed.json()["description"]
    assert app.get(f"/scenarios/{pair['a']}/compare/999").status_code == 404
    unknown = app.get(f"/scenarios/{pair['a']}/compare/{pair['b']}/max_depth_difference.tif")
    assert unknown.status_code == 404
    assert snapshot(engine) == before
    with engine.begin() as conn:
        conn.execute(text("UPDATE cim.scenarios SET status = 'failed' WHERE id = :id"),
                     {"id": pair["b"]})
    for path in ("", "/links.geojson"):
        refused = app.get(f"/scenarios/{pair['a']}/compare/{pair['b']}{path}")
        assert refused.status_code == 409 and "succeeded" in refused.json()["description"]


def test_cli_compare(pair, engine, settings, tmp_path):
    env = {**os.environ, "COLUMNS": "200", "CIM_STORAGE_ROOT": str(settings.storage.root),
           "CIM_DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    out = tmp_path / "links.geojson"
    done = subprocess.run([CIM, "traffic", "compare", str(pair["a"]), str(pair["b"]),
                           "--out", str(out)], capture_output=True, text=True, timeout=120,
                          env=env)
    assert done.returncode == 0, done.stderr
    assert "compare: done" in done.stderr and "vehicle hours" in done.stderr, done.stderr
    assert f"1 roads closed in {pair['a']} only:" in done.stderr, done.stderr
    assert "t:m: 2 links" in done.stderr
    document = json.loads(out.read_text())
    assert document["type"] == "FeatureCollection" and len(document["features"]) == 14
    mixed = subprocess.run([CIM, "traffic", "compare", str(pair["a"]), str(pair["flood"])],
                           capture_output=True, text=True, timeout=120, env=env)
    assert mixed.returncode == 2 and "traffic scenarios" in mixed.stderr
    missing = subprocess.run([CIM, "traffic", "compare", str(pair["a"]), "77"],
                             capture_output=True, text=True, timeout=120, env=env)
    assert missing.returncode != 0 and "no scenario 77" in missing.stderr
