"""The grid-CRS copies of DEMs and flood rasters: made once, and pruned once their source has
gone (a deleted scenario) or changed (a replaced DEM), so the folder does not grow for ever."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from tiles.grid import grid
from tiles.raster import in_grid_crs, prune_copies

X0, Y0 = 500_000.0, 3_374_000.0  # Wuhan in CGCS2000 / 3-degree GK CM 114E (EPSG:4547)


def _raster(path: Path, fill: float, size: int = 32) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1,
                       dtype="float32", crs="EPSG:4547",
                       transform=from_origin(X0, Y0, 2.0, 2.0)) as dst:
        dst.write(np.full((size, size), fill, np.float32), 1)
    return path


def test_a_copy_goes_with_its_source(tmp_path):
    tms = grid("WebMercatorQuad")
    cache = tmp_path / "copies"
    depth = in_grid_crs(_raster(tmp_path / "scenario-1.tif", 0.4), tms, cache, "nearest")
    dem = in_grid_crs(_raster(tmp_path / "dem.tif", 21.0), tms, cache, "bilinear")
    assert depth.parent == cache and dem.parent == cache and depth != dem
    with rasterio.open(dem) as copy:
        assert copy.crs == tms.rasterio_crs

    (tmp_path / "scenario-1.tif").unlink()  # the scenario is deleted
    os.utime(_raster(tmp_path / "dem.tif", 22.0, size=40), ns=(1, 1))  # the DEM replaced
    legacy = cache / "0123456789abcdef01234567.tif"  # a copy that does not name its source
    legacy.write_bytes(b"")

    new_dem = in_grid_crs(tmp_path / "dem.tif", tms, cache, "bilinear")
    assert new_dem != dem and new_dem.exists()
    assert not depth.exists() and not dem.exists() and not legacy.exists()
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [new_dem.name, new_dem.with_suffix(".json").name])
    with rasterio.open(new_dem) as copy:
        assert copy.read(1).max() == 22.0

    assert prune_copies(cache) == []  # nothing left to prune while the source stands
