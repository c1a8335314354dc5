"""Fuzzing the input surfaces with hypothesis: CQL2 text, bbox, datetime, limit/offset and
feature bodies for writes. Every answer is a success or a 4xx with an OGC body (never a 500),
within a deadline (never a hang), and a rejected write leaves every table as it was."""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cim.access import Role, create_key
from cim.app import create_app
from cim.settings import LimitsSettings
from layers.model import Classification
from tests import test_features_api
from tests.conftest import snapshot

city = test_features_api.city  # fixture
FUZZ = settings(max_examples=150, deadline=5000, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
ITEMS = "/collections/buildings/items"


@pytest.fixture
def client(city, settings):
    # The fuzzer's hundreds of requests from one address are not what the rate limit is for.
    with TestClient(create_app(settings.replace(limits=LimitsSettings(enabled=False)))) as c:
        yield c


@pytest.fixture
def editor(city):
    with city.begin() as conn:
        return {"X-API-Key": create_key(conn, "fuzz", Role.editor, Classification.public)}


def answered(response, allowed=(200, 204, 400, 404)) -> None:
    event(f"HTTP {response.status_code}")
    assert response.status_code in allowed, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"code", "description"} and body["description"]


# CQL2 text: random characters, and sentences made of the grammar's own pieces.
NAMES = st.sampled_from(["height", "use", "name", "floors", "id", "geometry", "nope", '"use"'])
LITERALS = st.one_of(
    st.integers(-10**12, 10**12).map(str), st.floats(allow_nan=False).map(repr),
    st.text(string.printable, max_size=8).map(lambda s: "'" + s.replace("'", "''") + "'"),
    st.sampled_from(["TRUE", "NULL", "POINT(114.4 30.5)", "POLYGON((0 0,1 0,1 1,0 0))",
                     "TIMESTAMP('2026-01-01T00:00:00Z')", "DATE('x')", "(1,2,3)", "BBOX(1,2)"]))
OPS = st.sampled_from(["=", "<>", "<", ">=", " LIKE ", " IN ", " BETWEEN ", " IS NULL",
                       " IS NOT ", " AND ", " OR ", " NOT ", "(", ")", ",", "S_INTERSECTS(",
                       "T_BEFORE(", "CASEI(", "+", "*"])
CQL2 = st.one_of(
    st.text(max_size=60),
    st.lists(st.one_of(NAMES, LITERALS, OPS), min_size=1, max_size=12).map("".join),
    st.builds(lambda n, o, v: f"{n}{o}{v}", NAMES, OPS, LITERALS),
    st.builds(lambda o, v, j, w: f"height {o} {v} {j} use = '{w}'",
              st.sampled_from(["<", ">=", "="]), st.floats(-1e9, 1e9),
              st.sampled_from(["AND", "OR"]), st.text(string.ascii_letters, max_size=6)))


@FUZZ
@given(cql=CQL2, lang=st.sampled_from([None, "cql2-text", "cql2-json", "sql"]))
def test_cql2_filters_never_fail_the_server(client, cql, lang):
    params = {"filter": cql} | ({"filter-lang": lang} if lang else {})
    answered(client.get(ITEMS, params=params))


NUMBER = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.integers(-10**400, 10**400), st.sampled_from([-180, 180, -90, 90, 0]))


@FUZZ
@given(bbox=st.one_of(
    st.lists(NUMBER, min_size=0, max_size=7).map(lambda v: ",".join(map(str, v))),
    st.tuples(st.lists(st.floats(-200, 200), min_size=2, max_size=2).map(sorted),
              st.lists(st.floats(-100, 100), min_size=2, max_size=2).map(sorted))
    .map(lambda xy: f"{xy[0][0]},{xy[1][0]},{xy[0][1]},{xy[1][1]}"),
    st.text(max_size=40)),
    crs=st.sampled_from([None, "http://www.opengis.net/def/crs/EPSG/0/4326",
                         "http://www.opengis.net/def/crs/EPSG/0/4547", "EPSG:1", "x"]))
def test_bbox_never_fails_the_server(client, bbox, crs):
    params = {"bbox": bbox} | ({"bbox-crs": crs} if crs else {})
    answered(client.get(ITEMS, params=params))


MOMENTS = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                       timezones=st.sampled_from([None, UTC, timezone(timedelta(hours=14)),
                                                  timezone(-timedelta(hours=12, minutes=30))]))


@FUZZ
@given(value=st.one_of(
    st.text(max_size=40),
    MOMENTS.map(datetime.isoformat),
    st.tuples(st.one_of(MOMENTS.map(datetime.isoformat), st.just(".."), st.just("")),
              st.one_of(MOMENTS.map(datetime.isoformat), st.just(".."), st.just("")))
    .map("/".join)))
def test_datetime_never_fails_the_server(client, value):
    answered(client.get(ITEMS, params={"datetime": value}))


@FUZZ
@given(limit=st.one_of(st.integers(-10**20, 10**20), st.text(max_size=10)),
       offset=st.one_of(st.integers(-10**20, 10**20), st.text(max_size=10)),
       sortby=st.one_of(st.none(), st.text(max_size=20),
                        st.sampled_from(["-height", "+name,-id", "nope"])))
def test_paging_never_fails_the_server(client, limit, offset, sortby):
    params = {"limit": limit, "offset": offset} | ({"sortby": sortby} if sortby else {})
    answered(client.get(ITEMS, params=params))


JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30),
              st.floats(allow_nan=False), st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20)
POSITION = st.lists(st.one_of(st.floats(-1e6, 1e6), st.integers(-1000, 1000), st.text(
    max_size=3)), min_size=0, max_size=4)
GEOMETRY = st.one_of(
    JSON,
    st.fixed_dictionaries({"type": st.sampled_from(["Point", "Polygon", "MultiPolygon",
                                                    "LineString", "Bogus"]),
                           "coordinates": st.one_of(POSITION, st.lists(POSITION, max_size=5),
                                                    st.lists(st.lists(POSITION, max_size=5),
                                                             max_size=2))}))
FEATURE = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {"type": st.sampled_from(["Feature", "FeatureCollection", "feature"])},
        optional={"geometry": GEOMETRY, "id": JSON,
                  "properties": st.one_of(JSON, st.dictionaries(
                      st.sampled_from(["height", "use", "name", "floors", "min_height",
                                       "bogus"]), JSON, max_size=4))}))


@FUZZ
@given(body=FEATURE, method=st.sampled_from(["POST", "PUT", "PATCH"]),
       raw=st.one_of(st.none(), st.binary(max_size=40)),
       if_match=st.one_of(st.none(), st.text(max_size=12)))
def test_rejected_writes_change_nothing(client, editor, city, body, method, raw, if_match):
    url = ITEMS if method == "POST" else f"{ITEMS}/t:B03"
    before = snapshot(city)
    headers = {**editor, "Content-Type": "application/geo+json"}
    if if_match is not None and method != "POST":
        headers["If-Match"] = if_match.encode("ascii", "replace").decode()
    content = raw if raw is not None else json.dumps(body).encode()
    response = client.request(method, url, content=content, headers=headers)
    answered(response, allowed=(200, 201, 400, 404, 409, 412))
    if response.status_code >= 400:
        assert snapshot(city) == before
