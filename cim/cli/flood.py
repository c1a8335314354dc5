"""``cim flood``: waterlogging runs. ``grid`` runs any DEM with no database; ``storm`` writes a
design-storm hyetograph; ``run`` runs a scenario on the city model and publishes it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from cim.cli.batch import InProcess, Scheduler, Workers, client_unless
from cim.cli.progress import console, progress_bar

flood_app = typer.Typer(help="Waterlogging simulation: design storms and the 2D flood solver.",
                        no_args_is_help=True)

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hr": 3600.0}
_INTENSITY = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:mm/h)?\s*$")

# Bad input exits with 2, as for the other commands (cim/cli/errors.py).
BAD_INPUT = 2


def parse_duration(text: str) -> float:
    """Seconds from '1h', '90min', '30m', '45s' or a bare number of seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([a-z]*)\s*", text.lower())
    if not match or match.group(2) not in ("", *_UNITS):
        raise ValueError(f"cannot read the time {text!r}: use e.g. 1h, 90min or 45s")
    seconds = float(match.group(1)) * _UNITS.get(match.group(2), 1.0)
    if seconds <= 0:
        raise ValueError(f"the time {text!r} must be positive")
    return seconds


def parse_length(text: str) -> float:
    """Metres from '2m', '2.5 m' or a bare number."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*m?\s*", text.lower())
    if not match:
        raise ValueError(f"cannot read the length {text!r}: use e.g. 2m")
    return float(match.group(1))


def parse_area(text: str) -> tuple[float, float, float, float]:
    """``west,south,east,north`` in degrees."""
    try:
        west, south, east, north = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"cannot read the area {text!r}: use W,S,E,N in degrees") from None
    return west, south, east, north


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/] {message}")
    return typer.Exit(BAD_INPUT)


@flood_app.command("grid")
def grid(
    dem: Annotated[Path, typer.Option(help="DEM GeoTIFF in a metric CRS (nodata cells are "
                                      "walls).")],
    rain: Annotated[str, typer.Option(help="Uniform rain, e.g. 50mm/h, a hyetograph CSV "
                                      "(time_min,intensity_mm_h), or a GeoTIFF of mm/h on the "
                                      "DEM's grid.")],
    out: Annotated[Path, typer.Option(help="Folder for the results.")],
    duration: Annotated[str, typer.Option(help="Simulated time, e.g. 1h or 90min.")] = "1h",
    manning: Annotated[str, typer.Option(help="Manning's n: a number or a GeoTIFF on the DEM's "
                                         "grid.")] = "0.03",
    boundary: Annotated[str, typer.Option(help="Domain edges: closed or free (outfall).")
                        ] = "closed",
    points: Annotated[Path | None, typer.Option(help="CSV of name,x,y (DEM CRS) for depth time "
                                                "series.")] = None,
    every: Annotated[str, typer.Option(help="Interval of the depth maps.")] = "10min",
    points_every: Annotated[str, typer.Option(help="Interval of the point series.")] = "1min",
    infiltration: Annotated[float, typer.Option(help="Constant infiltration, mm/h.")] = 0.0,
    precision: Annotated[str, typer.Option(help="float64 or float32.")] = "float64",
    theta: Annotated[float, typer.Option(help="de Almeida's θ weighting (0.7-1).")] = 0.8,
    rain_pattern: Annotated[Path | None, typer.Option(help="GeoTIFF on the DEM's grid of "
                                                      "factors scaling --rain per cell.")
                            ] = None,
) -> None:
    """Run the 2D flood solver over a DEM: max depth, depth maps, point series, mass balance."""
    from simulation.flood.errors import FloodInputError
    from simulation.flood.grid_run import GridRun, run_grid
    from simulation.flood.rain import Hyetograph, read_hyetograph_csv
    from simulation.flood.solver import Infiltration, Options

    try:
        duration_s = parse_duration(duration)
        if precision not in ("float64", "float32"):
            raise ValueError(f"precision must be float64 or float32, not {precision!r}")
        intensity = _INTENSITY.match(rain)
        field = rain_pattern
        if rain.lower().endswith((".tif", ".tiff")):
            if rain_pattern is not None:
                raise ValueError("--rain-pattern scales a uniform --rain, not a raster")
            hyetograph, field = Hyetograph.constant(1.0, duration_s), Path(rain)
        elif intensity:
            hyetograph = Hyetograph.constant(float(intensity.group(1)), duration_s)
        else:
            hyetograph = read_hyetograph_csv(Path(rain))
        try:
            rough: float | Path = float(manning)
        except ValueError:
            rough = Path(manning)
        run = GridRun(
            dem=dem, rain=hyetograph, duration_s=duration_s, manning=rough, out=out,
            boundary=boundary, points=points, map_every_s=parse_duration(every),
            points_every_s=parse_duration(points_every), rain_field=field,
            infiltration=Infiltration(infiltration) if infiltration else None,
            options=Options(theta=theta, dtype=precision))  # type: ignore[arg-type]
    except (FloodInputError, ValueError) as exc:
        raise _fail(str(exc)) from None
    try:
        with progress_bar("flood") as step:
            summary = run_grid(run, progress=step)
    except FloodInputError as exc:
        raise _fail(str(exc)) from None
    balance = summary["mass_balance"]
    console.print(
        f"max depth {summary['max_depth_m']:.3f} m; rain {balance['rain']:.1f} m³ = storage "
        f"{balance['final_storage'] - balance['initial_storage']:.1f} + outflow "
        f"{balance['outflow']:.1f} + infiltration {balance['infiltration']:.1f} "
        f"(relative error {balance['relative_error']:.1e}); "
        f"{summary['cell_updates_per_s']:.3g} cell-updates/s")
    console.print(f"written to {out}: {', '.join(summary['outputs'])}, mass_balance.json")


@flood_app.command("storm")
def storm(
    return_period: Annotated[float, typer.Option(help="Return period, years (1-100).")],
    duration: Annotated[str, typer.Option(help="Storm duration, 1-24 h, e.g. 2h.")],
    out: Annotated[Path, typer.Option(help="CSV to write (time_min,intensity_mm_h).")],
    step: Annotated[str, typer.Option(help="Block length.")] = "5min",
    peak: Annotated[float, typer.Option(help="Peak position r (0-1).")] = 0.4,
) -> None:
    """Write a Chicago design storm from the city's intensity formula (Wuhan by default)."""
    from simulation.flood.errors import FloodInputError
    from simulation.flood.rain import WUHAN, chicago_hyetograph

    try:
        hyetograph = chicago_hyetograph(return_period, parse_duration(duration) / 60,
                                        parse_duration(step) / 60, peak)
    except (FloodInputError, ValueError) as exc:
        raise _fail(str(exc)) from None
    hyetograph.to_csv(out)
    console.print(f"{WUHAN.name} formula ({WUHAN.note}): {hyetograph.total_mm:.1f} mm, peak "
                  f"{hyetograph.peak_mm_h:.1f} mm/h; written to {out}")


@flood_app.command("run")
def run(
    ctx: typer.Context,
    return_period: Annotated[float, typer.Option(help="Return period, years (1-100).")] = 50.0,
    duration: Annotated[str, typer.Option(help="Storm duration, 1-24 h, e.g. 2h.")] = "2h",
    cell: Annotated[str, typer.Option(help="Cell size, 1-10 m, e.g. 2m.")] = "2m",
    area: Annotated[str | None, typer.Option(help="W,S,E,N in degrees (default: the DEM's "
                                             "extent).")] = None,
    peak: Annotated[float, typer.Option(help="Chicago peak position r (0-1).")] = 0.4,
    after: Annotated[str | None, typer.Option(help="Simulated time after the rain, e.g. "
                                              "30min.")] = None,
    every: Annotated[str, typer.Option(help="Interval of the depth rasters.")] = "10min",
    precision: Annotated[str, typer.Option(help="float64 or float32.")] = "float64",
    name: Annotated[str | None, typer.Option(help="A name for the scenario.")] = None,
    hyetograph: Annotated[Path | None, typer.Option(help="Rain from a hyetograph CSV "
                                                    "(time_min,intensity_mm_h) instead of the "
                                                    "design storm.")] = None,
    recorded: Annotated[str | None, typer.Option(help="Rain recorded by the city's gauges "
                                                 "over START/END (ISO 8601), instead of the "
                                                 "design storm.")] = None,
    interpolation: Annotated[str, typer.Option(help="Recorded rain between gauges: idw or "
                                               "thiessen.")] = "idw",
    measures: Annotated[Path | None, typer.Option(help="JSON of sponge-city and drainage "
                                                  "measures (green_roofs, "
                                                  "permeable_pavement, storage_ponds, "
                                                  "drainage).")] = None,
) -> None:
    """Run a flood scenario on the city model in the foreground and publish it: a design
    storm by default, or a hyetograph, or recorded rain; with measures if given."""
    import json

    from pydantic import ValidationError

    from cim.cli.scenarios import run_in_foreground
    from simulation.flood.errors import FloodInputError
    from simulation.flood.rain import read_hyetograph_csv
    from simulation.flood.scenario import KIND, FloodInputs

    settings = ctx.obj
    try:
        rain: dict | None = None
        if hyetograph is not None and recorded is not None:
            raise ValueError("give --hyetograph or --recorded, not both")
        if hyetograph is not None:
            storm = read_hyetograph_csv(hyetograph)
            rain = {"kind": "hyetograph",
                    "rows": [[t / 60, v] for t, v in zip(storm.starts_s, storm.intensity_mm_h,
                                                         strict=True)]
                    + [[storm.duration_s / 60, 0.0]]}
        elif recorded is not None:
            start, _, end = recorded.partition("/")
            rain = {"kind": "recorded", "start": start, "end": end, "method": interpolation}
        edits = None
        if measures is not None:
            try:
                edits = json.loads(measures.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ValueError(f"cannot read the measures {measures}: {exc}") from None
        inputs = FloodInputs.model_validate(dict(
            name=name, return_period=return_period, duration_h=parse_duration(duration) / 3600,
            peak=peak, after_h=parse_duration(after) / 3600 if after else 0.0,
            cell_m=parse_length(cell), area=parse_area(area) if area else None,
            map_every_min=parse_duration(every) / 60, precision=precision, rain=rain,
            **({"measures": edits} if edits is not None else {})))
    except ValidationError as exc:
        raise _fail("; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                              for e in exc.errors())) from None
    except (FloodInputError, ValueError) as exc:
        raise _fail(str(exc)) from None
    record = run_in_foreground(settings, KIND, inputs)
    out = record.outputs
    console.print(f"scenario {record.id} succeeded: {out['buildings']} buildings and "
                  f"{out['hotspots']} hotspots affected, roads {out['roads']}, about "
                  f"{out['people']} people; rasters in "
                  f"{settings.storage.root / 'scenarios' / str(record.id)}")


@flood_app.command("compare")
def compare(
    ctx: typer.Context,
    a: Annotated[int, typer.Argument(help="The first scenario's id.")],
    b: Annotated[int, typer.Argument(help="The second scenario's id.")],
    out: Annotated[Path | None, typer.Option(help="Write the difference of the maximum "
                                             "depths (B − A) to this COG.")] = None,
) -> None:
    """Compare two flood scenarios: depth changes and the roads that flood in one only."""
    from cim.cli.db import engine_for
    from simulation.errors import ScenarioConflict
    from simulation.flood.compare import compare as compare_scenarios
    from simulation.jobs import JobContext

    settings = ctx.obj
    engine = engine_for(settings)
    try:
        with engine.connect() as conn:
            result = compare_scenarios(conn, JobContext(settings.storage.root,
                                                        settings.city.crs), a, b, out)
    except ScenarioConflict as exc:
        raise _fail(str(exc)) from None
    finally:
        engine.dispose()
    console.print(
        f"max depth {result.max_depth_a_m:.2f} m → {result.max_depth_b_m:.2f} m; "
        f"{result.deeper_cells} cells deeper (up to {result.largest_rise_m:.2f} m), "
        f"{result.shallower_cells} shallower (up to {result.largest_fall_m:.2f} m)")
    for label, roads in ((f"flooded in {a} only", result.roads_flooded_in_a_only),
                         (f"flooded in {b} only", result.roads_flooded_in_b_only)):
        console.print(f"{len(roads)} roads {label}" + (":" if roads else ""))
        for road in roads:
            console.print(f"  {road.road_id} {road.name or ''}: {road.class_a or '-'} "
                          f"({road.depth_a_m or 0:.2f} m) → {road.class_b or '-'} "
                          f"({road.depth_b_m or 0:.2f} m)")
    if out is not None:
        console.print(f"difference of the maximum depths written to {out}")


def _numbers(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"cannot read the {what} {text!r}: use e.g. 2,5,10") from None


def _option(text: str) -> tuple[str, dict]:
    """``none``, ``FILE.json`` (named after the file) or ``NAME=FILE.json``."""
    import json

    name, _, path = text.rpartition("=") if "=" in text else ("", "", text)
    if path == "none" and not name:
        return "none", {}
    file = Path(path)
    try:
        return name or file.stem, json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read the measures {file}: {exc}") from None


@flood_app.command("ensemble")
def ensemble(
    ctx: typer.Context,
    out: Annotated[str, typer.Option(help="New folder (path or fsspec URL) for the members' "
                                     "results and the summary table.")],
    return_periods: Annotated[str, typer.Option(help="Return periods, years, e.g. "
                                                "2,5,10,20,50,100.")] = "50",
    durations: Annotated[str, typer.Option(help="Storm durations, e.g. 1h,2h.")] = "2h",
    option: Annotated[list[str] | None, typer.Option(help="A scenario edit, repeatable: none "
                                                     "(the city as it is), MEASURES.json or "
                                                     "NAME=MEASURES.json.")] = None,
    cell: Annotated[str, typer.Option(help="Cell size, 1-10 m.")] = "2m",
    area: Annotated[str | None, typer.Option(help="W,S,E,N in degrees (default: the DEM's "
                                             "extent).")] = None,
    peak: Annotated[float, typer.Option(help="Chicago peak position r (0-1).")] = 0.4,
    after: Annotated[str | None, typer.Option(help="Simulated time after the rain.")] = None,
    every: Annotated[str, typer.Option(help="Interval of each member's depth rasters.")
                     ] = "60min",
    precision: Annotated[str, typer.Option(help="float64 or float32.")] = "float64",
    scheduler: Scheduler = None,
    workers: Workers = None,
    in_process: InProcess = False,
) -> None:
    """Run every return period × duration × option over an area as Dask tasks and publish
    the members' rasters and a summary table once all have succeeded."""
    from pydantic import ValidationError

    from cim.cli.db import engine_for
    from simulation.flood.ensemble import EnsemblePlan, check_output, prepare, run_ensemble
    from simulation.flood.errors import FloodInputError
    from simulation.jobs import JobContext

    settings = ctx.obj
    try:
        edits = [_option(o) for o in option or ["none"]]
        if len({name for name, _ in edits}) < len(edits):
            raise ValueError("two options have the same name: name them, NAME=FILE.json")
        plan = EnsemblePlan.model_validate(dict(
            return_periods=_numbers(return_periods, "return periods"),
            durations_h=[parse_duration(d) / 3600 for d in durations.split(",")],
            options=dict(edits), cell_m=parse_length(cell),
            area=parse_area(area) if area else None, peak=peak,
            after_h=parse_duration(after) / 3600 if after else 0.0,
            map_every_min=parse_duration(every) / 60, precision=precision))
        out = check_output(out)
        engine = engine_for(settings)
        try:
            with engine.connect() as conn:
                prepared = prepare(conn, JobContext(settings.storage.root, settings.city.crs),
                                   plan)
        finally:
            engine.dispose()
    except ValidationError as exc:
        raise _fail("; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                              for e in exc.errors())) from None
    except (FloodInputError, ValueError) as exc:
        raise _fail(str(exc)) from None
    members = plan.members()
    console.print(f"ensemble of {len(members)} members: return periods "
                  f"{plan.return_periods} × durations {plan.durations_h} h × options "
                  f"{list(plan.options)}")
    with (progress_bar("ensemble") as step,
          client_unless(in_process, settings.batch, scheduler, workers) as client):
        rows = run_ensemble(prepared, plan, out, client, progress=step)
    for row in rows:
        console.print(f"  {row['member']}: {row['rain_mm']:.0f} mm, max depth "
                      f"{row['max_depth_m']:.2f} m, {row['roads_closed']} roads closed, "
                      f"{row['buildings']} buildings, mass error {row['mass_error']:.1e}")
    console.print(f"published to {out}: summary.csv, summary.json, members/")


@flood_app.command("catchments")
def catchments(
    ctx: typer.Context,
    dem: Annotated[str, typer.Option(help="DEM GeoTIFF in a metric CRS on storage every "
                                     "worker reads (a path or a GDAL URL).")],
    rain: Annotated[str, typer.Option(help="Uniform rain, e.g. 50mm/h, or a hyetograph CSV "
                                      "(time_min,intensity_mm_h).")],
    out: Annotated[str, typer.Option(help="New folder (path or fsspec URL) for the mosaic "
                                     "and the table of catchments.")],
    duration: Annotated[str, typer.Option(help="Simulated time, e.g. 1h.")] = "1h",
    manning: Annotated[str, typer.Option(help="Manning's n: a number or a GeoTIFF on the "
                                         "DEM's grid.")] = "0.03",
    boundary: Annotated[str, typer.Option(help="The DEM's edges: closed or free.")
                        ] = "closed",
    infiltration: Annotated[float, typer.Option(help="Constant infiltration, mm/h.")] = 0.0,
    precision: Annotated[str, typer.Option(help="float64 or float32.")] = "float64",
    max_crossing: Annotated[float | None, typer.Option(help="Refuse the split when more "
                                                       "than this share of a catchment's "
                                                       "rain crosses its edge (default "
                                                       "CIM_CATCHMENTS_MAX_CROSSING).")
                            ] = None,
    buffer: Annotated[int | None, typer.Option(help="Cells simulated around each catchment "
                                               "(default CIM_CATCHMENTS_BUFFER_CELLS).",
                                               min=1)] = None,
    min_depth: Annotated[float | None, typer.Option(help="Pits shallower than this (m) join "
                                                    "the catchment they spill into.")] = None,
    min_cells: Annotated[int | None, typer.Option(help="Smaller catchments join a "
                                                  "neighbour.", min=1)] = None,
    scheduler: Scheduler = None,
    workers: Workers = None,
    in_process: InProcess = False,
) -> None:
    """Run a storm over a DEM split by drainage catchment, each catchment (plus a buffer) a
    Dask task: the volume crossing each cut is measured, the split refused when it is too
    much, and the maximum depths mosaicked into one COG."""
    from simulation.flood.catchments import plan_split, run_split
    from simulation.flood.ensemble import check_output
    from simulation.flood.errors import FloodInputError
    from simulation.flood.rain import Hyetograph, read_hyetograph_csv
    from simulation.flood.solver import Infiltration, Options

    settings = ctx.obj
    defaults = settings.catchments
    limit = defaults.max_crossing if max_crossing is None else max_crossing
    try:
        if not 0 <= limit <= 1:
            raise ValueError(f"--max-crossing {limit:g} must lie in 0-1")
        if precision not in ("float64", "float32"):
            raise ValueError(f"precision must be float64 or float32, not {precision!r}")
        duration_s = parse_duration(duration)
        intensity = _INTENSITY.match(rain)
        hyetograph = (Hyetograph.constant(float(intensity.group(1)), duration_s) if intensity
                      else read_hyetograph_csv(Path(rain)))
        try:
            rough: float | str = float(manning)
        except ValueError:
            rough = manning
        out = check_output(out)
        split = plan_split(
            dem, rough, hyetograph, duration_s, boundary,
            Infiltration(infiltration) if infiltration else None,
            Options(dtype=precision),  # type: ignore[arg-type]
            defaults.buffer_cells if buffer is None else buffer,
            defaults.min_depth_m if min_depth is None else min_depth,
            defaults.min_cells if min_cells is None else min_cells)
    except (FloodInputError, ValueError) as exc:
        raise _fail(str(exc)) from None
    console.print(f"{len(split.jobs)} catchments")
    try:
        with (progress_bar("catchments") as step,
              client_unless(in_process, settings.batch, scheduler, workers) as client):
            crossings = run_split(split, out, limit, client, progress=step)
    except FloodInputError as exc:
        raise _fail(str(exc)) from None
    for c in crossings:
        console.print(f"  catchment {c.label}: {c.cells} cells, rain {c.rain_m3:.0f} m³, "
                      f"crossing out {c.out_m3:.2f} m³ in {c.in_m3:.2f} m³ "
                      f"({c.fraction:.3%}), max depth {c.max_depth_m:.2f} m")
    console.print(f"published to {out}: max_depth.tif, catchments.tif, catchments.csv, "
                  "catchments.json")
