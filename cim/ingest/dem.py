"""DEM import: a GeoTIFF becomes a Cloud-Optimized GeoTIFF under storage, registered in ``dems``.

The COG is named after the input's digest, so re-importing the same raster changes nothing
and a changed raster becomes a new version whose predecessor (and its file) stays readable.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import rasterio.shutil
import shapely
from pyproj import CRS
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from sqlalchemy import Engine

from cim.ingest.crs import crs_label, resolve_crs
from cim.ingest.errors import ImportRejected, ReaderError
from cim.ingest.formats import Format
from cim.ingest.geometry import hex_ewkb
from cim.ingest.load import merge
from cim.ingest.registry import close_import, open_import
from cim.ingest.report import ImportReport, Rejection
from cim.limits import check_raster
from cim.schema.models import SRID, Dem, Provenance
from cim.settings import LimitsSettings

log = logging.getLogger(__name__)

ELEVATION_RANGE = (-500.0, 9000.0)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def import_dem(
    engine: Engine,
    path: Path,
    storage_root: Path,
    *,
    name: str | None = None,
    crs: str | None = None,
    source: str | None = None,
    provenance: Provenance = Provenance.real,
) -> ImportReport:
    """Register a DEM; all or nothing (no row without its file, no file without its row)."""
    started = time.perf_counter()
    name = name or path.stem
    source = source or path.name.split(".")[0]
    report = ImportReport(path=str(path), format=Format.geotiff.value, layer="dems",
                          source=source, features_read=1)
    try:
        src = rasterio.open(path)
    except RasterioIOError as exc:
        raise ReaderError(f"{path.name}: not a readable raster: {exc}") from None
    with src:
        file_crs = CRS.from_wkt(src.crs.to_wkt()) if src.crs else None
        dem_crs, report.warnings = resolve_crs(file_crs, crs)
        report.input_crs = crs_label(dem_crs)
        if src.count != 1:
            raise ReaderError(f"{path.name} has {src.count} bands: a DEM has one")
        check_raster(path.name, src.width, src.height, LimitsSettings())
        band = src.read(1, masked=True)
        if band.count() == 0:
            raise ReaderError(f"{path.name} holds only nodata cells")
        low, high = float(band.min()), float(band.max())
        if low < ELEVATION_RANGE[0] or high > ELEVATION_RANGE[1]:
            report.rejected = [Rejection(row=0, source_id=name, reason=(
                f"elevations {low:g}..{high:g} m are impossible for a DEM "
                "(wrong units or nodata not declared?)"))]
            report.status = "rejected"
            raise ImportRejected(report)
        bounds = transform_bounds(dem_crs, f"EPSG:{SRID}", *src.bounds, densify_pts=21)
        relative = Path("dems") / f"{name}-{_digest(path)}.tif"
        target = storage_root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial.tif")
        written = not target.exists()
        if written:
            # A VRT assigns the CRS given with --crs without touching the input file.
            with WarpedVRT(src, src_crs=dem_crs.to_wkt(), crs=dem_crs.to_wkt()) as vrt:
                rasterio.shutil.copy(vrt, partial, driver="COG", COMPRESS="DEFLATE",
                                     PREDICTOR="3" if band.dtype.kind == "f" else "2",
                                     BLOCKSIZE="256", OVERVIEWS="AUTO")
        frame = pd.DataFrame({
            "id": [f"{source}:{name}"], "source": [source], "source_id": [name],
            "provenance": [provenance.value], "cim_level": [1], "name": [name],
            "attributes": ["{}"], "path": [str(relative)], "crs_epsg": [dem_crs.to_epsg()],
            "resolution": [float(abs(src.res[0]))], "width": [src.width],
            "height": [src.height], "nodata": [src.nodata], "min_elevation": [low],
            "max_elevation": [high],
            "geom": hex_ewkb(np.array([shapely.box(*bounds)], dtype=object)),
            "geom_3d": [None],
        })
    try:
        with engine.begin() as conn:
            report.import_id = open_import(conn, report, provenance)
            counts = merge(conn, Dem, frame, report.import_id, source=source)
            report.inserted, report.updated = counts.inserted, counts.updated
            report.unchanged = counts.unchanged
            report.status = "completed"
            report.seconds = time.perf_counter() - started
            close_import(conn, report)
        if written:
            partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    log.info("DEM %s registered as %s: %s", path.name, relative, report.summary())
    return report

