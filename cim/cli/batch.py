"""Options and the client shared by the commands that run batch work on Dask."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from cim.cli.progress import console
from cim.settings import BatchSettings

if TYPE_CHECKING:  # Dask is imported by the commands that use it, not by every `cim`
    from dask.distributed import Client

Scheduler = Annotated[str | None, typer.Option(
    "--scheduler", help="Run on the Dask scheduler at tcp://HOST:PORT (default: "
    "CIM_BATCH_SCHEDULER, else a local cluster). Its workers must reach the database and "
    "the output.")]
Workers = Annotated[int | None, typer.Option(
    "--workers", min=1, max=256, help="Worker processes of the local Dask cluster (default: "
    "CIM_BATCH_WORKERS, else one per core).")]
InProcess = Annotated[bool, typer.Option(
    "--in-process", help="Work in this command's own process, without Dask.")]


@contextmanager
def client_unless(here: bool, batch: BatchSettings, scheduler: str | None,
                  workers: int | None) -> Iterator[Client | None]:
    """None when the work stays in this process (``here``), else a Dask client."""
    if here and scheduler:
        raise typer.BadParameter("--in-process works here, --scheduler on a cluster: "
                                 "give one of them")
    if here:
        yield None
        return
    from cim.batch import batch_client

    console.print("connecting to the Dask scheduler" if scheduler or batch.scheduler
                  else "starting the Dask cluster")
    with batch_client(batch, scheduler, workers) as client:
        yield client
