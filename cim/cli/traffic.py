"""``cim traffic``: equilibrium assignment. ``assign`` runs standard TNTP files with no
database; ``network`` builds the car network from the city model's roads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cim.cli.progress import console, progress_bar

traffic_app = typer.Typer(help="Traffic: the car network and user-equilibrium assignment.",
                          no_args_is_help=True)

# Bad input exits with 2, as for the other commands (cim/cli/errors.py).
BAD_INPUT = 2
NOT_CONVERGED = 1


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/] {message}")
    return typer.Exit(BAD_INPUT)


def _one(argument: Path | None, option: Path | None, what: str) -> Path:
    if argument is not None and option is not None and argument != option:
        raise _fail(f"two {what} files given: {argument} and {option}")
    chosen = argument or option
    if chosen is None:
        raise _fail(f"no {what} file: give it as an argument or with --{what}")
    return chosen


@traffic_app.command("assign")
def assign_command(
    net_file: Annotated[Path | None, typer.Argument(
        metavar="[NET]", help="TNTP network (*_net.tntp); or --net.")] = None,
    trips_file: Annotated[Path | None, typer.Argument(
        metavar="[TRIPS]", help="TNTP trips (*_trips.tntp); or --trips.")] = None,
    net: Annotated[Path | None, typer.Option(help="TNTP network file.")] = None,
    trips: Annotated[Path | None, typer.Option(help="TNTP trips file.")] = None,
    gap: Annotated[float, typer.Option(help="Relative gap to reach, (TSTT - SPTT) / TSTT.")
                   ] = 1e-5,
    out: Annotated[Path | None, typer.Option(
        help="Write link flows: .csv (init_node,term_node,flow,time,voc) or TNTP flow "
        "table.")] = None,
    max_iter: Annotated[int, typer.Option(help="At most this many sweeps.")] = 1000,
    threads: Annotated[int, typer.Option(help="Solver threads.")] = 1,
    length_km: Annotated[float, typer.Option(
        help="Kilometres per length unit of the file (1.609344 for miles), for "
        "vehicle-km.")] = 1.0,
    length_cost: Annotated[float | None, typer.Option(
        help="Minutes of generalised cost per length unit (Chicago Sketch: 0.04); default "
        "the file's <DISTANCE FACTOR> or 0.")] = None,
    toll_cost: Annotated[float | None, typer.Option(
        help="Minutes per toll unit; default the file's <TOLL FACTOR> or 0.")] = None,
) -> None:
    """Static user equilibrium (BPR) of TNTP files, no database needed.

    Exits 2 on bad input and 1 if the gap was not reached within --max-iter.
    """
    from simulation.traffic import tntp
    from simulation.traffic.assignment import assign
    from simulation.traffic.errors import TrafficInputError

    net_path = _one(net_file, net, "net")
    trips_path = _one(trips_file, trips, "trips")
    if not 0 < gap < 1 or max_iter < 1 or threads < 1 or length_km <= 0:
        raise _fail("--gap must be in (0, 1); --max-iter, --threads and --length-km positive")
    try:
        with progress_bar("assign") as step:
            step("read network", 0.02)
            network = tntp.read_net(net_path, length_km=length_km, length_cost=length_cost,
                                    toll_cost=toll_cost)
            step("read trips", 0.05)
            demand = tntp.read_trips(trips_path, network.num_zones)
            result = assign(network, demand, gap=gap, max_iter=max_iter, threads=threads,
                            progress=step)
            step(f"{result.iterations} iterations, gap {result.relative_gap:.2e}", 1.0)
        if out is not None:
            tntp.write_flow(out, network, result)
    except TrafficInputError as exc:
        raise _fail(str(exc)) from None
    console.print(
        f"{network.num_links} links, {network.num_zones} zones, {demand.total:.6g} trips: "
        f"{result.iterations} iterations, relative gap {result.relative_gap:.3e} in "
        f"{result.wall_s:.2f} s; {result.vehicle_hours:.6g} vehicle-hours, "
        f"{result.vehicle_km:.6g} vehicle-km")
    if out is not None:
        console.print(f"flows written to {out}")
    if not result.converged:
        console.print(f"[yellow]warning:[/] the gap {gap:g} was not reached in {max_iter} "
                      "sweeps")
        raise typer.Exit(NOT_CONVERGED)


@traffic_app.command("network")
def network_command(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="GeoPackage to write (layers links, nodes, "
                                      "zones).")] = Path("network.gpkg"),
    grid: Annotated[float, typer.Option(help="Zone grid cell size, m.")] = 1000.0,
    admin_level: Annotated[str | None, typer.Option(
        help="Zones from administrative units of this level (e.g. subdistrict) instead of "
        "the grid.")] = None,
    connectors: Annotated[int, typer.Option(help="Centroid connectors per zone.")] = 2,
) -> None:
    """Build the car network from the current roads and write its links, nodes and zones."""
    from cim.cli.db import engine_for
    from simulation.traffic.errors import TrafficInputError
    from simulation.traffic.network import network_from_database, write_gpkg

    settings = ctx.obj
    if out.suffix.lower() != ".gpkg":
        raise _fail(f"--out must be a GeoPackage (.gpkg), not {out.name}")
    engine = engine_for(settings)
    try:
        with progress_bar("network") as step:
            step("read roads and build", 0.1)
            built = network_from_database(engine, settings.city.crs, admin_level=admin_level,
                                          grid_m=grid, connectors=connectors)
            step("write", 0.9)
            write_gpkg(built, out)
    except TrafficInputError as exc:
        raise _fail(str(exc)) from None
    finally:
        engine.dispose()
    for line in built.report.lines():
        console.print(line)
    n = built.network
    console.print(f"{n.num_links} links, {n.num_nodes} nodes, {n.num_zones} zones written "
                  f"to {out}")
