"""Requests waiting for PostgreSQL hold no worker thread: with more feature pages stuck
behind a lock than the server has threads (anyio's 40), one ``cim serve`` process still
answers other requests (after at most the in-flight limit's wait), and every stuck page is
answered once the lock goes. The in-flight limit queues requests first come, first served,
and lets a waiter through after its longest wait. What start-up made is kept out of the
garbage collector's full walks while the app serves."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from cim.app import create_app
from cim.limits import InFlightLimit
from cim.settings import Settings
from tests.servers import cim_serve

STUCK = 60  # more than anyio's default of 40 worker threads


def test_feature_pages_waiting_for_postgresql_hold_no_thread(engine: Engine,
                                                             settings: Settings,
                                                             workdir: Path) -> None:
    env = {"CIM_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "CIM_STORAGE_ROOT": str(settings.storage.root), "CIM_LIMITS_ENABLED": "false",
           "CIM_TILES_CACHE_DIR": "", "CIM_CONFIG": str(workdir / "none.toml")}
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:  # a long writer: every page's read waits for it
        with engine.begin() as conn:
            conn.execute(text("LOCK TABLE cim.buildings IN ACCESS EXCLUSIVE MODE"))
            locked.set()
            release.wait(60)

    with cim_serve(env, probe="/ready", workers=1) as base, \
            ThreadPoolExecutor(STUCK) as pool:
        holder = threading.Thread(target=hold_lock)
        holder.start()
        try:
            assert locked.wait(10)
            pages = [pool.submit(httpx.get, f"{base}/collections/buildings/items?limit=5",
                                 timeout=60) for _ in range(STUCK)]
            waiting, deadline = 0, time.monotonic() + 30
            while waiting < 10 and time.monotonic() < deadline:  # pages blocked in PostgreSQL
                time.sleep(0.2)
                with engine.connect() as conn:
                    waiting = conn.scalar(text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query LIKE '%json_agg%'"))
            assert waiting >= 10, "the feature pages never reached PostgreSQL"
            time.sleep(1)  # the rest queue for a connection
            assert not any(page.done() for page in pages)
            started = time.monotonic()
            assert httpx.get(f"{base}/conformance", timeout=5).status_code == 200
            assert httpx.get(f"{base}/health", timeout=5).status_code == 200
            assert time.monotonic() - started < 5
        finally:
            release.set()
            holder.join()
        assert [page.result().status_code for page in pages] == [200] * STUCK


def test_in_flight_limit_serves_in_turn_and_bounds_the_wait() -> None:
    ran: list[str] = []
    gate: dict[str, asyncio.Event] = {}

    async def app(scope, receive, send) -> None:
        ran.append(scope["path"])
        if scope["path"] == "/slow":
            await gate["release"].wait()

    # One middleware on two event loops in turn, as one app under two test clients.
    limited = InFlightLimit(app, max_requests=1, max_wait_s=0.3)

    async def main() -> None:
        ran.clear()
        release = gate["release"] = asyncio.Event()

        def call(path: str) -> asyncio.Task[None]:
            return asyncio.ensure_future(limited({"type": "http", "path": path}, None, None))

        slow = call("/slow")
        await asyncio.sleep(0.01)
        first, second = call("/first"), call("/second")
        await asyncio.sleep(0.1)
        assert ran == ["/slow"]  # both wait for the slot
        release.set()
        await asyncio.gather(slow, first, second)
        assert ran == ["/slow", "/first", "/second"]  # in turn

        release.clear()
        stuck = call("/slow")
        await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await call("/late")  # the slot stays taken: it runs after its longest wait
        assert 0.3 <= loop.time() - started < 1.0 and not stuck.done()
        release.set()
        await stuck

    asyncio.run(main())
    asyncio.run(main())


def test_start_up_heap_is_out_of_the_collectors_walks_while_serving(engine: Engine,
                                                                     settings: Settings) -> None:
    """A full collection under load walks only what requests made: the objects start-up made
    (the app, the catalog, the libraries) are frozen until the app stops."""
    with TestClient(create_app(settings)) as client:
        assert client.get("/conformance").status_code == 200
        gc.collect()
        walked, frozen = len(gc.get_objects()), gc.get_freeze_count()
        assert frozen > 100_000, frozen
        assert walked < frozen / 5, (walked, frozen)
    assert gc.get_freeze_count() == 0  # thawed: a later app in this process collects it
