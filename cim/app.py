"""The FastAPI application factory: composes each capability's routes.

No configuration is read at import time: ``create_app(settings)`` builds an app from the
settings it is given, so tests can build several apps in one process.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from cim.access import AccessError
from cim.audit import audit_router
from cim.connections import ConnectionShare, process_counts
from cim.db.engine import make_async_engine, make_engine, make_read_engine, replica_lag
from cim.db.errors import DatabaseError
from cim.demo.load import ATTRIBUTION
from cim.history import BusyObject, HistoryError, ObjectExists, ObjectNotFound, StaleVersion
from cim.limits import (
    BodyLimit,
    InFlightLimit,
    PayloadTooLarge,
    RateLimited,
    database_failure,
    error_headers,
    rate_limited,
)
from cim.observability import Metrics, RequestObserver
from cim.oidc import with_oidc
from cim.openapi_links import with_links
from cim.schema.migrate import current_revision, head_revision
from cim.settings import Settings, load_settings
from layers.api import features_router
from layers.auth import principal_dependency
from layers.catalog import load_catalog, missing_in_database
from layers.crs import supported_crs
from layers.errors import (
    Forbidden,
    InvalidParameter,
    NotFound,
    NotWritable,
    PreconditionFailed,
    Unauthorized,
    ogc_exception,
)
from layers.transactions import transactions_router
from simulation.api import scenarios_router
from simulation.errors import ScenarioConflict, ScenarioInputError, ScenarioNotFound
from simulation.jobs import JobContext, Worker
from simulation.kinds import KINDS
from simulation.retention import Retention, prune
from simulation.traffic.api import routes_router
from tiles.api import tiles_router
from tiles.invalidation import start_tile_cache
from tiles.scenario_maps import scenario_maps_router
from tiles.terrain_api import terrain_router
from tiles.threed.api import threed_router, tilesets_folder
from viewer.serve import mount_viewer

log = logging.getLogger(__name__)

# One table from exception to HTTP status and OGC exception code; messages are user-safe.
ERRORS: dict[type[Exception], tuple[int, str]] = {
    InvalidParameter: (400, "InvalidParameterValue"),
    RequestValidationError: (400, "InvalidParameterValue"),
    HistoryError: (400, "InvalidParameterValue"),
    AccessError: (400, "InvalidParameterValue"),
    ScenarioInputError: (400, "InvalidParameterValue"),
    Unauthorized: (401, "Unauthorized"),
    Forbidden: (403, "Forbidden"),
    NotFound: (404, "NotFound"),
    ObjectNotFound: (404, "NotFound"),
    ScenarioNotFound: (404, "NotFound"),
    NotWritable: (405, "MethodNotAllowed"),
    ObjectExists: (409, "Conflict"),
    BusyObject: (409, "Conflict"),
    ScenarioConflict: (409, "Conflict"),
    PreconditionFailed: (412, "PreconditionFailed"),
    StaleVersion: (412, "PreconditionFailed"),
    PayloadTooLarge: (413, "PayloadTooLarge"),
    RateLimited: (429, "TooManyRequests"),
    DatabaseError: (503, "ServiceUnavailable"),
    # The database down or restarting, or a statement past the timeout (cim.limits).
    OperationalError: (503, "ServiceUnavailable"),
    InterfaceError: (503, "ServiceUnavailable"),
}


def _message(exc: Exception) -> str:
    if isinstance(exc, RequestValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}"
                         for e in exc.errors())
    return str(exc)


class Link(BaseModel):
    href: str
    rel: str
    title: str


class Landing(BaseModel):
    title: str
    description: str
    attribution: str
    links: list[Link]


class Readiness(BaseModel):
    database: bool
    schema_revision: str | None
    latest_revision: str
    replica: bool | None = Field(default=None, description="The read replica answers and "
                                 "lags less than allowed; null without a replica.")
    replica_lag_s: float | None = Field(default=None, description="Seconds since the "
                                        "replica's last replayed commit while WAL is pending.")
    replica_lag_bytes: int | None = Field(default=None, description="WAL the replica has "
                                          "still to replay.")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    catalog = load_catalog()
    # Requests' statements are bounded so one heavy query cannot starve the rest.
    timeout_ms = settings.database.statement_timeout_ms or settings.limits.statement_timeout_ms
    requests_db = settings.database.model_copy(update={"statement_timeout_ms": timeout_ms})
    jobs_context = JobContext(settings.storage.root, settings.city.crs)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = make_engine(requests_db, pool_pre_ping=True)
        # Reads of anonymous and viewer requests go to the replica when there is one.
        app.state.read_engine = (make_read_engine(requests_db, pool_pre_ping=True)
                                 or app.state.engine)
        # Feature pages, writes and key checks wait for PostgreSQL on the event loop. No ping
        # per checkout: under load each round trip waits a whole turn of the loop, and a
        # connection found dead invalidates the pool anyway (one 503 after a restart).
        app.state.async_engine = make_async_engine(requests_db)
        app.state.async_read_engine = (make_async_engine(requests_db, replica=True)
                                       or app.state.async_engine)
        try:
            with app.state.engine.connect() as conn:
                for problem in missing_in_database(conn, catalog):
                    log.error("layer catalog: %s (run `cim db upgrade`?)", problem)
        except Exception as exc:  # /ready reports an absent database
            log.error("database not reachable at start-up: %s", exc)
        invalidator = start_tile_cache(app.state.engine, catalog, settings.tiles,
                                       app.state.read_engine)
        app.state.tile_invalidator = invalidator
        app.state.tile_cache = invalidator.cache if invalidator is not None else None
        # Scenario jobs run on a thread beside the requests (the solver releases the GIL).
        # Jobs get an engine of their own: the requests' statement timeout is not theirs.
        jobs_engine = make_engine(settings.database, pool_size=2, pool_pre_ping=True)
        retention = Retention(settings.scenarios.keep_days, settings.scenarios.max_bytes)
        worker = Worker(jobs_engine, jobs_context, KINDS,
                        after_each=lambda conn: prune(conn, jobs_context, retention))
        worker.start()
        app.state.scenario_worker = worker
        # What start-up made lives as long as the process: out of the collector's sight, a
        # full collection walks only what requests made since (a worker's 300,000 objects
        # took it 200-400 ms, every request on the worker waiting).
        gc.collect()
        gc.freeze()
        yield
        gc.unfreeze()  # another app in this process (tests) may collect it again
        worker.stop()
        if invalidator is not None:
            invalidator.stop()
        jobs_engine.dispose()
        await app.state.async_read_engine.dispose()
        await app.state.async_engine.dispose()
        app.state.read_engine.dispose()
        app.state.engine.dispose()

    app = FastAPI(
        title=f"{settings.city.name} city information model",
        description="Open APIs over the city model.",
        version="0.1.0",
        lifespan=lifespan,
    )
    # JSON pages are made per request: the fastest level saves most of the bytes for little
    # CPU. Tiles carry Content-Encoding already (stored gzipped), so it passes them through.
    app.add_middleware(GZipMiddleware, minimum_size=1000, compresslevel=1)
    app.add_middleware(BodyLimit, max_bytes=settings.limits.max_body_bytes)
    if settings.server.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.server.cors_origins,
            allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Content-Crs",
                           "If-Match", "If-None-Match"],
            expose_headers=["ETag", "Location", "Content-Crs", "X-Cache"])

    app.add_middleware(InFlightLimit, max_requests=settings.server.max_in_flight,
                       max_wait_s=settings.server.in_flight_wait_s)
    if (connections := process_counts()) is not None:  # one of several `cim serve` workers
        app.add_middleware(ConnectionShare, counts=connections)
    metrics = Metrics()
    app.add_middleware(RequestObserver, metrics=metrics)  # outermost: sees every answer

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
    def prometheus() -> Response:
        return Response(generate_latest(metrics.collected()), media_type=CONTENT_TYPE_LATEST)

    for error, (status, code) in ERRORS.items():
        def handler(request: Request, exc: Exception, status: int = status,
                    code: str = code) -> JSONResponse:
            message, headers = _message(exc), error_headers(exc)
            if isinstance(exc, DBAPIError):  # never the SQL: say what happened
                message, headers = database_failure(exc, timeout_ms)
            response = ogc_exception(code, message, status)
            response.headers.update(headers or {})
            return response

        app.add_exception_handler(error, handler)
    principal = principal_dependency(settings.access)
    if settings.oidc.enabled:
        principal = with_oidc(principal, settings.oidc)
    if settings.limits.enabled:
        principal = rate_limited(principal, settings.limits)
    crs_offered = supported_crs(settings.city.crs)
    app.include_router(features_router(list(catalog), settings.features, crs_offered,
                                       principal))
    app.include_router(transactions_router(list(catalog), settings.features, crs_offered,
                                           principal))
    app.include_router(tiles_router(list(catalog), settings.city.name, principal,
                                   settings.tiles.max_stale_s))
    app.include_router(threed_router(list(catalog), tilesets_folder(settings.storage.root),
                                     principal))
    app.include_router(terrain_router(list(catalog), settings.storage.root,
                                      settings.city.name, principal))
    app.include_router(scenario_maps_router(settings.storage.root, settings.city.crs,
                                            principal))
    app.include_router(audit_router(principal))
    app.include_router(scenarios_router(jobs_context, KINDS, principal))
    app.include_router(routes_router(settings.city.crs, list(catalog), principal))

    @app.get("/", response_model=Landing, summary="Landing page")
    def landing(request: Request) -> Landing:
        base = str(request.base_url).rstrip("/")
        return Landing(
            title=app.title,
            description=app.description,
            attribution=ATTRIBUTION,
            links=[
                Link(href=f"{base}/openapi.json", rel="service-desc", title="OpenAPI document"),
                Link(href=f"{base}/conformance", rel="conformance", title="Conformance"),
                Link(href=f"{base}/collections", rel="data", title="Feature collections"),
                Link(href=f"{base}/docs", rel="service-doc", title="API documentation"),
                Link(href=f"{base}/ready", rel="status", title="Readiness"),
            ],
        )

    @app.get("/health", summary="The process answers")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", response_model=Readiness,
             summary="Database reachable, schema current, replica within its lag")
    def ready(request: Request) -> JSONResponse:
        engine = request.app.state.engine
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            revision = current_revision(engine)
        except Exception:
            body = Readiness(database=False, schema_revision=None,
                             latest_revision=head_revision())
            return JSONResponse(body.model_dump(), status_code=503)
        body = Readiness(database=True, schema_revision=revision,
                         latest_revision=head_revision())
        replica = request.app.state.read_engine
        if replica is not engine:
            try:
                with engine.connect() as primary_conn, replica.connect() as replica_conn:
                    lag = replica_lag(primary_conn, replica_conn)
                body.replica_lag_s, body.replica_lag_bytes = lag.seconds, lag.bytes
                body.replica = (lag.seconds is not None
                                and lag.seconds <= settings.database.replica_max_lag_s)
            except Exception as exc:
                log.warning("read replica not answering: %s", exc)
                body.replica = False
        ready = revision == head_revision() and body.replica is not False
        return JSONResponse(body.model_dump(), status_code=200 if ready else 503)

    with_links(app)  # ids from responses into the next requests (stateful clients)
    # Browsers asking for / get the web viewer; JSON clients keep the landing page.
    mount_viewer(app)
    return app
