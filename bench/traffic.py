"""Benchmark: our assignment beside pytraf and AequilibraE's bi-conjugate Frank-Wolfe, in one run.

The public TNTP networks in ``../shared/data/traffic`` (Sioux Falls, Anaheim, Chicago Sketch
with its 0.04 min/mile distance cost), each to relative gaps of 1e-4 and 1e-5. All are judged
by the same textbook gap, (TSTT − SPTT) / TSTT computed by us from the final flows;
AequilibraE's own stopping gap reads below it, so its target is tightened until the textbook
gap is reached, and the run that reached it is the one shown. RMSE is against the best-known
flows on flow-dependent links, in % of their mean flow. Ours (``assign``'s engines: ``bush``,
our Algorithm B, and ``pytraf``) is timed whole (setup, solve and our gap check);
AequilibraE's ``execute()`` only. The Numba kernels of ``bush`` are compiled (or loaded from
Numba's cache) by a first call on a two-link network, timed and printed apart, never inside a
network's figure.

``--city`` adds ours alone on the city in the configured database (``cim demo load`` first;
``--buildings 470000`` for the census-sized city): the car network from its roads (grid zones
of ``--grid`` metres), the demand from its buildings by the gravity model, and the assignment
to both gaps; its times do not include building the network or the demand, printed apart.
Measured with pytraf on this loaded 2-core machine: the demo city (3,095 links, 35 zones,
39,000 trips) 0.03 CPU s to 1e-4; the 470,000-building city (59,383 links, 639 zones, 881,000
trips) to 1e-4 in 12 sweeps and 81 CPU s (126 in a second run, load average 10-12) with the
origins visited largest gap first (``--order largest_gap``, pytraf's default here), and to
1e-5 in 23 sweeps and 156 CPU s; in a fixed order the same network took 462 CPU s and 73
sweeps to 1e-4.

AequilibraE 1.7.2 runs in its own virtual environment (``bench/out/traffic-venv``, made on
first use) in a child process that imports nothing of ours; it gets the network and demand as
arrays in an ``.npz`` file and sends back its flows.

    python bench/traffic.py [--networks SiouxFalls,Anaheim,ChicagoSketch] [--threads 1]
                            [--engines bush,pytraf] [--no-anchor] [--city] [--grid 1000]
                            [--order fixed|largest_gap|...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "out" / "traffic"
VENV = ROOT / "out" / "traffic-venv"
AEQUILIBRAE = "aequilibrae==1.7.2"
DATA = ROOT.parents[1] / "shared" / "data" / "traffic"
# Length unit in km and generalised cost per length unit (minutes), from each README.
NETWORKS = {"SiouxFalls": (1.0, 0.0), "Anaheim": (0.0003048, 0.0),
            "ChicagoSketch": (1.609344, 0.04)}
GAPS = (1e-4, 1e-5)
TIGHTEN = 0.6  # AequilibraE's target shrinks by this until the textbook gap is met


def anchor_python() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", AEQUILIBRAE], check=True)
    return python


def anchor_worker(npz: Path, target: float, threads: int) -> None:
    """In the anchor's venv: AequilibraE bfw on the arrays of ``npz``, flows as JSON."""
    import pandas as pd
    from aequilibrae.matrix import AequilibraeMatrix
    from aequilibrae.paths import Graph, TrafficAssignment, TrafficClass

    a = np.load(npz)
    links, zones = len(a["init"]), int(a["zones"])
    frame = pd.DataFrame({
        "link_id": np.arange(1, links + 1), "a_node": a["init"] + 1, "b_node": a["term"] + 1,
        "direction": np.ones(links, np.int8),
        # AequilibraE refuses zero free-flow times (Chicago's connectors).
        "free_flow_time": np.maximum(a["fft"], 1e-6), "capacity": a["capacity"],
        "alpha": a["alpha"], "beta": a["beta"], "fixed": a["fixed"]})
    graph = Graph()
    graph.network = frame
    graph.prepare_graph(np.arange(1, zones + 1))
    graph.set_graph("free_flow_time")
    graph.set_skimming(["free_flow_time"])
    graph.set_blocked_centroid_flows(not bool(a["through"]))
    matrix = AequilibraeMatrix()
    matrix.create_empty(zones=zones, matrix_names=["trips"], memory_only=True)
    matrix.index[:] = np.arange(1, zones + 1)
    matrix.matrices[:, :, 0] = a["trips"]
    matrix.computational_view(["trips"])
    cars = TrafficClass("car", graph, matrix)
    if a["fixed"].any():
        cars.set_fixed_cost("fixed")
    run = TrafficAssignment()
    run.set_classes([cars])
    run.set_vdf("BPR")
    run.set_vdf_parameters({"alpha": "alpha", "beta": "beta"})
    run.set_capacity_field("capacity")
    run.set_time_field("free_flow_time")
    run.set_algorithm("bfw")
    run.set_cores(threads)
    run.max_iter = 100_000
    run.rgap_target = target
    cpu, wall = time.process_time(), time.perf_counter()
    run.execute(log_specification=False)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    flow = np.zeros(links)
    table = run.results()
    flow[table.index.to_numpy() - 1] = table["trips_ab"].to_numpy()
    print(json.dumps({"cpu_s": cpu, "wall_s": wall, "iterations": run.assignment.iter,
                      "flow": flow.tolist()}))


def run_anchor(npz: Path, target: float, threads: int) -> dict:
    done = subprocess.run(
        [str(anchor_python()), __file__, "--anchor-worker", str(npz), str(target),
         str(threads)], capture_output=True, text=True, check=False,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    if done.returncode:
        raise RuntimeError(f"AequilibraE failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def rmse_percent(network, volume: np.ndarray, best: np.ndarray) -> float:
    depends = network.alpha > 0
    error = volume[depends] - best[depends]
    return 100.0 * float(np.sqrt(np.mean(error**2)) / best[depends].mean())


def warm_up() -> float:
    """Seconds of the first ``bush`` call: Numba compiles its kernels (or loads them from its
    cache) then, so no network's figure includes it."""
    from simulation.traffic.assignment import Demand, Network, assign

    network = Network(num_nodes=2, init_node=np.array([0, 0]), term_node=np.array([1, 1]),
                      capacity=np.array([10.0, 20.0]), free_flow_time=np.array([1.0, 1.0]),
                      alpha=np.full(2, 0.15), beta=np.full(2, 4.0), length_km=np.ones(2),
                      zone_nodes=np.array([0, 1]))
    started = time.perf_counter()
    assign(network, Demand(np.array([[0.0, 30.0], [0.0, 0.0]])), gap=1e-6)
    return time.perf_counter() - started


def bench_network(name: str, threads: int, engines: list[str], order: str,
                  anchor: bool) -> list[tuple]:
    from simulation.traffic import tntp
    from simulation.traffic.assignment import assign, relative_gap

    folder = DATA / name
    length_km, length_cost = NETWORKS[name]
    network = tntp.read_net(folder / f"{name}_net.tntp", length_km=length_km,
                            length_cost=length_cost)
    demand = tntp.read_trips(folder / f"{name}_trips.tntp", network.num_zones)
    best = tntp.read_flow(folder / f"{name}_flow.tntp").volume
    npz = OUT / f"{name}.npz"
    np.savez(npz, init=network.init_node, term=network.term_node, fft=network.free_flow_time,
             capacity=network.capacity, alpha=network.alpha, beta=network.beta,
             fixed=network.fixed_cost, trips=demand.trips, zones=network.num_zones,
             through=network.through_zones)
    rows = []
    for gap in GAPS:
        for engine in engines:
            ours = assign(network, demand, gap=gap, engine=engine, threads=threads,
                          order=order)
            rows.append((name, gap, _label(engine, order), ours.cpu_s, ours.wall_s,
                         ours.iterations, ours.relative_gap,
                         rmse_percent(network, ours.volume, best), ""))
            print(*_format(rows[-1]), sep="  ", flush=True)
        if anchor:
            target = gap
            for _ in range(8):
                result = run_anchor(npz, target, threads)
                flow = np.asarray(result["flow"])
                reached = relative_gap(network, demand, flow)
                if reached <= gap:
                    break
                target *= TIGHTEN
            rows.append((name, gap, "AequilibraE bfw", result["cpu_s"], result["wall_s"],
                         result["iterations"], reached, rmse_percent(network, flow, best),
                         f"target {target:.1e}"))
            print(*_format(rows[-1]), sep="  ", flush=True)
        print(f"  load average {_load()}", flush=True)
    return rows


def _label(engine: str, order: str) -> str:
    return "ours (Algorithm B)" if engine == "bush" else f"pytraf ({order})"


def bench_city(threads: int, grid_m: float, engines: list[str], order: str) -> list[tuple]:
    """Ours on the configured database's city: network and demand built, then assigned."""
    from cim.db.engine import make_engine
    from cim.settings import load_settings
    from simulation.traffic.assignment import assign
    from simulation.traffic.demand import distribute, read_floor_area, trip_ends, zone_costs
    from simulation.traffic.network import network_from_database

    settings = load_settings()
    crs = settings.city.crs
    engine = make_engine(settings.database)
    try:
        started = time.perf_counter()
        built = network_from_database(engine, crs, grid_m=grid_m)
        network_s = time.perf_counter() - started
        started = time.perf_counter()
        with engine.connect() as conn:
            buildings = read_floor_area(conn, crs)
        ends = trip_ends(buildings, built.zones)
        fitted = distribute(ends, zone_costs(built.network))
        demand_s = time.perf_counter() - started
    finally:
        engine.dispose()
    n = built.network
    print(f"city: {len(buildings)} buildings; {n.num_links} links, {n.num_nodes} nodes, "
          f"{n.num_zones} zones built in {network_s:.1f} s; {fitted.demand.total:.0f} trips "
          f"(mean {fitted.mean_trip_min:.1f} min, β {fitted.beta:.3g}) in {demand_s:.1f} s",
          flush=True)
    rows = []
    for gap in GAPS:
        for engine in engines:
            ours = assign(n, fitted.demand, gap=gap, engine=engine, threads=threads,
                          order=order)
            rows.append((f"city {len(buildings)}", gap, _label(engine, order), ours.cpu_s,
                         ours.wall_s, ours.iterations, ours.relative_gap, float("nan"),
                         f"{n.num_links} links"))
            print(*_format(rows[-1]), sep="  ", flush=True)
            print(f"  load average {_load()}", flush=True)
    return rows


def _load() -> str:
    """The 1, 5 and 15 minute load averages: timings on a shared machine need them."""
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


HEADER = ("network", "gap", "engine", "CPU s", "wall s", "iter", "final gap", "RMSE %", "note")
WIDTHS = (14, 6, 20, 8, 8, 6, 10, 8, 14)


def _format(row: tuple) -> list[str]:
    name, gap, engine, cpu, wall, iterations, reached, rmse, note = row
    cells = (name, f"{gap:.0e}", engine, f"{cpu:.3f}", f"{wall:.3f}", str(iterations),
             f"{reached:.2e}", f"{rmse:.3f}", note)
    return [c.ljust(w) for c, w in zip(cells, WIDTHS, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--city", action="store_true",
                        help="also ours on the city in the configured database")
    parser.add_argument("--grid", type=float, default=1000.0, help="the city's zone grid, m")
    parser.add_argument("--engines", default="bush,pytraf",
                        help="assign's engines to run, comma-separated")
    parser.add_argument("--no-anchor", action="store_true", help="skip AequilibraE")
    parser.add_argument("--order", default=None,
                        help="pytraf's origin order per sweep (default: assign's own)")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"no test networks: {DATA} is missing")
    OUT.mkdir(parents=True, exist_ok=True)
    names = [name for name in args.networks.split(",") if name]  # --networks '' : city only
    if names and not args.no_anchor:
        anchor_python()
    from simulation.traffic.assignment import ENGINES, ORIGIN_ORDER

    order = args.order or ORIGIN_ORDER
    engines = [engine for engine in args.engines.split(",") if engine]
    if unknown := set(engines) - set(ENGINES):
        sys.exit(f"unknown engines {sorted(unknown)}: use {', '.join(ENGINES)}")
    if "bush" in engines:
        print(f"Numba compile (or cache load) of Algorithm B: {warm_up():.2f} s wall, "
              "not in the figures below")
    print(f"load average {_load()}")
    print(*[h.ljust(w) for h, w in zip(HEADER, WIDTHS, strict=True)], sep="  ")
    rows = []
    for name in names:
        if name not in NETWORKS:
            sys.exit(f"unknown network {name!r}: use {', '.join(NETWORKS)}")
        rows += bench_network(name, args.threads, engines, order, not args.no_anchor)
    if args.city:
        rows += bench_city(args.threads, args.grid, engines, order)
    (OUT / "results.json").write_text(json.dumps(
        [dict(zip(HEADER, row, strict=True)) for row in rows], indent=2))
    print(f"written to {OUT / 'results.json'}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--anchor-worker":
        anchor_worker(Path(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.path.insert(0, str(ROOT.parent))
        main()
