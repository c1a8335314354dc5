"""Schemathesis's stateful testing over the whole OpenAPI document, against a real server with
an editor's key: it follows the document's links (a created feature's Location and ETag into
its GET, PUT, PATCH and DELETE; a scenario's id into its routes), so writes reach real ids and
versions. Never a 5xx, every documented response conforms to its schema, and a rejected
write leaves every table as it was."""

from __future__ import annotations

import json
import zlib
from collections import Counter
from urllib.parse import unquote

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import response_schema_conformance

from cim.access import Role, create_key
from layers.model import Classification
from tests import test_features_api
from tests.conftest import snapshot
from tests.servers import cim_serve

city = test_features_api.city  # fixture: 25 buildings and an internal pipe
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
LON, LAT = 114.40, 30.49  # near the fixture's buildings


@pytest.fixture
def served(city, settings):
    with city.begin() as conn:
        key = create_key(conn, "stateful", Role.editor, Classification.public)
    env = {"CIM_DATABASE_URL": city.url.render_as_string(hide_password=False),
           "CIM_STORAGE_ROOT": str(settings.storage.root), "CIM_TILES_CACHE_DIR": "",
           "CIM_LIMITS_ENABLED": "false"}  # hundreds of requests from one key on purpose
    with cim_serve(env, probe="/ready") as base:
        yield base, key


def square(seed: int) -> dict:
    x, y, side = LON + seed % 1000 * 1e-5, LAT + seed // 1000 % 1000 * 1e-5, 1e-4
    return {"type": "Polygon", "coordinates": [[[x, y], [x + side, y], [x + side, y + side],
                                                [x, y + side], [x, y]]]}


def test_stateful_walk_over_real_ids_finds_no_server_error(served, city):
    base, key = served
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    seen: Counter[str] = Counter()
    created: set[str] = set()

    class Walk(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case):
            return {"headers": {"X-API-Key": key}, "timeout": 30}

        def before_call(self, case):
            # Random collection names are all 404s (the anonymous schemathesis run in
            # test_features_api covers them); walking needs a layer the key may write.
            if "collectionId" in (case.path_parameters or {}):
                case.path_parameters["collectionId"] = "buildings"
            # About half the feature bodies are valid, so links have ids to carry and the
            # writes that follow them can succeed; the rest are schemathesis's own, which
            # the server must refuse cleanly. Which half is decided by the case itself, so
            # that Hypothesis's replays send what the first run sent.
            method = case.method.upper()
            seed = zlib.crc32(repr((case.path, case.body)).encode())
            if method in ("POST", "PUT", "PATCH") and "/items" in case.path and seed % 2:
                case.body = {"type": "Feature", "properties": {"height": 3 + seed % 80}}
                if method != "PATCH":
                    case.body["geometry"] = square(seed)
            self.before = snapshot(city) if method in WRITES else None

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            method, status = case.method.upper(), response.status_code
            seen[f"{method} {case.path} {status}"] += 1
            assert status < 500, (method, case.formatted_path, status, response.text[:300])
            location = response.headers.get("location")
            if isinstance(location, list):  # schemathesis's own responses keep value lists
                location = location[0]
            if method == "POST" and status == 201 and location:
                created.add(location.rsplit("/", 1)[1])
            feature = unquote((case.path_parameters or {}).get("featureId") or "")
            if feature in created and status in (200, 204):
                seen["followed a created id"] += 1
            if self.before is not None and status >= 400:
                assert snapshot(city) == self.before, (method, case.formatted_path, status)
            if status < 400:
                case.validate_response(response, checks=[response_schema_conformance],
                                       headers=kwargs.get("headers"))

    Walk.run(settings=settings(max_examples=60, stateful_step_count=10, deadline=None,
                               database=None, derandomize=True,
                               suppress_health_check=list(HealthCheck)))
    assert seen["followed a created id"] > 0, json.dumps(seen, indent=1)
    assert any(k.startswith(("PUT", "PATCH", "DELETE")) and k.endswith(("200", "204"))
               for k in seen), json.dumps(seen, indent=1)
