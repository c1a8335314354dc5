"""``cim db``: the embedded PostGIS cluster and the schema's migrations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import Engine, text

from cim.cli.progress import console
from cim.db.cluster import Cluster
from cim.db.engine import (
    cluster_for,
    database_url,
    ensure_database,
    make_engine,
    postgis_version,
    redacted,
)
from cim.names import SCHEMA
from cim.settings import Settings

db_app = typer.Typer(help="Create, start, stop, inspect and migrate the city database.",
                     no_args_is_help=True)


def engine_for(settings: Settings) -> Engine:
    return make_engine(settings.database)


def start_database(settings: Settings) -> str:
    """Start the embedded cluster when no external URL is set; returns the PostGIS version."""
    if settings.database.url is None:
        cluster_for(settings.database).start()
        ensure_database(settings.database)
    engine = engine_for(settings)
    try:
        with engine.connect() as conn:
            return postgis_version(conn)
    finally:
        engine.dispose()


def migrate(settings: Settings, revision: str = "head") -> str | None:
    from cim.schema.migrate import current_revision, upgrade

    engine = engine_for(settings)
    try:
        upgrade(engine, revision)
        return current_revision(engine)
    finally:
        engine.dispose()


@db_app.command()
def start(ctx: typer.Context) -> None:
    """Start the embedded cluster (creating it on first use) and check PostGIS."""
    settings: Settings = ctx.obj
    version = start_database(settings)
    console.print(f"database ready at {redacted(database_url(settings.database))} "
                  f"(PostGIS {version})")


@db_app.command()
def stop(ctx: typer.Context) -> None:
    """Stop the embedded cluster."""
    settings: Settings = ctx.obj
    if settings.database.url is not None:
        console.print("CIM_DATABASE_URL is set: the external database is not ours to stop")
        raise typer.Exit(1)
    cluster_for(settings.database).stop()
    console.print("database stopped")


@db_app.command()
def status(ctx: typer.Context) -> None:
    """Where the database is, whether it runs, its schema revision and table sizes."""
    settings: Settings = ctx.obj
    if settings.database.url is None:
        state = cluster_for(settings.database).status()
        console.print(f"embedded cluster in {state.data_dir}: "
                      f"{'running' if state.running else 'stopped'}"
                      f"{f' on port {state.port}' if state.running else ''}")
        if not state.running:
            raise typer.Exit(1)
    from cim.schema.migrate import current_revision, head_revision

    engine = engine_for(settings)
    try:
        with engine.connect() as conn:
            console.print(f"PostGIS {postgis_version(conn)}; schema revision "
                          f"{current_revision(engine) or 'none'} (latest {head_revision()})")
            # Planner estimates, never exact counts: cheap on tables of any size.
            rows = conn.execute(text(
                "SELECT c.relname, greatest(c.reltuples, 0)::bigint, "
                "pg_size_pretty(pg_total_relation_size(c.oid)) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :s AND c.relkind = 'r' ORDER BY c.relname"
            ), {"s": SCHEMA}).all()
    finally:
        engine.dispose()
    table = Table("table", "rows (estimate)", "size")
    for name, estimate, size in rows:
        table.add_row(name, f"{estimate:,}", size)
    console.print(table)


@db_app.command("upgrade")
def upgrade_command(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply schema migrations (Alembic) up to REVISION."""
    console.print(f"schema at revision {migrate(ctx.obj, revision)}")


@db_app.command()
def reset(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: every object is deleted.")] = False,
) -> None:
    """Delete the whole city and recreate an empty, migrated database."""
    settings: Settings = ctx.obj
    if not yes:
        console.print("this deletes the whole city and its history: repeat with --yes")
        raise typer.Exit(1)
    if settings.database.url is None:
        cluster_for(settings.database).destroy()
        start_database(settings)
    else:
        engine = engine_for(settings)
        try:
            with engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE'))
                conn.execute(text("DROP TABLE IF EXISTS public.alembic_version"))
        finally:
            engine.dispose()
    console.print(f"empty city at schema revision {migrate(settings)}")


@db_app.command()
def replica(
    ctx: typer.Context,
    data_dir: Annotated[Path, typer.Argument(help="Folder of the replica's cluster.")],
    port: Annotated[int, typer.Option(help="Its port; 0 picks a free one.")] = 0,
    stop_it: Annotated[bool, typer.Option("--stop", help="Stop the replica instead.")] = False,
) -> None:
    """Make (the first time) and start a streaming replica of the embedded cluster in
    DATA_DIR, and print the CIM_DATABASE_REPLICA_URL that sends the API's reads to it."""
    settings: Settings = ctx.obj
    if settings.database.url is not None:
        console.print("CIM_DATABASE_URL is set: replicate the external database with its "
                      "own tools (pg_basebackup -R) and set CIM_DATABASE_REPLICA_URL")
        raise typer.Exit(1)
    copy = Cluster(data_dir.expanduser().resolve(), settings.database.pg_bin, port)
    if stop_it:
        copy.stop()
        console.print("replica stopped")
        return
    if not copy.initialised:
        with console.status("copying the primary (pg_basebackup)"):
            copy = cluster_for(settings.database).make_replica(copy.data_dir, port)
    elif not copy.is_replica:
        console.print(f"{copy.data_dir} holds a cluster that is not a replica")
        raise typer.Exit(2)
    state = copy.start()
    console.print(f"replica streaming on port {state.port}; to read from it set")
    typer.echo(f"CIM_DATABASE_REPLICA_URL={state.url}/{settings.database.name}")


@db_app.command()
def url(ctx: typer.Context) -> None:
    """Print the database URL (password hidden)."""
    typer.echo(redacted(database_url(ctx.obj.database)))
