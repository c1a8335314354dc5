"""Keep-alive connections even out over ``cim serve``'s workers: connections all made while
one worker was stopped (so the other accepted every one) end up about half on each after a
few rounds of requests, the clients reconnecting where asked to."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import urlsplit

import psutil
from sqlalchemy import Engine

from cim.connections import SLACK
from cim.settings import Settings
from tests.servers import cim_serve

CONNECTIONS = 20


def workers_of_server() -> list[int]:
    """The worker processes of the ``cim serve`` this test started (not the supervisor's
    resource tracker)."""
    supervisor = next(p for p in psutil.Process().children() if "serve" in p.cmdline())
    return [p.pid for p in supervisor.children() if "spawn_main" in " ".join(p.cmdline())]


def worker_of(conn: HTTPConnection) -> str:
    """Which worker answered: the per-process prefix of the request id it made."""
    conn.request("GET", "/health")
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    return response.headers["x-request-id"][:8]


def test_connections_even_out_over_the_workers(engine: Engine, settings: Settings,
                                               workdir: Path) -> None:
    env = {"CIM_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "CIM_STORAGE_ROOT": str(settings.storage.root), "CIM_LIMITS_ENABLED": "false",
           "CIM_CONFIG": str(workdir / "none.toml")}
    with cim_serve(env, workers=2) as base:
        port = urlsplit(base).port
        assert port is not None
        workers = workers_of_server()
        assert len(workers) == 2
        clients = [HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(CONNECTIONS)]
        os.kill(workers[1], signal.SIGSTOP)
        try:
            for client in clients:
                client.connect()
            time.sleep(0.5)  # for the running worker to accept them
        finally:
            os.kill(workers[1], signal.SIGCONT)
        try:
            answered = Counter(worker_of(client) for client in clients)
            assert list(answered.values()) == [CONNECTIONS], "one worker accepted them all"
            for _ in range(10):  # http.client reconnects after a Connection: close
                held = Counter(worker_of(client) for client in clients)
        finally:
            for client in clients:
                client.close()
    assert len(held) == 2 and min(held.values()) >= CONNECTIONS / 2 - SLACK, held
