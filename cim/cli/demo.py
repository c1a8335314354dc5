"""``cim demo``: generate and load the demo city."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cim.cli.db import engine_for
from cim.cli.progress import console, progress_bar
from cim.settings import Settings

demo_app = typer.Typer(help="The demo city: real Wuhan/Shanghai OSM pieces and a generated "
                       "Optics Valley district.", no_args_is_help=True)

Buildings = Annotated[int | None, typer.Option(
    help="Scale the generated city to this many buildings (470000 = Wuhan's census).")]
Seed = Annotated[int, typer.Option(help="Random seed: the same seed gives the same city.")]


@demo_app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Folder to write the files to.")] = Path(
        "data/generated"),
    buildings: Buildings = None,
    seed: Seed = 2026,
) -> None:
    """Write the generated district as files (GeoPackage, GeoTIFF DEM, observations CSV)."""
    from cim.demo.generate import generate_city

    with progress_bar("generate") as step:
        files = generate_city(out, seed=seed, buildings=buildings, progress=step)
    for name, count in files.summary.items():
        console.print(f"{name}: {count:,}")
    console.print(f"written: {files.vector}, {files.dem}, {files.observations}")


@demo_app.command()
def load(
    ctx: typer.Context,
    buildings: Buildings = None,
    seed: Seed = 2026,
    real: Annotated[bool, typer.Option(help="Also load the real OSM pieces.")] = True,
) -> None:
    """Fill the database with the demo city (re-running it changes nothing)."""
    from cim.demo.load import ATTRIBUTION, load_demo

    settings: Settings = ctx.obj
    engine = engine_for(settings)
    try:
        with progress_bar("demo city") as step:
            reports = load_demo(engine, settings, buildings=buildings, seed=seed,
                                with_real=real, progress=step)
    finally:
        engine.dispose()
    for report in reports:
        console.print(f"{report.layer:<15} {report.source:<30} {report.summary()}")
    console.print(f"OSM data: {ATTRIBUTION}")
