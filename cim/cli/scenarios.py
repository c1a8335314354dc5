"""``cim scenarios``, and a scenario run in the foreground for ``cim flood run`` and ``cim traffic
run``: the same job row, log, publication and retention as a queued one, with a progress bar
instead of a worker thread."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
from pydantic import BaseModel

from cim.cli.db import engine_for
from cim.cli.progress import console, progress_bar
from cim.settings import Settings
from simulation import jobs
from simulation.retention import Retention, prune

scenarios_app = typer.Typer(help="Scenario jobs of every kind.", no_args_is_help=True)


def _retention(settings: Settings) -> Retention:
    return Retention(settings.scenarios.keep_days, settings.scenarios.max_bytes)


def run_in_foreground(settings: Settings, kind: jobs.ScenarioKind, inputs: BaseModel
                      ) -> jobs.ScenarioRecord:
    """Check, run and publish a scenario; prints its log. Inputs refused before the run raise
    ScenarioInputError (exit 2); a failed run exits 1; returns the succeeded record."""
    ctx = jobs.JobContext(settings.storage.root, settings.city.crs)
    engine = engine_for(settings)
    try:
        with engine.connect() as conn:
            kind.check(conn, inputs, ctx)
            scenario_id = jobs.start_now(conn, kind, inputs, f"cli:{getpass.getuser()}")
            console.print(f"scenario {scenario_id}")
            with progress_bar(f"scenario {scenario_id}") as step:
                jobs.execute(conn, ctx, kind, scenario_id, inputs, on_progress=step)
            record = jobs.get(conn, scenario_id)
            prune(conn, ctx, _retention(settings))
    finally:
        engine.dispose()
    console.print(record.log.rstrip())
    if record.status != "succeeded":
        console.print(f"[red]scenario {scenario_id} {record.status}:[/] {record.error}")
        raise typer.Exit(1)
    return record


@scenarios_app.command("prune")
def prune_command(
    ctx: typer.Context,
    keep_days: Annotated[float | None, typer.Option(
        help="Remove finished scenarios older than this (default CIM_SCENARIOS_KEEP_DAYS).",
        min=0)] = None,
    max_bytes: Annotated[int | None, typer.Option(
        help="Remove the oldest finished scenarios while their files take more than this "
        "(default CIM_SCENARIOS_MAX_BYTES).", min=0)] = None,
) -> None:
    """Apply the retention policy now (a server applies it after every run)."""
    settings: Settings = ctx.obj
    policy = _retention(settings)
    policy = Retention(policy.keep_days if keep_days is None else keep_days,
                       policy.max_bytes if max_bytes is None else max_bytes)
    engine = engine_for(settings)
    try:
        with engine.connect() as conn:
            removed = prune(conn, jobs.JobContext(settings.storage.root, settings.city.crs),
                            policy)
    finally:
        engine.dispose()
    console.print(f"removed {len(removed)} scenarios" + (f": {removed}" if removed else ""))
