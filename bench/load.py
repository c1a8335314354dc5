"""Benchmark: the trust issue's bounded load test on loopback.

N concurrent keep-alive clients (64 by default) against ``cim serve`` for a fixed time
(60 s), each drawing at random from a mix of vector tiles (one layer, and the whole base
map), feature pages by bbox, and edits: a client creates its own buildings (POST) and
changes their height (PATCH with If-Match from its last write). It stops by itself and
prints requests/s, p50/p95/p99 latency per kind and overall, errors (any status but
200/201/204, or a dropped connection), and the edits acknowledged against those found in
the database afterwards (an acknowledged create must exist; an acknowledged PATCH's height
must be the stored one unless a later acknowledged one replaced it), beside the issue's
targets: zero errors, zero lost edits, p99 under 250 ms at 64 clients on a 2-core machine.
It also prints the tiles' answers by ``X-Cache`` (edits make tiles stale: they are served
stale while one render refreshes them, so renders grow with the share of edits) and the CPU
per request of the server, PostgreSQL and this load generator, which a shared machine's load
average blurs less than the latencies.

The city is the generated one (``cim demo generate``), loaded once into a cluster of its own
under ``bench/out/load`` (bench/serving.py's helpers load it and start the server); each run
first deletes the buildings earlier runs created and empties the tile cache folder, so every
run starts from the same city and a cold cache. The rate limits are switched off for the
run: 64 clients on one address is what they exist to stop.

    python bench/load.py [--clients 64] [--seconds 60] [--buildings 20000] [--workers 2]
                         [--seed 7] [--mix tiles=0.45,basemap=0.15,features=0.3,edits=0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import serving
from sqlalchemy import text

from cim.access import Role, create_key
from cim.db.cluster import Cluster
from cim.db.engine import database_url, ensure_database, make_engine
from cim.settings import DatabaseSettings
from layers.model import Classification
from layers.transactions import API_SOURCE

WORK = serving.OUT / "load"
P99_TARGET_MS = 250.0
KINDS = ("tiles", "basemap", "features", "edits")


@dataclass
class Tally:
    """What the clients saw, per kind of request."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    statuses: dict[int, int] = field(default_factory=dict)
    dropped: int = 0
    created: set[str] = field(default_factory=set)
    heights: dict[str, float] = field(default_factory=dict)  # last acknowledged per object
    cache: dict[str, int] = field(default_factory=dict)  # tile answers by X-Cache

    def seen(self, kind: str, status: int, seconds: float) -> None:
        self.latencies[kind].append(seconds)
        self.statuses[status] = self.statuses.get(status, 0) + 1

    @property
    def errors(self) -> int:
        return self.dropped + sum(n for s, n in self.statuses.items()
                                  if s not in (200, 201, 204))


class Connection:
    """One keep-alive HTTP/1.1 connection; a minimal client, so the load generator leaves
    the cores to the server."""

    def __init__(self, address: str, port: int) -> None:
        self.address, self.port = address, port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def send(self, method: str, path: str, headers: dict[str, str] | None = None,
                   body: bytes = b"") -> tuple[int, dict[str, str]]:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.address, self.port)
        reader, writer = self.streams
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.address}:{self.port}",
                 "User-Agent: cim-load", f"Content-Length: {len(body)}",
                 *(f"{k}: {v}" for k, v in (headers or {}).items())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        got = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
        if "content-length" in got:
            await reader.readexactly(int(got["content-length"]))
        elif got.get("transfer-encoding", "").lower() == "chunked":
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                await reader.readexactly(size + 2)
            await reader.readexactly(2)
        if got.get("connection", "").lower() == "close":
            self.close()
        return status, got

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


def square(lon: float, lat: float, side_deg: float = 0.0001) -> dict:
    ring = [[lon, lat], [lon + side_deg, lat], [lon + side_deg, lat + side_deg],
            [lon, lat + side_deg], [lon, lat]]
    return {"type": "Polygon", "coordinates": [ring]}


async def client(number: str, base: str, key: str, extent: list[float], mix: dict[str, float],
                 deadline: float, rng: random.Random, tally: Tally) -> None:
    address, port = base.split("//", 1)[1].split(":")
    conn = Connection(address, int(port))
    auth = {"X-API-Key": key, "Content-Type": "application/geo+json"}
    mine: dict[str, str] = {}  # object id -> ETag of this client's last write
    n = 0
    kinds, weights = list(mix), list(mix.values())
    while time.perf_counter() < deadline:
        kind = rng.choices(kinds, weights)[0]
        method, path, body, headers = "GET", "", b"", {"Accept-Encoding": "gzip"}
        if kind in ("tiles", "basemap"):
            t = serving.tiles_in(extent, [14, 15, 16], 1, rng)[0]
            path = (f"/collections/buildings/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}"
                    if kind == "tiles" else f"/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}")
        elif kind == "features":
            box = serving.bboxes_in(extent, 1, rng, (100, 1000))[0]
            path = f"/collections/buildings/items?limit=50&bbox={serving.bbox_param(box)}"
        elif mine and rng.random() < 0.5:  # change one of its own buildings
            oid = rng.choice(list(mine))
            height = round(rng.uniform(3, 200), 1)
            method, path = "PATCH", f"/collections/buildings/items/{oid}"
            headers = {**auth, "If-Match": mine[oid]}
            body = json.dumps({"type": "Feature", "properties": {"height": height}}).encode()
        else:
            n += 1
            lon = rng.uniform(extent[0], extent[2])
            lat = rng.uniform(extent[1], extent[3])
            method, path, headers = "POST", "/collections/buildings/items", auth
            body = json.dumps({"type": "Feature", "id": f"load-{number}-{n}",
                               "geometry": square(lon, lat),
                               "properties": {"height": 10.0, "use": "residential"}}).encode()
        started = time.perf_counter()
        try:
            status, got = await conn.send(method, path, headers, body)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            conn.close()
            tally.dropped += 1
            continue
        tally.seen(kind, status, time.perf_counter() - started)
        if "x-cache" in got:
            tally.cache[got["x-cache"]] = tally.cache.get(got["x-cache"], 0) + 1
        if method == "POST" and status == 201:
            oid = got["location"].rsplit("/", 1)[1]
            tally.created.add(oid)
            tally.heights[oid] = 10.0
            mine[oid] = got["etag"]
        elif method == "PATCH" and status == 200:
            tally.heights[path.rsplit("/", 1)[1]] = json.loads(body)["properties"]["height"]
            mine[path.rsplit("/", 1)[1]] = got["etag"]
    conn.close()


def found(url: str, tally: Tally) -> tuple[int, int]:
    """(creates found, objects whose stored height is the last acknowledged one)."""
    engine = make_engine(DatabaseSettings(url=url))
    try:
        with engine.connect() as conn:
            rows = dict(conn.execute(text(
                "SELECT id, height FROM cim.buildings WHERE valid_to IS NULL "
                "AND id = ANY(:ids)"), {"ids": list(tally.heights)}).all())
    finally:
        engine.dispose()
    return (len(tally.created & set(rows)),
            sum(1 for oid, h in tally.heights.items() if rows.get(oid) == h))


@contextmanager
def own_database(gpkg: Path) -> Iterator[str]:
    """The generated city in a cluster of this benchmark's own (kept for re-runs)."""
    db = DatabaseSettings(data_dir=WORK / "pgdata")
    cluster = Cluster(db.data_dir)
    try:
        cluster.start()
        ensure_database(db)
        url = database_url(db)
        serving.load_city(url, gpkg)
        forget_earlier_edits(url)
        yield url
    finally:
        cluster.stop()


def forget_earlier_edits(url: str) -> None:
    """The city as loaded: buildings created through the API by earlier runs deleted (their
    audit rows stay: the log is append-only), the table's statistics renewed."""
    engine = make_engine(DatabaseSettings(url=url))
    try:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM cim.buildings WHERE source = :s"), {"s": API_SOURCE})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE cim.buildings"))
    finally:
        engine.dispose()


def editor_key(url: str) -> str:
    engine = make_engine(DatabaseSettings(url=url))
    try:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM cim.api_keys WHERE name = 'bench-load'"))
            return create_key(conn, "bench-load", Role.editor, Classification.public)
    finally:
        engine.dispose()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--buildings", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--mix", default="tiles=0.45,basemap=0.15,features=0.3,edits=0.1")
    args = parser.parse_args()
    mix = {k: float(v) for k, _, v in (p.partition("=") for p in args.mix.split(","))}
    if set(mix) - set(KINDS):
        raise SystemExit(f"--mix: kinds are {', '.join(KINDS)}")
    gpkg = serving.city_file(args.buildings)
    WORK.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(WORK / "tile-cache", ignore_errors=True)  # every run starts cold
    serving.WORK = WORK  # the server's log goes beside this benchmark's cluster
    with own_database(gpkg) as url, ExitStack() as stack:
        key = editor_key(url)
        extent = serving.extent_of(url)
        port = serving.free_port()
        env = {"CIM_DATABASE_URL": url, "CIM_STORAGE_ROOT": str(WORK / "files"),
               "CIM_TILES_CACHE_DIR": str(WORK / "tile-cache"), "CIM_LIMITS_ENABLED": "false",
               "CIM_CONFIG": str(WORK / "no-cim.toml")}
        cmd = [str(serving.BIN / "cim"), "serve", "--port", str(port), "--workers",
               str(args.workers)]
        server = serving.start_server(stack, "load", cmd, env, port, "/ready")
        tally = Tally()
        rng = random.Random(args.seed)
        meter = serving.CpuMeter(server, WORK / "pgdata")
        # This process's own full collections (one of 310 ms in a run, every client's clock
        # running) were counted as the server's latency: what it made before the run is
        # frozen out of them.
        gc.collect()
        gc.freeze()
        before, usage = meter.sample(), resource.getrusage(resource.RUSAGE_SELF)
        print(f"{args.clients} clients for {args.seconds:g} s on {server.base} "
              f"({args.workers} workers, {args.buildings:,}-building city, mix {mix}); "
              f"load average {os.getloadavg()[0]:.2f}")
        started = time.perf_counter()
        deadline = started + args.seconds

        async def run() -> None:
            run_id = format(int(time.time()), "x")  # ids stay new when the city is kept
            await asyncio.gather(*(client(f"{run_id}-{i}", server.base, key, extent, mix,
                                          deadline, random.Random(rng.random()), tally)
                                   for i in range(args.clients)))

        asyncio.run(run())
        wall = time.perf_counter() - started
        after, used = meter.sample(), resource.getrusage(resource.RUSAGE_SELF)
        server.stop()
        creates, heights = found(url, tally)

    every = [s for values in tally.latencies.values() for s in values]
    print(f"\n{'kind':<10}{'requests':>10}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}"
          f"{'p99 ms':>9}")
    for kind in (*KINDS, "all"):
        values = every if kind == "all" else tally.latencies[kind]
        print(f"{kind:<10}{len(values):>10,}{len(values) / wall:>9.1f}{pct(values, 50):>9.1f}"
              f"{pct(values, 95):>9.1f}{pct(values, 99):>9.1f}")
    tiles = max(sum(tally.cache.values()), 1)
    print(f"statuses {dict(sorted(tally.statuses.items()))}, dropped connections "
          f"{tally.dropped}; tiles by X-Cache {dict(sorted(tally.cache.items()))}: "
          f"{tally.cache.get('hit', 0) / tiles:.0%} hits, {tally.cache.get('stale', 0) / tiles:.0%}"
          " stale while refreshed")
    print(f"edits: {len(tally.created):,} creates acknowledged, {creates:,} found; "
          f"{len(tally.heights):,} objects' last acknowledged height, {heights:,} as stored")
    # CPU per request is what a shared machine's load average cannot blur: throughput on
    # two idle cores is at most 2 s / (server + PostgreSQL CPU per request).
    per = max(len(every), 1)
    server_ms = meter.spent(before[0], after[0]) / per * 1000
    pg_ms = meter.spent(before[1], after[1]) / per * 1000
    client_ms = ((used.ru_utime + used.ru_stime) - (usage.ru_utime + usage.ru_stime)) \
        / per * 1000
    print(f"CPU per request: server {server_ms:.2f} ms, PostgreSQL {pg_ms:.2f} ms, load "
          f"generator {client_ms:.2f} ms (at most {2000 / max(server_ms + pg_ms, 1e-9):.0f} "
          "req/s on 2 idle cores)")
    p99 = pct(every, 99)
    lost = (len(tally.created) - creates) + (len(tally.heights) - heights)
    print(f"\ntargets: errors 0 -> {tally.errors}; lost edits 0 -> {lost}; "
          f"p99 < {P99_TARGET_MS:.0f} ms -> {p99:.0f} ms "
          f"({'met' if tally.errors == 0 and lost == 0 and p99 < P99_TARGET_MS else 'not met'})")
    # Closed-loop clients without think time: the mean latency is clients / throughput.
    rate = len(every) / wall
    print(f"Little's law: {args.clients} clients / {rate:.1f} req/s = "
          f"{args.clients / rate * 1000:.0f} ms mean latency (measured "
          f"{sum(every) / max(len(every), 1) * 1000:.0f} ms); a p99 under "
          f"{P99_TARGET_MS:.0f} ms needs a mean below it, i.e. more than "
          f"{args.clients / (P99_TARGET_MS / 1000):.0f} req/s; load average now "
          f"{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
