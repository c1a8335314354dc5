"""``cim keys``: API keys for the server (writes need an editor key)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cim.access import Role, create_key, list_keys, revoke_key
from cim.cli.db import engine_for
from cim.cli.progress import console
from cim.settings import Settings
from layers.model import Classification

keys_app = typer.Typer(help="Create, list and revoke API keys (stored as digests only).",
                       no_args_is_help=True)


@keys_app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Who or what the key is for (unique).")],
    role: Annotated[Role, typer.Option(help="What the key may do.")] = Role.viewer,
    clearance: Annotated[Classification, typer.Option(
        help="The highest layer classification the key may see.")] = Classification.public,
) -> None:
    """Make a key and print its secret: it is shown this once and never stored."""
    engine = engine_for(ctx.obj)
    try:
        with engine.begin() as conn:
            secret = create_key(conn, name, role, clearance)
    finally:
        engine.dispose()
    console.print(f"key {name!r} ({role}, {clearance}); send it as "
                  "'Authorization: Bearer KEY' or 'X-API-Key: KEY':", highlight=False)
    typer.echo(secret)


@keys_app.command("list")
def list_(ctx: typer.Context) -> None:
    """Every key with its role, clearance and state (never the secrets)."""
    settings: Settings = ctx.obj
    engine = engine_for(settings)
    try:
        with engine.connect() as conn:
            records = list_keys(conn)
    finally:
        engine.dispose()
    table = Table("name", "role", "clearance", "created", "revoked")
    for r in records:
        table.add_row(r.name, r.role, r.clearance, f"{r.created_at:%Y-%m-%d %H:%M}",
                      f"{r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "")
    console.print(table)


@keys_app.command()
def revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The key's name.")],
) -> None:
    """Revoke a key at once: requests with it get 401 from then on."""
    engine = engine_for(ctx.obj)
    try:
        with engine.begin() as conn:
            revoke_key(conn, name)
    finally:
        engine.dispose()
    console.print(f"key {name!r} revoked")
