"""OGC API - Features Part 4: create, replace, update and delete, through the city's history.

Every write is a new version (``cim.history``), never an update in place, and is appended to
the audit log by the same statement, so a failed write leaves nothing behind. Writes need
a key whose role may edit and whose clearance covers the layer; ``If-Match`` with an ETag
from a read makes the write fail with 412 if someone else changed the object since.

(No postponed annotations here: FastAPI resolves the route closures' dependencies at
definition time.)
"""

import json
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal

import shapely
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, ValidationError
from pyproj import Transformer
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from cim.access import Principal
from cim.db.engine import autocommit_async
from cim.history import (
    Audit,
    ObjectNotFound,
    create_object,
    delete_object,
    model_for,
    update_object,
)
from cim.schema.models import CITY_CLASSES, SRID
from cim.settings import FeaturesSettings
from layers.crs import CRS84, Crs, resolve
from layers.errors import (
    Forbidden,
    InvalidParameter,
    NotFound,
    NotWritable,
    Unauthorized,
)
from layers.model import LayerDefinition
from layers.responses import versions_matched

API_SOURCE = "api"
"""The source of objects created through the API: their ids are ``api:...``."""
Action = Literal["create", "replace", "update", "delete"]


class FeatureIn(BaseModel):
    """A GeoJSON Feature as a client sends it (foreign members are ignored)."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["Feature"]
    id: str | int | None = None
    geometry: dict[str, Any] | None = None
    properties: dict[str, Any] | None = None


def writable(layer: LayerDefinition) -> bool:
    """Layers read straight from a versioned city table take writes; views do not."""
    src = layer.source
    return src.versioned and src.schema_ == "cim" and src.relation in CITY_CLASSES \
        and src.id_column == "id" and src.geometry == "geom"


def _geometry(geojson: dict[str, Any] | None, crs: Crs) -> BaseGeometry:
    if geojson is None:
        raise InvalidParameter("the feature has no geometry")
    try:
        geometry = shape(geojson)
    except Exception as exc:  # shapely raises several types for malformed GeoJSON
        raise InvalidParameter(f"geometry is not valid GeoJSON: {exc}") from None
    if geometry.is_empty:
        raise InvalidParameter("the geometry is empty")
    if crs.northing_first:
        geometry = shapely.transform(geometry, lambda a, b: (b, a), interleaved=False)
    if crs.srid != SRID:
        to_storage = Transformer.from_crs(crs.srid, SRID, always_xy=True)
        geometry = shapely.transform(geometry, to_storage.transform, interleaved=False)
    return geometry


def _default(column: Any) -> Any:
    """The column's server default as a value (the schema's defaults are plain literals)."""
    literal = str(column.server_default.arg)
    return literal == "true" if column.type.python_type is bool \
        else column.type.python_type(literal)


def _typed(column: Any, name: str, value: Any) -> Any:
    """The value if it fits the column's type (JSON numbers for numbers, and so on); a
    missing value is the column's default, or NULL."""
    if value is None:
        if column.nullable:
            return None
        if column.server_default is None:
            raise InvalidParameter(f"{name} cannot be null")
        return _default(column)
    expected = column.type.python_type
    fits = (isinstance(value, bool) if expected is bool
            else isinstance(value, int | float) and not isinstance(value, bool)
            if expected is float
            else isinstance(value, int) and not isinstance(value, bool) if expected is int
            else isinstance(value, str) if expected is str
            else False)
    if not fits:
        raise InvalidParameter(f"{name}: {json.dumps(value)[:40]} is not a "
                               f"{expected.__name__}")
    return value


def _changes(layer: LayerDefinition, feature: FeatureIn, crs: Crs,
             replace: bool) -> dict[str, Any]:
    """Column values from a feature's properties and geometry, checked against the layer.

    ``replace`` sets every exposed property the feature leaves out to NULL (PUT); otherwise
    only what the feature names changes (PATCH)."""
    exposed = {p.name: p.source_column for p in layer.properties}
    given = feature.properties or {}
    unknown = sorted(set(given) - set(exposed))
    if unknown:
        raise InvalidParameter(f"{layer.id} has no properties {', '.join(unknown)}; "
                               f"it has {', '.join(sorted(exposed))}")
    fixed = sorted(name for name, column in exposed.items()
                   if column in layer.source.where and name in given
                   and given[name] != layer.source.where[column])
    if fixed:
        raise InvalidParameter(f"{', '.join(fixed)} defines the {layer.id} layer and cannot "
                               "change")
    table = model_for(layer.source.relation).__table__
    names = exposed if replace else {n: exposed[n] for n in given}
    changes = {column: _typed(table.columns[column], name, given.get(name))
               for name, column in names.items() if column not in layer.source.where}
    if replace or feature.geometry is not None:
        changes["geom"] = _geometry(feature.geometry, crs)
    return changes


def transactions_router(catalog: list[LayerDefinition], settings: FeaturesSettings,
                        crs_offered: list[Crs],
                        principal: Callable[..., Principal]) -> APIRouter:
    router = APIRouter(tags=["OGC API - Features: writes"])
    layers = {layer.id: layer for layer in catalog}

    # The dependencies and routes are async and each write's transaction waits on the event
    # loop (the async engine): a worker thread's every wake-up would queue for the GIL.
    async def engine(request: Request) -> AsyncEngine:
        return request.app.state.async_engine

    async def editable(collectionId: str,  # named as in the OGC spec
                       who: Annotated[Principal, Depends(principal)]) -> LayerDefinition:
        layer = layers.get(collectionId)
        if layer is None or not who.may_see(layer):
            raise NotFound(f"no collection {collectionId!r}")
        if who.anonymous:
            raise Unauthorized("writes need an editor's API key (Authorization: Bearer KEY)")
        if not who.may_edit:
            raise Forbidden(f"the {who.role} role cannot edit; an editor key is needed")
        if not writable(layer):
            raise NotWritable(f"{layer.id} is computed from other data and takes no writes")
        return layer

    async def feature_in(request: Request,
                         content_crs: Annotated[str | None, Header(
                             description="CRS of the geometry sent (default CRS84).")] = None,
                         ) -> tuple[FeatureIn, Crs]:
        body = await request.body()
        if len(body) > settings.max_write_bytes:
            raise InvalidParameter(f"the feature is {len(body):,} bytes; at most "
                                   f"{settings.max_write_bytes:,} are accepted")
        try:
            feature = FeatureIn.model_validate_json(body)
        except ValidationError as exc:
            raise InvalidParameter("the body is not a GeoJSON Feature: "
                                   + "; ".join(e["msg"] for e in exc.errors()[:3])) from None
        crs = CRS84 if content_crs is None else resolve(content_crs.strip("<> "), crs_offered,
                                                         "Content-Crs")
        return feature, crs

    IfMatch = Annotated[str | None, Header(
        description="An ETag from a read: the write fails (412) if the object changed.")]
    Layer = Annotated[LayerDefinition, Depends(editable)]
    Who = Annotated[Principal, Depends(principal)]
    Body = Annotated[tuple[FeatureIn, Crs], Depends(feature_in)]
    written = {"description": "Written; ETag names the new version."}
    # The body is read raw (its size is checked first), so OpenAPI is told its schema here.
    feature_body = {"requestBody": {"required": True, "content": {
        "application/geo+json": {"schema": FeatureIn.model_json_schema()}}}}

    def saved(request: Request, layer: LayerDefinition, object_id: str, vid: int,
              status: int) -> Response:
        location = f"{str(request.base_url).rstrip('/')}/collections/{layer.id}/items/{object_id}"
        return Response(status_code=status, headers={"Location": location,
                                                     "ETag": f'"{vid}-written"'})

    @router.post("/collections/{collectionId}/items", status_code=201,
                 summary="Add a feature", responses={201: written},
                 openapi_extra=feature_body,
                 response_class=Response)
    async def create(request: Request, layer: Layer, who: Who, body: Body,
                     db: Annotated[AsyncEngine, Depends(engine)]) -> Response:
        feature, crs = body
        values = _changes(layer, feature, crs, replace=True)
        values.update(layer.source.where)
        source_id = str(feature.id) if feature.id is not None else uuid.uuid4().hex

        def created(conn: Connection) -> tuple[str, int]:
            return create_object(conn, layer.source.relation, API_SOURCE, source_id, values,
                                 audit=Audit(who.name, "create"))

        # One statement writes the version and its audit entry: no transaction around it.
        async with autocommit_async(db) as conn:
            object_id, vid = await conn.run_sync(created)
        return saved(request, layer, object_id, vid, 201)

    async def write(request: Request, layer: LayerDefinition, who: Principal, feature_id: str,
                    if_match: str | None, changes: dict[str, Any], action: Action) -> Response:
        if action != "delete" and not changes:
            raise InvalidParameter("the feature names no property or geometry to change")
        if "\x00" in feature_id:  # no text in PostgreSQL holds one
            raise NotFound(f"{layer.id} has no feature {feature_id!r}")
        expected = versions_matched(if_match) if if_match is not None else None
        where, audit = layer.source.where, Audit(who.name, action)

        def apply(conn: Connection) -> int | None:
            """The new version's id (None for a delete)."""
            relation = layer.source.relation
            if action == "delete":
                delete_object(conn, relation, feature_id, only=where, expected=expected,
                              audit=audit)
                return None
            return update_object(conn, relation, feature_id, changes, only=where,
                                 expected=expected, audit=audit)

        try:
            async with autocommit_async(request.app.state.async_engine) as conn:
                vid = await conn.run_sync(apply)
        except ObjectNotFound:
            raise NotFound(f"{layer.id} has no feature {feature_id!r}") from None
        if vid is None:
            return Response(status_code=204)
        return saved(request, layer, feature_id, vid, 200)

    @router.put("/collections/{collectionId}/items/{featureId:path}", summary="Replace a feature",
                responses={200: written}, openapi_extra=feature_body,
                response_class=Response)
    async def replace(request: Request, featureId: str, layer: Layer, who: Who, body: Body,
                      if_match: IfMatch = None) -> Response:
        feature, crs = body
        return await write(request, layer, who, featureId, if_match,
                           _changes(layer, feature, crs, replace=True), "replace")

    @router.patch("/collections/{collectionId}/items/{featureId:path}",
                  summary="Change some properties or the geometry of a feature",
                  responses={200: written}, openapi_extra=feature_body,
                response_class=Response)
    async def update(request: Request, featureId: str, layer: Layer, who: Who, body: Body,
                     if_match: IfMatch = None) -> Response:
        feature, crs = body
        return await write(request, layer, who, featureId, if_match,
                           _changes(layer, feature, crs, replace=False), "update")

    @router.delete("/collections/{collectionId}/items/{featureId:path}", status_code=204,
                   summary="Delete a feature (its history stays)")
    async def delete(request: Request, featureId: str, layer: Layer, who: Who,
                     if_match: IfMatch = None) -> Response:
        return await write(request, layer, who, featureId, if_match, {}, "delete")

    return router
