"""A scenario run in the foreground, for ``cim flood run`` and ``cim traffic run``: the same job
row, log and publication as a queued one, with a progress bar instead of a worker thread."""

from __future__ import annotations

import getpass

import typer
from pydantic import BaseModel

from cim.cli.db import engine_for
from cim.cli.progress import console, progress_bar
from cim.settings import Settings
from simulation import jobs


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
    finally:
        engine.dispose()
    console.print(record.log.rstrip())
    if record.status != "succeeded":
        console.print(f"[red]scenario {scenario_id} {record.status}:[/] {record.error}")
        raise typer.Exit(1)
    return record
