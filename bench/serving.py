"""Benchmark: vector tiles and feature pages of 470,000 buildings, beside tipg and pygeoapi.

One run over one PostGIS holding the generated 470,000-building city (loaded once into a
cluster under ``bench/out/serving`` and kept, so re-runs start in seconds):

* ours: ``cim serve``'s app under uvicorn with one worker per core;
* tipg 1.6.1 (FastAPI over PostGIS, the closest anchor) under uvicorn, same workers, its
  tile buffer and feature cap set to ours, asked for the same properties per zoom;
* pygeoapi (Flask, PostgreSQL provider on ``cim.buildings``) under gunicorn, features only;
* the floors: a naive ``ST_AsMVT`` per tile (as tipg queries) and raw SQL building the
  GeoJSON page, through psycopg with 2 connections.

Each server gets the same seeded tiles at zooms 12-16 inside the buildings' extent (zooms
below the catalog's buildings ``min_zoom`` are left out: we answer 204 there by design) and
the same seeded bbox queries (100 m - 3 km, ``limit=100``) from N concurrent keep-alive
clients, bounded in count and time. Uncached tiles are ours with the tile cache off (when
``CIM_TILES_ENABLED`` exists); cached tiles are a second pass over the same list. Per
server it prints requests/s, p50/p95/p99 latency, and the CPU the server's processes and
PostgreSQL spent per request (read from /proc), then the issue's targets beside our ratios.
tipg and pygeoapi live in their own virtual environments under ``bench/out``.

    python bench/serving.py [--tiles 2000] [--queries 2000] [--clients 16] [--seed 7]
                            [--seconds 60] [--skip-anchors] [--configured-database]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import venv
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import mapbox_vector_tile
import morecantile
import psycopg
import pyogrio
from psycopg import sql
from sqlalchemy import make_url, text

from cim.db.cluster import Cluster
from cim.db.engine import database_url, ensure_database, make_engine
from cim.schema.migrate import upgrade
from cim.settings import DatabaseSettings, load_settings
from layers.catalog import load_catalog

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
WORK = OUT / "serving"
BIN = Path(sys.executable).parent
TIPG = "tipg==1.6.1"
PYGEOAPI = "pygeoapi==0.21.0"  # the newest for Python < 3.12
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
MAX_FEATURES = 20_000  # ours per layer and tile: tipg and the floor get the same cap
BUFFER = 64  # ours (tipg defaults to 256)
TARGETS = {"uncached tiles": 2.0, "cached tiles": 10.0, "features": 2.0}
P99_TARGET_MS = 100.0
NOTED = ("noted on this machine type (200k buildings, 8 clients): tipg tiles 151/s, "
         "tipg features 160-171/s, pygeoapi features 49/s, raw ST_AsMVT 106/s, "
         "raw GeoJSON page 1,207/s")


# -- the database ---------------------------------------------------------------------------

def city_file(buildings: int) -> Path:
    """The generated city's GeoPackage, made once (bench/ingest.py shares the cache)."""
    out = OUT / f"city-{buildings}"
    cached = sorted(out.glob("*.gpkg"))
    if cached:
        return cached[0]
    print(f"generating a {buildings:,}-building city (once; cached in {out})")
    subprocess.run([str(BIN / "cim"), "demo", "generate", "--out", str(out),
                    "--buildings", str(buildings)], check=True)
    return next(out.glob("*.gpkg"))


def load_city(url: str, gpkg: Path) -> None:
    """Import the buildings unless this very file is already loaded (a marker in the db)."""
    engine = make_engine(DatabaseSettings(url=url))
    try:
        upgrade(engine)  # cheap at head; picks up migrations landed since the last run
        stamp = f"{gpkg.name}:{gpkg.stat().st_size}:{int(gpkg.stat().st_mtime)}"
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS public.bench_loaded (stamp text)"))
            loaded = conn.scalar(text("SELECT stamp FROM public.bench_loaded"))
        expected = pyogrio.read_info(gpkg, layer="buildings")["features"]
        if loaded == stamp:
            return
        print(f"loading {expected:,} buildings from {gpkg.name} (once; kept for re-runs)")
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE cim.buildings, cim.imports RESTART IDENTITY CASCADE"))
            conn.execute(text("DELETE FROM public.bench_loaded"))
        started = time.perf_counter()
        subprocess.run([str(BIN / "cim"), "import", str(gpkg), "--layer", "buildings",
                        "--source-layer", "buildings", "--id-field", "source_id",
                        "--source", "demo-optics-valley", "--synthetic"],
                       env={**os.environ, "CIM_DATABASE_URL": url}, check=True)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE cim.buildings"))
            stored = conn.scalar(text("SELECT count(*) FROM cim.buildings"))
            conn.execute(text("INSERT INTO public.bench_loaded VALUES (:s)"), {"s": stamp})
        print(f"loaded {stored:,} buildings in {time.perf_counter() - started:.0f} s")
    finally:
        engine.dispose()


@contextmanager
def database(configured: bool, gpkg: Path) -> Iterator[tuple[str, Path | None]]:
    """(SQLAlchemy URL, data dir of a cluster we run or None); our cluster stops after."""
    if configured:
        settings = load_settings().database
        if settings.url is None:
            ensure_database(settings)
        url = database_url(settings)
        load_city(url, gpkg)
        yield url, None if settings.url is not None else settings.data_dir
        return
    WORK.mkdir(parents=True, exist_ok=True)
    db = DatabaseSettings(data_dir=WORK / "pgdata")
    cluster = Cluster(db.data_dir)
    try:
        cluster.start()
        ensure_database(db)
        url = database_url(db)
        load_city(url, gpkg)
        yield url, db.data_dir
    finally:
        cluster.stop()


def libpq(url: str) -> str:
    """A libpq URL (for psycopg, tipg, pygeoapi) from a SQLAlchemy one."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# -- processes ------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_venv(name: str, packages: list[str]) -> Path:
    """A virtual environment under bench/out with ``packages`` (their pins stay out of ours)."""
    folder = OUT / f"venv-{name}"
    done = folder / "installed.txt"
    if done.is_file() and done.read_text() == " ".join(packages):
        return folder / "bin"
    print(f"installing {', '.join(packages)} into {folder.relative_to(REPO)} (once)")
    venv.create(folder, with_pip=True, clear=True)
    subprocess.run([str(folder / "bin" / "pip"), "install", "-q", *packages], check=True,
                   stdout=subprocess.DEVNULL)
    done.write_text(" ".join(packages))
    return folder / "bin"


@dataclass
class Server:
    name: str
    base: str
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        """SIGTERM to its whole process group (uvicorn/gunicorn workers), then SIGKILL."""
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.proc.pid, sig)
                    self.proc.wait(wait)
                    break
                except ProcessLookupError:
                    break
                except subprocess.TimeoutExpired:
                    continue


def start_server(stack: ExitStack, name: str, cmd: list[str], env: dict[str, str],
                 port: int, ready_path: str) -> Server:
    log = WORK / f"{name}.log"
    # Own session: stopping it reaches the workers it forks, even if we die first.
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, cwd=REPO, start_new_session=True,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    server = Server(name, f"http://127.0.0.1:{port}", proc, log)
    stack.callback(server.stop)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited at start: {log.read_text()[-3000:]}")
        try:
            if httpx.get(server.base + ready_path, timeout=30).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{name} did not answer {ready_path} in 180 s: {log.read_text()[-3000:]}")


def start_ours(stack: ExitStack, url: str, workers: int, cache: bool) -> Server:
    port = free_port()
    # The rate limits are off: 16 clients on one address is the load, not an abuse of it
    # (the anchors have none).
    env = {"CIM_DATABASE_URL": url, "CIM_STORAGE_ROOT": str(WORK / "files"),
           "CIM_TILES_CACHE_DIR": str(WORK / "tile-cache"),
           "CIM_CONFIG": str(WORK / "no-cim.toml"), "CIM_LIMITS_ENABLED": "false",
           "CIM_TILES_ENABLED": "true" if cache else "false"}
    cmd = [str(BIN / "cim"), "serve", "--port", str(port), "--workers", str(workers)]
    return start_server(stack, "ours", cmd, env, port, "/collections/buildings")


def start_tipg(stack: ExitStack, url: str, workers: int) -> Server:
    bin_dir = ensure_venv("tipg", [TIPG, "uvicorn[standard]"])
    port = free_port()
    env = {"DATABASE_URL": libpq(url), "TIPG_DB_SCHEMAS": '["cim"]',
           "TIPG_DB_TABLES": '["cim.buildings"]', "TIPG_TILE_BUFFER": str(BUFFER),
           "TIPG_MAX_FEATURES_PER_TILE": str(MAX_FEATURES),
           "TIPG_TABLE_CONFIG__cim_buildings__geomcol": "geom",
           "TIPG_DB_MAX_CONN_SIZE": "10"}
    cmd = [str(bin_dir / "uvicorn"), "tipg.main:app", "--host", "127.0.0.1", "--port",
           str(port), "--workers", str(workers), "--no-access-log", "--log-level", "warning"]
    return start_server(stack, "tipg", cmd, env, port, "/collections/cim.buildings")


def start_pygeoapi(stack: ExitStack, url: str, workers: int, extent: list[float],
                   properties: list[str]) -> Server:
    bin_dir = ensure_venv("pygeoapi", [PYGEOAPI, "psycopg2-binary", "geoalchemy2",
                                       "pygeofilter[backend-sqlalchemy]", "gunicorn"])
    port = free_port()
    u = make_url(url)
    config = {
        "server": {
            "bind": {"host": "127.0.0.1", "port": port}, "url": f"http://127.0.0.1:{port}",
            "mimetype": "application/json; charset=UTF-8", "encoding": "utf-8",
            "language": "en-US", "pretty_print": False,
            "limits": {"default_items": 10, "max_items": 10000},
            "map": {"url": "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
                    "attribution": "OpenStreetMap contributors"},
        },
        "logging": {"level": "ERROR"},
        "metadata": {
            "identification": {"title": "bench", "description": "bench", "keywords": ["bench"],
                               "keywords_type": "theme", "terms_of_service": "none",
                               "url": "http://127.0.0.1"},
            "license": {"name": "ODbL", "url": "https://opendatacommons.org/licenses/odbl/"},
            "provider": {"name": "bench", "url": "http://127.0.0.1"},
            "contact": {"name": "bench"},
        },
        "resources": {"buildings": {
            "type": "collection", "title": "Buildings", "description": "Buildings",
            "keywords": ["buildings"],
            "extents": {"spatial": {"bbox": extent,
                                    "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}},
            "providers": [{
                "type": "feature", "name": "PostgreSQL",
                "data": {"host": u.host, "port": u.port, "dbname": u.database,
                         "user": u.username, "password": u.password or "",
                         "search_path": ["cim", "public"]},
                "id_field": "vid", "table": "buildings", "geom_field": "geom",
                "properties": properties,
            }],
        }},
    }
    conf, openapi = WORK / "pygeoapi.config.yml", WORK / "pygeoapi.openapi.yml"
    conf.write_text(json.dumps(config, indent=1))  # JSON is YAML
    env = {"PYGEOAPI_CONFIG": str(conf), "PYGEOAPI_OPENAPI": str(openapi)}
    subprocess.run([str(bin_dir / "pygeoapi"), "openapi", "generate", str(conf),
                    "--output-file", str(openapi)], env={**os.environ, **env}, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # gthread workers keep connections alive, as uvicorn does for the others.
    cmd = [str(bin_dir / "gunicorn"), "--workers", str(workers), "--threads", "4",
           "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
           "pygeoapi.flask_app:APP"]
    return start_server(stack, "pygeoapi", cmd, env, port, "/collections/buildings")


# -- CPU accounting from /proc ----------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: str) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()  # fields from 3 (state) on


def cpu_of(match: Callable[[int, list[str]], bool], reaper: int | None = None
           ) -> dict[int, float]:
    """CPU seconds of each live process ``match(pid, fields)`` selects; for ``reaper`` also
    its exited children's (the kernel adds them to the parent that waited for them, so
    PostgreSQL backends that came and went between two samples still count)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(entry)
            if fields is not None and match(int(entry), fields):
                ticks = int(fields[11]) + int(fields[12])
                if int(entry) == reaper:
                    ticks += int(fields[13]) + int(fields[14])
                found[int(entry)] = ticks / TICK
    return found


class CpuMeter:
    """CPU spent by a server's process group and by our PostgreSQL's backends."""

    def __init__(self, server: Server | None, data_dir: Path | None) -> None:
        self.pgid = server.proc.pid if server else None
        self.postmaster = None
        if data_dir is not None:
            # Not readable: PostgreSQL's CPU goes unreported.
            with suppress(OSError, ValueError, IndexError):
                self.postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])

    def sample(self) -> tuple[dict[int, float], dict[int, float]]:
        srv = cpu_of(lambda p, f: int(f[2]) == self.pgid) if self.pgid else {}
        pg = cpu_of(lambda p, f: p == self.postmaster or int(f[1]) == self.postmaster,
                    self.postmaster) if self.postmaster else {}
        return srv, pg

    @staticmethod
    def spent(before: dict[int, float], after: dict[int, float]) -> float:
        return sum(v - before.get(p, 0.0) for p, v in after.items())


# -- the load: N keep-alive clients over a fixed list of paths --------------------------------

@dataclass
class Result:
    name: str
    latencies: list[float] = field(default_factory=list)  # seconds
    statuses: dict[int, int] = field(default_factory=dict)
    wall: float = 0.0
    nbytes: int = 0
    server_cpu: float | None = None
    pg_cpu: float | None = None
    client_cpu: float = 0.0

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.count / self.wall if self.wall else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000

    @property
    def errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s not in (200, 204))


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str,
                   path: str, encoding: str) -> tuple[int, int, bool]:
    """(status, body bytes, connection kept) of one GET; a minimal HTTP/1.1 client, so the
    load generator spends little of the 2 cores the servers need."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: {encoding}\r\n"
                 "User-Agent: cim-bench\r\n\r\n".encode())
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
    size = 0
    if "content-length" in headers:
        size = int(headers["content-length"])
        await reader.readexactly(size)
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            chunk = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(chunk + 2)
            size += chunk
            if chunk == 0:
                break
    elif status not in (204, 304):
        size = len(await reader.read())  # body ends with the connection
        return status, size, False
    return status, size, headers.get("connection", "").lower() != "close"


async def _load(base: str, paths: list[str], clients: int, seconds: float,
                encoding: str, result: Result) -> None:
    host = base.split("//", 1)[1]
    address, port = host.split(":")
    queue = iter(paths)
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        conn = None
        for path in queue:
            if time.perf_counter() > deadline:
                return
            started = time.perf_counter()
            for attempt in range(2):
                if conn is None:
                    conn = await asyncio.open_connection(address, int(port))
                try:
                    status, size, keep = await _request(*conn, host, path, encoding)
                    break
                except (asyncio.IncompleteReadError, ConnectionError):
                    conn[1].close()
                    conn = None  # the server closed an idle connection: once more
                    if attempt:
                        raise
            result.latencies.append(time.perf_counter() - started)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            result.nbytes += size
            if not keep:
                conn[1].close()
                conn = None
        if conn is not None:
            conn[1].close()

    await asyncio.gather(*(client() for _ in range(clients)))


def run_load(name: str, server: Server, paths: list[str], args: argparse.Namespace,
             meter: CpuMeter) -> Result:
    result = Result(name)
    encoding = "gzip" if args.gzip else "identity"
    before, usage = meter.sample(), resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    asyncio.run(_load(server.base, paths, args.clients, args.seconds, encoding, result))
    result.wall = time.perf_counter() - started
    after, used = meter.sample(), resource.getrusage(resource.RUSAGE_SELF)
    result.server_cpu = meter.spent(before[0], after[0]) if meter.pgid else None
    result.pg_cpu = meter.spent(before[1], after[1]) if meter.postmaster else None
    result.client_cpu = (used.ru_utime + used.ru_stime) - (usage.ru_utime + usage.ru_stime)
    return result


def warm(server: Server, paths: list[str], args: argparse.Namespace,
         seconds: float | None = None) -> None:
    """Connection pools filled, code paths and caches of the machine warm (not timed)."""
    asyncio.run(_load(server.base, paths, args.clients, seconds or args.seconds,
                      "gzip" if args.gzip else "identity", Result("")))


def run_floor(name: str, dsn: str, statements: list[tuple[sql.Composable, tuple]],
              args: argparse.Namespace, meter: CpuMeter) -> Result:
    """The statements through psycopg with 2 connections: what PostgreSQL alone can do."""
    result = Result(name)
    queue = iter(statements)
    lock = threading.Lock()
    deadline = time.perf_counter() + args.seconds

    def worker(conn: psycopg.Connection) -> None:
        while time.perf_counter() < deadline:
            with lock:
                item = next(queue, None)
            if item is None:
                return
            started = time.perf_counter()
            value = conn.execute(*item).fetchone()[0]
            took = time.perf_counter() - started
            with lock:
                result.latencies.append(took)
                result.nbytes += len(value or b"")
                result.statuses[200] = result.statuses.get(200, 0) + 1

    options = "-c max_parallel_workers_per_gather=0 -c jit=off"
    conns = [psycopg.connect(dsn, autocommit=True, options=options) for _ in range(2)]
    try:
        before = meter.sample()
        started = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(c,)) for c in conns]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        result.wall = time.perf_counter() - started
        after = meter.sample()
    finally:
        for c in conns:
            c.close()
    result.pg_cpu = meter.spent(before[1], after[1]) if meter.postmaster else None
    return result


# -- the workload -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Tile:
    z: int
    x: int
    y: int


def extent_of(url: str) -> list[float]:
    with psycopg.connect(libpq(url)) as conn:
        row = conn.execute("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                           "(SELECT ST_Extent(geom) e FROM cim.buildings "
                           "WHERE valid_to IS NULL) s").fetchone()
    if row is None or row[0] is None:
        raise SystemExit("cim.buildings is empty")
    return [float(v) for v in row]


def tiles_in(extent: list[float], zooms: list[int], n: int, rng: random.Random) -> list[Tile]:
    """Tiles under uniformly random points of the extent, zooms in equal shares."""
    out = []
    for i in range(n):
        z = zooms[i % len(zooms)]
        t = WEB_MERCATOR.tile(rng.uniform(extent[0], extent[2]),
                              rng.uniform(extent[1], extent[3]), z)
        out.append(Tile(t.z, t.x, t.y))
    rng.shuffle(out)
    return out


def bboxes_in(extent: list[float], n: int, rng: random.Random,
              sides: tuple[float, float] = (100, 3000)) -> list[tuple[float, ...]]:
    """Squares of 100 m - 3 km a side centred in the extent, in CRS84."""
    out = []
    for _ in range(n):
        lon, lat = rng.uniform(extent[0], extent[2]), rng.uniform(extent[1], extent[3])
        half = rng.uniform(*sides) / 2
        dlat = half / 111_320
        dlon = half / (111_320 * math.cos(math.radians(lat)))
        out.append(tuple(round(v, 6) for v in (lon - dlon, lat - dlat, lon + dlon, lat + dlat)))
    return out


def bbox_param(b: tuple[float, ...]) -> str:
    return ",".join(f"{v:.6f}" for v in b)


def floor_tile_sql(tile: Tile, columns: list[str]) -> tuple[sql.Composable, tuple]:
    """A naive tile query, as tipg writes it: transform per row, ST_Intersects on 4326."""
    b = WEB_MERCATOR.xy_bounds(morecantile.Tile(tile.x, tile.y, tile.z))
    props = sql.SQL("").join(sql.SQL(", {}").format(sql.Identifier(c)) for c in columns)
    query = sql.SQL(
        "SELECT ST_AsMVT(q, 'default', 4096, 'geom') FROM (SELECT id{props}, ST_AsMVTGeom("
        "ST_Transform(geom, 3857), ST_MakeEnvelope(%s, %s, %s, %s, 3857), 4096, {buffer}, true)"
        " AS geom FROM cim.buildings WHERE ST_Intersects(geom, ST_Transform("
        "ST_MakeEnvelope(%s, %s, %s, %s, 3857), 4326)) LIMIT {cap}) q"
    ).format(props=props, buffer=sql.Literal(BUFFER), cap=sql.Literal(MAX_FEATURES))
    box = (b.left, b.bottom, b.right, b.top)
    return query, box + box


def floor_page_sql(b: tuple[float, ...], columns: list[str]) -> tuple[sql.Composable, tuple]:
    """The GeoJSON page of a bbox query, built by PostgreSQL in one statement."""
    props = sql.SQL(", ").join(sql.SQL("{}, t.{}").format(sql.Literal(c), sql.Identifier(c))
                               for c in columns)
    query = sql.SQL(
        "SELECT json_build_object('type', 'FeatureCollection', 'features', coalesce(json_agg("
        "json_build_object('type', 'Feature', 'id', t.id, 'geometry', "
        "ST_AsGeoJSON(t.geom, 7)::json, 'properties', json_build_object({props}))), "
        "'[]'::json))::text FROM (SELECT * FROM cim.buildings WHERE valid_to IS NULL AND "
        "ST_Intersects(geom, ST_MakeEnvelope(%s, %s, %s, %s, 4326)) LIMIT 100) t"
    ).format(props=props)
    return query, tuple(b)


# -- checks before timing -----------------------------------------------------------------------

def check_tiles(ours: Server, tipg: Server | None, ours_paths: list[str],
                tipg_paths: list[str], sample: int = 12) -> None:
    """Both answer the sample with tiles that decode, with about the same buildings."""
    rows, ours_total = [], 0
    for i in range(min(sample, len(ours_paths))):
        got = httpx.get(ours.base + ours_paths[i], timeout=120)
        if got.status_code not in (200, 204):
            raise SystemExit(f"ours answered {got.status_code} to {ours_paths[i]}")
        mine = _features(got.content, "buildings")
        ours_total += mine
        theirs = None
        if tipg is not None:
            other = httpx.get(tipg.base + tipg_paths[i], timeout=120)
            if other.status_code not in (200, 204):
                raise SystemExit(f"tipg answered {other.status_code} to {tipg_paths[i]}")
            theirs = _features(other.content, "default")
            if abs(mine - theirs) > max(3, 0.02 * theirs):
                print(f"  note: {ours_paths[i]}: ours {mine} buildings, tipg {theirs}")
        rows.append(f"{ours_paths[i].rsplit('/', 3)[1]}:{mine}/{theirs}")
    if ours_total == 0:
        raise SystemExit("ours returned no buildings in any sample tile")
    print(f"  tiles decode (z:ours/tipg buildings): {' '.join(rows)}")


def _features(body: bytes, layer: str) -> int:
    if not body:
        return 0
    decoded = mapbox_vector_tile.decode(body)
    return len(decoded.get(layer, {}).get("features", []))


def check_features(servers: dict[str, tuple[Server, list[str]]], sample: int = 12) -> None:
    """Every server returns the same number of buildings for the sample bboxes."""
    counts: dict[str, list[int]] = {}
    for name, (server, paths) in servers.items():
        for path in paths[:sample]:
            got = httpx.get(server.base + path, timeout=120)
            if got.status_code != 200:
                raise SystemExit(f"{name} answered {got.status_code} to {path}: "
                                 f"{got.text[:300]}")
            body = got.json()
            counts.setdefault(name, []).append(len(body["features"]))
    names = list(counts)
    for other in names[1:]:
        if counts[other] != counts[names[0]]:
            print(f"  note: feature counts differ: {names[0]} {counts[names[0]]}, "
                  f"{other} {counts[other]}")
    if not any(counts[names[0]]):
        raise SystemExit("no features in any sample bbox")
    print(f"  features per sample page ({', '.join(names)} agree unless noted): "
          f"{' '.join(map(str, counts[names[0]]))}")


# -- the table --------------------------------------------------------------------------------

def print_row(r: Result) -> None:
    per = max(r.count, 1)
    srv = "-" if r.server_cpu is None else f"{r.server_cpu / per * 1000:.1f}"
    pg = "-" if r.pg_cpu is None else f"{r.pg_cpu / per * 1000:.1f}"
    print(f"  {r.name:<40} {r.count:>6} {r.rate:>8.1f} {r.pct(50):>7.1f} {r.pct(95):>7.1f} "
          f"{r.pct(99):>7.1f} {r.errors:>5} {srv:>7} {pg:>7} {r.nbytes / per / 1024:>7.1f}")


def print_header(title: str) -> None:
    print(f"\n{title}")
    print(f"  {'':<40} {'done':>6} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
          f"{'errs':>5} {'srv ms':>7} {'pg ms':>7} {'KiB':>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buildings", type=int, default=470_000)
    parser.add_argument("--tiles", type=int, default=2000, help="tiles per pass")
    parser.add_argument("--queries", type=int, default=2000, help="bbox queries per pass")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=60.0, help="time bound per pass")
    parser.add_argument("--zooms", default="12-16")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                        help="server worker processes (default: one per core)")
    parser.add_argument("--gzip", action="store_true",
                        help="clients accept gzip (default identity: bytes alike for all)")
    parser.add_argument("--skip-anchors", action="store_true",
                        help="only our server: no tipg, pygeoapi or floors")
    parser.add_argument("--configured-database", action="store_true",
                        help="use the configured database (CIM_DATABASE_URL or .cim/pgdata) "
                        "instead of the benchmark's own cluster under bench/out")
    args = parser.parse_args()
    first, _, last = args.zooms.partition("-")
    zooms = list(range(int(first), int(last or first) + 1))

    buildings = next(layer for layer in load_catalog() if layer.id == "buildings")
    drawn = [z for z in zooms if buildings.min_zoom <= z <= buildings.max_zoom]
    if drawn != zooms:
        print(f"zooms {sorted(set(zooms) - set(drawn))} left out: our catalog draws buildings "
              f"from z{buildings.min_zoom} (we answer 204 there), so no like-for-like tile")
    tile_columns = {z: [p.source_column for p in buildings.properties if p.min_zoom <= z]
                    for z in drawn}
    all_columns = [p.source_column for p in buildings.properties]
    gpkg = city_file(args.buildings)

    with database(args.configured_database, gpkg) as (url, data_dir), ExitStack() as stack:
        WORK.mkdir(parents=True, exist_ok=True)
        extent = extent_of(url)
        rng = random.Random(args.seed)
        tiles = tiles_in(extent, drawn, args.tiles, rng)
        boxes = bboxes_in(extent, args.queries, rng)
        warm_rng = random.Random(args.seed + 1)
        warm_tiles = tiles_in(extent, drawn, 60, warm_rng)
        warm_boxes = bboxes_in(extent, 60, warm_rng)
        # Small boxes for the check: pages under the limit, so counts must match exactly.
        check_boxes = bboxes_in(extent, 6, warm_rng, (100, 250)) + boxes[:6]

        def ours_tile(t: Tile) -> str:
            return f"/collections/buildings/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}"

        def tipg_tile(t: Tile) -> str:
            return (f"/collections/cim.buildings/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}"
                    f"?geom-column=geom&properties=id,{','.join(tile_columns[t.z])}")

        def ours_items(b: tuple[float, ...]) -> str:
            return f"/collections/buildings/items?bbox={bbox_param(b)}&limit=100"

        def tipg_items(b: tuple[float, ...]) -> str:
            return (f"/collections/cim.buildings/items?bbox={bbox_param(b)}&limit=100"
                    f"&geom-column=geom&properties=id,{','.join(all_columns)}")

        def pygeoapi_items(b: tuple[float, ...]) -> str:
            return f"/collections/buildings/items?bbox={bbox_param(b)}&limit=100&f=json"

        print(f"{len(tiles)} tiles at z{drawn[0]}-{drawn[-1]} and {len(boxes)} bbox queries "
              f"(seed {args.seed}) in {', '.join(f'{v:.4f}' for v in extent)}; "
              f"{args.clients} clients, at most {args.seconds:.0f} s a pass, "
              f"{args.workers} workers per server")
        print("starting servers")
        ours = start_ours(stack, url, args.workers, False)
        tipg = pygeoapi = None
        if not args.skip_anchors:
            tipg = start_tipg(stack, url, args.workers)
            pygeoapi = start_pygeoapi(stack, url, args.workers, extent, all_columns)

        print("checking responses")
        check_tiles(ours, tipg, [ours_tile(t) for t in tiles[:40]],
                    [tipg_tile(t) for t in tiles[:40]])
        servers = {"ours": (ours, [ours_items(b) for b in check_boxes])}
        if tipg and pygeoapi:
            servers["tipg"] = (tipg, [tipg_items(b) for b in check_boxes])
            servers["pygeoapi"] = (pygeoapi, [pygeoapi_items(b) for b in check_boxes])
        check_features(servers)

        results: dict[str, Result] = {}
        dsn = libpq(url)
        meter_pg = CpuMeter(None, data_dir)

        def timed(key: str, label: str, server: Server, paths: list[str],
                  warm_paths: list[str]) -> None:
            warm(server, warm_paths, args)
            results[key] = run_load(label, server, paths, args, CpuMeter(server, data_dir))
            print_row(results[key])

        print_header(f"tiles, uncached: {len(tiles)} at z{drawn[0]}-{drawn[-1]}, "
                     f"{args.clients} clients")
        timed("ours uncached", "ours (tile cache off)", ours, [ours_tile(t) for t in tiles],
              [ours_tile(t) for t in warm_tiles])
        if tipg:
            timed("tipg uncached", "tipg 1.6.1", tipg, [tipg_tile(t) for t in tiles],
                  [tipg_tile(t) for t in warm_tiles])
            results["floor tiles"] = run_floor(
                "floor: naive ST_AsMVT, psycopg, 2 conns", dsn,
                [floor_tile_sql(t, tile_columns[t.z]) for t in tiles], args, meter_pg)
            print_row(results["floor tiles"])

        print_header("tiles, cached: the same list again after a pass that fills caches")
        ours.stop()
        # An empty disk cache: what the warm pass puts there is what is measured.
        shutil.rmtree(WORK / "tile-cache", ignore_errors=True)
        cached_ours = start_ours(stack, url, args.workers, True)
        ours_paths = [ours_tile(t) for t in tiles]
        warm(cached_ours, ours_paths, args, seconds=3600)  # every tile of the list cached
        results["ours cached"] = run_load(
            "ours (tile cache on)", cached_ours, ours_paths, args, CpuMeter(cached_ours, data_dir))
        print_row(results["ours cached"])
        if tipg:
            tipg_paths = [tipg_tile(t) for t in tiles]
            warm(tipg, [tipg_tile(t) for t in warm_tiles], args)
            results["tipg cached"] = run_load("tipg 1.6.1 (2nd pass, has no cache)", tipg,
                                              tipg_paths, args, CpuMeter(tipg, data_dir))
            print_row(results["tipg cached"])

        print_header(f"features: {len(boxes)} bbox queries of 100 m - 3 km, limit 100, "
                     f"{args.clients} clients")
        timed("ours features", "ours", cached_ours, [ours_items(b) for b in boxes],
              [ours_items(b) for b in warm_boxes])
        if tipg and pygeoapi:
            timed("tipg features", "tipg 1.6.1", tipg, [tipg_items(b) for b in boxes],
                  [tipg_items(b) for b in warm_boxes])
            timed("pygeoapi features", f"pygeoapi {PYGEOAPI.split('==')[1]}", pygeoapi,
                  [pygeoapi_items(b) for b in boxes], [pygeoapi_items(b) for b in warm_boxes])
            results["floor features"] = run_floor(
                "floor: raw SQL GeoJSON page, 2 conns", dsn,
                [floor_page_sql(b, all_columns) for b in boxes], args, meter_pg)
            print_row(results["floor features"])

    print("\nsrv ms / pg ms: CPU of the server's processes / of PostgreSQL per request; "
          "KiB: mean response body")
    client = statistics.mean(r.client_cpu / max(r.count, 1) * 1000 for r in results.values()
                             if r.client_cpu)
    print(f"the load generator itself used {client:.2f} ms CPU per request")
    print(f"{NOTED}")
    print("\ntargets (issue 3)                         ours/tipg      target  met")
    for what, key in (("uncached tiles", "uncached"), ("cached tiles", "cached"),
                      ("features", "features")):
        mine = results[f"ours {key}"]
        theirs = results.get(f"tipg {key}")
        if theirs is None or theirs.rate == 0:
            continue
        ratio = mine.rate / theirs.rate
        print(f"  {what + ' requests/s':<40} {ratio:>8.2f}x {'>= ' + str(TARGETS[what]):>9}"
              f"  {'yes' if ratio >= TARGETS[what] else 'NO'}")
    for what, key in (("uncached tiles", "uncached"), ("cached tiles", "cached"),
                      ("features", "features")):
        p99 = results[f"ours {key}"].pct(99)
        met = "yes" if p99 < P99_TARGET_MS else "NO"
        print(f"  {what + f' p99 at {args.clients} clients':<40} {p99:>7.1f} ms "
              f"{'< ' + str(int(P99_TARGET_MS)) + ' ms':>8}  {met}")


if __name__ == "__main__":
    main()
