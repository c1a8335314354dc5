"""Raster tiles from Cloud-Optimized GeoTIFFs: one WebMercatorQuad (or any morecantile grid)
tile read from one or several COGs, and PNG encoding.

rio-tiler does the reading: it picks the overview that suits the zoom, reads only the window
the tile needs and returns the nodata mask beside the values. Several COGs are mosaicked in
the order given: the first one that has a pixel gives it.

A COG in another CRS than the grid's (DEMs and flood rasters are in the city grid,
EPSG:4547) is first copied once into the grid's CRS (``in_grid_crs``), under a cache folder:
creating the CGCS2000 -> WGS84 coordinate operation costs PROJ 30-45 ms, and reading a tile
straight from the city grid needs it three times (measured: 76-300 ms a tile against 11 ms
from the copy).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Literal

import morecantile
import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling as GdalResampling
from rasterio.vrt import WarpedVRT
from rio_tiler.errors import EmptyMosaicError, TileOutsideBounds
from rio_tiler.io import Reader
from rio_tiler.models import ImageData
from rio_tiler.mosaic import mosaic_reader
from rio_tiler.utils import render

log = logging.getLogger(__name__)

Resampling = Literal["nearest", "bilinear"]
TILE_SIZE = 256
COPIES = "raster-copies"
"""The folder under the storage root holding the copies in the grid's CRS."""
_copying: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def _copy_key(path: Path, tms_id: str, resampling: str) -> str | None:
    """The copy's name for ``path`` as it is now; None when it is gone."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return hashlib.blake2b(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{tms_id}|"
                           f"{resampling}".encode(), digest_size=12).hexdigest()


def in_grid_crs(path: Path, tms: morecantile.TileMatrixSet, cache: Path,
                resampling: Resampling) -> Path:
    """``path`` itself when it is in the grid's CRS, else its copy in that CRS, made on first
    use (other threads asking meanwhile wait for it) and named after the source's path,
    size and time, so a changed source gets a new copy. Making one prunes the copies whose
    source has gone or changed (a deleted scenario's rasters, a replaced DEM)."""
    key = _copy_key(path, tms.id, resampling)
    if key is None:
        raise FileNotFoundError(path)
    target = cache / f"{key}.tif"
    if target.exists():
        return target
    with rasterio.open(path) as src:
        if src.crs == tms.rasterio_crs:
            return path
    with _guard:
        lock = _copying.setdefault(key, threading.Lock())
    with lock:
        if not target.exists():
            cache.mkdir(parents=True, exist_ok=True)
            partial = cache / f".{key}.{os.getpid()}.{threading.get_ident()}.tif"
            method = GdalResampling[resampling]
            with rasterio.open(path) as src, \
                    WarpedVRT(src, crs=tms.rasterio_crs, resampling=method) as vrt:
                rasterio.shutil.copy(vrt, partial, driver="COG", COMPRESS="DEFLATE",
                                     PREDICTOR="YES", BLOCKSIZE=str(TILE_SIZE),
                                     RESAMPLING=resampling.upper(), OVERVIEWS="AUTO")
            # The source is written down before the copy appears, so a prune never finds a
            # published copy it cannot account for.
            target.with_suffix(".json").write_text(json.dumps(
                {"source": str(path.resolve()), "tms": tms.id, "resampling": resampling}))
            os.replace(partial, target)
            prune_copies(cache)
    return target


def prune_copies(cache: Path) -> list[Path]:
    """Delete the copies under ``cache`` whose source is gone or has changed since, and those
    that do not say their source; returns them. Copies are a cache: one deleted while still
    wanted is made again on the next read."""
    gone = []
    for copy in cache.glob("[!.]*.tif"):
        record = copy.with_suffix(".json")
        try:
            source = json.loads(record.read_text())
            current = _copy_key(Path(source["source"]), source["tms"], source["resampling"])
        except (FileNotFoundError, ValueError, KeyError):
            current = None
        if current != copy.stem:
            copy.unlink(missing_ok=True)
            record.unlink(missing_ok=True)
            gone.append(copy)
    if gone:
        log.info("deleted %d raster copies whose source has gone or changed", len(gone))
    return gone


def read_tile(paths: list[Path], tms: morecantile.TileMatrixSet, z: int, x: int, y: int, *,
              cache: Path, resampling: Resampling = "bilinear", buffer: int = 0
              ) -> np.ma.MaskedArray | None:
    """The first band of the COGs over one tile, (size + 2 buffer)² float64 cells, masked
    where no COG has data; None when the tile misses them all."""

    def one(path: Path, *args: int, **kwargs: object) -> ImageData:
        with Reader(str(in_grid_crs(path, tms, cache, resampling)), tms=tms) as src:
            return src.tile(*args, **kwargs)

    try:
        image, _ = mosaic_reader(
            paths, one, x, y, z, threads=0, tilesize=TILE_SIZE, indexes=1,
            buffer=buffer or None, resampling_method=resampling, reproject_method=resampling)
    except (EmptyMosaicError, TileOutsideBounds):
        return None
    band = image.array[0].astype(np.float64)
    if band.mask.all():
        return None
    return band


def png(bands: np.ndarray, alpha: np.ndarray) -> bytes:
    """A PNG of uint8 ``bands`` (count, h, w) with an alpha channel: ``alpha`` (h, w) is
    either booleans (opaque or not) or opacities 0-255."""
    if alpha.dtype == bool:
        alpha = np.where(alpha, 255, 0)
    return render(bands.astype(np.uint8), alpha.astype(np.uint8), img_format="PNG")
