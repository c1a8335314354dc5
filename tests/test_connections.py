"""Keep-alive connections even out over ``cim serve``'s workers: connections all made while
one worker was stopped (so the other accepted every one) end up about half on each after a
few rounds of requests, the clients reconnecting where asked to; a worker over its share
asks one connection at a time to go."""

from __future__ import annotations

import mmap
import os
import signal
import time
from collections import Counter
from contextlib import suppress
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
from sqlalchemy import Engine

from cim.connections import COUNTS_FILE, SLACK, SLOT, Counts, shared_connections
from cim.settings import Settings
from tests.servers import cim_serve

CONNECTIONS = 20


def workers_of_server(port: int) -> list[int]:
    """The worker processes of the ``cim serve`` this test started on ``port`` (not the
    supervisor's resource tracker). Earlier tests may have left zombie children: skipped."""
    for child in psutil.Process().children():
        with suppress(psutil.Error):
            if "serve" in child.cmdline() and str(port) in child.cmdline():
                return [p.pid for p in child.children()
                        if "spawn_main" in " ".join(p.cmdline())]
    return []


def wait_for_both(base: str, timeout_s: float = 60.0) -> None:
    """Until fresh connections have met both workers: the first to start answers the
    server's probe while the other may still be importing (under load, seconds)."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while len(seen) < 2:
        assert time.monotonic() < deadline, f"only {len(seen)} worker answered"
        seen.add(httpx.get(f"{base}/health").headers["x-request-id"][:8])
        time.sleep(0.05)


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
        wait_for_both(base)
        workers = workers_of_server(port)
        assert len(workers) == 2
        clients = [HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(CONNECTIONS)]
        os.kill(workers[1], signal.SIGSTOP)
        try:
            for client in clients:
                client.connect()
            time.sleep(1)  # for the running worker to accept them
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


def test_a_worker_sheds_one_connection_at_a_time() -> None:
    with shared_connections(2):
        counts = Counts(os.environ[COUNTS_FILE])
        with open(os.environ[COUNTS_FILE], "r+b") as file:
            other = memoryview(mmap.mmap(file.fileno(), 2 * SLOT)).cast("q")
            other[1 - counts.slot] = 4  # the other worker holds 4 connections
            for _ in range(10):
                counts.opened()
            assert counts.shed()  # 10 against a mean of 7
            assert not counts.shed(), "a second before the first one closed"
            counts.closed()
            assert counts.shed()  # 9 against 6.5
            counts.kept()  # that response never started
            assert counts.shed()
            counts.closed()
            assert counts.shed()  # 8 against 6: still two above
            counts.closed()
            assert not counts.shed()  # 7 against 5.5: within the slack
            other.release()
