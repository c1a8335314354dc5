"""Benchmark: sensor readings at city scale stay fast to query by sensor and time.

Fills ``cim.observations`` in a throwaway cluster with hourly readings of many sensors
(default 20 million rows), then times the queries the platform makes, beside the same
queries on a plain heap of the same rows without the (sensor, time) key: the layout a
naive design would have.

    python bench/observations.py [--sensors 2300] [--hours 8760] [--queries 200]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import text

from cim.db.cluster import Cluster
from cim.db.engine import ensure_database, make_engine
from cim.schema.migrate import upgrade
from cim.settings import DatabaseSettings

FIRST = datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=8)))
QUERIES = {
    "one sensor, one day": (
        "SELECT count(*), avg(value) FROM {table} WHERE sensor_id = :sensor "
        "AND observed_at >= :start AND observed_at < :start + interval '1 day'"
    ),
    "one sensor, one month": (
        "SELECT date_trunc('day', observed_at), max(value) FROM {table} "
        "WHERE sensor_id = :sensor AND observed_at >= :start "
        "AND observed_at < :start + interval '30 days' GROUP BY 1"
    ),
    "latest reading of one sensor": (
        "SELECT observed_at, value FROM {table} WHERE sensor_id = :sensor "
        "ORDER BY observed_at DESC LIMIT 1"
    ),
    "all sensors, one hour": (
        "SELECT count(*) FROM {table} WHERE observed_at >= :start "
        "AND observed_at < :start + interval '1 hour'"
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=2300)
    parser.add_argument("--hours", type=int, default=8760)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    rows = args.sensors * args.hours

    folder = Path(tempfile.mkdtemp(prefix="cim-bench-"))
    folder.chmod(0o755)
    db = DatabaseSettings(data_dir=folder / "pgdata")
    cluster = Cluster(db.data_dir)
    try:
        cluster.start()
        ensure_database(db)
        engine = make_engine(db)
        upgrade(engine)
        with engine.begin() as conn:
            started = time.perf_counter()
            # Time-ordered arrival, as readings come in from the sensor network.
            conn.execute(text(
                "INSERT INTO cim.observations (sensor_id, observed_at, value) "
                "SELECT 'net:s' || s, :first + h * interval '1 hour', "
                "random() * 10 FROM generate_series(0, :hours - 1) h "
                # LATERAL on h keeps hours outermost: rows land in time order.
                "CROSS JOIN LATERAL generate_series(1, :sensors + 0 * h) s"
            ), {"hours": args.hours, "sensors": args.sensors, "first": FIRST})
            loaded = time.perf_counter() - started
            conn.execute(text("CREATE TABLE public.naive AS SELECT * FROM cim.observations"))
            conn.execute(text("ANALYZE cim.observations"))
            conn.execute(text("ANALYZE public.naive"))
            size = conn.scalar(text(
                "SELECT pg_size_pretty(pg_total_relation_size('cim.observations'))"))
        print(f"{rows:,} readings ({args.sensors:,} sensors x {args.hours:,} hours) loaded "
              f"in {loaded:.0f} s ({rows / loaded:,.0f}/s), {size} with indexes\n")
        rng = random.Random(7)
        print(f"{'query (median of ' + str(args.queries) + ')':<34} {'cim ms':>9} "
              f"{'plain heap ms':>14}")
        with engine.connect() as conn:
            for name, sql in QUERIES.items():
                timings = {}
                for table in ("cim.observations", "public.naive"):
                    runs = args.queries if table == "cim.observations" else 3
                    samples = []
                    for _ in range(runs):
                        day = rng.randint(0, max(0, args.hours // 24 - 31))
                        params = {"sensor": f"net:s{rng.randint(1, args.sensors)}",
                                  "start": FIRST + timedelta(days=day)}
                        t = time.perf_counter()
                        conn.execute(text(sql.format(table=table)), params).all()
                        samples.append((time.perf_counter() - t) * 1000)
                    timings[table] = statistics.median(samples)
                print(f"{name:<34} {timings['cim.observations']:>9.2f} "
                      f"{timings['public.naive']:>14.1f}")
        engine.dispose()
    finally:
        cluster.destroy()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
