"""A storm split by drainage catchment: two basins run as two Dask tasks give the unsplit
maximum depth and a tiny crossing volume; a split through a basin is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from cim.batch import batch_client
from cim.settings import BatchSettings
from simulation.flood.catchments import SplitRefused, delineate, plan_split, run_split
from simulation.flood.rain import Hyetograph
from simulation.flood.solver import Boundaries, Edge, Grid, Options, State, simulate

CIM = str(Path(sys.executable).parent / "cim")
CELL, NX, NY = 5.0, 120, 40
HALF_HOUR = 1800.0
RAIN = Hyetograph.constant(100.0, HALF_HOUR)
# A time step shorter than the CFL one everywhere: split and unsplit runs take the same steps.
OPTIONS = Options(dt_max=0.9)


def _basins(bump: bool = False) -> np.ndarray:
    """Two cones of different slopes, each with a 1.5 m deep bowl; the divide runs between
    columns. ``bump`` adds a 20 cm sill across the left bowl's bottom."""
    y, x = (np.mgrid[0:NY, 0:NX] + 0.5) * CELL
    left = np.hypot(x - 150.0, y - 100.0)
    right = np.hypot(x - 450.0, y - 100.0)
    z = np.minimum(10 + 0.010 * left - 1.5 * np.clip(1 - (left / 60) ** 2, 0, None),
                   10 + 0.013 * right - 1.5 * np.clip(1 - (right / 60) ** 2, 0, None))
    if bump:
        z = z + np.where(np.abs(x - 150.0) < CELL, 0.2, 0.0)
    return z


def _write(z: np.ndarray, path: Path) -> str:
    with rasterio.open(path, "w", driver="GTiff", width=NX, height=NY, count=1,
                       dtype="float64", crs="EPSG:4547",
                       transform=from_origin(538_000.0, 3_375_000.0, CELL, CELL)) as dst:
        dst.write(z, 1)
    return str(path)


def _plan(dem: str, min_depth: float = 0.3, min_cells: int = 400):
    return plan_split(dem, 0.03, RAIN, HALF_HOUR, "closed", None, OPTIONS, buffer_cells=10,
                      min_depth_m=min_depth, min_cells=min_cells)


def test_two_basins_split_reproduce_the_unsplit_run(tmp_path):
    z = _basins()
    dem = _write(z, tmp_path / "dem.tif")
    labels = delineate(z, np.ones(z.shape, bool), 0.3, 400)
    # One catchment a bowl, the divide where the cones meet (nearer the steeper one).
    assert labels.max() == 2 and (labels[:, :45] == 1).all() and (labels[:, 70:] == 2).all()
    grid = Grid(z, CELL, CELL, 0.03)
    whole = simulate(grid, HALF_HOUR, rain=RAIN, boundaries=Boundaries.all(Edge("closed")),
                     options=OPTIONS, state=State.dry(grid))
    split = _plan(dem)
    assert [job.label for job in split.jobs] == [1, 2]
    with batch_client(BatchSettings(), workers=2) as client:
        crossings = run_split(split, str(tmp_path / "out"), 0.01, client)
    for c in crossings:
        assert c.cells == int((labels == c.label).sum())
        assert c.rain_m3 == pytest.approx(0.05 * c.cells * CELL * CELL)
        # Rain on the ridge runs both ways: some water crosses, well under 1 % of the rain.
        assert c.out_m3 > 0 and c.in_m3 > 0 and c.fraction < 0.01
        assert c.mass_error < 1e-12
    with rasterio.open(tmp_path / "out" / "max_depth.tif") as src:
        assert src.transform.almost_equals(from_origin(538_000.0, 3_375_000.0, CELL, CELL))
        mosaic = src.read(1)
    unsplit = whole.max_depth.astype(np.float32)
    assert mosaic.max() > 1.0
    assert np.abs(mosaic - unsplit).max() < 1e-6  # float32 files: within their round-off
    table = json.loads((tmp_path / "out" / "catchments.json").read_text())
    assert [row["label"] for row in table["catchments"]] == [1, 2]
    assert not (tmp_path / "out" / "pieces").exists()


def test_a_split_through_a_basin_is_refused(tmp_path):
    dem = _write(_basins(bump=True), tmp_path / "dem.tif")
    split = _plan(dem, min_depth=0.01, min_cells=1)
    assert len(split.jobs) == 3  # the sill cuts the left bowl in two
    with pytest.raises(SplitRefused, match="the split does not hold"):
        run_split(split, str(tmp_path / "out"), 0.01)
    assert list(tmp_path.iterdir()) == [tmp_path / "dem.tif"]  # nothing published or left
    # Deeper pits only: the sill is no divide, and the split stands.
    assert len(_plan(dem).jobs) == 2


def test_cli_splits_and_refuses(tmp_path):
    dem = _write(_basins(bump=True), tmp_path / "dem.tif")
    env = {**os.environ, "COLUMNS": "200"}
    base = [CIM, "flood", "catchments", "--dem", dem, "--rain", "50mm/h", "--duration", "1h",
            "--in-process"]
    done = subprocess.run([*base, "--out", str(tmp_path / "ok")], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert "2 catchments" in done.stderr and (tmp_path / "ok" / "max_depth.tif").exists()
    for args, message in [
        (["--min-depth", "0.01", "--min-cells", "1", "--out", str(tmp_path / "x")],
         "the split does not hold"),
        (["--out", str(tmp_path / "ok")], "already exists"),
        (["--max-crossing", "2", "--out", str(tmp_path / "x")], "must lie in 0-1"),
        (["--boundary", "open", "--out", str(tmp_path / "x")], "boundary"),
    ]:
        bad = subprocess.run([*base, *args], capture_output=True, text=True, timeout=300,
                             env=env)
        assert bad.returncode == 2, (args, bad.stderr)
        assert message in bad.stderr, (args, bad.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dem.tif", "ok"]
