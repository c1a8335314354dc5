"""Scenario jobs of every kind (flood, traffic): a queue in ``cim.scenarios``, run by a worker
thread in the server or in the foreground by ``cim flood run`` / ``cim traffic run``.

A kind (:class:`ScenarioKind`) brings its inputs model, a check made before queuing and a run
that publishes its results with :func:`succeed`: result rows, status and files at once. The
kinds are listed in :mod:`simulation.kinds`; this module only dispatches on a row's ``kind``.

A worker claims the oldest queued row with ``FOR UPDATE SKIP LOCKED`` and, before the claim
commits, takes a session advisory lock (``LOCK_CLASS``, id) on the connection the job runs
on. So a ``running`` row whose lock is free belongs to a process that died mid-run: whichever
worker sees one (at start-up and on every poll) marks it failed, and it can be rerun. This
holds with several server processes, where a start-up sweep by status alone would fail the
jobs another process is running.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, Engine, text

from simulation.errors import Cancelled, ScenarioConflict, ScenarioInputError, ScenarioNotFound

log = logging.getLogger(__name__)

LOCK_CLASS = 0x0F10
"""The advisory-lock namespace (first int4 key) of scenario jobs; the second is the id."""
PROGRESS_EVERY_S = 1.0
INTERRUPTED = "interrupted: the process running it stopped; rerun it"
_COLUMNS = ("id, kind, name, inputs, status, progress, log, outputs, created_by, created_at, "
            "started_at, finished_at, error")
SCENARIOS_DIR = "scenarios"
LOW_SPACE_BYTES = 64 * 2**20
"""Below this free on the results' disk, a run that failed writing is said to be out of space."""


class Reporter(Protocol):
    """Where a run reports: progress (0-100) and log lines; raises Cancelled to stop it."""

    def progress(self, percent: float, stage: str) -> None: ...

    def log(self, line: str) -> None: ...


@dataclass(frozen=True)
class JobContext:
    """What every run needs from the settings: where files go, the city's metric CRS."""

    storage_root: Path
    crs: int


@dataclass(frozen=True)
class Comparer:
    """How two succeeded scenarios of one kind compare (``GET /scenarios/{a}/compare/{b}``):
    ``run`` answers a ``model``; ``files`` (name: writer) make the comparison's files on
    request, into the path given, so nothing stored can go stale."""

    run: Callable[[Connection, JobContext, int, int], BaseModel]
    model: type[BaseModel]
    files: Mapping[str, Callable[[Connection, JobContext, int, int, Path], None]] = field(
        default_factory=dict)


@dataclass(frozen=True)
class ScenarioKind:
    """One kind of scenario: ``check`` refuses inputs before a job is queued (raising
    ScenarioInputError); ``run`` computes on the job's connection and ends with
    :func:`succeed`; ``result_layers`` are the catalog layers (id: title) it fills;
    ``compare`` compares two of its runs."""

    name: str
    inputs: type[BaseModel]
    check: Callable[[Connection, Any, JobContext], None]
    run: Callable[[Connection, JobContext, int, Any, Reporter], None]
    result_layers: Mapping[str, str]
    summary: str
    compare: Comparer | None = None


def scenario_folder(ctx: JobContext, scenario_id: int) -> Path:
    return ctx.storage_root / SCENARIOS_DIR / str(scenario_id)


def staging_folder(ctx: JobContext, scenario_id: int) -> Path:
    """A new hidden folder beside the published ones, for a run to write its files into."""
    parent = ctx.storage_root / SCENARIOS_DIR
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{scenario_id}-", dir=parent))


def succeed(conn: Connection, ctx: JobContext, scenario_id: int, outputs: dict[str, Any],
            staging: Path | None = None) -> None:
    """Publish a run: the result rows already written on ``conn``, the status and outputs, and
    the staging folder renamed into place, in one commit; nothing if the scenario was cancelled
    or deleted meanwhile (Cancelled). On an error the caller rolls ``conn`` back."""
    status = conn.scalar(text("SELECT status FROM cim.scenarios WHERE id = :id FOR UPDATE"),
                         {"id": scenario_id})
    if status != "running":
        raise Cancelled(f"scenario {scenario_id} is {status or 'deleted'}: its results are "
                        "discarded")
    conn.execute(text(
        "UPDATE cim.scenarios SET status = 'succeeded', progress = 100, "
        "finished_at = now(), outputs = CAST(:outputs AS jsonb) WHERE id = :id"),
        {"id": scenario_id, "outputs": json.dumps(outputs)})
    if staging is None:
        conn.commit()
        return
    # The files move into place last inside the transaction: a failed commit removes them.
    folder = scenario_folder(ctx, scenario_id)
    if folder.exists():
        shutil.rmtree(folder)
    os.rename(staging, folder)
    try:
        conn.commit()
    except Exception:
        shutil.rmtree(folder, ignore_errors=True)
        raise


class ScenarioRecord(BaseModel):
    """A scenario's row: the job's inputs, state and outputs."""

    model_config = ConfigDict(frozen=True)

    id: int
    kind: str
    name: str | None
    inputs: dict[str, Any]
    status: str
    progress: float
    log: str
    outputs: dict[str, Any]
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None


def published_file(ctx: JobContext, record: ScenarioRecord, name: str) -> Path | None:
    """A file the scenario's run published, None for any other name: a client names a file,
    never a path."""
    if record.status != "succeeded" or name not in record.outputs.get("files", []):
        return None
    path = scenario_folder(ctx, record.id) / name
    return path if path.is_file() else None


def get(conn: Connection, scenario_id: int) -> ScenarioRecord:
    row = conn.execute(text(f"SELECT {_COLUMNS} FROM cim.scenarios WHERE id = :id"),
                       {"id": scenario_id}).first()
    if row is None:
        raise ScenarioNotFound(f"no scenario {scenario_id}")
    return ScenarioRecord(**row._mapping)


def comparer(conn: Connection, kinds: Mapping[str, ScenarioKind], a: int, b: int
             ) -> Comparer:
    """The comparison of scenarios ``a`` and ``b``: both succeeded, of one kind that compares
    (ScenarioNotFound, or ScenarioConflict saying why not)."""
    first, second = get(conn, a), get(conn, b)
    if first.kind != second.kind:
        raise ScenarioConflict(f"scenario {a} is a {first.kind} scenario and {b} a "
                               f"{second.kind} one: only scenarios of one kind compare")
    for record in (first, second):
        if record.status != "succeeded":
            raise ScenarioConflict(f"scenario {record.id} is {record.status}: only succeeded "
                                   "scenarios compare")
    kind = kinds.get(first.kind)
    if kind is None or kind.compare is None:
        raise ScenarioConflict(f"{first.kind} scenarios do not compare")
    return kind.compare


def recent(conn: Connection, kind: str | None = None, limit: int = 50) -> list[ScenarioRecord]:
    rows = conn.execute(text(f"SELECT {_COLUMNS} FROM cim.scenarios "
                             "WHERE CAST(:kind AS text) IS NULL OR kind = :kind "
                             "ORDER BY id DESC LIMIT :limit"),
                        {"kind": kind, "limit": limit}).all()
    return [ScenarioRecord(**row._mapping) for row in rows]


def _insert(conn: Connection, kind: ScenarioKind, inputs: BaseModel, created_by: str,
            status: str) -> int:
    document = inputs.model_dump_json()
    if "\\u0000" in document:  # jsonb and text refuse NUL: say so rather than fail the insert
        raise ScenarioInputError("the inputs contain a NUL character")
    return int(conn.scalar(text(
        "INSERT INTO cim.scenarios (kind, name, inputs, status, created_by, started_at) "
        "VALUES (:kind, :name, CAST(:inputs AS jsonb), :status, :by, "
        "CASE WHEN :status = 'running' THEN now() END) RETURNING id"),
        {"kind": kind.name, "name": getattr(inputs, "name", None),
         "inputs": document, "status": status, "by": created_by}))


def enqueue(conn: Connection, kind: ScenarioKind, inputs: BaseModel, created_by: str) -> int:
    """A queued job; the caller commits."""
    return _insert(conn, kind, inputs, created_by, "queued")


def _lock(conn: Connection, scenario_id: int) -> bool:
    return bool(conn.scalar(text("SELECT pg_try_advisory_lock(:c, CAST(:id AS int))"),
                            {"c": LOCK_CLASS, "id": scenario_id}))


def _unlock(conn: Connection, scenario_id: int) -> None:
    conn.rollback()
    conn.execute(text("SELECT pg_advisory_unlock(:c, CAST(:id AS int))"),
                 {"c": LOCK_CLASS, "id": scenario_id})
    conn.commit()


def start_now(conn: Connection, kind: ScenarioKind, inputs: BaseModel, created_by: str) -> int:
    """A job already running on ``conn`` (the CLI's foreground run), its lock taken."""
    scenario_id = _insert(conn, kind, inputs, created_by, "running")
    _lock(conn, scenario_id)
    conn.commit()
    return scenario_id


def claim(conn: Connection, kinds: Mapping[str, ScenarioKind]
          ) -> tuple[int, ScenarioKind, BaseModel] | None:
    """The oldest queued job of the given kinds, now running on ``conn`` with its lock; None
    if none waits."""
    row = conn.execute(text(
        "SELECT id, kind, inputs FROM cim.scenarios WHERE status = 'queued' "
        "AND kind = ANY(:kinds) ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"),
        {"kinds": list(kinds)}).first()
    if row is None or not _lock(conn, row.id):
        conn.rollback()
        return None
    conn.execute(text("UPDATE cim.scenarios SET status = 'running', started_at = now(), "
                      "progress = 0, log = '', error = NULL WHERE id = :id"), {"id": row.id})
    conn.commit()
    kind = kinds[row.kind]
    return row.id, kind, kind.inputs.model_validate(row.inputs)


def fail_orphans(engine: Engine) -> list[int]:
    """Mark failed every running job whose process is gone (its lock is free)."""
    failed = []
    with engine.connect() as conn:
        running = conn.scalars(text("SELECT id FROM cim.scenarios WHERE status = 'running'"))
        for scenario_id in running.all():
            if not _lock(conn, scenario_id):
                continue
            try:
                _fail(conn, scenario_id, INTERRUPTED)
                failed.append(scenario_id)
            finally:
                _unlock(conn, scenario_id)
    if failed:
        log.warning("scenarios %s were running in a process that stopped: marked failed",
                    failed)
    return failed


def cancel(conn: Connection, scenario_id: int) -> ScenarioRecord:
    """Stop a queued or running job (a running one stops at its next progress report)."""
    record = get(conn, scenario_id)
    updated = conn.execute(text(
        "UPDATE cim.scenarios SET status = 'cancelled', finished_at = now() "
        "WHERE id = :id AND status IN ('queued', 'running') RETURNING id"),
        {"id": scenario_id}).first()
    if updated is None:
        raise ScenarioConflict(f"scenario {scenario_id} is {record.status}: only a queued or "
                               "running scenario can be cancelled")
    conn.commit()
    return get(conn, scenario_id)


def rerun(conn: Connection, scenario_id: int) -> ScenarioRecord:
    """Queue a failed or cancelled job again, with the same inputs and id."""
    record = get(conn, scenario_id)
    updated = conn.execute(text(
        "UPDATE cim.scenarios SET status = 'queued', progress = 0, log = '', error = NULL, "
        "started_at = NULL, finished_at = NULL, outputs = '{}' "
        "WHERE id = :id AND status IN ('failed', 'cancelled') RETURNING id"),
        {"id": scenario_id}).first()
    if updated is None:
        raise ScenarioConflict(f"scenario {scenario_id} is {record.status}: only a failed or "
                               "cancelled scenario can be rerun")
    conn.commit()
    return get(conn, scenario_id)


def delete(conn: Connection, ctx: JobContext, scenario_id: int) -> None:
    """Remove a scenario with its results and files; a queued or running job stops."""
    get(conn, scenario_id)
    conn.execute(text("DELETE FROM cim.scenarios WHERE id = :id"), {"id": scenario_id})
    conn.commit()
    shutil.rmtree(scenario_folder(ctx, scenario_id), ignore_errors=True)


class _DbReporter:
    """Progress and log lines into the job's row; stops the run when the row says so."""

    def __init__(self, conn: Connection, scenario_id: int, stop: threading.Event | None,
                 on_progress: Callable[[str, float], None] | None) -> None:
        self.conn, self.id, self.stop, self.on_progress = conn, scenario_id, stop, on_progress
        self.last = 0.0

    def _write(self, sql: str, params: dict) -> None:
        status = self.conn.scalar(text(sql + " WHERE id = :id RETURNING status"),
                                  {**params, "id": self.id})
        self.conn.commit()
        if status != "running":
            raise Cancelled(f"scenario {self.id} was {status or 'deleted'}")

    def progress(self, percent: float, stage: str) -> None:
        if self.on_progress is not None:
            self.on_progress(stage, percent / 100.0)
        if self.stop is not None and self.stop.is_set():
            raise Cancelled("the server is stopping")
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            self._write("UPDATE cim.scenarios SET progress = :p",
                        {"p": round(min(max(percent, 0.0), 100.0), 1)})

    def log(self, line: str) -> None:
        log.info("scenario %s: %s", self.id, line)
        self._write("UPDATE cim.scenarios SET log = log || :line", {"line": line + "\n"})


def execute(conn: Connection, ctx: JobContext, kind: ScenarioKind, scenario_id: int,
            inputs: BaseModel, *, stop: threading.Event | None = None,
            on_progress: Callable[[str, float], None] | None = None) -> None:
    """Run a claimed job to its end: succeeded (published), failed, or left cancelled."""
    reporter = _DbReporter(conn, scenario_id, stop, on_progress)
    try:
        kind.run(conn, ctx, scenario_id, inputs, reporter)
    except Cancelled as exc:
        conn.rollback()
        if stop is not None and stop.is_set():
            _fail(conn, scenario_id, INTERRUPTED)
        else:  # cancelled or deleted by a user: the row says so already
            log.info("scenario %s: %s", scenario_id, exc)
    except ScenarioInputError as exc:
        conn.rollback()
        _fail(conn, scenario_id, str(exc))
    except Exception as exc:
        conn.rollback()
        log.exception("scenario %s failed", scenario_id)
        _fail(conn, scenario_id, _out_of_space(ctx, exc) or f"{type(exc).__name__}: {exc}")
    except BaseException:  # Ctrl-C on a foreground run
        conn.rollback()
        _fail(conn, scenario_id, INTERRUPTED)
        raise
    finally:
        _unlock(conn, scenario_id)


def _out_of_space(ctx: JobContext, exc: Exception) -> str | None:
    """The message for a run that failed because the results' disk is full, else None.

    GDAL reports a full disk as a bare "IO error" without errno, so besides ENOSPC anywhere
    in the exception's chain, a disk left with less than LOW_SPACE_BYTES counts too (the
    run's staging folder is already removed by then, so this is the space before the run)."""
    chain: BaseException | None = exc
    enospc = False
    while chain is not None and not enospc:
        enospc = isinstance(chain, OSError) and chain.errno == errno.ENOSPC
        chain = chain.__cause__ or chain.__context__
    try:
        free = shutil.disk_usage(ctx.storage_root / SCENARIOS_DIR).free
    except OSError:
        return None
    if not enospc and free >= LOW_SPACE_BYTES:
        return None
    return (f"no space left on the disk of the scenario results ({free:,} bytes free); "
            "nothing was published: free some space (or lower CIM_SCENARIOS_MAX_BYTES) "
            "and rerun it")


def _fail(conn: Connection, scenario_id: int, error: str) -> None:
    conn.execute(text(
        "UPDATE cim.scenarios SET status = 'failed', error = :error, finished_at = now() "
        "WHERE id = :id AND status = 'running'"), {"id": scenario_id, "error": error})
    conn.commit()


class Worker:
    """One thread that runs queued jobs one at a time (a run uses every core already)."""

    def __init__(self, engine: Engine, ctx: JobContext, kinds: Mapping[str, ScenarioKind],
                 poll_s: float = 1.0,
                 after_each: Callable[[Connection], object] | None = None) -> None:
        """``after_each`` runs on the job's connection once a job has ended (retention)."""
        self.engine, self.ctx, self.kinds, self.poll_s = engine, ctx, kinds, poll_s
        self.after_each = after_each
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="scenario-worker", daemon=True)

    def start(self) -> None:
        """Fail the jobs a stopped process left running (now: a client may ask at once),
        then poll the queue."""
        try:
            fail_orphans(self.engine)
        except Exception as exc:  # no database yet: the loop keeps trying
            log.error("scenario worker: cannot reach the queue at start-up: %s", exc)
        self._thread.start()

    def wake(self) -> None:
        """A job was queued: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            pause = self.poll_s
            try:
                fail_orphans(self.engine)
                if self._run_one():
                    continue
            except Exception:
                log.exception("scenario worker: cannot reach the queue")
                pause = 10 * self.poll_s
            self._wake.wait(pause)
            self._wake.clear()

    def _run_one(self) -> bool:
        with self.engine.connect() as conn:
            claimed = claim(conn, self.kinds)
            if claimed is None:
                return False
            scenario_id, kind, inputs = claimed
            log.info("scenario %s (%s): started", scenario_id, kind.name)
            execute(conn, self.ctx, kind, scenario_id, inputs, stop=self._stop)
            if self.after_each is not None:
                self.after_each(conn)
        return True
