"""``cim traffic``: equilibrium assignment. ``assign`` runs standard TNTP files with no
database; ``network`` builds the car network from the city model's roads; ``run`` runs a
traffic scenario on the city model; ``routes`` finds emergency routes on one; ``compare``
sets two scenarios side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cim.cli.progress import console, progress_bar

traffic_app = typer.Typer(help="Traffic: the car network, assignment, scenarios and routes.",
                          no_args_is_help=True)

# Bad input exits with 2, as for the other commands (cim/cli/errors.py).
BAD_INPUT = 2
NOT_CONVERGED = 1

OmxMatrix = Annotated[str | None, typer.Option(
    help="The OMX file's matrix to use, where it holds several.")]
OmxLookup = Annotated[str | None, typer.Option(
    help="The OMX file's zone lookup to use, where it holds several.")]


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/] {message}")
    return typer.Exit(BAD_INPUT)


def _say(line: str) -> None:
    """A line with data in it (road ids such as ``t:m:`` read as emoji codes to rich)."""
    console.print(line, emoji=False, markup=False)


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
        metavar="[TRIPS]", help="TNTP trips (*_trips.tntp) or an OMX matrix (*.omx); or "
        "--trips.")] = None,
    net: Annotated[Path | None, typer.Option(help="TNTP network file.")] = None,
    trips: Annotated[Path | None, typer.Option(
        help="TNTP trips file, or OMX (.omx): a lookup of zone numbers 1..N, or none for "
        "zones in order.")] = None,
    omx_matrix: OmxMatrix = None,
    omx_lookup: OmxLookup = None,
    gap: Annotated[float, typer.Option(help="Relative gap to reach, (TSTT - SPTT) / TSTT.")
                   ] = 1e-5,
    out: Annotated[Path | None, typer.Option(
        help="Write link flows: .csv (init_node,term_node,flow,time,voc) or TNTP flow "
        "table.")] = None,
    max_iter: Annotated[int, typer.Option(help="At most this many sweeps.")] = 1000,
    engine: Annotated[str, typer.Option(
        help="Solver: bush (our Algorithm B) or pytraf (path-based, reads --threads).")
                      ] = "bush",
    threads: Annotated[int, typer.Option(help="Solver threads (pytraf only).")] = 1,
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
    from simulation.traffic import omx, tntp
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
            if trips_path.suffix.lower() == ".omx":
                demand = omx.demand(omx.read_omx(trips_path, omx_matrix, omx_lookup),
                                    [str(z) for z in range(1, network.num_zones + 1)],
                                    positional=True)
            else:
                demand = tntp.read_trips(trips_path, network.num_zones)
            result = assign(network, demand, gap=gap, max_iter=max_iter, engine=engine,
                            threads=threads, progress=step)
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


def _geometries(path: Path, kinds: tuple[str, ...]) -> list[tuple[dict[str, Any], dict]]:
    """(geometry, properties) of each feature of a GeoJSON file whose type is in ``kinds``."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise _fail(f"cannot read {path} as GeoJSON: {exc}") from None
    if document.get("type") == "FeatureCollection":
        features = document.get("features", [])
    elif document.get("type") == "Feature":
        features = [document]
    else:
        features = [{"type": "Feature", "geometry": document, "properties": {}}]
    found = []
    for number, feature in enumerate(features, start=1):
        geometry = feature.get("geometry") or {}
        if geometry.get("type") not in kinds:
            raise _fail(f"{path.name}: feature {number} is a {geometry.get('type')}, not "
                        f"{' or '.join(kinds)}")
        found.append((geometry, feature.get("properties") or {}))
    return found


def _change(text: str) -> dict[str, Any]:
    """``ROAD_ID:lanes=4,max_speed_kmh=50,capacity_vph=3000``."""
    road, _, settings = text.rpartition(":")
    if not road or not settings:
        raise _fail(f"--change {text!r}: use ROAD_ID:lanes=4,max_speed_kmh=50")
    change: dict[str, Any] = {"road_id": road}
    for item in settings.split(","):
        name, _, value = item.partition("=")
        try:
            change[name.strip()] = float(value)
        except ValueError:
            raise _fail(f"--change {text!r}: {item!r} is not NAME=NUMBER") from None
    return change


def _point(text: str, name: str) -> tuple[float, float]:
    from layers.errors import InvalidParameter
    from simulation.traffic.api import parse_point

    try:
        return parse_point(text, name)
    except InvalidParameter as exc:
        raise _fail(str(exc)) from None


@traffic_app.command("run")
def run_command(
    ctx: typer.Context,
    close: Annotated[list[str] | None, typer.Option(
        help="Close a road (both directions) by id. Repeatable.")] = None,
    close_area: Annotated[Path | None, typer.Option(
        help="GeoJSON of polygons (lon/lat): every road link touching one closes.")] = None,
    flood_scenario: Annotated[int | None, typer.Option(
        help="Slow or close the roads this flood scenario floods (Pregnolato et al. 2017, "
        "closed from 0.3 m).")] = None,
    change: Annotated[list[str] | None, typer.Option(
        help="Change a road: ROAD_ID:lanes=4,max_speed_kmh=50,capacity_vph=3000 (totals of "
        "both directions). Repeatable.")] = None,
    add: Annotated[Path | None, typer.Option(
        help="GeoJSON of new roads (LineStrings, lon/lat; properties road_class, lanes, "
        "max_speed_kmh, capacity_vph, oneway), joined at their ends.")] = None,
    scale: Annotated[float, typer.Option(help="The scenario's demand as a multiple of the "
                                         "base.")] = 1.0,
    od: Annotated[Path | None, typer.Option(
        "--demand", "--od",
        help="Import the OD matrix of the hour: CSV origin,destination,trips (zone ids), or "
        "OMX (.omx) with a lookup of zone ids; default: demand from the buildings.")] = None,
    omx_matrix: OmxMatrix = None,
    omx_lookup: OmxLookup = None,
    peak_hour_factor: Annotated[float, typer.Option(
        help="Share of the day's trips in the analysed hour.")] = 0.1,
    mean_trip_min: Annotated[float | None, typer.Option(
        help="Target mean trip time of the gravity model, minutes.")] = None,
    area: Annotated[str | None, typer.Option(
        help="W,S,E,N in degrees: only the roads and buildings touching it.")] = None,
    grid: Annotated[float, typer.Option(help="Zone grid cell size, m.")] = 1000.0,
    admin_level: Annotated[str | None, typer.Option(
        help="Zones from administrative units of this level instead of the grid.")] = None,
    gap: Annotated[float, typer.Option(help="Relative gap to reach.")] = 1e-4,
    name: Annotated[str | None, typer.Option(help="A name for the scenario.")] = None,
) -> None:
    """Run a traffic scenario (base case and changes) on the city model and publish it."""
    from pydantic import ValidationError

    from cim.cli.flood import parse_area
    from cim.cli.scenarios import run_in_foreground
    from simulation.traffic import omx
    from simulation.traffic.demand import read_od_csv
    from simulation.traffic.errors import TrafficInputError
    from simulation.traffic.scenario import KIND, TrafficInputs

    settings = ctx.obj
    try:
        bbox = parse_area(area) if area else None
    except ValueError as exc:
        raise _fail(str(exc)) from None
    areas = [g for g, _ in _geometries(close_area, ("Polygon", "MultiPolygon"))
             ] if close_area else []
    roads = [{**{k: v for k, v in props.items() if k in (
        "road_class", "lanes", "max_speed_kmh", "capacity_vph", "oneway")},
              "coordinates": [tuple(c[:2]) for c in geometry["coordinates"]]}
             for geometry, props in _geometries(add, ("LineString",))] if add else []
    try:
        if od is None:
            rows = None
        elif od.suffix.lower() == ".omx":
            rows = omx.od_rows(omx.read_omx(od, omx_matrix, omx_lookup))
        else:
            rows = read_od_csv(od)
    except TrafficInputError as exc:
        raise _fail(str(exc)) from None
    try:
        inputs = TrafficInputs(
            name=name, close_roads=close or [], close_areas=areas,
            flood_scenario_id=flood_scenario, change_roads=[_change(c) for c in change or []],
            add_roads=roads, demand_scale=scale,
            od=rows, peak_hour_factor=peak_hour_factor,
            mean_trip_min=mean_trip_min, area=bbox, grid_m=grid, admin_level=admin_level,
            gap=gap)
    except ValidationError as exc:
        raise _fail("; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                              for e in exc.errors())) from None
    record = run_in_foreground(settings, KIND, inputs)
    out = record.outputs
    console.print(f"scenario {record.id} succeeded:")
    for case in ("before", "after"):
        figures = out[case]
        console.print(f"  {case}: {figures['vehicle_hours']:.6g} vehicle-hours, "
                      f"{figures['vehicle_km']:.6g} vehicle-km, {figures['unserved_trips']:.6g} "
                      f"of {figures['trips']:.6g} trips unserved")
    console.print(f"  links: {out['links']}; layer traffic_links, "
                  f"filter=scenario_id={record.id}")


@traffic_app.command("routes")
def routes_command(
    ctx: typer.Context,
    scenario: Annotated[int, typer.Option(help="A succeeded traffic scenario.")],
    from_: Annotated[str, typer.Option("--from", help="The depot, LON,LAT.")],
    to: Annotated[list[str] | None, typer.Option(
        help="A destination, LON,LAT. Repeatable.")] = None,
    hotspots: Annotated[int | None, typer.Option(
        help="Also to every hotspot of this flood scenario (a point inside each, by rank).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the routes as GeoJSON.")] = None,
) -> None:
    """Fastest routes from a depot on a traffic scenario's network (closed roads left out)."""
    from cim.cli.db import engine_for
    from simulation.errors import ScenarioConflict
    from simulation.traffic import routing

    settings = ctx.obj
    start = _point(from_, "--from")
    ends = [_point(t, "--to") for t in to or []]
    engine = engine_for(settings)
    try:
        with engine.connect() as conn:
            network = routing.load(conn, scenario, settings.city.crs)
            if hotspots is not None:
                ends += routing.hotspot_points(conn, hotspots)
        found, snap = routing.fastest_routes(network, start, ends)
    except ScenarioConflict as exc:
        raise _fail(str(exc)) from None
    finally:
        engine.dispose()
    for route in found:
        where = f"{route.to[0]:.6f},{route.to[1]:.6f}"
        if route.reachable:
            console.print(f"{where}: {route.travel_time_min:.2f} min, {route.length_m:.0f} m "
                          f"over {len(route.roads)} roads")
        else:
            console.print(f"{where}: unreachable ({route.reason})")
    if out is not None:
        out.write_text(json.dumps(routing.as_geojson(scenario, start, snap, found)))
        console.print(f"routes written to {out}")


@traffic_app.command("compare")
def compare_command(
    ctx: typer.Context,
    a: Annotated[int, typer.Argument(help="The first traffic scenario's id.")],
    b: Annotated[int, typer.Argument(help="The second traffic scenario's id.")],
    out: Annotated[Path | None, typer.Option(
        help="Write every link with its volume, v/c, speed and delay in A and B and the "
        "change (B - A) as GeoJSON.")] = None,
) -> None:
    """Compare two traffic scenarios: totals side by side, roads closed in one only, the
    links whose volume changed most."""
    from cim.cli.db import engine_for
    from simulation.errors import ScenarioConflict
    from simulation.jobs import JobContext
    from simulation.traffic.compare import compare, write_links

    settings = ctx.obj
    jobs_ctx = JobContext(settings.storage.root, settings.city.crs)
    engine = engine_for(settings)
    try:
        with engine.connect() as conn, progress_bar("compare") as step:
            step("totals and closures", 0.1)
            result = compare(conn, jobs_ctx, a, b)
            if out is not None:
                step("links", 0.5)
                write_links(conn, jobs_ctx, a, b, out)
            step("done", 1.0)
    except ScenarioConflict as exc:
        raise _fail(str(exc)) from None
    finally:
        engine.dispose()
    _say(f"{'':16}{'scenario ' + str(a):>16}{'scenario ' + str(b):>16}{'change':>14}")
    for name in ("vehicle_hours", "vehicle_km", "unserved_trips", "trips"):
        figures = [getattr(t, name) for t in (result.totals_a, result.totals_b,
                                              result.totals_change)]
        _say(f"{name.replace('_', ' '):16}{figures[0]:16.6g}{figures[1]:16.6g}"
                      f"{figures[2]:+14.6g}")
    _say(f"{result.links_compared} links in both, {result.links_in_a_only} in {a} "
                  f"only, {result.links_in_b_only} in {b} only")
    for label, roads in ((f"closed in {a} only", result.closed_in_a_only),
                         (f"closed in {b} only", result.closed_in_b_only)):
        _say(f"{len(roads)} roads {label}" + (":" if roads else ""))
        for road in roads:
            _say(f"  {road.road_id}: {road.links} links, {road.volume_in_other:.6g} "
                          "veh/h in the other")
    if result.largest_changes:
        _say("largest volume changes (veh/h):")
    for link in result.largest_changes:
        _say(f"  {link.road_id} (link {link.link_a if link.link_a is not None else '-'}"
                      f"/{link.link_b if link.link_b is not None else '-'}): "
                      f"{link.volume_a or 0:.6g} → {link.volume_b or 0:.6g} "
                      f"({link.volume_change:+.6g})")
    if out is not None:
        _say(f"links written to {out}")
