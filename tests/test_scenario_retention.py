"""The retention policy of scenario results: by age, by the bytes of the results folder, never
a queued or running job; applied by `cim scenarios prune` and after every run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import Engine, text

from cim.settings import Settings
from simulation import jobs
from simulation.retention import Retention, prune

CIM = str(Path(sys.executable).parent / "cim")
MIB = 2**20


def _scenario(engine: Engine, settings: Settings, status: str, days_ago: float,
              mib: int) -> int:
    """A scenario row that ended ``days_ago`` with ``mib`` MiB of files."""
    with engine.begin() as conn:
        scenario_id = conn.scalar(text(
            "INSERT INTO cim.scenarios (kind, inputs, status, created_by, created_at, "
            "finished_at) VALUES ('flood', '{}', :status, 't', now() - make_interval(days => "
            ":days), CASE WHEN :status IN ('queued', 'running') THEN NULL ELSE now() - "
            "make_interval(days => :days) END) RETURNING id"),
            {"status": status, "days": days_ago})
    folder = jobs.scenario_folder(jobs.JobContext(settings.storage.root, 4547), scenario_id)
    folder.mkdir(parents=True)
    (folder / "max_depth.tif").write_bytes(b"\0" * (mib * MIB))
    return scenario_id


def _left(engine: Engine, settings: Settings) -> list[int]:
    with engine.connect() as conn:
        ids = conn.scalars(text("SELECT id FROM cim.scenarios ORDER BY id")).all()
    on_disk = sorted(int(p.name) for p in (settings.storage.root / "scenarios").iterdir())
    assert on_disk == ids  # rows and folders go together
    return ids


def test_oldest_finished_go_first_until_the_files_fit(engine, settings):
    ctx = jobs.JobContext(settings.storage.root, 4547)
    old = _scenario(engine, settings, "succeeded", 30, 3)
    failed = _scenario(engine, settings, "failed", 20, 1)
    running = _scenario(engine, settings, "running", 40, 3)  # oldest, but running
    recent = _scenario(engine, settings, "succeeded", 1, 3)
    with engine.connect() as conn:
        assert prune(conn, ctx, Retention(max_bytes=6 * MIB)) == [old, failed]
    assert _left(engine, settings) == [running, recent]
    with engine.connect() as conn:  # nothing finished is left to remove: over, but untouched
        assert prune(conn, ctx, Retention(max_bytes=1 * MIB)) == [recent]
    assert _left(engine, settings) == [running]


def test_age_limit_and_no_policy(engine, settings):
    ctx = jobs.JobContext(settings.storage.root, 4547)
    old = _scenario(engine, settings, "cancelled", 10, 1)
    young = _scenario(engine, settings, "succeeded", 2, 1)
    queued = _scenario(engine, settings, "queued", 20, 0)
    with engine.connect() as conn:
        assert prune(conn, ctx, Retention()) == []
        assert prune(conn, ctx, Retention(keep_days=7)) == [old]
    assert _left(engine, settings) == [young, queued]


def test_cli_prunes_with_the_settings_or_its_options(engine, settings):
    _scenario(engine, settings, "succeeded", 10, 1)
    kept = _scenario(engine, settings, "succeeded", 1, 1)
    env = {**os.environ, "CIM_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "CIM_STORAGE_ROOT": str(settings.storage.root), "CIM_SCENARIOS_KEEP_DAYS": "5"}
    done = subprocess.run([CIM, "scenarios", "prune"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "removed 1 scenarios" in done.stdout + done.stderr
    assert _left(engine, settings) == [kept]
    bad = subprocess.run([CIM, "scenarios", "prune", "--max-bytes", "-1"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert bad.returncode == 2 and _left(engine, settings) == [kept]
