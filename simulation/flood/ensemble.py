"""Flood ensembles: every return period × duration × option (sponge-city measures) over one
area of the city, each member a Dask task, published all at once.

The area's domain is read from the database once, on the client; each option's measures are
applied to a copy there (so a bad measure is refused before anything runs) and each copy is
shipped once (:func:`cim.batch.shared`: a lost worker loses no input). A member runs
the scenario's own solver step (:func:`simulation.flood.scenario._simulate`: the same
design storm, edges, drainage, infiltration and retention as ``cim flood run``) and the
cheap impacts (:func:`simulation.flood.impacts.assess`), then copies its COGs and
``member.json`` into the staging folder through fsspec. Members are idempotent (a retried
one rewrites the same files), so a worker killed mid-run costs only its tasks. When every
member has succeeded the summary table (``summary.csv``, ``summary.json``) is written and the
staging folder is renamed to the output: a rename on a file system; on an object store,
where a move is a copy, ``summary.json`` is written last inside the folder and marks it
complete. Members are not recorded as scenarios in the database: an ensemble is a batch of
what-ifs read as one table, and its workers need no database.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import fsspec
import numba
from distributed import Client, as_completed, get_worker
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Connection

from cim.batch import RETRIES, shared
from simulation.flood import measures as sponge
from simulation.flood.domain import Domain, build_domain
from simulation.flood.errors import FloodInputError
from simulation.flood.impacts import assess
from simulation.flood.rain import chicago_hyetograph
from simulation.flood.scenario import STORM_STEP_MIN, FloodInputs, _simulate
from simulation.jobs import JobContext

PROGRESS_TOPIC = "cim-flood-ensemble"
NO_MEASURES = "none"
Progress = Callable[[str, float], None]
T = TypeVar("T")


class EnsemblePlan(BaseModel):
    """The members (every return period × duration × option) and what they share."""

    model_config = ConfigDict(extra="forbid")

    return_periods: list[float] = Field(min_length=1, max_length=20)
    durations_h: list[float] = Field(min_length=1, max_length=10)
    options: dict[str, sponge.Measures] = Field(
        min_length=1, max_length=20, description=f"Name: measures ('{NO_MEASURES}': the city "
        "as it is).")
    cell_m: float = Field(default=2.0, ge=1, le=10)
    area: tuple[float, float, float, float] | None = None
    peak: float = Field(default=0.4, ge=0, le=1)
    after_h: float = Field(default=0.0, ge=0, le=6)
    map_every_min: float = Field(default=60.0, ge=1, le=360)
    precision: str = Field(default="float64", pattern="^float(32|64)$")

    @field_validator("return_periods", "durations_h")
    @classmethod
    def _distinct(cls, values: list[float]) -> list[float]:
        if len(set(values)) != len(values):
            raise ValueError("values must not repeat")
        return values

    @field_validator("options")
    @classmethod
    def _names(cls, options: dict[str, sponge.Measures]) -> dict[str, sponge.Measures]:
        for name in options:
            if not name.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"option name {name!r}: use letters, digits, - and _")
        return options

    def members(self) -> list[Member]:
        return [Member(p, d, o) for o in self.options for d in self.durations_h
                for p in self.return_periods]

    def inputs(self, member: Member) -> FloodInputs:
        """The member as a flood scenario's inputs (validated by the scenario's own model)."""
        return FloodInputs(
            return_period=member.return_period, duration_h=member.duration_h, peak=self.peak,
            after_h=self.after_h, cell_m=self.cell_m, area=self.area,
            map_every_min=self.map_every_min, precision=self.precision,
            measures=self.options[member.option])


@dataclass(frozen=True)
class Member:
    return_period: float
    duration_h: float
    option: str

    @property
    def name(self) -> str:
        return f"p{self.return_period:g}y_{self.duration_h:g}h_{self.option}"


@dataclass
class Prepared:
    """One option's domain, measures applied, and its retention stores (None without)."""

    domain: Domain
    retention: sponge.Retention | None


def prepare(conn: Connection, ctx: JobContext, plan: EnsemblePlan) -> dict[str, Prepared]:
    """Read the area once and apply each option's measures to its own copy."""
    for member in plan.members():
        plan.inputs(member)  # FloodInputs' own checks, before the database is read
    base = build_domain(conn, ctx.storage_root, ctx.crs, plan.cell_m,
                        FloodInputs(area=plan.area).bbox)
    prepared = {}
    for name, measures in plan.options.items():
        domain = copy.deepcopy(base)
        try:
            retention = sponge.apply(domain, measures)
        except FloodInputError as exc:
            raise FloodInputError(f"option {name}: {exc}") from None
        prepared[name] = Prepared(domain, retention)
    return prepared


class _Reporter:
    """The scenario's reporter interface for a member: progress to the ensemble's bar."""

    def __init__(self, member: str, progress: Progress | None) -> None:
        self.member, self.lines = member, []
        self._progress = progress

    def progress(self, percent: float, stage: str) -> None:
        if self._progress is not None:
            self._progress(self.member, percent / 100.0)

    def log(self, line: str) -> None:
        self.lines.append(line)


def _worker_progress(member: str, fraction: float) -> None:
    get_worker().log_event(PROGRESS_TOPIC, {"member": member, "fraction": float(fraction)})


def run_member(prepared: Prepared, plan: EnsemblePlan, member: Member, staging: str,
               progress: Progress | None = None) -> dict[str, Any]:
    """Run one member and copy its files to ``staging``/members/<name>/; its summary row."""
    try:
        worker = get_worker()
    except ValueError:  # in the client's process: the single-process path
        worker = None
    if worker is not None:
        # One solver thread per task slot (thread-local in numba): more and the members
        # running side by side fight over the cores.
        numba.set_num_threads(1)
        progress = _worker_progress
    inputs = plan.inputs(member)
    domain = copy.deepcopy(prepared.domain)  # stores and drainage keep state while running
    retention = copy.deepcopy(prepared.retention)
    storm = chicago_hyetograph(inputs.return_period, inputs.duration_h * 60.0, STORM_STEP_MIN,
                               inputs.peak)
    duration_s = inputs.duration_h * 3600.0 + inputs.after_h * 3600.0
    reporter = _Reporter(member.name, progress)
    with tempfile.TemporaryDirectory(prefix="cim-member-") as folder:
        local = Path(folder)
        outputs = _simulate(domain, storm, duration_s, retention, inputs, local, reporter)
        impacts = assess(domain, outputs.pop("max_depth"))
        roads = impacts.roads["flood_class"].value_counts()
        row = {
            "member": member.name, "return_period": member.return_period,
            "duration_h": member.duration_h, "option": member.option,
            "rain_mm": round(storm.total_mm, 3),
            "max_depth_m": outputs["max_depth_m"],
            "flooded_volume_m3": impacts.flooded_volume_m3,
            "roads_closed": int(roads.get("closed", 0)),
            "roads_with_care": int(roads.get("with_care", 0)),
            "buildings": len(impacts.buildings), "hotspots": len(impacts.hotspots),
            "people": float(impacts.buildings["people"].sum()),
            **{f"{k}_m3": v for k, v in outputs["mass_balance"].items()
               if k not in ("error", "relative_error")},
            "mass_error": outputs["mass_balance"]["relative_error"],
            "steps": outputs["steps"], "solver_wall_s": outputs["solver_wall_s"],
        }
        files = sorted(p.name for p in local.iterdir())
        (local / "member.json").write_text(json.dumps(
            {**row, "inputs": inputs.model_dump(mode="json"), "log": reporter.lines,
             "files": files}, indent=2))
        fs, root = fsspec.core.url_to_fs(staging)
        target = f"{root}/members/{member.name}"
        fs.makedirs(target, exist_ok=True)
        for path in sorted(local.iterdir()):
            fs.put_file(str(path), f"{target}/{path.name}")
    if progress is not None:
        progress(member.name, 1.0)
    return row


def check_output(out: str) -> str:
    """The output as an absolute path or URL; refused if something is there already."""
    out = (out if "://" in out else str(Path(out).resolve())).rstrip("/")
    fs, target = fsspec.core.url_to_fs(out)
    if fs.exists(target):
        raise FloodInputError(f"{out} already exists: choose a new output folder")
    return out


def publish(out: str, work: Callable[[str], T]) -> T:
    """Run ``work(staging)``, which writes into a new folder beside ``out``, and rename that
    folder to ``out`` when it returns; remove it when it raises."""
    out = check_output(out)
    fs, target = fsspec.core.url_to_fs(out)
    staging = f"{out}.partial-{uuid.uuid4().hex[:8]}"
    folder = fsspec.core.url_to_fs(staging)[1]
    fs.makedirs(folder, exist_ok=True)
    try:
        result = work(staging)
        fs.mv(folder, target, recursive=True)
    except BaseException:
        fs.rm(folder, recursive=True)
        raise
    return result


def run_ensemble(prepared: dict[str, Prepared], plan: EnsemblePlan, out: str,
                 client: Client | None = None, progress: Progress | None = None
                 ) -> list[dict[str, Any]]:
    """Run every member (on ``client``'s cluster, else one after another here) and publish the
    output folder when all have succeeded; returns the summary rows in member order."""
    members = plan.members()
    done: dict[str, float] = {}

    def report(member: str, fraction: float) -> None:
        done[member] = max(done.get(member, 0.0), fraction)
        if progress is not None:
            progress(f"{sum(f >= 1 for f in done.values())} of {len(members)} members",
                     sum(done.values()) / len(members))

    def work(staging: str) -> list[dict[str, Any]]:
        if client is None:
            rows = [run_member(prepared[m.option], plan, m, staging, report) for m in members]
        else:
            rows = _on_cluster(client, prepared, plan, members, staging, report)
        _write_summary(staging, plan, rows)
        return rows

    return publish(out, work)


def _on_cluster(client: Client, prepared: dict[str, Prepared], plan: EnsemblePlan,
                members: list[Member], staging: str, report: Progress) -> list[dict[str, Any]]:
    def on_event(event: tuple[float, dict[str, Any]]) -> None:
        report(event[1]["member"], event[1]["fraction"])

    client.subscribe_topic(PROGRESS_TOPIC, on_event)
    futures: dict = {}
    try:
        shipped = {name: shared(client, p) for name, p in prepared.items()}
        # The longest storms and rarest return periods (the most steps) first, so the workers
        # finish together rather than waiting on one long last member.
        longest_first = sorted(members, key=lambda m: (-m.duration_h, -m.return_period))
        futures = {client.submit(run_member, shipped[m.option], plan, m, staging,
                                 key=f"flood-member-{m.name}-{uuid.uuid4().hex[:8]}",
                                 retries=RETRIES, pure=False): m.name for m in longest_first}
        rows = {}
        for future in as_completed(futures):
            row = future.result()
            rows[row["member"]] = row
            report(row["member"], 1.0)
    finally:  # a failure leaves nothing running
        client.cancel(list(futures))
        client.unsubscribe_topic(PROGRESS_TOPIC)
    return [rows[m.name] for m in members]


def _write_summary(staging: str, plan: EnsemblePlan, rows: list[dict[str, Any]]) -> None:
    """The table as CSV, then the JSON (with the plan): written last, it marks completion."""
    fs, root = fsspec.core.url_to_fs(staging)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: (f"{v:.9g}" if isinstance(v, float) and math.isfinite(v) else v)
                      for k, v in row.items()} for row in rows)
    with fs.open(f"{root}/summary.csv", "w") as f:
        f.write(text.getvalue())
    with fs.open(f"{root}/summary.json", "w") as f:
        json.dump({"plan": plan.model_dump(mode="json"), "members": rows}, f, indent=2)
