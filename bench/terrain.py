"""Benchmark: terrain tiles from a DEM in the city grid (EPSG:4547), three ways, in one run.

* rio-tiler reading the city-grid COG directly (what ``tiles/raster.py`` would do without
  its copy);
* a hand-written read: one rasterio ``WarpedVRT`` to the tile's Web Mercator window;
* ours: rio-tiler reading the Web Mercator copy ``tiles/raster.py`` makes once per DEM
  (the time of the first tile, which makes the copy, is printed apart).

Each Terrain-RGB PNG is complete (read, encode). The DEM is the generated city's (made once
under ``bench/out/city-N`` by ``cim demo generate``, shared with the other benchmarks), or
``--dem`` for any GeoTIFF.

    python bench/terrain.py [--buildings 20000] [--dem DEM.tif] [--tiles 120] [--seed 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import morecantile
import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import from_bounds
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rio_tiler.errors import NoOverviewWarning
from rio_tiler.io import Reader
from serving import city_file

from tiles.raster import TILE_SIZE, png, read_tile
from tiles.terrain import terrain_rgb

TMS = morecantile.tms.get("WebMercatorQuad")


def encoded(band: np.ma.MaskedArray) -> bytes:
    return png(terrain_rgb(band.filled(float(band.min()))), ~np.ma.getmaskarray(band))


def by_hand(dem: Path, tile: morecantile.Tile) -> bytes:
    b = TMS.xy_bounds(tile)
    transform = from_bounds(b.left, b.bottom, b.right, b.top, TILE_SIZE, TILE_SIZE)
    with rasterio.open(dem) as src, WarpedVRT(src, crs=TMS.rasterio_crs, transform=transform,
                                              width=TILE_SIZE, height=TILE_SIZE,
                                              resampling=Resampling.bilinear) as vrt:
        return encoded(vrt.read(1, masked=True).astype(float))


def timed(label: str, tiles: list[morecantile.Tile], make: Callable[[morecantile.Tile], object]
          ) -> None:
    started = time.perf_counter()
    make(tiles[0])
    first = time.perf_counter() - started
    started = time.perf_counter()
    for tile in tiles[1:]:
        make(tile)
    each = (time.perf_counter() - started) / max(len(tiles) - 1, 1)
    print(f"{label:48} {each * 1000:9.1f} {first * 1000:11.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buildings", type=int, default=20_000)
    parser.add_argument("--dem", type=Path)
    parser.add_argument("--tiles", type=int, default=120)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    warnings.simplefilter("ignore", NoOverviewWarning)  # the generated DEM is a plain GeoTIFF
    dem = args.dem or city_file(args.buildings).parent / "demo_dem.tif"
    with rasterio.open(dem) as src:
        bounds = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        print(f"{dem.name}: {src.width} x {src.height} cells of {src.res[0]:g} m, {src.crs}")
    w, s, e, n = bounds  # tiles well inside the DEM: rio-tiler refuses those outside
    inner = (w + (e - w) / 5, s + (n - s) / 5, e - (e - w) / 5, n - (n - s) / 5)
    every = [t for z in (13, 14, 15, 16) for t in TMS.tiles(*inner, zooms=[z])]
    pick = np.random.default_rng(args.seed).choice(len(every), min(args.tiles, len(every)),
                                                   replace=False)
    tiles = [every[i] for i in pick]
    print(f"{len(tiles)} tiles at zooms 13-16\n{'':48} {'ms a tile':>9} {'first (ms)':>11}")
    with tempfile.TemporaryDirectory() as folder:
        copies = Path(folder)

        def rio_tiler_direct(tile: morecantile.Tile) -> bytes:
            with Reader(str(dem), tms=TMS) as src:
                image = src.tile(tile.x, tile.y, tile.z, indexes=1,
                                 resampling_method="bilinear", reproject_method="bilinear")
            return encoded(image.array[0].astype(float))

        timed("rio-tiler on the city-grid COG", tiles, rio_tiler_direct)
        timed("hand-written WarpedVRT on the city-grid COG", tiles,
              lambda tile: by_hand(dem, tile))
        timed("ours: rio-tiler on the Web Mercator copy", tiles, lambda tile: encoded(
            read_tile([dem], TMS, tile.z, tile.x, tile.y, cache=copies)))


if __name__ == "__main__":
    main()
