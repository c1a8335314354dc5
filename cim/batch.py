"""Batch work on Dask: the client, and running tasks on it (or in this process) as they finish.

A ``LocalCluster`` of worker processes on this machine by default; a real cluster when
``CIM_BATCH_SCHEDULER`` (or ``--scheduler``) names its scheduler. Tasks must then read and
write shared storage: the database and a path or fsspec URL every worker can reach.

A task is a plain function whose first argument is an engine. On Dask it travels with the
database's settings (picklable, the URL resolved here so a worker need not find the embedded
cluster) and each worker process opens one engine per database and keeps it for its later
tasks. In this process (no client) the caller's engine serves it on a few threads.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import as_completed as threads_completed
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr
from sqlalchemy import Engine

from cim.db.engine import make_engine
from cim.settings import BatchSettings, DatabaseSettings

if TYPE_CHECKING:  # Dask is imported where a cluster is used: `cim --help` need not pay it
    from dask.distributed import Client

log = logging.getLogger(__name__)

RETRIES = 2
"""Extra tries of a task that raised; a task on a worker that died is rerun by the scheduler
anyway (up to ``distributed.scheduler.allowed-failures``)."""


# A LocalCluster shares its cores with the tasks, so its housekeeping is cut to what a batch
# run needs: no statistical profiler (every thread's stack 100 times a second, for the
# dashboard), event-loop health ticks every 0.5 s instead of 20 ms, the memory limit and the
# system monitor checked every 1 s and 5 s instead of 0.1 s and 0.5 s. Measured idle with 2
# workers: 0.10 of a core before, 0.02 after.
_QUIET_LOCAL_CLUSTER = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "500ms",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.admin.system-monitor.disk": False,
}


def _worker_environ() -> dict[str, Any]:
    """Dask's environment for new worker processes, less its ``MALLOC_TRIM_THRESHOLD_``.

    Dask sets it (64 kB) so that workers hand freed memory back to the system at once; any
    explicit value also stops glibc raising its mmap threshold as big buffers come and go,
    so every mesh, tile and array over 128 kB is mapped, faulted in and unmapped again.
    Measured with 1 worker (bench/scale.py's workloads, best of 3-4): the worker's CPU for
    the tile seed 6.1 s with it, 5.6 s without; for the 3D build 1.18 s and 1.01 s."""
    import dask

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    return environ


@contextmanager
def batch_client(settings: BatchSettings, scheduler: str | None = None,
                 workers: int | None = None) -> Iterator[Client]:
    """A client on the given scheduler, or on a LocalCluster that lives as long as the block."""
    import dask
    from dask.distributed import Client, LocalCluster

    address = scheduler or settings.scheduler
    if address:
        log.info("batch work on the Dask scheduler at %s", address)
        with Client(address) as client:
            yield client
        return
    n = workers or settings.workers or os.cpu_count() or 1
    log.info("batch work on a local Dask cluster of %d worker processes", n)
    with (dask.config.set({**_QUIET_LOCAL_CLUSTER,
                           "distributed.nanny.pre-spawn-environ": _worker_environ()}),
          LocalCluster(n_workers=n, threads_per_worker=settings.threads_per_worker,
                       processes=True, dashboard_address=":0") as cluster,  # no fixed port
          Client(cluster) as client):
        yield client


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def worker_engine(database: DatabaseSettings) -> Engine:
    """This process's engine for ``database`` (made on first use, then kept)."""
    assert database.url is not None, "tasks get a database URL (worker_database)"
    key = database.url.get_secret_value()
    with _engines_lock:
        if key not in _engines:
            _engines[key] = make_engine(database)
        return _engines[key]


def worker_database(engine: Engine) -> DatabaseSettings:
    """Settings from which a worker anywhere opens the same database as ``engine``."""
    url = engine.url.render_as_string(hide_password=False)
    return DatabaseSettings(url=SecretStr(url))


@dataclass(frozen=True)
class _OnWorker:
    """A task function bound to the database it opens on whichever worker runs it."""

    function: Callable[..., Any]
    database: DatabaseSettings

    def __call__(self, *args: Any) -> Any:
        return self.function(worker_engine(self.database), *args)


def slots(client: Client | None, threads: int) -> int:
    """Tasks that run at once: the cluster's threads, or ours."""
    return sum(client.nthreads().values()) if client is not None else threads


SHARED = "shared"
"""The key prefix of the tasks that hold :func:`shared` inputs."""


def _itself(value: Any) -> Any:
    return value


def shared(client: Client | None, value: Any) -> Any:
    """``value`` as an argument of many tasks: on ``client``'s cluster a task that returns it
    (shipped once to the scheduler, which keeps it, and fetched by each worker that needs
    it), here itself. If the worker holding it is lost, the scheduler runs that task again,
    so only the lost worker's tasks are lost; scattered data would go with it for good (the
    scheduler's active memory manager drops a broadcast's extra copies within seconds)."""
    if client is None:
        return value
    return client.submit(_itself, value, key=f"{SHARED}-{uuid.uuid4().hex}")


def completed(function: Callable[..., Any], calls: Sequence[tuple], engine: Engine,
              client: Client | None, threads: int = 1) -> Iterator[tuple[int, Any]]:
    """Run ``function(engine, *args)`` for each ``args`` in ``calls``; yield (index, result)
    as each finishes. On ``client`` each call is a Dask task (retried, and rerun elsewhere
    if its worker is lost); without one, they run here on ``threads`` threads. The first
    failure cancels what has not run and is raised."""
    if client is None:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            pending = {pool.submit(function, engine, *args): i for i, args in enumerate(calls)}
            try:
                for future in threads_completed(pending):
                    yield pending[future], future.result()
            finally:  # a failure, or a caller that stops early, leaves nothing running
                for future in pending:
                    future.cancel()
        return
    from dask.distributed import as_completed as dask_completed

    task = _OnWorker(function, worker_database(engine))
    futures = [client.submit(task, *args, retries=RETRIES, pure=False) for args in calls]
    index = {future.key: i for i, future in enumerate(futures)}
    try:
        for future in dask_completed(futures):
            yield index[future.key], future.result()
    finally:
        client.cancel(futures)
