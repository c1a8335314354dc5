"""HTTP route of emergency routing: ``GET /routes?from=LON,LAT&to=LON,LAT[&to=...]&scenario=ID``,
the fastest routes on a traffic scenario's network (:mod:`simulation.traffic.routing`) as a
GeoJSON FeatureCollection. Anyone who may read scenarios may ask for routes.

No ``from __future__ import annotations`` here: FastAPI must see the ``principal``
dependency of the closure, not its name."""

import math
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from cim.access import Principal
from layers.errors import InvalidParameter
from simulation.traffic import routing

MAX_DESTINATIONS = 200  # one Dijkstra serves them all; this bounds the answer's size


def parse_point(value: str, name: str) -> tuple[float, float]:
    """``LON,LAT`` in degrees."""
    try:
        lon, lat = (float(part) for part in value.split(","))
    except ValueError:
        raise InvalidParameter(f"{name}={value!r} is not LON,LAT") from None
    if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180
            and -90 <= lat <= 90):
        raise InvalidParameter(f"{name}={value!r} is not a longitude, latitude pair")
    return lon, lat


def routes_router(crs: int, principal: Callable[..., Principal]) -> APIRouter:
    router = APIRouter(tags=["Scenarios"])

    @router.get("/routes", summary="Fastest routes on a traffic scenario's network",
                response_class=JSONResponse,
                responses={200: {"content": {"application/geo+json": {}}}})
    def routes(
        request: Request,
        _: Annotated[Principal, Depends(principal)],
        origin: Annotated[str, Query(alias="from", description="The depot, LON,LAT.",
                                     examples=["114.41,30.49"])],
        to: Annotated[list[str], Query(description="A destination, LON,LAT; repeat for more.",
                                       examples=[["114.42,30.50"]])],
        scenario: Annotated[int, Query(ge=1, le=2**63 - 1, description="A succeeded traffic "
                                       "scenario: its congested times, its closed roads left "
                                       "out.")],
    ) -> JSONResponse:
        if len(to) > MAX_DESTINATIONS:
            raise InvalidParameter(f"at most {MAX_DESTINATIONS} destinations (to) at a time")
        start = parse_point(origin, "from")
        ends = [parse_point(value, "to") for value in to]
        with request.app.state.engine.connect() as conn:
            network = routing.load(conn, scenario, crs)
        found, snap = routing.fastest_routes(network, start, ends)
        body: dict[str, Any] = routing.as_geojson(scenario, start, snap, found)
        return JSONResponse(body, media_type="application/geo+json")

    return router
