"""OGC API - Tiles (vector) over the layer catalog, with TileJSON 3.0.

``tiles_router(layers, name)`` serves Mapbox Vector Tiles of all given layers together (the
base map) and of each one alone, on the TileMatrixSets morecantile defines that we enable.

(No postponed annotations here: FastAPI resolves the route closures' dependencies at
definition time.)
"""

from typing import Annotated, Any

import morecantile
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Engine

from layers.errors import NotFound
from layers.model import MAX_ZOOM, LayerDefinition
from layers.responses import cached
from tiles.mvt import render_tile
from tiles.style import style_document

MVT = "application/vnd.mapbox-vector-tile"
TILE_MATRIX_SETS = ("WebMercatorQuad",)
"""Grids served; morecantile has the definitions (a CGCS2000 grid is one more entry)."""


def tiles_router(visible: list[LayerDefinition], name: str) -> APIRouter:
    router = APIRouter(tags=["OGC API - Tiles"])
    layers = {layer.id: layer for layer in visible}

    def engine(request: Request) -> Engine:
        return request.app.state.engine

    def grid(tileMatrixSetId: str) -> morecantile.TileMatrixSet:  # named as in the OGC spec
        if tileMatrixSetId not in TILE_MATRIX_SETS:
            raise NotFound(f"no tile matrix set {tileMatrixSetId!r}; "
                           f"served: {', '.join(TILE_MATRIX_SETS)}")
        return morecantile.tms.get(tileMatrixSetId)

    def layer_for(collectionId: str) -> LayerDefinition:  # named as in the OGC spec
        layer = layers.get(collectionId)
        if layer is None:
            raise NotFound(f"no collection {collectionId!r}")
        return layer

    def tile(request: Request, db: Engine, chosen: list[LayerDefinition],
             tms: morecantile.TileMatrixSet, z: int, x: int, y: int) -> Response:
        matrix = tms.matrix(z)
        if not (0 <= x < matrix.matrixWidth and 0 <= y < matrix.matrixHeight):
            raise NotFound(f"tile {z}/{x}/{y} lies outside the {tms.id} matrix")
        with db.connect() as conn:
            data = render_tile(conn, chosen, tms, z, x, y)
        if not data:
            return Response(status_code=204)
        return cached(request, data, MVT)

    Zoom = Annotated[int, Path(ge=0, le=MAX_ZOOM)]
    Index = Annotated[int, Path(ge=0)]

    @router.get("/tiles/{tileMatrixSetId}/{z}/{x}/{y}", summary="Base map tile: every layer",
                response_class=Response, responses={200: {"content": {MVT: {}}}})
    def base_tile(request: Request, tms: Annotated[morecantile.TileMatrixSet, Depends(grid)],
                  z: Zoom, x: Index, y: Index,
                  db: Annotated[Engine, Depends(engine)]) -> Response:
        return tile(request, db, visible, tms, z, x, y)

    @router.get("/collections/{collectionId}/tiles/{tileMatrixSetId}/{z}/{x}/{y}",
                summary="Tile of one collection", response_class=Response,
                responses={200: {"content": {MVT: {}}}})
    def collection_tile(request: Request,
                        layer: Annotated[LayerDefinition, Depends(layer_for)],
                        tms: Annotated[morecantile.TileMatrixSet, Depends(grid)], z: Zoom,
                        x: Index, y: Index, db: Annotated[Engine, Depends(engine)]) -> Response:
        return tile(request, db, [layer], tms, z, x, y)

    @router.get("/tiles/{tileMatrixSetId}/tilejson.json", summary="TileJSON 3.0 of the base map")
    def tilejson(request: Request,
                 tms: Annotated[morecantile.TileMatrixSet, Depends(grid)]) -> JSONResponse:
        base = str(request.base_url).rstrip("/")
        attributions = sorted({layer.attribution for layer in visible if layer.attribution})
        body: dict[str, Any] = {
            "tilejson": "3.0.0",
            "name": f"{name} base map",
            "scheme": "xyz",
            "tiles": [f"{base}/tiles/{tms.id}/{{z}}/{{x}}/{{y}}"],
            "minzoom": min((layer.min_zoom for layer in visible), default=0),
            "maxzoom": max((layer.max_zoom for layer in visible), default=MAX_ZOOM),
            "attribution": "; ".join(attributions),
            "vector_layers": [
                {"id": layer.id, "description": layer.title, "minzoom": layer.min_zoom,
                 "maxzoom": layer.max_zoom,
                 "fields": {p.name: p.title for p in layer.properties}}
                for layer in visible
            ],
        }
        return JSONResponse(body)

    @router.get("/styles/default", summary="MapLibre style of the whole catalog")
    def style(request: Request) -> JSONResponse:
        base = str(request.base_url).rstrip("/")
        tilejson_url = f"{base}/tiles/{TILE_MATRIX_SETS[0]}/tilejson.json"
        return JSONResponse(style_document(visible, f"{name} base map", tilejson_url))

    return router
