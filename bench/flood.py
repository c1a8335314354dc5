"""Benchmark: our local-inertial flood solver beside landlab's ``OverlandFlow``, in one run.

The same problem on both (issue 5): a 1000 × 1000 grid at 2 m, a plane falling 0.3 % east
and 0.1 % south with 40 pits, 50 mm/h of uniform rain, Manning's n 0.03, closed edges, one
simulated hour. landlab's component is the same scheme (Bates 2010 with de Almeida's θ
= 0.8, α = 0.7) written with NumPy. Prints cell-updates per second for both, the speed-up,
and the float64 mass-balance error of both. landlab 2.11 needs Python 3.12, so it runs in its
own virtual environment (``bench/out/landlab-venv``, made on first use from ``$LANDLAB_PYTHON``
or pyenv's newest 3.12) in a child process that imports nothing of ours.

``--district`` also runs a 2-hour 50-year Chicago storm scenario over a 3 × 3 km district of
the demo city at 2 m (``DISTRICT``: the window of the demo DEM holding the most buildings and
roads; ``--district-area`` picks another),
as ``cim flood run`` does (domain from the database, drainage, infiltration, impacts,
publication), in the benchmark's own cluster with the demo city loaded once by ``cim demo
load`` (kept under ``bench/out/flood/district``), and prints the simulated-to-wall-clock ratio
and the load average (the machine is shared); ``--district-only`` skips the plane.

    python bench/flood.py [--cells 1000] [--minutes 60] [--landlab-minutes M] [--district]
        [--district-area W,S,E,N] [--district-precision float32]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from cim.settings import Settings

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "out" / "flood"
LANDLAB_VENV = ROOT / "out" / "landlab-venv"
LANDLAB = "landlab==2.11.*"
DX = 2.0
RAIN_MM_H = 50.0
MANNING = 0.03
# W, S, E, N: 0.0313° × 0.0270°, 3 × 3 km at 30.5° N, the 3 km window of the demo DEM (6.9 ×
# 4.5 km) with the most buildings and road length (9,349 buildings, 98 km of roads).
DISTRICT = "114.483,30.476,114.5143,30.503"


def plane_with_pits(cells: int, seed: int = 2026) -> np.ndarray:
    """The bed (m): 0.3 % falling east, 0.1 % south, 40 round pits 0.3-1 m deep."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:cells, 0:cells] * DX
    bed = 20.0 - 0.003 * x - 0.001 * y
    for cx, cy, radius, depth in zip(rng.uniform(0, cells * DX, 40),
                                     rng.uniform(0, cells * DX, 40),
                                     rng.uniform(6, 20, 40), rng.uniform(0.3, 1.0, 40),
                                     strict=True):
        r2 = ((x - cx) ** 2 + (y - cy) ** 2) / radius**2
        bed -= np.where(r2 < 1, depth * (1 - r2), 0.0)
    return bed


def run_ours(bed: np.ndarray, minutes: float, dtype: str) -> dict:
    from simulation.flood.rain import Hyetograph
    from simulation.flood.solver import Grid, Options, simulate

    grid = Grid(bed, DX, DX, MANNING)
    duration = minutes * 60.0
    rain = Hyetograph.constant(RAIN_MM_H, duration)
    simulate(grid, 1.0, rain=rain, options=Options(dtype=dtype))  # compile or load the cache
    result = simulate(grid, duration, rain=rain, options=Options(dtype=dtype))
    return {"steps": result.steps, "wall_s": result.wall_s,
            "cups": result.cell_updates_per_s,
            "mass_error": result.mass_balance.relative_error}


def landlab_python() -> Path:
    """The benchmark's own Python 3.12 with landlab, made once."""
    python = LANDLAB_VENV / "bin" / "python"
    if python.exists():
        return python
    base = os.environ.get("LANDLAB_PYTHON")
    if base is None:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=False)
        found = sorted((Path(root.stdout.strip()) / "versions").glob("3.12*/bin/python"))
        if root.returncode != 0 or not found:
            raise SystemExit("landlab 2.11 needs Python 3.12: set LANDLAB_PYTHON to one "
                             "(pyenv has none here)")
        base = str(found[-1])
    print(f"making {LANDLAB_VENV} with {base} and {LANDLAB} (once)")
    subprocess.run([base, "-m", "venv", str(LANDLAB_VENV)], check=True)
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", LANDLAB],
                             capture_output=True, text=True, check=False)
    if install.returncode != 0:
        raise SystemExit(f"pip could not install {LANDLAB}: {install.stderr[-1500:]}")
    return python


def run_landlab(bed_file: Path, minutes: float) -> dict:
    # One thread, no spinning: the machine is shared (flood-facts.md).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "passive"}
    done = subprocess.run([str(landlab_python()), __file__, "--landlab-worker", str(bed_file),
                           "--minutes", str(minutes)], capture_output=True, text=True,
                          env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"landlab run failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def landlab_worker(bed_file: Path, minutes: float) -> None:
    """Runs under landlab's Python: imports landlab and NumPy only."""
    from landlab import RasterModelGrid
    from landlab.components import OverlandFlow

    bed = np.load(bed_file)
    ny, nx = bed.shape
    # One ring of closed boundary nodes around the cells, so the core nodes are the cells.
    grid = RasterModelGrid((ny + 2, nx + 2), xy_spacing=DX)
    z = np.pad(bed, 1, mode="edge")
    grid.add_field("topographic__elevation", z[::-1].ravel(), at="node")
    depth = grid.add_zeros("surface_water__depth", at="node")
    grid.set_closed_boundaries_at_grid_edges(True, True, True, True)
    flow = OverlandFlow(grid, mannings_n=MANNING, rainfall_intensity=RAIN_MM_H / 3.6e6,
                        theta=0.8, alpha=0.7)
    core = grid.core_nodes
    area = DX * DX
    initial = float(np.sum(depth[core])) * area
    duration, t, steps = minutes * 60.0, 0.0, 0
    started = time.perf_counter()
    while t < duration:
        dt = min(flow.calc_time_step(), duration - t)
        flow.overland_flow(dt=dt)  # one step: dt is within its stable step
        t += dt
        steps += 1
    wall = time.perf_counter() - started
    rain = RAIN_MM_H / 3.6e6 * duration * core.size * area
    change = float(np.sum(depth[core])) * area - initial
    print(json.dumps({"steps": steps, "wall_s": wall, "cups": steps * core.size / wall,
                      "mass_error": abs(change - rain) / rain}))


@contextmanager
def district_database() -> Iterator[tuple[Engine, Settings]]:
    """The demo city (``cim demo load``) in the benchmark's own cluster under
    ``bench/out/flood/district``, loaded once and kept for re-runs; the cluster stops after."""
    from sqlalchemy import text

    from cim.db.cluster import Cluster
    from cim.db.engine import ensure_database, make_engine
    from cim.demo.load import load_demo
    from cim.schema.migrate import upgrade
    from cim.settings import DatabaseSettings, Settings, StorageSettings

    work = OUT / "district"
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)  # the server runs as postgres when we are root
    db = DatabaseSettings(data_dir=work / "pgdata")
    settings = Settings(database=db, storage=StorageSettings(root=work / "files"))
    cluster = Cluster(db.data_dir)
    cluster.start()
    engine = None
    try:
        ensure_database(db)
        engine = make_engine(db)
        upgrade(engine)
        with engine.connect() as conn:
            loaded = conn.scalar(text("SELECT count(*) FROM cim.dems WHERE valid_to IS NULL"))
        if not loaded:
            print(f"loading the demo city (once; kept in {work})")
            started = time.perf_counter()
            load_demo(engine, settings)
            print(f"  loaded in {time.perf_counter() - started:.0f} s")
        yield engine, settings
    finally:
        if engine is not None:
            engine.dispose()
        cluster.stop()


def run_district(hours: float, cell: float, area: str, precision: str) -> None:
    """A design-storm scenario on the demo city, run and published as ``cim flood run`` does."""
    from simulation import jobs
    from simulation.flood.scenario import KIND, FloodInputs

    inputs = FloodInputs(name="bench", return_period=50, duration_h=hours, cell_m=cell,
                         map_every_min=30, precision=precision,
                         area=tuple(float(v) for v in area.split(",")))
    with district_database() as (engine, settings):
        ctx = jobs.JobContext(settings.storage.root, settings.city.crs)
        started = time.perf_counter()
        last = [0.0]

        def progress(stage: str, fraction: float) -> None:
            now = time.perf_counter()
            if now - last[0] > 30:  # a line every half minute: a partial run still tells
                last[0] = now
                print(f"  {now - started:6.0f} s  {fraction * 100:5.1f} %  {stage}  "
                      f"(load {os.getloadavg()[0]:.1f})", flush=True)

        with engine.connect() as conn:
            KIND.check(conn, inputs, ctx)
            scenario_id = jobs.start_now(conn, KIND, inputs, "bench")
            jobs.execute(conn, ctx, KIND, scenario_id, inputs, on_progress=progress)
            record = jobs.get(conn, scenario_id)
    if record.status != "succeeded":
        raise SystemExit(f"the district scenario {record.status}: {record.error}")
    out = record.outputs
    ny, nx = out["cells"]
    print(f"\ndemo district {area}: {nx * cell / 1000:.2f} × {ny * cell / 1000:.2f} km, "
          f"{nx} × {ny} cells at {cell:g} m, Chicago 50-year {hours:g}-hour "
          f"storm ({out['rain_mm']:.0f} mm), drainage, infiltration, buildings, {precision}")
    print(f"  solver {out['solver_wall_s']:.0f} s for {out['steps']} steps, simulated/wall "
          f"{out['simulated_to_wall']:.2f} (target: 2 h in under 5 min, a ratio of 24); "
          f"scenario end to end {time.perf_counter() - started:.0f} s; mass error "
          f"{out['mass_balance']['relative_error']:.1e}; load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} cores")
    deepest = out["deepest"]
    print(f"  {out['steps'] * out['active_cells'] / out['solver_wall_s']:.3g} cell-updates/s; "
          f"projected wall time of the 2-hour storm at this rate: "
          f"{7200.0 / out['simulated_to_wall']:.0f} s")
    print(f"  mean step {out['mean_step_s']:.3f} s; the shortest was set by "
          f"{deepest['depth_m']:.2f} m of water ({deepest['cover']}) at row {deepest['row']}, "
          f"column {deepest['col']}; pipes held {out['mass_balance']['pipe_storage']:.0f} m³ "
          f"and gave {out['mass_balance']['surcharge']:.0f} m³ back at manholes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--landlab-minutes", type=float, default=None,
                        help="landlab's simulated time (default --minutes): its rate per "
                        "step hardly changes, and at its speed an hour is long")
    parser.add_argument("--skip-landlab", action="store_true")
    parser.add_argument("--district", action="store_true",
                        help="also run a design-storm scenario on the demo city")
    parser.add_argument("--district-hours", type=float, default=2.0)
    parser.add_argument("--district-cell", type=float, default=2.0)
    parser.add_argument("--district-area", default=DISTRICT,
                        help=f"W,S,E,N in degrees (default {DISTRICT}: 3 × 3 km)")
    parser.add_argument("--district-precision", choices=("float64", "float32"),
                        default="float64")
    parser.add_argument("--district-only", action="store_true",
                        help="skip the plane, run the district scenario alone")
    parser.add_argument("--landlab-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.landlab_worker:
        landlab_worker(args.landlab_worker, args.minutes)
        return
    if args.district_only:
        run_district(args.district_hours, args.district_cell, args.district_area,
                     args.district_precision)
        return
    import numba

    OUT.mkdir(parents=True, exist_ok=True)
    bed = plane_with_pits(args.cells)
    bed_file = OUT / f"plane-{args.cells}.npy"
    np.save(bed_file, bed)
    print(f"{args.cells} × {args.cells} cells at {DX:g} m, {RAIN_MM_H:g} mm/h, n {MANNING}, "
          "closed edges")
    rows = {}
    for dtype in ("float64", "float32"):
        rows[f"ours {dtype}"] = (args.minutes, run_ours(bed, args.minutes, dtype))
    print(f"ours: numba {numba.__version__}, {numba.get_num_threads()} threads, "
          f"{numba.threading_layer()} threading layer")
    if not args.skip_landlab:
        minutes = args.landlab_minutes or args.minutes
        rows["landlab 2.11 OverlandFlow"] = (minutes, run_landlab(bed_file, minutes))
    print(f"\n{'solver':<28}{'simulated':>10}{'steps':>8}{'wall s':>9}"
          f"{'cell-updates/s':>16}{'mass error':>12}")
    for name, (minutes, r) in rows.items():
        print(f"{name:<28}{minutes:>8g} m{r['steps']:>8}{r['wall_s']:>9.1f}"
              f"{r['cups']:>16.3g}{r['mass_error']:>12.1e}")
    print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())} on "
          f"{os.cpu_count()} cores")
    if "landlab 2.11 OverlandFlow" in rows:
        anchor = rows["landlab 2.11 OverlandFlow"][1]["cups"]
        print(f"\nspeed-up over landlab (float64): {rows['ours float64'][1]['cups'] / anchor:.1f}×"
              f", float32: {rows['ours float32'][1]['cups'] / anchor:.1f}× (target ≥ 10× in "
              "float64); float64 mass error target < 1e-9")
    print("float32's mass error is its depths' rounding: a cell whose net change in a step is "
          "under half the float32 spacing at its depth keeps none of it. It moves with the "
          "flow's arithmetic (on this plane in an hour: 1.6e-9 with the flux pass's "
          "arithmetic in float64, at half its speed; 7.0e-9 in float32, measured); the fluxes "
          "themselves conserve water exactly in both")
    if args.district:
        run_district(args.district_hours, args.district_cell, args.district_area,
                     args.district_precision)


if __name__ == "__main__":
    main()
