"""Terrain tiles over HTTP: Terrain-RGB and hillshade PNGs of the registered DEMs on
WebMercatorQuad, each with a TileJSON 3.0 document.

``/terrain/WebMercatorQuad/{z}/{x}/{y}.png`` is what deck.gl's TerrainLayer
(``elevationDecoder {rScaler: 6553.6, gScaler: 25.6, bScaler: 0.1, offset: -10000}``) and
MapLibre's ``raster-dem`` source (``encoding: "mapbox"``) drape; ``/hillshade/...`` is a grey
relief to lay under the map. A tile outside the matrix is a 404, one off every DEM a 204, one
at a DEM's edge transparent where there is no data. The terrain follows the classification
of the catalog's ``dems`` layer where the catalog has one (a reader who may not see it gets
404); without one the terrain is public, like the base map.

(No postponed annotations here: FastAPI resolves the route closures' dependencies at
definition time.)
"""

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import morecantile
from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Engine

from cim.access import Principal
from layers.api import read_engine_for
from layers.errors import NotFound
from layers.model import MAX_ZOOM, LayerDefinition
from layers.responses import cached
from tiles.raster import COPIES
from tiles.terrain import DemFile, dems_within, hillshade_png, max_zoom, terrain_png

PNG = "image/png"
GRID = "WebMercatorQuad"
Renderer = Callable[[list[DemFile], morecantile.TileMatrixSet, int, int, int, Path],
                    bytes | None]
KINDS: dict[str, tuple[Renderer, str]] = {
    "terrain": (terrain_png, "Terrain-RGB (Mapbox encoding) of the DEMs"),
    "hillshade": (hillshade_png, "Hillshade of the DEMs, lit from the north-west"),
}


def terrain_router(catalog: list[LayerDefinition], storage_root: Path, name: str,
                   principal: Callable[..., Principal]) -> APIRouter:
    router = APIRouter(tags=["Terrain"])
    dems_layer = next((layer for layer in catalog if layer.id == "dems"), None)
    tms = morecantile.tms.get(GRID)

    async def readable(who: Annotated[Principal, Depends(principal)]) -> None:
        if dems_layer is not None and not who.may_see(dems_layer):
            raise NotFound("no terrain")

    async def grid(tileMatrixSetId: str) -> morecantile.TileMatrixSet:  # as in the OGC spec
        if tileMatrixSetId != GRID:
            raise NotFound(f"terrain tiles are on {GRID} only, not {tileMatrixSetId!r}")
        return tms

    def render(engine: Engine, renderer: Renderer, z: int, x: int, y: int) -> bytes | None:
        bounds = tms.bounds(x, y, z)
        with engine.connect() as conn:
            dems = dems_within(conn, storage_root, tuple(bounds))
        return renderer(dems, tms, z, x, y, storage_root / COPIES) if dems else None

    def describe(request: Request, db: Engine, kind: str) -> dict[str, Any]:
        with db.connect() as conn:
            dems = dems_within(conn, storage_root)
        base = str(request.base_url).rstrip("/")
        body: dict[str, Any] = {
            "tilejson": "3.0.0", "name": f"{name} {kind}", "description": KINDS[kind][1],
            "scheme": "xyz", "tiles": [f"{base}/{kind}/{GRID}/{{z}}/{{x}}/{{y}}.png"],
            "minzoom": 0, "maxzoom": max_zoom(dems, tms)}
        if dems:
            body["bounds"] = [min(d.bounds[0] for d in dems), min(d.bounds[1] for d in dems),
                              max(d.bounds[2] for d in dems), max(d.bounds[3] for d in dems)]
        if kind == "terrain":
            body["encoding"] = "mapbox"  # as MapLibre's raster-dem source names it
        return body

    Zoom = Annotated[int, PathParam(ge=0, le=MAX_ZOOM)]
    Index = Annotated[int, PathParam(ge=0)]
    Grid = Annotated[morecantile.TileMatrixSet, Depends(grid)]
    Readable = Annotated[None, Depends(readable)]
    Db = Annotated[Engine, Depends(read_engine_for(principal))]

    def add_routes(kind: str, renderer: Renderer, title: str) -> None:
        @router.get(f"/{kind}/{{tileMatrixSetId}}/{{z}}/{{x}}/{{y}}.png", summary=title,
                    response_class=Response, responses={200: {"content": {PNG: {}}},
                                                        204: {"description": "No DEM here"}},
                    operation_id=f"{kind}_tile")
        async def tile(request: Request, _grid: Grid, z: Zoom, x: Index, y: Index,
                       _: Readable, db: Db) -> Response:
            matrix = tms.matrix(z)
            if not (x < matrix.matrixWidth and y < matrix.matrixHeight):
                raise NotFound(f"tile {z}/{x}/{y} lies outside the {GRID} matrix")
            data = await run_in_threadpool(render, db, renderer, z, x, y)
            if data is None:
                return Response(status_code=204)
            return cached(request, data, PNG)

        @router.get(f"/{kind}/{{tileMatrixSetId}}/tilejson.json",
                    summary=f"TileJSON 3.0 of the {kind} tiles", operation_id=f"{kind}_tilejson")
        async def tilejson(request: Request, _grid: Grid, _: Readable, db: Db) -> JSONResponse:
            return JSONResponse(await run_in_threadpool(describe, request, db, kind))

    for kind, (renderer, title) in KINDS.items():
        add_routes(kind, renderer, title)
    return router
