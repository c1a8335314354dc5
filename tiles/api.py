"""OGC API - Tiles (vector) over the layer catalog, with TileJSON 3.0.

``tiles_router(catalog, name, principal)`` serves Mapbox Vector Tiles of every layer the
reader may see together (the base map) and of each one alone, on the TileMatrixSets
morecantile defines that we enable; a layer the reader may not see is a 404, and is absent
from the base map, TileJSON and style.
Tiles go through the server-side cache (``app.state.tile_cache``, None when disabled) and
are sent gzip-compressed as stored to clients that accept it; ``X-Cache`` says hit or miss.
Concurrent misses of one tile share one render (unless an eviction covering the tile came
after that render began), so a tile evicted under load is drawn once, not once per reader.

(No postponed annotations here: FastAPI resolves the route closures' dependencies at
definition time.)
"""

import asyncio
import gzip
from collections.abc import Callable
from typing import Annotated, Any

import morecantile
from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Engine

from cim.access import Principal
from layers.api import read_engine_for
from layers.errors import NotFound
from layers.model import MAX_ZOOM, LayerDefinition
from layers.responses import cached
from tiles.cache import TileCache, TileKey, Tileset, cached_tile
from tiles.grid import SERVED
from tiles.grid import grid as lookup_grid
from tiles.metadata import attribution, vector_layers, zoom_range
from tiles.style import style_document

MVT = "application/vnd.mapbox-vector-tile"


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` header admits gzip (explicitly or by ``*``)."""
    for item in accept_encoding.lower().split(","):
        coding, _, params = item.partition(";")
        if coding.strip() not in ("gzip", "*"):
            continue
        weight = params.strip()
        if not weight.startswith("q="):
            return True
        try:
            return float(weight[2:]) > 0
        except ValueError:
            return False
    return False


def tiles_router(catalog: list[LayerDefinition], name: str,
                 principal: Callable[..., Principal]) -> APIRouter:
    router = APIRouter(tags=["OGC API - Tiles"])
    layers = {layer.id: layer for layer in catalog}

    # The dependencies and tile routes are async: a cache hit is served on the event loop
    # without a hop to a worker thread; only a render (database work) goes to one.
    async def visible(who: Annotated[Principal, Depends(principal)]) -> list[LayerDefinition]:
        return [layer for layer in catalog if who.may_see(layer)]

    Visible = Annotated[list[LayerDefinition], Depends(visible)]

    engine = read_engine_for(principal)
    grids = {tms_id: lookup_grid(tms_id) for tms_id in SERVED}
    # Renders in flight: key -> (cache generation before it began, its result or None).
    flights: dict[TileKey, tuple[int, asyncio.Future[bytes | None]]] = {}

    async def rendered(cache: TileCache | None, db: Engine, tileset: Tileset,
                       chosen: list[LayerDefinition], tms: morecantile.TileMatrixSet,
                       z: int, x: int, y: int) -> tuple[bytes, bool]:
        """The compressed tile and whether the cache held it, sharing a render in flight."""
        if cache is None or not cache.active:  # nothing tells whether a render is stale
            return await run_in_threadpool(cached_tile, cache, db, tileset, chosen, tms,
                                           z, x, y)
        key = TileKey(tileset.name, tms.id, z, x, y)
        flight = flights.get(key)
        if flight is not None and not cache.stale(key, tileset.layers, flight[0]):
            shared = await asyncio.shield(flight[1])
            if shared is not None:
                return shared, False
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        flights[key] = (cache.generation, future)
        data: bytes | None = None
        try:
            data, hit = await run_in_threadpool(cached_tile, cache, db, tileset, chosen, tms,
                                                z, x, y)
        finally:
            future.set_result(data)  # None if it failed: whoever waited renders for itself
            if flights.get(key, (0, None))[1] is future:
                del flights[key]
        return data, hit

    async def grid(tileMatrixSetId: str) -> morecantile.TileMatrixSet:  # as in the OGC spec
        if tileMatrixSetId not in grids:
            raise NotFound(f"no tile matrix set {tileMatrixSetId!r}; "
                           f"served: {', '.join(SERVED)}")
        return grids[tileMatrixSetId]

    async def layer_for(collectionId: str,  # named as in the OGC spec
                        who: Annotated[Principal, Depends(principal)]) -> LayerDefinition:
        layer = layers.get(collectionId)
        if layer is None or not who.may_see(layer):
            raise NotFound(f"no collection {collectionId!r}")
        return layer

    async def tile(request: Request, db: Engine, tileset: Tileset,
                   chosen: list[LayerDefinition], tms: morecantile.TileMatrixSet,
                   z: int, x: int, y: int) -> Response:
        matrix = tms.matrix(z)
        if not (0 <= x < matrix.matrixWidth and 0 <= y < matrix.matrixHeight):
            raise NotFound(f"tile {z}/{x}/{y} lies outside the {tms.id} matrix")
        cache: TileCache | None = getattr(request.app.state, "tile_cache", None)
        data = cache.in_memory(TileKey(tileset.name, tms.id, z, x, y)) if cache else None
        hit = data is not None
        if data is None:
            data, hit = await rendered(cache, db, tileset, chosen, tms, z, x, y)
        headers = {"X-Cache": "hit" if hit else "miss", "Vary": "Accept-Encoding"}
        if not data:
            return Response(status_code=204, headers=headers)
        # Stored compressed: a client that takes gzip costs no CPU, others are inflated for.
        if accepts_gzip(request.headers.get("accept-encoding", "")):
            headers["Content-Encoding"] = "gzip"
        else:
            data = gzip.decompress(data)
        return cached(request, data, MVT, headers=headers)

    Zoom = Annotated[int, Path(ge=0, le=MAX_ZOOM)]
    Index = Annotated[int, Path(ge=0)]

    @router.get("/tiles/{tileMatrixSetId}/{z}/{x}/{y}", summary="Base map tile: every layer",
                response_class=Response, responses={200: {"content": {MVT: {}}}})
    async def base_tile(request: Request,
                        tms: Annotated[morecantile.TileMatrixSet, Depends(grid)],
                        z: Zoom, x: Index, y: Index, db: Annotated[Engine, Depends(engine)],
                        seen: Visible) -> Response:
        base_map = Tileset.base_map(layer.id for layer in seen)
        return await tile(request, db, base_map, seen, tms, z, x, y)

    @router.get("/collections/{collectionId}/tiles/{tileMatrixSetId}/{z}/{x}/{y}",
                summary="Tile of one collection", response_class=Response,
                responses={200: {"content": {MVT: {}}}})
    async def collection_tile(request: Request,
                              layer: Annotated[LayerDefinition, Depends(layer_for)],
                              tms: Annotated[morecantile.TileMatrixSet, Depends(grid)],
                              z: Zoom, x: Index, y: Index,
                              db: Annotated[Engine, Depends(engine)]) -> Response:
        return await tile(request, db, Tileset.collection(layer.id), [layer], tms, z, x, y)

    @router.get("/tiles/{tileMatrixSetId}/tilejson.json", summary="TileJSON 3.0 of the base map")
    def tilejson(request: Request, tms: Annotated[morecantile.TileMatrixSet, Depends(grid)],
                 seen: Visible) -> JSONResponse:
        if tms.id != "WebMercatorQuad":
            raise NotFound("TileJSON describes Web Mercator tiles only; for "
                           f"{tms.id} read /tileMatrixSets/{tms.id}")
        base = str(request.base_url).rstrip("/")
        minzoom, maxzoom = zoom_range(seen)
        body: dict[str, Any] = {
            "tilejson": "3.0.0",
            "name": f"{name} base map",
            "scheme": "xyz",
            "tiles": [f"{base}/tiles/{tms.id}/{{z}}/{{x}}/{{y}}"],
            "minzoom": minzoom,
            "maxzoom": maxzoom,
            "attribution": attribution(seen),
            "vector_layers": vector_layers(seen),
        }
        return JSONResponse(body)

    @router.get("/tileMatrixSets", summary="The tile matrix sets served")
    def tile_matrix_sets(request: Request) -> JSONResponse:
        base = str(request.base_url).rstrip("/")
        return JSONResponse({"tileMatrixSets": [
            {"id": tms_id, "title": grids[tms_id].title,
             "links": [{"href": f"{base}/tileMatrixSets/{tms_id}", "rel": "self",
                        "type": "application/json"}]} for tms_id in SERVED]})

    @router.get("/tileMatrixSets/{tileMatrixSetId}", summary="One tile matrix set (2.0)")
    def tile_matrix_set(
            tms: Annotated[morecantile.TileMatrixSet, Depends(grid)]) -> JSONResponse:
        return JSONResponse(tms.model_dump(exclude_none=True, mode="json"))

    @router.get("/styles/default", summary="MapLibre style of the whole catalog")
    def style(request: Request, seen: Visible) -> JSONResponse:
        base = str(request.base_url).rstrip("/")
        tilejson_url = f"{base}/tiles/WebMercatorQuad/tilejson.json"
        return JSONResponse(style_document(seen, f"{name} base map", tilejson_url))

    return router
