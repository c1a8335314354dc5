"""The ``cim`` command: the city database, imports, history, the demo city and the server."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cim.cli.backup import backup_command, restore_command
from cim.cli.db import db_app, engine_for
from cim.cli.demo import demo_app
from cim.cli.errors import exit_code
from cim.cli.flood import flood_app
from cim.cli.keys import keys_app
from cim.cli.progress import console, progress_bar
from cim.cli.scenarios import scenarios_app
from cim.cli.tiles import tiles_app
from cim.cli.traffic import traffic_app
from cim.ingest.errors import ImportRejected
from cim.ingest.report import ImportReport
from cim.names import CITY_LAYERS
from cim.settings import Settings, load_settings

app = typer.Typer(
    help="Open city information model platform: store, import, version and serve a city.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(db_app, name="db")
app.add_typer(demo_app, name="demo")
app.add_typer(tiles_app, name="tiles")
app.add_typer(flood_app, name="flood")
app.add_typer(keys_app, name="keys")
app.add_typer(traffic_app, name="traffic")
app.add_typer(scenarios_app, name="scenarios")

app.command("backup")(backup_command)
app.command("restore")(restore_command)

LAYERS = ", ".join(sorted(CITY_LAYERS))
IMPORT_LAYERS = f"{LAYERS}, observations (CSV)"


@app.callback()
def _root(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = load_settings()


def print_report(report: ImportReport, report_file: Path | None, limit: int = 20) -> None:
    console.print(f"[bold]{report.layer}[/] from {Path(report.path).name} "
                  f"({report.format}, {report.input_crs}): {report.summary()}")
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    for title, items in (("rejected", report.rejected), ("repaired", report.repaired)):
        for item in items[:limit]:
            console.print(f"  {title} row {item.row} (id {item.source_id}): {item.reason}")
        if len(items) > limit:
            console.print(f"  ... and {len(items) - limit} more {title} (see --report)")
    if report_file is not None:
        report_file.write_text(report.model_dump_json(indent=2))
        console.print(f"full report written to {report_file}")


@app.command("import")
def import_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="GeoPackage, GeoJSON, zipped Shapefile, "
                                         "FlatGeobuf, CityJSON, OSM (.osm/.pbf) or GeoTIFF.")],
    layer: Annotated[str, typer.Option(help=f"Target layer: {IMPORT_LAYERS}.")],
    crs: Annotated[str | None, typer.Option(
        help="CRS of the input when the file declares none, e.g. EPSG:4547.")] = None,
    map_: Annotated[list[str] | None, typer.Option(
        "--map", help="COLUMN=SOURCE_FIELD[*FACTOR], e.g. --map max_speed_kmh=max_speed*3.6. "
        "Repeatable.")] = None,
    source: Annotated[str | None, typer.Option(
        help="Source name, the prefix of object ids (default: the file name).")] = None,
    id_field: Annotated[str | None, typer.Option(help="Field holding each feature's id.")] = None,
    source_layer: Annotated[str | None, typer.Option(
        help="Layer inside a multi-layer file (GeoPackage).")] = None,
    gcj02: Annotated[bool, typer.Option(
        "--gcj02", help="Coordinates are GCJ-02 (Chinese web maps): convert to WGS84.")] = False,
    synthetic: Annotated[bool, typer.Option(help="Mark the objects as synthetic.")] = False,
    skip_invalid: Annotated[bool, typer.Option(
        help="Load the valid features and report the rejected ones (default: all or "
        "nothing).")] = False,
    replace: Annotated[bool, typer.Option(
        help="The file is the whole source: terminate its objects missing from it.")] = False,
    report_file: Annotated[Path | None, typer.Option(
        "--report", help="Write the full validation report (JSON) here.")] = None,
    check: Annotated[bool, typer.Option(
        "--check", help="Only validate and report; the database is not touched.")] = False,
) -> None:
    """Import a file into a layer, validated, versioned and all or nothing."""
    settings: Settings = ctx.obj
    from cim.ingest.pipeline import ImportOptions, check_file, import_file
    from cim.schema.models import Provenance

    provenance = Provenance.synthetic if synthetic else Provenance.real

    options = ImportOptions(
        layer=layer, crs=crs, maps=map_ or [], source=source, id_field=id_field,
        source_layer=source_layer, gcj02=gcj02, provenance=provenance,
        skip_invalid=skip_invalid, replace=replace,
    )
    if check:
        with progress_bar(f"check {file.name}") as step:
            report = check_file(file, options, city_crs=settings.city.crs, progress=step)
        print_report(report, report_file)
        if report.rejected:
            raise typer.Exit(3)
        return
    engine = engine_for(settings)
    try:
        with progress_bar(f"import {file.name}") as step:
            if layer == "dems":
                from cim.ingest.dem import import_dem

                report = import_dem(engine, file, settings.storage.root, crs=crs,
                                    source=source, provenance=provenance)
            elif layer == "observations":
                from cim.ingest.observations import import_observations

                report = import_observations(
                    engine, file, source=source or file.name.split(".")[0],
                    provenance=provenance, skip_invalid=skip_invalid)
            else:
                report = import_file(engine, file, options, city_crs=settings.city.crs,
                                     progress=step)
    except ImportRejected as exc:
        print_report(exc.report, report_file)
        raise
    finally:
        engine.dispose()
    print_report(report, report_file)


@app.command()
def history(
    ctx: typer.Context,
    layer: Annotated[str, typer.Argument(help=f"Layer: {LAYERS}.")],
    object_id: Annotated[str, typer.Argument(help="The object's stable id.")],
    at: Annotated[datetime | None, typer.Option(
        help="Show only the version that was current at this time (ISO 8601; UTC unless "
        "an offset is given).", formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S",
                                          "%Y-%m-%dT%H:%M:%S%z"])] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every version of one object, oldest first (or the one current at --at)."""
    from cim.history import ObjectNotFound, read_object, versions

    engine = engine_for(ctx.obj)
    try:
        with engine.connect() as conn:
            if at is None:
                rows = versions(conn, layer, object_id)
            else:
                when = at if at.tzinfo else at.replace(tzinfo=UTC)
                found = read_object(conn, layer, object_id, when)
                rows = [found] if found else []
    finally:
        engine.dispose()
    if not rows:
        when_text = f" at {at.isoformat()}" if at else ""
        raise ObjectNotFound(f"{layer} has no object {object_id!r}{when_text}")
    skip = {"geom", "geom_3d", "attributes"}
    if as_json:
        typer.echo(json.dumps([{k: v for k, v in r.items() if k not in skip} for r in rows],
                              default=str, ensure_ascii=False, indent=2))
        return
    table = Table(*[k for k in rows[0] if k not in skip])
    for r in rows:
        table.add_row(*["" if v is None else str(v) for k, v in r.items() if k not in skip])
    console.print(table)


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Interface (default CIM_SERVER_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default CIM_SERVER_PORT).")] = None,
    workers: Annotated[int | None, typer.Option(
        min=1, help="Server processes, one per core is best (default CIM_SERVER_WORKERS).")]
    = None,
) -> None:
    """Serve the platform's HTTP API (JSON logs, one line per request, on stderr)."""
    import uvicorn

    from cim.connections import CountedHTTP, shared_connections
    from cim.observability import LOG_CONFIG, shared_metrics

    settings: Settings = ctx.obj
    processes = workers or settings.server.workers
    # Each worker builds the app from the same settings (environment and cim.toml).
    # uvicorn restarts a worker that takes 5 s to answer its health check: on a busy machine
    # a worker still importing, or busy under load, was killed over and over.
    # Several workers count their connections in a shared file and even them out.
    with shared_metrics(processes), shared_connections(processes):
        uvicorn.run("cim.app:create_app", factory=True, host=host or settings.server.host,
                    port=port or settings.server.port, workers=processes,
                    http=CountedHTTP if processes > 1 else "auto",
                    log_config=LOG_CONFIG, access_log=False, timeout_worker_healthcheck=60)


def main() -> None:
    """Entry point: known errors print one clear line and exit non-zero."""
    try:
        # Without standalone mode click hands back the exit code instead of exiting.
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Abort:
        console.print("aborted")
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # a bad option or argument (typer's own click)
        if hasattr(exc, "show"):  # with the usage line
            exc.show()
        else:
            console.print(f"[red]error:[/] {exc.format_message()}")
        sys.exit(exc.exit_code)
    except Exception as exc:
        code = exit_code(exc)
        if code is None:
            raise
        console.print(f"[red]error:[/] {exc}")
        sys.exit(code)
