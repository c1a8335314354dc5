"""``cim traffic assign`` as a user runs it on TNTP files, no database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cim.cli.main import app
from tests.test_traffic_assignment import SIOUX_FALLS
from tests.test_traffic_tntp import NET, TRIPS, write

CIM = str(Path(sys.executable).parent / "cim")


def run(*args: str):
    return CliRunner().invoke(app, ["traffic", "assign", *args], env={"COLUMNS": "200"})


@pytest.fixture
def files(tmp_path: Path) -> tuple[str, str]:
    return str(write(tmp_path, "t_net.tntp", NET)), str(write(tmp_path, "t_trips.tntp", TRIPS))


def test_help_names_the_inputs():
    result = run("--help")
    assert result.exit_code == 0
    assert "--trips" in result.output and "--gap" in result.output


def test_assign_writes_flows(files, tmp_path):
    out = tmp_path / "flows.csv"
    result = run(files[0], files[1], "--gap", "1e-6", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "relative gap" in result.output and "vehicle-hours" in result.output
    lines = out.read_text().splitlines()
    assert lines[0] == "init_node,term_node,flow,time,voc" and len(lines) == 4
    same = run("--net", files[0], "--trips", files[1], "--out", str(tmp_path / "f.tntp"))
    assert same.exit_code == 0, same.output
    assert (tmp_path / "f.tntp").read_text().startswith("From")


@pytest.mark.parametrize(("args", "message"), [
    (("{trips}", "{trips}"), "lacks <NUMBER OF NODES>"),
    (("{net}",), "no trips file"),
    (("{net}", "{trips}", "--gap", "2"), "--gap must be in (0, 1)"),
    (("{net}", "missing_trips.tntp"), "cannot read"),
])
def test_bad_input_exits_2_with_a_message(files, args, message):
    result = run(*(a.format(net=files[0], trips=files[1]) for a in args))
    assert result.exit_code == 2
    assert "error:" in result.output and message in result.output


def test_the_installed_command_exits_2_on_a_bad_file(files):
    result = subprocess.run([CIM, "traffic", "assign", files[1], files[1]], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 2 and "the right kind of TNTP file" in result.stderr


@pytest.mark.skipif(not SIOUX_FALLS.is_dir(), reason="shared/data/traffic is not beside the "
                    "repository")
def test_unreached_gap_exits_1():
    result = run(str(SIOUX_FALLS / "SiouxFalls_net.tntp"),
                 str(SIOUX_FALLS / "SiouxFalls_trips.tntp"), "--gap", "1e-9", "--max-iter", "2")
    assert result.exit_code == 1 and "was not reached" in result.output
