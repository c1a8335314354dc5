"""The disk of the scenario results folder full: a 1 MiB tmpfs mounted on it and filled to
the last byte. The job fails saying there is no space, publishes nothing (no folder, no
rows, no half-written file), the city is unchanged, the server keeps answering, and the
same job succeeds when rerun once space is back.

Mounting needs root with CAP_SYS_ADMIN, which is how the tests run in CI (see the README's
Development section); where mounting is refused the test is skipped with the reason, shown
in pytest's summary, never passed without a full disk."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from cim.access import Role, create_key
from cim.app import create_app
from layers.model import Classification
from simulation import jobs
from tests import test_flood_scenarios
from tests.conftest import snapshot

district = test_flood_scenarios.district  # fixture: a tiny DEM, houses, a road, an inlet
RUN = test_flood_scenarios.RUN


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the file system has no byte left."""
    chunk = bytes(1 << 16)
    with path.open("wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
    for size in (4096, 1):  # the last partial pages
        with path.open("ab", buffering=0) as f:
            try:
                while True:
                    f.write(bytes(size))
            except OSError:
                pass


@pytest.fixture
def full_results_folder(district, settings) -> Iterator[Path]:
    folder = settings.storage.root / jobs.SCENARIOS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755",
                              "cim-full-disk", str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:  # a container without CAP_SYS_ADMIN: reported by -ra
        pytest.skip(f"cannot mount a tmpfs on the results folder (needs root with "
                    f"CAP_SYS_ADMIN; uid {os.geteuid()}): {mounted.stderr.strip()}")
    try:
        fill(folder / "ballast")
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def wait(app: TestClient, scenario_id: int, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = app.get(f"/scenarios/{scenario_id}").json()
        if body["status"] in ("succeeded", "failed"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"scenario {scenario_id} still {body['status']}")


def test_a_full_results_disk_fails_the_job_cleanly_and_a_rerun_succeeds(
        district, settings, full_results_folder):
    folder = full_results_folder
    with district.begin() as conn:
        key = {"X-API-Key": create_key(conn, "analyst", Role.analyst, Classification.internal)}
    before = snapshot(district)
    with TestClient(create_app(settings)) as app:
        created = app.post("/scenarios/flood", json=RUN, headers=key)
        assert created.status_code == 201, created.text
        scenario_id = created.json()["id"]
        failed = wait(app, scenario_id)
        assert failed["status"] == "failed"
        assert "no space left" in failed["error"] and "rerun" in failed["error"], failed
        assert str(settings.storage.root) not in failed["error"]  # no server paths
        # Nothing published or left half-written: only the ballast is on the disk.
        assert sorted(p.name for p in folder.iterdir()) == ["ballast"]
        assert app.get(f"/scenarios/{scenario_id}/files/max_depth.tif").status_code == 404
        after = snapshot(district)
        assert after.pop("scenarios") != before.pop("scenarios")  # the failed job's row
        assert after == before  # the city and every result table as they were
        # The server is healthy.
        assert app.get("/health").status_code == 200
        assert app.get("/ready").status_code == 200
        assert app.get("/collections/buildings/items").status_code == 200

        (folder / "ballast").unlink()  # space is back
        rerun = app.post(f"/scenarios/{scenario_id}/rerun", headers=key)
        assert rerun.status_code == 200, rerun.text
        done = wait(app, scenario_id)
        assert done["status"] == "succeeded", done["error"]
        assert app.get(f"/scenarios/{scenario_id}/files/max_depth.tif").status_code == 200
    with district.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM cim.flood_roads "
                                "WHERE scenario_id = :id"), {"id": scenario_id}) == 1
