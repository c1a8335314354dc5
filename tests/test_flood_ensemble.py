"""Flood ensembles on Dask: a two-worker LocalCluster gives what the single-process path gives,
survives a worker killed mid-run, and publishes nothing until every member has succeeded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio

from cim.batch import batch_client
from cim.settings import BatchSettings
from simulation.flood.ensemble import EnsemblePlan, prepare, run_ensemble
from simulation.jobs import JobContext
from tests import test_flood_scenarios
from tests.conftest import snapshot

CIM = str(Path(sys.executable).parent / "cim")
district = test_flood_scenarios.district  # the scenario tests' tiny district, as a fixture
UPGRADE = {"drainage": {"inlet_factor": 4.0, "pipe_factor": 4.0}}
PLAN = EnsemblePlan(return_periods=[2, 20, 100], durations_h=[1], cell_m=8,
                    options={"none": {}, "upgrade": UPGRADE})


def _prepared(engine, settings):
    with engine.connect() as conn:
        return prepare(conn, JobContext(settings.storage.root, settings.city.crs), PLAN)


def _depths(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for member in sorted((folder / "members").iterdir()):
        with rasterio.open(member / "max_depth.tif") as src:
            out[member.name] = src.read(1)
    return out


def _same_rows(a: list[dict], b: list[dict]) -> None:
    assert [r["member"] for r in a] == [r["member"] for r in b]
    for x, y in zip(a, b, strict=True):
        for key, value in x.items():
            if key == "solver_wall_s":
                continue
            if isinstance(value, str):
                assert y[key] == value
                continue
            assert y[key] == pytest.approx(value, rel=1e-9, abs=1e-9), (x["member"], key)


def test_two_workers_match_the_single_process_path(district, settings, tmp_path):
    prepared = _prepared(district, settings)
    local = run_ensemble(prepared, PLAN, str(tmp_path / "single"))
    with batch_client(BatchSettings(), workers=2) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        steps: list[float] = []
        remote = run_ensemble(prepared, PLAN, str(tmp_path / "dask"), client,
                              progress=lambda stage, f: steps.append(f))
    _same_rows(local, remote)
    assert len(local) == 6 and {r["option"] for r in local} == {"none", "upgrade"}
    # The storm grows with the return period, and so does the water; the upgrade drains more.
    by = {(r["return_period"], r["option"]): r for r in local}
    assert by[(2, "none")]["rain_mm"] < by[(100, "none")]["rain_mm"]
    assert by[(2, "none")]["max_depth_m"] < by[(100, "none")]["max_depth_m"]
    assert by[(100, "upgrade")]["drainage_m3"] > by[(100, "none")]["drainage_m3"]
    assert all(r["mass_error"] < 1e-12 for r in local)
    a, b = _depths(tmp_path / "single"), _depths(tmp_path / "dask")
    assert list(a) == sorted(r["member"] for r in local) and list(a) == list(b)
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    # Progress came from the workers while members ran, not only as they finished.
    assert any(0 < f < 1 for f in steps) and steps[-1] == pytest.approx(1.0)
    summary = json.loads((tmp_path / "dask" / "summary.json").read_text())
    assert summary["plan"]["return_periods"] == [2, 20, 100]
    assert (tmp_path / "dask" / "summary.csv").read_text().count("\n") == 7
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_a_worker_killed_mid_ensemble_costs_only_its_tasks(district, settings, tmp_path):
    prepared = _prepared(district, settings)
    local = run_ensemble(prepared, PLAN, str(tmp_path / "single"))
    with batch_client(BatchSettings(), workers=2) as client:
        pids = client.run(os.getpid)
        killed: list[int] = []

        def kill_one_running(stage: str, fraction: float) -> None:
            # Once members are running, kill a worker process that is in the middle of one.
            # Progress comes from this thread and from the client's event loop (members'
            # progress events), where `processing()` gives a coroutine: only this thread asks.
            if threading.current_thread() is not threading.main_thread() or killed:
                return
            busy = [w for w, tasks in client.processing().items() if tasks]
            if busy and fraction > 0:
                killed.append(pids[busy[0]])
                os.kill(pids[busy[0]], signal.SIGKILL)

        remote = run_ensemble(prepared, PLAN, str(tmp_path / "dask"), client,
                              progress=kill_one_running)
        assert killed and killed[0] not in client.run(os.getpid).values()
    _same_rows(local, remote)
    a, b = _depths(tmp_path / "single"), _depths(tmp_path / "dask")
    for name in a:
        assert np.array_equal(a[name], b[name]), name


def _cli(settings, engine, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "CIM_STORAGE_ROOT": str(settings.storage.root),
           "CIM_DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    return subprocess.run([CIM, "flood", "ensemble", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_cli_runs_an_ensemble_and_refuses_bad_input(district, settings, tmp_path):
    measures = tmp_path / "upgrade.json"
    measures.write_text(json.dumps(UPGRADE))
    out = tmp_path / "ens"
    done = _cli(settings, district, "--return-periods", "5,50", "--durations", "1h",
                "--option", "none", "--option", str(measures), "--cell", "8m",
                "--workers", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "4 members" in done.stderr
    rows = json.loads((out / "summary.json").read_text())["members"]
    assert [r["member"] for r in rows] == ["p5y_1h_none", "p50y_1h_none", "p5y_1h_upgrade",
                                           "p50y_1h_upgrade"]
    before = snapshot(district)
    for args, message in [
        (["--return-periods", "5", "--out", str(out)], "already exists"),
        (["--return-periods", "500", "--out", str(tmp_path / "x")], "return_period"),
        (["--return-periods", "5", "--option", str(tmp_path / "missing.json"),
          "--out", str(tmp_path / "x")], "cannot read"),
        (["--return-periods", "5", "--area", "1,2,3,4", "--out", str(tmp_path / "x")],
         "outside every registered DEM"),
    ]:
        bad = _cli(settings, district, *args)
        assert bad.returncode == 2, (args, bad.stderr)
        assert message in bad.stderr, (args, bad.stderr)
    assert not (tmp_path / "x").exists()
    assert snapshot(district) == before
