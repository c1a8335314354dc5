"""Benchmark: the 3D Tiles of the 470,000-building generated city, beside py3dtiles.

Uses the PostGIS cluster ``bench/serving.py`` keeps under ``bench/out/serving`` (loading the
city into it once if needed; never while that benchmark runs), then:

* a full build (every tile written) of ``cim tiles build-3d`` into ``bench/out/threed``;
* an unchanged rebuild (the planning every incremental build pays);
* a rebuild after one tile's record is forgotten (what an edit costs: one tile rewritten).

It prints buildings per second and peak memory beside the anchor measured here for
py3dtiles 12.1.1 exporting 200,000 extruded buildings from PostGIS (serving notes).

    python bench/threed.py [--leaf-size 2000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from serving import OUT, database

from cim.db.engine import make_engine
from cim.settings import DatabaseSettings
from tiles.threed.build import LEAF_SIZE, MANIFEST, build_buildings

GPKG = OUT / "city-470000" / "demo_city.gpkg"
ANCHOR = {"name": "py3dtiles 12.1.1 (200k buildings, 523 s)", "rate": 382.0}


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.glb"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaf-size", type=int, default=LEAF_SIZE)
    args = parser.parse_args()
    busy = subprocess.run(["pgrep", "-f", "bench/serving.py"], capture_output=True, text=True)
    if busy.stdout.strip():
        sys.exit("bench/serving.py is running on the same cluster: run this after it")
    if not GPKG.is_file():
        sys.exit(f"{GPKG} is missing: run bench/serving.py (or bench/ingest.py) once")
    out = OUT / "threed" / "buildings"
    with database(False, GPKG) as (url, _):
        engine = make_engine(DatabaseSettings(url=url))
        try:
            full = build_buildings(engine, out, leaf_size=args.leaf_size, full=True)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
            unchanged = build_buildings(engine, out, leaf_size=args.leaf_size)
            manifest = json.loads((out / MANIFEST).read_text())
            forgotten = sorted(manifest["tiles"])[-1]
            del manifest["tiles"][forgotten]
            (out / MANIFEST).write_text(json.dumps(manifest))
            started = time.perf_counter()
            edit = build_buildings(engine, out, leaf_size=args.leaf_size)
            edit_seconds = time.perf_counter() - started
        finally:
            engine.dispose()
    rate = full.buildings / full.seconds
    document = json.loads((out / "tileset.json").read_text())
    print(f"\n3D Tiles of {full.buildings:,} buildings: {full.tiles:,} tiles "
          f"(leaf size {args.leaf_size}), {folder_size(out) / 2**20:,.0f} MiB of glb, "
          f"root geometric error {document['root']['geometricError']:.1f} m")
    print(f"{'':38} {'buildings/s':>12} {'seconds':>9} {'peak MiB':>9}")
    print(f"{'ours, full build':38} {rate:12,.0f} {full.seconds:9.1f} {peak:9,.0f}")
    print(f"{ANCHOR['name']:38} {ANCHOR['rate']:12,.0f} "
          f"{200_000 / ANCHOR['rate']:9.0f} {1600:9,}")
    print(f"ours / py3dtiles: {rate / ANCHOR['rate']:.1f}x; the issue's target: the whole city "
          f"under 60 s ({'met' if full.seconds < 60 else 'not met'})")
    print(f"rebuild, nothing changed: {unchanged.seconds:.1f} s ({unchanged.written} written); "
          f"after one tile changed: {edit_seconds:.1f} s ({edit.written} written)")


if __name__ == "__main__":
    main()
