"""OGC API - Features (Part 1 Core, GeoJSON) over the layer catalog.

``features_router(layers, settings)`` returns the routes; ``cim.app.create_app`` mounts them
with the layers the reader's clearance allows: a hidden layer is a 404 like a missing one.
Item pages come as GeoJSON text built by PostgreSQL (see :mod:`layers.features`), wrapped
here with links and counts.

(No postponed annotations here: FastAPI resolves the route closures' dependencies at
definition time.)
"""

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from cim.access import Principal, Role
from cim.db.engine import autocommit_async
from cim.settings import FeaturesSettings
from layers.cql2 import compile_filter, evaluation_errors, parse_filter
from layers.crs import CRS84, Crs, bounds_in_crs84, resolve
from layers.errors import InvalidParameter, NotFound
from layers.features import ItemsQuery, TimeFilter, estimated_extent, read_feature, read_page
from layers.model import LayerDefinition
from layers.queryables import Queryables, load_queryables, parse_sortby, schema_document
from layers.responses import cached

GEOJSON = "application/geo+json"
SCHEMA_JSON = "application/schema+json"
QUERYABLES_REL = "http://www.opengis.net/def/rel/ogc/1.0/queryables"
MAX_OFFSET = 2**31 - 1
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/create-replace-delete",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/update",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/features",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/case-insensitive-comparison",
    "http://www.opengis.net/spec/cql2/1.0/conf/property-property",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions-plus",
    "http://www.opengis.net/spec/cql2/1.0/conf/spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/temporal-functions",
]


def parse_bbox(value: str | None, crs: Crs = CRS84) -> tuple[float, float, float, float] | None:
    """The bbox, given in ``crs`` and its axis order, as CRS84 longitudes and latitudes."""
    if value is None:
        return None
    try:
        numbers = [float(v) for v in value.split(",")]
    except ValueError:
        raise InvalidParameter(f"bbox {value!r}: four (or six) numbers expected") from None
    if len(numbers) == 6:
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    if len(numbers) != 4 or any(n != n or abs(n) == float("inf") for n in numbers):
        raise InvalidParameter(f"bbox {value!r}: four (or six) finite numbers expected")
    if crs.northing_first:
        numbers = [numbers[1], numbers[0], numbers[3], numbers[2]]
    if crs.srid != CRS84.srid:
        if numbers[0] > numbers[2] or numbers[1] > numbers[3]:
            raise InvalidParameter(f"bbox {value!r}: the lower corner must come first")
        numbers = list(bounds_in_crs84(numbers, crs))
    xmin, ymin, xmax, ymax = numbers
    if not (-90 <= ymin <= ymax <= 90):
        raise InvalidParameter(f"bbox {value!r}: latitudes must be -90 <= ymin <= ymax <= 90")
    if xmin > xmax:
        raise InvalidParameter(f"bbox {value!r}: bboxes crossing the antimeridian are not "
                               "supported")
    return xmin, ymin, xmax, ymax


def _instant(text: str) -> datetime | None:
    if text in ("", ".."):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidParameter(f"datetime {text!r} is not RFC 3339") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_datetime(value: str | None) -> TimeFilter | None:
    """An instant reads the city as it was then; an interval returns every version in it."""
    if value is None:
        return None
    if "/" not in value:
        moment = _instant(value)
        if moment is None:
            raise InvalidParameter("datetime: an instant cannot be open ('..')")
        return TimeFilter(moment, moment, instant=True)
    start_text, _, end_text = value.partition("/")
    start, end = _instant(start_text), _instant(end_text)
    if start and end and start > end:
        raise InvalidParameter(f"datetime {value!r}: the interval ends before it starts")
    return TimeFilter(start, end)


def content_crs(crs: Crs) -> dict[str, str]:
    """Part 2's header naming the CRS of the response's coordinates."""
    return {"Content-Crs": f"<{crs.uri}>"}


def _link(href: str, rel: str, kind: str, title: str = "") -> dict[str, str]:
    link = {"href": href, "rel": rel, "type": kind}
    if title:
        link["title"] = title
    return link


def _reads_replica(who: Principal) -> bool:
    """Whether a principal's reads go to the replica (anonymous and viewer keys)."""
    return who.anonymous or who.role is Role.viewer


def engine_for_reads(request: Request, who: Principal) -> Engine:
    """The engine ``who`` reads from: the replica's (or the primary's when there is none)
    for anonymous and viewer requests, the primary's for keys that may edit."""
    state = request.app.state
    return state.read_engine if _reads_replica(who) else state.engine


def async_engine_for_reads(request: Request, who: Principal) -> AsyncEngine:
    """:func:`engine_for_reads` among the async engines."""
    state = request.app.state
    return state.async_read_engine if _reads_replica(who) else state.async_engine


def read_engine_for(principal: Callable[..., Principal]) -> Callable[..., Awaitable[Engine]]:
    """The dependency naming the engine a request reads from: ``app.state.read_engine`` (the
    replica, when one is configured) for anonymous and viewer requests, the primary for keys
    that write (editors, analysts, admins), so their reads see their own writes at once."""

    async def read_engine(request: Request,
                          who: Annotated[Principal, Depends(principal)]) -> Engine:
        return engine_for_reads(request, who)

    return read_engine


def async_read_engine_for(
        principal: Callable[..., Principal]) -> Callable[..., Awaitable[AsyncEngine]]:
    """:func:`read_engine_for` among the async engines (``app.state.async_read_engine``)."""

    async def read_engine(request: Request,
                          who: Annotated[Principal, Depends(principal)]) -> AsyncEngine:
        return async_engine_for_reads(request, who)

    return read_engine


def features_router(catalog: list[LayerDefinition], settings: FeaturesSettings,
                    crs_offered: list[Crs], principal: Callable[..., Principal]) -> APIRouter:
    """Routes over the catalog, answering in any of ``crs_offered`` (CRS84 first, the
    default). A layer the principal may not see is a 404, as if it did not exist."""
    router = APIRouter(tags=["OGC API - Features"])
    layers = {layer.id: layer for layer in catalog}
    crs_uris = [crs.uri for crs in crs_offered]

    # The dependencies are async: each sync one is a hop to a worker thread, and under load
    # every hop waits its turn for the GIL.
    async def output_crs(crs: Annotated[str | None, Query(
            description="CRS of the response geometries (a URI; default CRS84).",
            examples=crs_uris)] = None) -> Crs:
        return resolve(crs, crs_offered, "crs")

    # Every route's queries wait on the event loop (the async engines): none holds a worker
    # thread, whose every wake-up would queue for the GIL behind the loop.
    engine = async_read_engine_for(principal)
    typed: dict[str, Queryables] = {}

    async def queryables_of(layer: LayerDefinition, db: AsyncEngine) -> Queryables:
        # Read once per layer: column types change only with a migration and a restart.
        if layer.id not in typed:
            async with db.connect() as conn:
                typed[layer.id] = await conn.run_sync(load_queryables, layer)
        return typed[layer.id]

    async def layer_for(collectionId: str,  # named as in the OGC spec
                        who: Annotated[Principal, Depends(principal)]) -> LayerDefinition:
        layer = layers.get(collectionId)
        if layer is None or not who.may_see(layer):
            raise NotFound(f"no collection {collectionId!r}")
        return layer

    def describe(conn: Connection, layer: LayerDefinition, base: str) -> dict[str, Any]:
        bbox = estimated_extent(conn, layer)
        here = f"{base}/collections/{layer.id}"
        body: dict[str, Any] = {
            "id": layer.id, "title": layer.title, "description": layer.description,
            "itemType": "feature", "crs": crs_uris, "storageCrs": CRS84.uri,
            "links": [_link(here, "self", "application/json"),
                      _link(f"{here}/items", "items", GEOJSON, "Items"),
                      _link(f"{here}/queryables", QUERYABLES_REL, SCHEMA_JSON, "Queryables")],
        }
        if bbox is not None:
            body["extent"] = {"spatial": {"bbox": [bbox], "crs": CRS84.uri}}
        if layer.attribution:
            body["attribution"] = layer.attribution
        return body

    @router.get("/conformance", summary="Conformance classes")
    async def conformance() -> dict[str, list[str]]:
        return {"conformsTo": CONFORMANCE}

    @router.get("/collections", summary="Feature collections")
    async def collections(request: Request, db: Annotated[AsyncEngine, Depends(engine)],
                          who: Annotated[Principal, Depends(principal)]) -> JSONResponse:
        base = str(request.base_url).rstrip("/")
        seen = [layer for layer in catalog if who.may_see(layer)]
        async with db.connect() as conn:
            described = await conn.run_sync(
                lambda c: [describe(c, layer, base) for layer in seen])
        return JSONResponse({
            "links": [_link(f"{base}/collections", "self", "application/json")],
            "collections": described,
        })

    @router.get("/collections/{collectionId}", summary="One feature collection")
    async def collection(request: Request,
                         layer: Annotated[LayerDefinition, Depends(layer_for)],
                         db: Annotated[AsyncEngine, Depends(engine)]) -> JSONResponse:
        async with db.connect() as conn:
            body = await conn.run_sync(describe, layer, str(request.base_url).rstrip("/"))
        return JSONResponse(body)

    @router.get("/collections/{collectionId}/items", summary="Features of a collection",
                response_class=Response, responses={200: {"content": {GEOJSON: {}}}})
    async def items(
        request: Request,
        collectionId: str,  # named as in the OGC spec
        who: Annotated[Principal, Depends(principal)],
        crs: Annotated[str | None, Query(
            description="CRS of the response geometries (a URI; default CRS84).",
            examples=crs_uris)] = None,
        bbox: Annotated[str | None, Query(
            description="minx,miny,maxx,maxy in CRS84, or in bbox-crs (in its axis order)",
            examples=["114.39,30.50,114.41,30.52"]
        )] = None,
        bbox_crs: Annotated[str | None, Query(
            alias="bbox-crs", description="CRS of bbox (a URI; default CRS84).",
            examples=crs_uris)] = None,
        datetime_: Annotated[str | None, Query(
            alias="datetime", description="An instant (the city as it was then) or an "
            "interval start/end ('..' open): every version valid in it.")] = None,
        limit: Annotated[int | None, Query(ge=1, description="Page size; capped.")] = None,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Features to skip.")] = 0,
        properties: Annotated[str | None, Query(
            description="Comma-separated property names to return.")] = None,
        filter_: Annotated[str | None, Query(
            alias="filter", description="A CQL2 condition over the collection's queryables.",
            examples=["height > 30 AND use = 'office'"])] = None,
        filter_lang: Annotated[Literal["cql2-text", "cql2-json"], Query(
            alias="filter-lang", description="Encoding of filter.")] = "cql2-text",
        filter_crs: Annotated[str | None, Query(
            alias="filter-crs", description="CRS of the filter's geometries (default CRS84).",
            examples=crs_uris)] = None,
        sortby: Annotated[str | None, Query(
            description="Queryables to sort by, comma-separated, each ascending or with a "
            "leading - descending.", examples=["-height,name"])] = None,
    ) -> Response:
        # The layer, engine and CRS are looked up here rather than as dependencies: FastAPI
        # spends tens of microseconds on each one, on the busiest route.
        layer = await layer_for(collectionId, who)
        db = async_engine_for_reads(request, who)
        output = resolve(crs, crs_offered, "crs")
        wanted = None
        if properties is not None:
            wanted = [p for p in properties.split(",") if p]
            known = {p.name for p in layer.properties}
            unknown = sorted(set(wanted) - known)
            if unknown:
                raise InvalidParameter(f"unknown properties {', '.join(unknown)}; "
                                       f"{layer.id} has {', '.join(sorted(known))}")
        size = min(limit or settings.default_limit, settings.max_limit)
        box_crs = resolve(bbox_crs, crs_offered, "bbox-crs")
        geometry_crs = resolve(filter_crs, crs_offered, "filter-crs")
        condition, order = None, ()
        if filter_ is not None:  # parsed before the queryables are read: no database yet
            tree = parse_filter(filter_, filter_lang, settings.max_filter_nodes)
            condition = compile_filter(tree, await queryables_of(layer, db), geometry_crs)
        if sortby is not None:
            order = parse_sortby(sortby, await queryables_of(layer, db))
        query = ItemsQuery(bbox=parse_bbox(bbox, box_crs),
                           time=parse_datetime(datetime_), properties=wanted, limit=size,
                           offset=offset, crs=output, filter=condition, sortby=order)
        async with autocommit_async(db) as conn:
            with evaluation_errors(condition is not None):
                page = await conn.run_sync(read_page, layer, query)
        url = request.url
        links = [_link(str(url), "self", GEOJSON)]
        if page.has_more:
            links.append(_link(str(url.include_query_params(offset=offset + size, limit=size)),
                               "next", GEOJSON, "Next page"))
        if offset > 0:
            links.append(_link(str(url.include_query_params(offset=max(0, offset - size),
                                                              limit=size)),
                               "prev", GEOJSON, "Previous page"))
        # The features array is PostgreSQL's JSON text, spliced in as it is.
        body = (
            '{"type":"FeatureCollection","features":' + page.features_json
            + ',"numberReturned":' + str(page.number_returned)
            + ',"timeStamp":' + json.dumps(datetime.now(UTC).isoformat(timespec="seconds"))
            + ',"links":' + json.dumps(links) + "}"
        )
        return cached(request, body, GEOJSON, headers=content_crs(output))

    @router.get("/collections/{collectionId}/queryables", summary="What filter and sortby "
                "may name", response_class=Response,
                responses={200: {"content": {SCHEMA_JSON: {}}}})
    async def queryables(request: Request,
                         layer: Annotated[LayerDefinition, Depends(layer_for)],
                         db: Annotated[AsyncEngine, Depends(engine)]) -> Response:
        here = f"{str(request.base_url).rstrip('/')}/collections/{layer.id}/queryables"
        document = schema_document(await queryables_of(layer, db), here)
        return cached(request, json.dumps(document), SCHEMA_JSON)

    @router.get("/collections/{collectionId}/items/{featureId:path}", summary="One feature",
                response_class=Response, responses={200: {"content": {GEOJSON: {}}}})
    async def item(
        request: Request,
        featureId: str,  # named as in the OGC spec
        layer: Annotated[LayerDefinition, Depends(layer_for)],
        db: Annotated[AsyncEngine, Depends(engine)],
        crs: Annotated[Crs, Depends(output_crs)],
        datetime_: Annotated[str | None, Query(
            alias="datetime", description="An instant: the feature as it was then.")] = None,
    ) -> Response:
        time = parse_datetime(datetime_)
        if time is not None and not time.instant:
            raise InvalidParameter("datetime on a single feature must be an instant")
        found = None
        if "\x00" not in featureId:  # PostgreSQL text cannot hold NUL: no such id exists
            async with autocommit_async(db) as conn:
                found = await conn.run_sync(read_feature, layer, featureId, time, crs)
        if found is None:
            raise NotFound(f"{layer.id} has no feature {featureId!r}")
        feature, vid = found
        here = str(request.url.remove_query_params("datetime"))
        links = [_link(here, "self", GEOJSON),
                 _link(here.rsplit("/items/", 1)[0], "collection", "application/json")]
        body = feature[:-1] + ',"links":' + json.dumps(links) + "}"
        return cached(request, body, GEOJSON, headers=content_crs(crs), version=vid)

    return router
