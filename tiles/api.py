"""OGC API - Tiles (vector) over the layer catalog, with TileJSON 3.0.

``tiles_router(catalog, name, principal)`` serves Mapbox Vector Tiles of every layer the
reader may see together (the base map) and of each one alone, on the TileMatrixSets
morecantile defines that we enable; a layer the reader may not see is a 404, and is absent
from the base map, TileJSON and style.
Tiles go through the server-side cache (``app.state.tile_cache``, None when disabled) and
are sent gzip-compressed as stored to clients that accept it; ``X-Cache`` says hit or miss.
Concurrent misses of one tile share one render (unless an eviction covering the tile came
after that render began), so a tile evicted under load is drawn once, not once per reader.
An evicted tile still in memory is answered at once, stale (``X-Cache: stale``, max-age 0),
while one background render refreshes it, for at most ``max_stale_s`` after the eviction;
past that, or when the request says ``Cache-Control: no-cache``, the reader waits for the
fresh render. A tile edited over and over is refreshed at most every ``REFRESH_SPACING_S``,
and half as often each time it was evicted again within that spacing of its last refresh
(up to ``REFRESH_SPACING_MAX_S``; back to the least once a refresh outlasts its spacing).
Access is checked before the cache is consulted, as for any tile.

(No postponed annotations here: FastAPI resolves the route closures' dependencies at
definition time.)
"""

import asyncio
import gzip
import logging
import math
import time
from collections.abc import Callable
from typing import Annotated, Any

import morecantile
from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Engine

from cim.access import Principal
from layers.api import engine_for_reads
from layers.errors import NotFound
from layers.model import MAX_ZOOM, LayerDefinition
from layers.responses import cached
from tiles.cache import TileCache, TileKey, Tileset, cached_tile
from tiles.grid import SERVED
from tiles.grid import grid as lookup_grid
from tiles.metadata import attribution, vector_layers, zoom_range
from tiles.style import style_document

MVT = "application/vnd.mapbox-vector-tile"
REFRESH_SPACING_S = 1.0
"""Least time between two background refreshes of one tile. Under a stream of edits the
low-zoom tiles over a district are evicted by nearly every edit: refreshed back to back,
their renders (the dearest) took most of the CPU, each stale again on arrival."""
REFRESH_SPACING_MAX_S = 8.0
"""Most time between two background refreshes of a tile under a stream of edits. Under
bench/load.py's (42 edits a second over 164 tiles) the tiles over the whole district were
evicted again a fraction of a second after each refresh: at a fixed second's spacing 2,000
refreshes a minute took half of PostgreSQL's CPU, with this 470 (PostgreSQL 1.15 -> 0.58 ms
and the server 1.72 -> 1.42 ms a request, p99 210 -> 156 ms, 40 % more requests a second)."""
REFRESHES_KEPT = 10_000
log = logging.getLogger(__name__)


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


def wants_fresh(cache_control: str) -> bool:
    """Whether a request's ``Cache-Control`` refuses a stale answer (no-cache, max-age=0)."""
    directives = {d.strip().lower() for d in cache_control.split(",")}
    return "no-cache" in directives or "max-age=0" in directives


def tiles_router(catalog: list[LayerDefinition], name: str,
                 principal: Callable[..., Principal], max_stale_s: float) -> APIRouter:
    router = APIRouter(tags=["OGC API - Tiles"])
    layers = {layer.id: layer for layer in catalog}

    # The dependencies and tile routes are async: a cache hit is served on the event loop
    # without a hop to a worker thread; only a render (database work) goes to one.
    async def visible(who: Annotated[Principal, Depends(principal)]) -> list[LayerDefinition]:
        return [layer for layer in catalog if who.may_see(layer)]

    Visible = Annotated[list[LayerDefinition], Depends(visible)]

    grids = {tms_id: lookup_grid(tms_id) for tms_id in SERVED}
    # Renders in flight: key -> (cache generation before it began, its compressed tile and
    # whether the cache held it). Registered on the event loop before the render starts, so
    # a second reader, or a second stale answer, never starts another.
    flights: dict[TileKey, tuple[int, asyncio.Future[tuple[bytes, bool]]]] = {}
    renders: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references
    # When each tile's last refresh began, and the spacing before its next.
    refreshed: dict[TileKey, tuple[float, float]] = {}

    def flight(cache: TileCache, db: Engine, tileset: Tileset, chosen: list[LayerDefinition],
               tms: morecantile.TileMatrixSet, z: int, x: int,
               y: int) -> asyncio.Future[tuple[bytes, bool]]:
        """The render of this tile in flight that began after its last eviction, or a new
        one."""
        key = TileKey(tileset.name, tms.id, z, x, y)
        current = flights.get(key)
        if current is not None and not cache.stale(key, tileset.layers, current[0]):
            return current[1]
        future: asyncio.Future[tuple[bytes, bool]] = \
            asyncio.get_running_loop().create_future()
        # Retrieved here so a render nobody waits for (a refresh) logs no "never retrieved".
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        flights[key] = (cache.generation, future)

        async def render() -> None:
            try:
                future.set_result(await run_in_threadpool(
                    cached_tile, cache, db, tileset, chosen, tms, z, x, y))
            except Exception as exc:  # to whoever waits; a refresh alone just logs it
                future.set_exception(exc)
            finally:
                if flights.get(key, (0, None))[1] is future:
                    del flights[key]

        task = asyncio.ensure_future(render())
        renders.add(task)
        task.add_done_callback(renders.discard)
        return future

    def refresh(cache: TileCache, db: Engine, tileset: Tileset, chosen: list[LayerDefinition],
                tms: morecantile.TileMatrixSet, z: int, x: int, y: int,
                stale_for: float) -> None:
        """Render a tile stale for ``stale_for`` seconds in the background: one render at a
        time however many readers saw it, and not again within the tile's spacing."""
        key, now = TileKey(tileset.name, tms.id, z, x, y), time.monotonic()
        last, spacing = refreshed.get(key, (-math.inf, REFRESH_SPACING_S))
        if key in flights or now - last < spacing:
            return
        if len(refreshed) >= REFRESHES_KEPT:  # forget those past their spacing
            for old in [k for k, (t, s) in refreshed.items() if now - t >= s]:
                del refreshed[old]
        # Evicted again within the spacing of its last refresh: under a stream of edits its
        # renders go stale about as soon as they land, so the next waits twice as long.
        soon = now - stale_for - last < spacing
        refreshed[key] = (now, min(2 * spacing, REFRESH_SPACING_MAX_S) if soon
                          else REFRESH_SPACING_S)

        def failed(done: asyncio.Future[tuple[bytes, bool]]) -> None:
            if not done.cancelled() and done.exception() is not None:
                log.warning("refreshing tile %s/%s/%s of %s failed: %s", z, x, y,
                            tileset.name, done.exception())

        flight(cache, db, tileset, chosen, tms, z, x, y).add_done_callback(failed)

    async def rendered(cache: TileCache | None, db: Engine, tileset: Tileset,
                       chosen: list[LayerDefinition], tms: morecantile.TileMatrixSet,
                       z: int, x: int, y: int) -> tuple[bytes, bool]:
        """The compressed tile and whether the cache held it, sharing a render in flight."""
        if cache is None or not cache.active:  # nothing tells whether a render is stale
            return await run_in_threadpool(cached_tile, cache, db, tileset, chosen, tms,
                                           z, x, y)
        return await asyncio.shield(flight(cache, db, tileset, chosen, tms, z, x, y))

    async def grid(tileMatrixSetId: str) -> morecantile.TileMatrixSet:  # as in the OGC spec
        if tileMatrixSetId not in grids:
            raise NotFound(f"no tile matrix set {tileMatrixSetId!r}; "
                           f"served: {', '.join(SERVED)}")
        return grids[tileMatrixSetId]

    def layer_for(collectionId: str, who: Principal) -> LayerDefinition:
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
        key = TileKey(tileset.name, tms.id, z, x, y)
        data = cache.in_memory(key) if cache else None
        state, max_age = "hit", 60
        if data is None and cache is not None:
            old = cache.stale_copy(key)
            if (old is not None and old[1] <= max_stale_s
                    and not wants_fresh(request.headers.get("cache-control", ""))):
                refresh(cache, db, tileset, chosen, tms, z, x, y, old[1])
                # Clients come back for it at once: the refresh is under way.
                data, state, max_age = old[0], "stale", 0
        if data is None:
            data, hit = await rendered(cache, db, tileset, chosen, tms, z, x, y)
            state = "hit" if hit else "miss"
        headers = {"X-Cache": state, "Vary": "Accept-Encoding"}
        if not data:
            return Response(status_code=204, headers={
                **headers, "Cache-Control": f"public, max-age={max_age}"})
        # Stored compressed: a client that takes gzip costs no CPU, others are inflated for.
        digest = None
        if accepts_gzip(request.headers.get("accept-encoding", "")):
            headers["Content-Encoding"] = "gzip"
            digest = cache.digest(key, data) if cache is not None else None
        else:
            data = gzip.decompress(data)
        return cached(request, data, MVT, max_age=max_age, headers=headers, digest=digest)

    Zoom = Annotated[int, Path(ge=0, le=MAX_ZOOM)]
    Index = Annotated[int, Path(ge=0)]

    # The tile routes take the principal alone and look up the rest themselves: FastAPI
    # spends tens of microseconds on each dependency, and six fewer cut a cached tile's
    # CPU by about 15 %.
    Who = Annotated[Principal, Depends(principal)]

    @router.get("/tiles/{tileMatrixSetId}/{z}/{x}/{y}", summary="Base map tile: every layer",
                response_class=Response, responses={200: {"content": {MVT: {}}}})
    async def base_tile(request: Request, tileMatrixSetId: str, z: Zoom, x: Index, y: Index,
                        who: Who) -> Response:
        seen = [layer for layer in catalog if who.may_see(layer)]
        base_map = Tileset.base_map(layer.id for layer in seen)
        return await tile(request, engine_for_reads(request, who), base_map, seen,
                          await grid(tileMatrixSetId), z, x, y)

    @router.get("/collections/{collectionId}/tiles/{tileMatrixSetId}/{z}/{x}/{y}",
                summary="Tile of one collection", response_class=Response,
                responses={200: {"content": {MVT: {}}}})
    async def collection_tile(request: Request,
                              collectionId: str,  # named as in the OGC spec
                              tileMatrixSetId: str,
                              z: Zoom, x: Index, y: Index, who: Who) -> Response:
        layer = layer_for(collectionId, who)
        return await tile(request, engine_for_reads(request, who), Tileset.collection(layer.id),
                          [layer], await grid(tileMatrixSetId), z, x, y)

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
