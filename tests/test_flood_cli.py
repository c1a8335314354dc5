"""``cim flood`` as a user runs it: a real process on a small generated GeoTIFF, no database."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from typer.testing import CliRunner

from cim.cli.main import app

CIM = str(Path(sys.executable).parent / "cim")
ORIGIN = (538_000.0, 3_375_000.0)


def cim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CIM, "flood", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})


def write_tif(path: Path, values: np.ndarray, crs: str = "EPSG:4547") -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=values.shape[1],
                       height=values.shape[0], count=1, dtype="float32", crs=crs,
                       transform=from_origin(*ORIGIN, 2.0, 2.0), nodata=-9999.0) as dst:
        dst.write(np.nan_to_num(values, nan=-9999.0).astype(np.float32), 1)
    return path


@pytest.fixture
def dem(tmp_path: Path) -> Path:
    """A 24 × 32 plane at 2 m falling east and south, a pit, a nodata corner."""
    y, x = np.mgrid[0:24, 0:32] * 2.0
    z = 20.0 - 0.003 * x - 0.001 * y
    z[8:12, 10:14] -= 0.4
    z[0, 0] = np.nan
    return write_tif(tmp_path / "dem.tif", z)


def test_grid_run_writes_cogs_points_and_mass_balance(dem, tmp_path):
    points = tmp_path / "points.csv"
    points.write_text(f"name,x,y\npit,{ORIGIN[0] + 23},{ORIGIN[1] - 19}\n"
                      f"corner,{ORIGIN[0] + 63},{ORIGIN[1] - 47}\n")
    out = tmp_path / "run"
    result = cim("grid", "--dem", str(dem), "--rain", "50mm/h", "--duration", "20min",
                 "--manning", "0.03", "--points", str(points), "--every", "10min",
                 "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "relative error" in result.stderr
    summary = json.loads((out / "mass_balance.json").read_text())
    balance = summary["mass_balance"]
    rain = 50e-3 / 3 * (24 * 32 - 1) * 4.0  # 20 min at 50 mm/h on every valid cell
    assert balance["rain"] == pytest.approx(rain, rel=1e-12)
    assert balance["relative_error"] < 1e-12
    assert summary["outputs"][:5] == ["max_depth.tif", "max_velocity.tif", "arrival_time.tif",
                                      "depth_000600s.tif", "depth_001200s.tif"]
    with rasterio.open(out / "max_depth.tif") as src:
        assert src.driver == "GTiff" and src.crs.to_epsg() == 4547
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        depth = src.read(1, masked=True)
        assert depth.mask[0, 0] and depth[8:12, 10:14].min() > 0.05  # the pit fills
    with rasterio.open(out / "max_velocity.tif") as src:
        speed = src.read(1, masked=True)
        assert speed.mask[0, 0] and 0 < speed.max() < 1
    with rasterio.open(out / "arrival_time.tif") as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        arrival = src.read(1, masked=True)
    # Time of first flooding where the water got deeper than 0.15 m, nodata elsewhere.
    assert (~arrival.mask == (depth.filled(0) > 0.15)).all()
    assert arrival.mask[0, 0] and arrival.mask.any()
    with (out / "points.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["time_s"] for r in rows[:3]] == ["0", "60", "120"] and len(rows) == 21
    assert float(rows[-1]["pit"]) > float(rows[5]["pit"]) > 0


def test_hyetograph_csv_and_free_edges(dem, tmp_path):
    storm = tmp_path / "storm.csv"
    made = cim("storm", "--return-period", "50", "--duration", "2h", "--out", str(storm))
    assert made.returncode == 0, made.stderr
    assert "100.2 mm" in made.stderr
    result = cim("grid", "--dem", str(dem), "--rain", str(storm), "--duration", "10min",
                 "--boundary", "free", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    balance = json.loads((tmp_path / "run" / "mass_balance.json").read_text())["mass_balance"]
    assert balance["outflow"] > 0 and balance["relative_error"] < 1e-12


def test_rain_raster_and_pattern_rain_where_they_say(dem, tmp_path):
    # 120 mm/h on the east half only; no rain falls west of it, and the budget says so.
    field = np.zeros((24, 32))
    field[:, 16:] = 120.0
    cells_east = 24 * 16
    result = cim("grid", "--dem", str(dem), "--rain", str(write_tif(tmp_path / "r.tif", field)),
                 "--duration", "10min", "--out", str(tmp_path / "field"))
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "field" / "mass_balance.json").read_text())
    assert summary["mass_balance"]["rain"] == pytest.approx(0.02 * cells_east * 4.0, rel=1e-12)
    assert summary["mass_balance"]["relative_error"] < 1e-12
    with rasterio.open(tmp_path / "field" / "max_depth.tif") as src:
        depth = src.read(1, masked=True)
    # Closed edges and a surface falling east: the west half stays dry.
    assert depth[:, :14].max() == 0 and depth[:, 16:].min() > 0
    # A pattern doubles a hyetograph's rain on the north half.
    pattern = np.ones((24, 32))
    pattern[:12] = 2.0
    storm = tmp_path / "storm.csv"
    storm.write_text("time_min,intensity_mm_h\n0,30\n5,90\n10,0\n")
    result = cim("grid", "--dem", str(dem), "--rain", str(storm), "--rain-pattern",
                 str(write_tif(tmp_path / "p.tif", pattern)), "--duration", "10min",
                 "--out", str(tmp_path / "pattern"))
    assert result.returncode == 0, result.stderr
    balance = json.loads((tmp_path / "pattern" / "mass_balance.json").read_text())
    valid = 24 * 32 - 1  # the nodata corner is in the north half
    expected = 0.01 * 4.0 * (2 * (12 * 32 - 1) + 12 * 32)
    assert balance["mass_balance"]["rain"] == pytest.approx(expected, rel=1e-12)
    assert balance["inputs"]["rain_total_mm"] == pytest.approx(expected / (valid * 4.0) * 1e3)


@pytest.mark.parametrize(("change", "message"), [
    ({"--dem": "missing.tif"}, "cannot read the DEM"),
    ({"--rain": "lots"}, "cannot read hyetograph"),
    ({"--rain": "bad.csv"}, "time_min and intensity_mm_h"),
    ({"--duration": "soon"}, "cannot read the time"),
    ({"--manning": "-0.03"}, "Manning's n must be positive"),
    ({"--boundary": "open"}, "closed or free"),
    ({"--points": "far.csv"}, "outside the DEM: far"),
    ({"--dem": "degrees.tif"}, "reproject it to a metric CRS"),
    ({"--rain": "small.tif"}, "must have the DEM's size and position"),
    ({"--rain": "negative.tif"}, "a value of 0 or more on every DEM cell"),
])
def test_bad_input_exits_2_with_a_message(dem, tmp_path, change, message):
    # In process for speed; the real process's exit code is checked below.
    (tmp_path / "bad.csv").write_text("minutes,mm\n0,5\n")
    (tmp_path / "far.csv").write_text("name,x,y\nfar,0,0\n")
    write_tif(tmp_path / "degrees.tif", np.zeros((4, 4)), crs="EPSG:4326")
    write_tif(tmp_path / "small.tif", np.ones((4, 4)))
    write_tif(tmp_path / "negative.tif", np.full((24, 32), -1.0))
    args = {"--dem": str(dem), "--rain": "50mm/h", "--duration": "1min",
            "--out": str(tmp_path / "run"), **{k: str(tmp_path / v) if v.endswith(
                (".tif", ".csv")) else v for k, v in change.items()}}
    result = CliRunner().invoke(app, ["flood", "grid", *[a for p in args.items() for a in p]])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "run" / "mass_balance.json").exists()


def test_bad_input_in_a_real_process(tmp_path):
    result = cim("grid", "--dem", str(tmp_path / "none.tif"), "--rain", "50mm/h",
                 "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "cannot read the DEM" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--measures", "bad.json"], "cannot read the measures"),
    (["--measures", "pond.json"], "storage_ponds.0.volume_m3"),
    (["--hyetograph", "storm.csv", "--recorded", "2026-06-29T13:00+08:00/2026-06-29T15:00+08:00"],
     "not both"),
    (["--recorded", "2026-06-29T15:00+08:00/2026-06-29T13:00+08:00"], "must end after"),
    (["--hyetograph", "missing.csv"], "cannot read hyetograph"),
])
def test_run_refuses_bad_rain_and_measures_before_touching_the_city(tmp_path, monkeypatch,
                                                                    args, message):
    # Refused while reading the options: no database is needed (none is reachable here).
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CIM_DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "pond.json").write_text(json.dumps({"storage_ponds": [{"area": {
        "type": "Polygon", "coordinates": [[[114.4, 30.4], [114.5, 30.4], [114.5, 30.5],
                                            [114.4, 30.4]]]}, "volume_m3": -5}]}))
    (tmp_path / "storm.csv").write_text("time_min,intensity_mm_h\n0,10\n60,0\n")
    result = CliRunner().invoke(app, ["flood", "run", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
