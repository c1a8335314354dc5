"""The ``cim`` command as a user runs it: a real process against the test database."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cim.schema.migrate import head_revision
from tests.test_import_formats import buildings_4547, write, zipped_shapefile

CIM = str(Path(sys.executable).parent / "cim")
COMMANDS = [[], ["import"], ["history"], ["serve"], ["db"], ["db", "start"], ["db", "stop"],
            ["db", "status"], ["db", "upgrade"], ["db", "reset"], ["db", "url"], ["demo"],
            ["demo", "generate"], ["demo", "load"], ["scenarios"], ["scenarios", "prune"]]


def cim(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CIM, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


@pytest.fixture
def db_env(engine) -> dict[str, str]:
    return {"CIM_DATABASE_URL": engine.url.render_as_string(hide_password=False)}


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "cim")
def test_every_command_has_help(command):
    result = cim(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_import_history_and_report(db_env, tmp_path):
    path = write(buildings_4547(), tmp_path / "b.gpkg", "GPKG")
    result = cim("import", str(path), "--layer", "buildings", "--id-field", "bid",
                 "--source", "cli", "--report", str(tmp_path / "r.json"), env=db_env)
    assert result.returncode == 0, result.stderr
    assert "5 new" in result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["inserted"] == 5
    result = cim("history", "buildings", "cli:B0", "--json", env=db_env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["height"] == 10.0
    result = cim("history", "buildings", "cli:B0", "--at", "2000-01-01", env=db_env)
    assert result.returncode == 4 and "at 2000-01-01" in result.stderr
    result = cim("history", "buildings", "cli:B0", "--at", "2999-01-01T00:00:00+08:00",
                 "--json", env=db_env)
    assert result.returncode == 0 and len(json.loads(result.stdout)) == 1
    status = cim("db", "status", env=db_env)
    assert status.returncode == 0 and "buildings" in status.stderr


def test_check_validates_without_a_database(tmp_path):
    gdf = buildings_4547()
    gdf.loc[2, "HEIGHT"] = 2000
    path = write(gdf, tmp_path / "b.gpkg", "GPKG")
    no_db = {"CIM_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    result = cim("import", str(path), "--layer", "buildings", "--check", "--id-field", "bid",
                 "--report", str(tmp_path / "r.json"), env=no_db)
    assert result.returncode == 3
    assert "rejected row 2 (id B2): height 2000.0 outside 0.5..1000" in result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["status"] == "rejected"
    clean = write(buildings_4547(), tmp_path / "ok.gpkg", "GPKG")
    result = cim("import", str(clean), "--layer", "buildings", "--check", "--id-field", "bid",
                 env=no_db)
    assert result.returncode == 0 and "5 read, 0 repaired, 0 rejected" in result.stderr


def test_bad_input_exits_non_zero_with_a_message(db_env, tmp_path):
    path = zipped_shapefile(buildings_4547(), tmp_path, with_prj=False)
    result = cim("import", str(path), "--layer", "buildings", env=db_env)
    assert result.returncode == 2
    assert "declares no coordinate reference system" in result.stderr
    assert "Traceback" not in result.stderr

    gdf = buildings_4547()
    gdf.loc[0, "HEIGHT"] = -5
    result = cim("import", str(write(gdf, tmp_path / "bad.gpkg", "GPKG")), "--layer",
                 "buildings", env=db_env)
    assert result.returncode == 3
    assert "rejected row 0" in result.stderr and "nothing was imported" in result.stderr

    result = cim("history", "buildings", "nope:1", env=db_env)
    assert result.returncode == 4 and "no object" in result.stderr


def test_no_database_is_a_clear_error(tmp_path):
    result = cim("db", "status", env={"CIM_DATABASE_DATA_DIR": str(tmp_path / "none"),
                                      "CIM_DATABASE_URL": ""})
    assert result.returncode != 0
    assert "stopped" in result.stderr


def test_embedded_database_lifecycle_from_the_cli():
    folder = Path(tempfile.mkdtemp(prefix="cim-cli-"))
    folder.chmod(0o755)
    env = {"CIM_DATABASE_DATA_DIR": str(folder / "pgdata"), "CIM_DATABASE_URL": ""}
    try:
        started = cim("db", "start", env=env)
        assert started.returncode == 0, started.stderr
        assert "PostGIS 3." in started.stderr
        assert cim("db", "upgrade", env=env).returncode == 0
        status = cim("db", "status", env=env)
        assert status.returncode == 0 and "running on port" in status.stderr
        head = head_revision()
        assert f"revision {head} (latest {head})" in status.stderr
        url = cim("db", "url", env=env).stdout.strip()
        assert url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
        assert cim("db", "stop", env=env).returncode == 0
        assert cim("db", "status", env=env).returncode == 1
    finally:
        cim("db", "stop", env=env)
        shutil.rmtree(folder, ignore_errors=True)


def test_reset_needs_confirmation_then_empties_the_city(db_env, tmp_path):
    path = write(buildings_4547(), tmp_path / "b.gpkg", "GPKG")
    assert cim("import", str(path), "--layer", "buildings", "--id-field", "bid",
               env=db_env).returncode == 0
    refused = cim("db", "reset", env=db_env)
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert cim("history", "buildings", "b:B0", env=db_env).returncode == 0
    done = cim("db", "reset", "--yes", env=db_env)
    assert done.returncode == 0
    assert f"empty city at schema revision {head_revision()}" in done.stderr
    assert cim("history", "buildings", "b:B0", env=db_env).returncode == 4
