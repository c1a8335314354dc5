"""HTTP route of emergency routing: ``GET /routes?from=LON,LAT&to=LON,LAT[&to=...]&scenario=ID``,
the fastest routes on a traffic scenario's network (:mod:`simulation.traffic.routing`) as a
GeoJSON FeatureCollection. Anyone who may read scenarios may ask for routes; a destination
``to=hotspots:FLOOD_ID`` stands for every hotspot of that flood scenario, by rank, and needs a
reader who may see the ``flood_hotspots`` layer (internal: a 404 for anyone else, as the layer
itself is).

No ``from __future__ import annotations`` here: FastAPI must see the ``principal``
dependency of the closure, not its name."""

import math
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from cim.access import Principal
from layers.api import read_engine_for
from layers.errors import InvalidParameter, NotFound
from layers.model import LayerDefinition
from simulation.traffic import routing

MAX_DESTINATIONS = 200  # one Dijkstra serves them all; this bounds the answer's size
HOTSPOTS = "hotspots:"
HOTSPOTS_LAYER = "flood_hotspots"


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


def hotspots_scenario(value: str) -> int | None:
    """The flood scenario of ``hotspots:ID``; None for any other destination."""
    if not value.startswith(HOTSPOTS):
        return None
    number = value[len(HOTSPOTS):]
    if not number.isdecimal() or not 0 < int(number) < 2**63:
        raise InvalidParameter(f"to={value!r}: use hotspots:FLOOD_SCENARIO_ID")
    return int(number)


def routes_router(crs: int, catalog: list[LayerDefinition],
                  principal: Callable[..., Principal]) -> APIRouter:
    router = APIRouter(tags=["Scenarios"])
    read_engine = read_engine_for(principal)
    hotspots_layer = next((layer for layer in catalog if layer.id == HOTSPOTS_LAYER), None)

    @router.get("/routes", summary="Fastest routes on a traffic scenario's network",
                response_class=JSONResponse,
                responses={200: {"content": {"application/geo+json": {}}}})
    def routes(
        who: Annotated[Principal, Depends(principal)],
        db: Annotated[Engine, Depends(read_engine)],
        origin: Annotated[str, Query(alias="from", description="The depot, LON,LAT.",
                                     examples=["114.41,30.49"])],
        to: Annotated[list[str], Query(
            description="A destination, LON,LAT, or hotspots:FLOOD_SCENARIO_ID for every "
            "hotspot of a flood scenario; repeat for more.",
            examples=[["114.42,30.50", "hotspots:3"]])],
        scenario: Annotated[int, Query(ge=1, le=2**63 - 1, description="A succeeded traffic "
                                       "scenario: its congested times, its closed roads left "
                                       "out.")],
    ) -> JSONResponse:
        start = parse_point(origin, "from")
        floods = [hotspots_scenario(value) for value in to]
        if any(f is not None for f in floods) and (
                hotspots_layer is None or not who.may_see(hotspots_layer)):
            raise NotFound("no flood hotspots here")  # as the layer itself answers
        points = [None if f is not None else parse_point(value, "to")
                  for value, f in zip(to, floods, strict=True)]
        with db.connect() as conn:
            ends: list[tuple[float, float]] = []
            for point, flood in zip(points, floods, strict=True):
                ends += [point] if point is not None else routing.hotspot_points(conn, flood)
            if len(ends) > MAX_DESTINATIONS:
                raise InvalidParameter(f"at most {MAX_DESTINATIONS} destinations (to) at a "
                                       "time")
            if not ends:
                raise InvalidParameter("the destinations (to) hold no point: the flood "
                                       "scenario has no hotspots")
            network = routing.load(conn, scenario, crs)
        found, snap = routing.fastest_routes(network, start, ends)
        body: dict[str, Any] = routing.as_geojson(scenario, start, snap, found)
        return JSONResponse(body, media_type="application/geo+json")

    return router
