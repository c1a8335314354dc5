"""OD matrices from OMX files: Sioux Falls' trips written as OMX (zones shuffled behind an
integer lookup) assign as the TNTP trips do; a city scenario takes an OMX with a lookup of zone
ids; bad files, and zones the network lacks, are refused with a message and exit 2 before a
job is queued."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import openmatrix
import pytest
import tables
from typer.testing import CliRunner

from cim.cli.main import app
from simulation.traffic import omx, tntp
from simulation.traffic.errors import TrafficInputError
from tests.conftest import snapshot
from tests.test_traffic_assignment import SIOUX_FALLS
from tests.test_traffic_scenarios import CIM, EAST, WEST, load_ladder

NET = SIOUX_FALLS / "SiouxFalls_net.tntp"


def sioux_trips() -> np.ndarray:
    return tntp.read_trips(SIOUX_FALLS / "SiouxFalls_trips.tntp", 24).trips


def write_omx(path, matrices: dict[str, np.ndarray], lookups: dict[str, list] | None = None,
              text_lookups: dict[str, list[str]] | None = None):
    with openmatrix.open_file(str(path), "w") as handle:
        for name, values in matrices.items():
            handle[name] = values
        for name, entries in (lookups or {}).items():
            handle.create_mapping(name, entries)
        for name, entries in (text_lookups or {}).items():
            handle.create_array(handle.root.lookup, name, np.array(entries, dtype="S"))
    return path


def assign(*args: str):
    return CliRunner().invoke(app, ["traffic", "assign", *args], env={"COLUMNS": "200"})


def test_a_shuffled_omx_assigns_as_the_tntp_trips(tmp_path):
    trips = sioux_trips()
    order = np.random.default_rng(6).permutation(24)  # row k is zone order[k] + 1
    path = write_omx(tmp_path / "sf.omx", {"car": trips[np.ix_(order, order)]},
                     {"taz": (order + 1).tolist()})
    matrix = omx.read_omx(path)
    demand = omx.demand(matrix, [str(z) for z in range(1, 25)], positional=True)
    assert np.array_equal(demand.trips, trips)

    out = tmp_path / "flows.csv"
    result = assign(str(NET), str(path), "--gap", "1e-4", "--out", str(out))
    assert result.exit_code == 0, result.output
    from_tntp = assign(str(NET), str(SIOUX_FALLS / "SiouxFalls_trips.tntp"), "--gap", "1e-4",
                       "--out", str(tmp_path / "tntp.csv"))
    assert from_tntp.exit_code == 0, from_tntp.output
    assert out.read_text() == (tmp_path / "tntp.csv").read_text()
    # No lookup: rows and columns are the zones in order.
    plain = write_omx(tmp_path / "plain.omx", {"car": trips})
    assert assign(str(NET), "--trips", str(plain), "--gap", "1e-4").exit_code == 0


def test_a_partial_lookup_leaves_other_zones_empty(tmp_path):
    path = write_omx(tmp_path / "two.omx", {"car": np.array([[0.0, 50.0], [20.0, 0.0]])},
                     {"taz": [3, 17]})
    trips = omx.demand(omx.read_omx(path), [str(z) for z in range(1, 25)], True).trips
    assert trips.sum() == 70.0 and trips[2, 16] == 50.0 and trips[16, 2] == 20.0


@pytest.mark.parametrize(("make", "extra", "message"), [
    (lambda: ({"car": np.ones((24, 23))}, None), (), "not square"),
    (lambda: ({"car": np.where(np.eye(24) > 0, 0.0, -1.0)}, None), (),
     "negative or not finite, the first at row 0, column 1"),
    (lambda: ({"car": np.full((24, 24), np.nan)}, None), (), "not finite"),
    (lambda: ({"car": np.ones((2, 2))}, {"taz": [3, 99]}), (),
     "1 zones of the lookup are not zones of the network: 99"),
    (lambda: ({"car": np.ones((2, 2))}, None), (), "is 2 × 2 but the network has 24 zones"),
    (lambda: ({"car": np.ones((24, 24)), "truck": np.ones((24, 24))}, None), (),
     "2 matrices (car, truck): name the one to use"),
    (lambda: ({"car": np.ones((24, 24))}, None), ("--omx-matrix", "bus"),
     "has no matrix 'bus'; it has car"),
    (lambda: ({"car": np.ones((2, 2))}, {"taz": [3, 3]}), (), "names a zone twice"),
])
def test_bad_omx_is_refused(tmp_path, make, extra, message):
    matrices, lookups = make()
    path = write_omx(tmp_path / "bad.omx", matrices, lookups)
    result = assign(str(NET), str(path), *extra)
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and message in result.output


def test_a_file_that_is_not_omx_is_refused(tmp_path):
    path = tmp_path / "trips.omx"
    path.write_text("origin,destination,trips\n1,2,3\n")
    result = assign(str(NET), str(path))
    assert result.exit_code == 2 and "as an OMX (HDF5) file" in result.output
    with tables.open_file(str(tmp_path / "empty.omx"), "w"):
        pass
    with pytest.raises(TrafficInputError, match="no /data group"):
        omx.read_omx(tmp_path / "empty.omx")


def test_city_scenario_with_omx_demand(engine, settings, tmp_path):
    load_ladder(engine, tmp_path)
    env = {**os.environ, "COLUMNS": "200", "CIM_STORAGE_ROOT": str(settings.storage.root),
           "CIM_DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    zones = [WEST, EAST, "grid:1_1"]
    good = write_omx(tmp_path / "city.omx", {"car": np.array(
        [[0.0, 1500.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])}, text_lookups={"zone": zones})
    done = subprocess.run([CIM, "traffic", "run", "--demand", str(good), "--close", "t:m",
                           "--grid", "300"], capture_output=True, text=True, timeout=120,
                          env=env)
    assert done.returncode == 0, done.stderr
    assert "demand: imported OD matrix, 1500 trips in 1 rows" in done.stderr

    before = snapshot(engine)
    no_lookup = write_omx(tmp_path / "bare.omx", {"car": np.ones((3, 3))})
    refused = subprocess.run([CIM, "traffic", "run", "--demand", str(no_lookup), "--grid",
                              "300"], capture_output=True, text=True, timeout=120, env=env)
    assert refused.returncode == 2 and "has no zone lookup" in refused.stderr
    negative = write_omx(tmp_path / "neg.omx", {"car": -np.ones((3, 3))},
                         text_lookups={"zone": zones})
    refused = subprocess.run([CIM, "traffic", "run", "--demand", str(negative), "--grid",
                              "300"], capture_output=True, text=True, timeout=120, env=env)
    assert refused.returncode == 2 and "negative" in refused.stderr
    # Zones the network lacks are refused before a job is queued (no "scenario N" line).
    elsewhere = write_omx(tmp_path / "elsewhere.omx", {"car": np.ones((3, 3))},
                          text_lookups={"zone": [WEST, "grid:7_7", "grid:8_8"]})
    refused = subprocess.run([CIM, "traffic", "run", "--demand", str(elsewhere), "--grid",
                              "300"], capture_output=True, text=True, timeout=120, env=env)
    assert refused.returncode == 2
    assert "2 zone ids of the OD matrix are not zones of the network: grid:7_7, grid:8_8" \
        in refused.stderr
    assert "scenario" not in refused.stdout
    assert snapshot(engine) == before
