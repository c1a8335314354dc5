"""A scenario's depth rasters as map tiles: ``/scenarios/{id}/maps/{name}/{z}/{x}/{y}.png``.

``name`` is one of the depth rasters the run published (``max_depth``, ``depth_001800s``,
...; ``.tif`` may be given or left off), on WebMercatorQuad: water in a blue ramp by depth, dry
cells (under 1 cm) and cells off the domain transparent. Only a succeeded scenario's listed
files are read, never a path a client made up. Who may read a scenario may read its maps.
Tiles over dry land or off the raster are 204 (nothing to draw).
``/scenarios/{a}/compare/{b}/maps/{z}/{x}/{y}.png`` draws the difference of two scenarios'
maximum depths (B − A, as ``GET /scenarios/{a}/compare/{b}`` counts it) in a diverging ramp.

(No postponed annotations here: FastAPI resolves the route closures' dependencies at
definition time.)
"""

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import morecantile
import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlalchemy import Engine

from cim.access import Principal
from layers.api import read_engine_for
from layers.errors import NotFound
from layers.model import MAX_ZOOM
from layers.responses import cached
from simulation import jobs
from tiles.raster import COPIES, png, read_tile

PNG = "image/png"
DRY_M = 0.01
"""Shallower water is not drawn (the solver's films of rain on every cell)."""
RAMP = ((0.01, (198, 219, 239)), (0.15, (107, 174, 214)), (0.5, (33, 113, 181)),
        (1.5, (8, 48, 107)))
"""Depth (m) to colour, interpolated in between and held beyond the ends."""
OPACITY = 220
TMS = morecantile.tms.get("WebMercatorQuad")
DEPTHS = re.compile(r"max_depth|depth_\d+s")
"""The rasters that hold depths (velocities and arrival times would need ramps of their own)."""


DIFFERENCE_RAMP = ((-1.0, (33, 102, 172)), (-0.15, (146, 197, 222)), (0.0, (247, 247, 247)),
                   (0.15, (244, 165, 130)), (1.0, (178, 24, 43)))
"""B − A (m) to colour (ColorBrewer's RdBu): blue where B is shallower, red where deeper."""
SAME_M = 0.01
"""Smaller changes are the round-off of two runs (compare.py counts cells the same way)."""
MAX_DEPTH = "max_depth"


def _ramp(values: np.ndarray, ramp: tuple) -> np.ndarray:
    stops = np.array([s for s, _ in ramp])
    colours = np.array([c for _, c in ramp], dtype=float)
    rgb = np.stack([np.interp(values, stops, colours[:, i]) for i in range(3)])
    return np.rint(rgb).astype(np.uint8)


def depth_colours(depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(3, h, w) RGB of depths in the blue ramp, and where the cell is wet."""
    return _ramp(depth, RAMP), depth >= DRY_M


def depth_png(path: Path, z: int, x: int, y: int, cache: Path) -> bytes | None:
    """The tile of a depth raster, None when it holds no wet cell."""
    band = read_tile([path], TMS, z, x, y, cache=cache, resampling="nearest")
    if band is None:
        return None
    depth = band.filled(0.0)
    rgb, wet = depth_colours(depth)
    if not wet.any():
        return None
    # Partly opaque, so the map shows through the water.
    return png(rgb, np.where(wet, OPACITY, 0))


def difference_png(path_a: Path, path_b: Path, z: int, x: int, y: int, cache: Path
                   ) -> bytes | None:
    """The tile of B − A, None when no cell changed (or the tile misses either raster)."""
    a = read_tile([path_a], TMS, z, x, y, cache=cache, resampling="nearest")
    b = read_tile([path_b], TMS, z, x, y, cache=cache, resampling="nearest")
    if a is None or b is None:
        return None
    change = b - a  # masked where either is off its domain
    changed = ~np.ma.getmaskarray(change) & (np.abs(change.filled(0.0)) >= SAME_M)
    if not changed.any():
        return None
    return png(_ramp(change.filled(0.0), DIFFERENCE_RAMP), np.where(changed, OPACITY, 0))


def scenario_maps_router(storage_root: Path, crs: int,
                         principal: Callable[..., Principal]) -> APIRouter:
    router = APIRouter(tags=["Scenarios"])
    context = jobs.JobContext(storage_root, crs)

    ReadDb = Annotated[Engine, Depends(read_engine_for(principal))]

    def raster(db: Engine, scenario_id: int, name: str) -> Path:
        file = name if name.endswith(".tif") else f"{name}.tif"
        if not DEPTHS.fullmatch(file.removesuffix(".tif")):
            raise NotFound(f"{name!r} is not a depth map: max_depth or depth_<seconds>s")
        with db.connect() as conn:
            path = jobs.published_file(context, jobs.get(conn, scenario_id), file)
        if path is None:
            raise NotFound(f"scenario {scenario_id} has no map {name!r}")
        return path

    Zoom = Annotated[int, PathParam(ge=0, le=MAX_ZOOM)]
    Index = Annotated[int, PathParam(ge=0)]

    @router.get("/scenarios/{scenario_id}/maps/{name}/{z}/{x}/{y}.png",
                summary="A depth raster of a scenario as a WebMercatorQuad PNG tile",
                response_class=Response, responses={200: {"content": {PNG: {}}},
                                                    204: {"description": "Nothing wet here"}})
    async def map_tile(request: Request, scenario_id: int, name: str, z: Zoom, x: Index,
                       y: Index, db: ReadDb) -> Response:
        matrix = TMS.matrix(z)
        if not (x < matrix.matrixWidth and y < matrix.matrixHeight):
            raise NotFound(f"tile {z}/{x}/{y} lies outside the WebMercatorQuad matrix")
        path = await run_in_threadpool(raster, db, scenario_id, name)
        data = await run_in_threadpool(depth_png, path, z, x, y, storage_root / COPIES)
        if data is None:
            return Response(status_code=204)
        return cached(request, data, PNG)

    @router.get("/scenarios/{a}/compare/{b}/maps/{z}/{x}/{y}.png",
                summary="The difference of two flood scenarios' maximum depths (B − A) as a "
                        "WebMercatorQuad PNG tile", response_class=Response,
                responses={200: {"content": {PNG: {}}}, 204: {"description": "No change here"}})
    async def difference_tile(request: Request, a: int, b: int, z: Zoom, x: Index, y: Index,
                              db: ReadDb) -> Response:
        matrix = TMS.matrix(z)
        if not (x < matrix.matrixWidth and y < matrix.matrixHeight):
            raise NotFound(f"tile {z}/{x}/{y} lies outside the WebMercatorQuad matrix")
        path_a = await run_in_threadpool(raster, db, a, MAX_DEPTH)
        path_b = await run_in_threadpool(raster, db, b, MAX_DEPTH)
        data = await run_in_threadpool(difference_png, path_a, path_b, z, x, y,
                                       storage_root / COPIES)
        if data is None:
            return Response(status_code=204)
        return cached(request, data, PNG)

    return router
