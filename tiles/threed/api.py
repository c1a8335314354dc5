"""Serves the built 3D Tiles: ``/3dtiles/{tileset}/tileset.json`` and its glb content, for
the buildings and the infrastructure tilesets (bridges, water, drainage).

The files come from ``cim tiles build-3d`` under the storage root; each response carries an
ETag and Cache-Control (``layers.responses.cached``), so a client revalidates a tile it holds
for the cost of a 304. The classification of the layers a tileset draws applies as
everywhere else: a reader who may not see one of them gets 404 (the drainage network is
internal).

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
from tiles.threed.infrastructure import TILESETS as INFRASTRUCTURE
from tiles.threed.writer import TILESET

GLB = "model/gltf-binary"
TILE_NAME = re.compile(r"\d{1,2}-\d{1,8}-\d{1,8}")
TILESETS: dict[str, tuple[str, ...]] = {"buildings": ("buildings",), **INFRASTRUCTURE}
"""Every tileset served, with the catalog layers it draws."""


def tilesets_folder(storage_root: Path) -> Path:
    """Where ``cim tiles build-3d`` writes and the API reads, one folder per tileset."""
    return storage_root / "3dtiles"


def threed_router(catalog: list[LayerDefinition], folder: Path,
                  principal: Callable[..., Principal]) -> APIRouter:
    router = APIRouter(tags=["3D Tiles"])
    layers = {layer.id: layer for layer in catalog}

    async def readable(tilesetId: str, who: Annotated[Principal, Depends(principal)]) -> Path:
        drawn = [layers.get(layer) for layer in TILESETS.get(tilesetId, ("",))]
        if not all(layer is not None and who.may_see(layer) for layer in drawn):
            raise NotFound(f"no 3D tileset {tilesetId!r}")
        return folder / tilesetId

    def read(path: Path) -> bytes:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{path.name} is not built (run `cim tiles build-3d`)") from None

    @router.get("/3dtiles", summary="The built 3D tilesets this reader may see")
    async def listing(request: Request, who: Annotated[Principal, Depends(principal)]
                      ) -> dict[str, list[dict[str, object]]]:
        # So that a client need not ask for each tileset and take a 404 for those not built
        # (which browsers log as errors).
        shown = [{"id": name, "layers": list(drawn),
                  "href": str(request.url_for("tileset", tilesetId=name))}
                 for name, drawn in TILESETS.items()
                 if all(layer in layers and who.may_see(layers[layer]) for layer in drawn)
                 and (folder / name / TILESET).is_file()]
        return {"tilesets": shown}

    @router.get("/3dtiles/{tilesetId}/tileset.json",
                summary="3D Tiles 1.1 tileset: buildings, bridges, water or drainage",
                response_class=Response, responses={200: {"content": {"application/json": {}}}})
    async def tileset(request: Request, where: Annotated[Path, Depends(readable)]) -> Response:
        data = await run_in_threadpool(read, where / TILESET)
        return cached(request, data, "application/json")

    @router.get("/3dtiles/{tilesetId}/{tile}.glb", summary="glb content of one tile",
                response_class=Response, responses={200: {"content": {GLB: {}}}})
    async def content(request: Request, tile: str,
                      where: Annotated[Path, Depends(readable)]) -> Response:
        if not TILE_NAME.fullmatch(tile):
            raise NotFound(f"no tile {tile!r}")
        data = await run_in_threadpool(read, where / f"{tile}.glb")
        return cached(request, data, GLB)

    return router
