"""PostgreSQL stopped and started again under a stream of reads and edits, on a throwaway
cluster of its own (the session's cluster serves the other tests): the API answers 503 while
the database is down, recovers by itself, and every acknowledged edit is there afterwards."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from cim.access import Role, create_key
from cim.db.cluster import Cluster
from cim.db.engine import ensure_database, make_engine
from cim.schema.migrate import upgrade
from cim.settings import DatabaseSettings
from layers.model import Classification
from tests.servers import cim_serve

SQUARE = {"type": "Polygon", "coordinates": [[[114.40, 30.50], [114.4002, 30.50],
                                              [114.4002, 30.5002], [114.40, 30.50]]]}


@pytest.fixture
def own_cluster(workdir: Path):
    database = DatabaseSettings(data_dir=workdir / "fault-pgdata", port=0)
    cluster = Cluster(database.data_dir)
    cluster.start()
    try:
        ensure_database(database)
        engine = make_engine(database)
        upgrade(engine)
        with engine.begin() as conn:
            key = create_key(conn, "fault-editor", Role.editor, Classification.public)
        yield cluster, engine, key
        engine.dispose()
    finally:
        cluster.destroy()


@pytest.fixture
def served(own_cluster, workdir: Path):
    cluster, engine, key = own_cluster
    env = {"CIM_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "CIM_STORAGE_ROOT": str(workdir / "fault-files"), "CIM_TILES_CACHE_DIR": "",
           "CIM_LIMITS_ENABLED": "false", "CIM_CONFIG": str(workdir / "none.toml")}
    with cim_serve(env, probe="/ready") as base:
        yield base, cluster, engine, key


def test_database_restart_under_load_loses_no_acknowledged_edit(served):
    base, cluster, engine, key = served
    headers = {"X-API-Key": key, "Content-Type": "application/geo+json"}
    acknowledged: list[str] = []
    statuses: dict[str, Counter] = {"up": Counter(), "down": Counter(), "after": Counter()}
    phase = ["up"]
    stop = threading.Event()

    def editor(worker: int) -> None:
        with httpx.Client(base_url=base, timeout=10) as client:
            n = 0
            while not stop.is_set():
                n += 1
                body = {"type": "Feature", "id": f"w{worker}-{n}", "geometry": SQUARE,
                        "properties": {"height": float(n)}}
                response = client.post("/collections/buildings/items", json=body,
                                       headers=headers)
                statuses[phase[0]][response.status_code] += 1
                if response.status_code == 201:
                    acknowledged.append(response.headers["Location"].rsplit("/", 1)[1])
                elif response.status_code != 503:
                    raise AssertionError(response.text)

    def reader() -> None:
        with httpx.Client(base_url=base, timeout=10) as client:
            while not stop.is_set():
                response = client.get("/collections/buildings/items?limit=5")
                statuses[phase[0]][response.status_code] += 1

    threads = [threading.Thread(target=editor, args=(i,)) for i in range(3)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        phase[0] = "down"
        cluster.stop()
        time.sleep(2)
        down = httpx.get(f"{base}/collections/buildings/items", timeout=10)
        assert down.status_code == 503, down.text
        assert down.json()["code"] == "ServiceUnavailable" and down.headers["Retry-After"]
        assert httpx.get(f"{base}/ready", timeout=10).status_code == 503
        assert httpx.get(f"{base}/health", timeout=10).status_code == 200
        cluster.start()
        phase[0] = "after"
        recovered = time.monotonic() + 20
        while httpx.get(f"{base}/ready", timeout=10).status_code != 200:
            assert time.monotonic() < recovered, "the server did not recover by itself"
            time.sleep(0.2)
        time.sleep(2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    # While down only 503 (never a 500); before and after, only successes.
    assert set(statuses["down"]) <= {201, 200, 503}, statuses
    assert statuses["down"][503] > 0, statuses
    assert set(statuses["up"]) == {200, 201} and set(statuses["after"]) <= {200, 201, 503}
    assert statuses["after"][201] > 0 and statuses["after"][200] > 0, statuses
    engine.dispose()  # its connections died with the server
    with engine.connect() as conn:
        stored = set(conn.scalars(text("SELECT id FROM cim.buildings WHERE valid_to IS NULL")))
        audited = set(conn.scalars(text("SELECT object_id FROM cim.audit_log")))
    assert acknowledged and set(acknowledged) <= stored and set(acknowledged) <= audited
