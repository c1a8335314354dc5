"""Benchmark: import the generated city's buildings from a GeoPackage, beside ogr2ogr.

Both load the same file into the same PostGIS (a throwaway embedded cluster):

* ours: ``cim import --layer buildings`` (mapping, validation, reprojection to EPSG:4326,
  history bookkeeping, indexes);
* anchor: ``ogr2ogr -f PostgreSQL`` (GDAL's plain COPY load with a GiST index, no checks);
* and, for a like-for-like view, ogr2ogr doing part of our work too: reprojection to
  EPSG:4326, ``-makevalid`` and MultiPolygon promotion.

Each side runs in its own process, so its peak memory is its own (the small parent's at
fork time included). Prints the medians.

    python bench/ingest.py [--buildings 470000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyogrio
from sqlalchemy import text

from cim.db.cluster import Cluster
from cim.db.engine import ensure_database, make_engine
from cim.schema.migrate import upgrade
from cim.settings import DatabaseSettings

ROOT = Path(__file__).resolve().parent
CIM = str(Path(sys.executable).parent / "cim")


def run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MiB) of one child process."""
    # stderr to a file, not a pipe: a chatty child must not block on a full pipe.
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})},
                                stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            errors.seek(0)
            raise SystemExit(f"{cmd[0]} failed: {errors.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def city_file(buildings: int) -> Path:
    out = ROOT / "out" / f"city-{buildings}"
    cached = sorted(out.glob("*.gpkg"))
    if cached:
        return cached[0]
    print(f"generating a {buildings:,}-building city (once; cached in {out})")
    # In a child process: a child's peak memory counts its parent's at fork time.
    run([CIM, "demo", "generate", "--out", str(out), "--buildings", str(buildings)])
    return next(out.glob("*.gpkg"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buildings", type=int, default=470_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("ogr2ogr") is None:
        raise SystemExit("ogr2ogr not found: run scripts/bootstrap.sh --with-gdal")

    gpkg = city_file(args.buildings)
    n = pyogrio.read_info(gpkg, layer="buildings")["features"]
    folder = Path(tempfile.mkdtemp(prefix="cim-bench-"))
    folder.chmod(0o755)
    db = DatabaseSettings(data_dir=folder / "pgdata")
    cluster = Cluster(db.data_dir)
    try:
        port = cluster.start().port
        ensure_database(db)
        engine = make_engine(db)
        upgrade(engine)
        url = engine.url.render_as_string(hide_password=False)
        pg = f"PG:host=127.0.0.1 port={port} user=postgres dbname={db.name}"
        ours, anchor, checked = [], [], []
        for i in range(args.runs):
            with engine.begin() as conn:
                conn.execute(text("TRUNCATE cim.buildings, cim.imports RESTART IDENTITY CASCADE"))
            ours.append(run([CIM, "import", str(gpkg), "--layer", "buildings",
                             "--source-layer", "buildings", "--id-field", "source_id",
                             "--source", "bench", "--synthetic"],
                            env={"CIM_DATABASE_URL": url}))
            anchor.append(run(["ogr2ogr", "-f", "PostgreSQL", pg, str(gpkg), "buildings",
                               "-nln", "ogr_buildings", "-overwrite",
                               "-lco", "SPATIAL_INDEX=GIST", "-lco", "SCHEMA=public"]))
            checked.append(run(["ogr2ogr", "-f", "PostgreSQL", pg, str(gpkg), "buildings",
                                "-nln", "ogr_checked", "-overwrite", "-t_srs", "EPSG:4326",
                                "-makevalid", "-nlt", "PROMOTE_TO_MULTI",
                                "-lco", "SPATIAL_INDEX=GIST", "-lco", "SCHEMA=public"]))
            print(f"run {i + 1}: ours {ours[-1][0]:.1f} s, ogr2ogr {anchor[-1][0]:.1f} s, "
                  f"ogr2ogr with checks {checked[-1][0]:.1f} s")
        with engine.connect() as conn:
            stored = conn.scalar(text("SELECT count(*) FROM cim.buildings"))
            plain = conn.scalar(text("SELECT count(*) FROM public.ogr_buildings"))
            like = conn.scalar(text("SELECT count(*) FROM public.ogr_checked"))
        engine.dispose()
    finally:
        cluster.destroy()
        shutil.rmtree(folder, ignore_errors=True)

    def row(name: str, runs: list[tuple[float, float]], count: int) -> None:
        secs = statistics.median(r[0] for r in runs)
        mem = max(r[1] for r in runs)
        print(f"{name:<44} {count:>9,} {secs:>9.1f} {count / secs:>12,.0f} {mem:>10,.0f}")

    print(f"\n{n:,} buildings from {gpkg.name}, median of {args.runs} runs")
    print(f"{'':<44} {'stored':>9} {'seconds':>9} {'buildings/s':>12} {'peak MiB':>10}")
    row("cim import (validated, versioned, EPSG:4326)", ours, stored)
    row("ogr2ogr -f PostgreSQL (plain COPY load)", anchor, plain)
    row("ogr2ogr -t_srs EPSG:4326 -makevalid", checked, like)
    ours_s = statistics.median(r[0] for r in ours)
    ratio = statistics.median(r[0] for r in anchor) / ours_s
    like_ratio = statistics.median(r[0] for r in checked) / ours_s
    print(f"\nours / plain ogr2ogr throughput: {ratio:.2f}x (target: >= 1.0)")
    print(f"ours / ogr2ogr with reprojection and make-valid: {like_ratio:.2f}x")


if __name__ == "__main__":
    main()
