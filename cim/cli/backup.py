"""``cim backup`` and ``cim restore``: the whole city to one file and back."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cim.cli.progress import console


def backup_command(
    ctx: typer.Context,
    out: Annotated[Path, typer.Argument(help="The backup file to write (a .tar).")],
) -> None:
    """Write the city model (pg_dump of the cim schema) and its stored files to one file."""
    with console.status("backing up the city"):
        from cim.backup import backup

        manifest = backup(ctx.obj, out)
    console.print(f"backup of {manifest.city} at schema {manifest.revision} written to {out}")


def restore_command(
    ctx: typer.Context,
    source: Annotated[Path, typer.Argument(help="A file written by `cim backup`.")],
    yes: Annotated[bool, typer.Option("--yes", help="Replace the stored city without asking.")]
    = False,
) -> None:
    """Replace the stored city with a backup's, in one transaction (all or nothing)."""
    if not yes and not typer.confirm(f"Replace the stored city with {source}?"):
        raise typer.Exit(1)
    with console.status("restoring the city"):
        from cim.backup import restore

        manifest = restore(ctx.obj, source)
    console.print(f"restored {manifest.city} as backed up at {manifest.created_at}")
