"""Request ids, Prometheus metrics and logs that hide passwords."""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import morecantile
from fastapi.testclient import TestClient
from pyproj import Transformer

from cim.app import create_app
from cim.observability import MULTIPROC_DIR, JsonFormatter, redact, request_id, shared_metrics
from tests.servers import cim_serve
from tests.test_import_formats import X0, Y0


def metric(text: str, name: str, **labels: str) -> float:
    """A sample's value from the Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line
                                                 for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_request_ids_and_metrics(engine, settings):
    lon, lat = Transformer.from_crs(4547, 4326, always_xy=True).transform(X0, Y0)
    t = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 16)
    tile = f"/tiles/WebMercatorQuad/16/{t.x}/{t.y}"
    with TestClient(create_app(settings)) as client:
        given = client.get("/collections", headers={"X-Request-Id": "trace-42"})
        assert given.headers["x-request-id"] == "trace-42"
        made = client.get("/collections", headers={"X-Request-Id": "bad id\n"})
        assert made.headers["x-request-id"] != "bad id\n" and len(made.headers[
            "x-request-id"]) == 16
        client.get("/collections/nowhere")
        for _ in range(2):
            client.get(tile)
        scraped = client.get("/metrics")
        assert scraped.headers["content-type"].startswith("text/plain")
        body = scraped.text
    assert metric(body, "cim_http_requests_total", method="GET", route="/collections",
                  status="200") == 2
    assert metric(body, "cim_http_requests_total", route="/collections/{collectionId}",
                  status="404") == 1
    assert metric(body, "cim_http_request_duration_seconds_count", route="/collections") == 2
    hits = metric(body, "cim_tile_cache_requests_total", result="hit")
    misses = metric(body, "cim_tile_cache_requests_total", result="miss")
    assert hits + misses == 2 and misses >= 1


def test_logs_are_json_with_the_request_id_and_no_password():
    token = request_id.set("abc123")
    try:
        record = logging.LogRecord("cim", logging.WARNING, __file__, 1,
                                   "cannot reach postgresql+psycopg://cim:s3cret@db:5432/cim",
                                   None, None)
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id.reset(token)
    assert line["request_id"] == "abc123" and line["level"] == "WARNING"
    assert "s3cret" not in line["message"] and "cim:***@db" in line["message"]
    assert redact("no url here") == "no url here"



def test_metrics_count_every_worker_of_cim_serve(engine, settings, tmp_path):
    folder = tmp_path / "metrics"  # named here (cim serve keeps it) so the test can look in
    folder.mkdir()
    env = {"CIM_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "CIM_STORAGE_ROOT": str(settings.storage.root), MULTIPROC_DIR: str(folder)}
    with cim_serve(env, workers=2) as base, ThreadPoolExecutor(8) as pool:
        # Concurrent fresh connections: the two worker processes share the listening socket.
        answers = list(pool.map(lambda _: httpx.get(f"{base}/health").status_code,
                                range(80)))
        scrapes = [httpx.get(f"{base}/metrics").text for _ in range(4)]
    assert answers == [200] * 80
    assert len(list(folder.glob("counter_*.db"))) == 2, "both workers answered"
    for body in scrapes:  # whichever worker answers, it reports both workers' requests
        assert metric(body, "cim_http_requests_total", method="GET", route="/health",
                      status="200") == 80 + 1  # and cim_serve's probe


def test_several_workers_get_a_metrics_folder_removed_afterwards(monkeypatch):
    monkeypatch.delenv(MULTIPROC_DIR, raising=False)
    with shared_metrics(1):
        assert MULTIPROC_DIR not in os.environ  # one process: its own registry
    with shared_metrics(2):
        folder = Path(os.environ[MULTIPROC_DIR])
        assert folder.is_dir()
    assert not folder.exists() and MULTIPROC_DIR not in os.environ
