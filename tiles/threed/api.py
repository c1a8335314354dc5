"""Serves the built 3D Tiles: ``/3dtiles/buildings/tileset.json`` and its glb content.

The files come from ``cim tiles build-3d`` under the storage root; each response carries an
ETag and Cache-Control (``layers.responses.cached``), so a client revalidates a tile it holds
for the cost of a 304. The buildings layer's classification applies as everywhere else: a
reader who may not see it gets 404.

(No postponed annotations here: FastAPI resolves the route closures' dependencies at
definition time.)
"""

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from cim.access import Principal
from layers.errors import NotFound
from layers.model import LayerDefinition
from layers.responses import cached
from tiles.threed.build import TILESET

GLB = "model/gltf-binary"
TILE_NAME = re.compile(r"\d{1,2}-\d{1,8}-\d{1,8}")


def tilesets_folder(storage_root: Path) -> Path:
    """Where ``cim tiles build-3d`` writes and the API reads, one folder per tileset."""
    return storage_root / "3dtiles"


def threed_router(catalog: list[LayerDefinition], folder: Path,
                  principal: Callable[..., Principal]) -> APIRouter:
    router = APIRouter(tags=["3D Tiles"])
    buildings = next((layer for layer in catalog if layer.id == "buildings"), None)

    async def readable(who: Annotated[Principal, Depends(principal)]) -> Path:
        if buildings is None or not who.may_see(buildings):
            raise NotFound("no 3D tileset 'buildings'")
        return folder / "buildings"

    def read(path: Path) -> bytes:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{path.name} is not built (run `cim tiles build-3d`)") from None

    @router.get("/3dtiles/buildings/tileset.json", summary="3D Tiles 1.1 tileset of buildings",
                response_class=Response, responses={200: {"content": {"application/json": {}}}})
    async def tileset(request: Request, where: Annotated[Path, Depends(readable)]) -> Response:
        data = await run_in_threadpool(read, where / TILESET)
        return cached(request, data, "application/json")

    @router.get("/3dtiles/buildings/{tile}.glb", summary="glb content of one tile",
                response_class=Response, responses={200: {"content": {GLB: {}}}})
    async def content(request: Request, tile: str,
                      where: Annotated[Path, Depends(readable)]) -> Response:
        if not TILE_NAME.fullmatch(tile):
            raise NotFound(f"no tile {tile!r}")
        data = await run_in_threadpool(read, where / f"{tile}.glb")
        return cached(request, data, GLB)

    return router
