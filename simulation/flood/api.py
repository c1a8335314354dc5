"""HTTP routes of flood scenarios: queue one, follow it, cancel, rerun or delete it, fetch its
rasters. Its roads, buildings and hotspots are catalog layers (``flood_*``), served by the
feature and tile APIs with ``filter=scenario_id=N``.

Anyone may read scenarios; running, cancelling, rerunning and deleting take an analyst's or
an admin's key. The run itself happens on the server's worker thread (``jobs.Worker``).
"""

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel

from cim.access import Principal, Role
from cim.settings import Settings
from layers.errors import Forbidden, NotFound, Unauthorized
from simulation.flood import jobs
from simulation.flood.scenario import FloodInputs, check_inputs, scenario_folder

RUNNERS = frozenset({Role.analyst, Role.admin})
RESULT_LAYERS = {"flood_roads": "Roads by flood depth class",
                 "flood_buildings": "Buildings with water against them",
                 "flood_hotspots": "Hotspots, ranked"}


class Link(BaseModel):
    href: str
    rel: str
    title: str
    type: str | None = None


class ScenarioView(BaseModel):
    id: int
    kind: str
    name: str | None
    status: str
    progress: float
    inputs: dict[str, Any]
    log: str
    outputs: dict[str, Any]
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    links: list[Link]


class ScenarioList(BaseModel):
    scenarios: list[ScenarioView]


def _view(request: Request, record: jobs.ScenarioRecord) -> ScenarioView:
    base = str(request.base_url).rstrip("/")
    own = f"{base}/scenarios/{record.id}"
    links = [Link(href=own, rel="self", title="This scenario", type="application/json")]
    if record.status == "succeeded":
        links += [Link(href=f"{own}/files/{name}", rel="enclosure", title=name,
                       type="image/tiff; application=geotiff; profile=cloud-optimized"
                       if name.endswith(".tif") else "application/json")
                  for name in record.outputs.get("files", [])]
        links += [Link(href=f"{base}/collections/{layer}/items?filter=scenario_id={record.id}",
                       rel="items", title=title, type="application/geo+json")
                  for layer, title in RESULT_LAYERS.items()]
    return ScenarioView(**vars(record), links=links)


def scenarios_router(settings: Settings, principal: Callable[..., Principal]) -> APIRouter:
    router = APIRouter(prefix="/scenarios", tags=["Scenarios"])
    root, crs = settings.storage.root, settings.city.crs

    def runner(who: Annotated[Principal, Depends(principal)]) -> Principal:
        if who.anonymous:
            raise Unauthorized("running scenarios needs the API key of an analyst or admin")
        if who.role not in RUNNERS:
            raise Forbidden(f"the key {who.name!r} has the role {who.role.value}: running "
                            "scenarios needs analyst or admin")
        return who

    def wake(request: Request) -> None:
        worker = getattr(request.app.state, "scenario_worker", None)
        if worker is not None:
            worker.wake()

    @router.post("/flood", status_code=201, response_model=ScenarioView,
                 summary="Queue a design-storm flood scenario")
    def create(request: Request, response: Response, inputs: FloodInputs,
               who: Annotated[Principal, Depends(runner)]) -> ScenarioView:
        with request.app.state.engine.connect() as conn:
            check_inputs(conn, inputs, root, crs)
            scenario_id = jobs.enqueue(conn, inputs, who.name)
            conn.commit()
            record = jobs.get(conn, scenario_id)
        wake(request)
        response.headers["Location"] = f"{str(request.base_url).rstrip('/')}/scenarios/" \
                                       f"{scenario_id}"
        return _view(request, record)

    @router.get("", response_model=ScenarioList, summary="Recent scenarios, newest first")
    def listing(request: Request, _: Annotated[Principal, Depends(principal)]) -> ScenarioList:
        with request.app.state.engine.connect() as conn:
            records = jobs.recent(conn)
        return ScenarioList(scenarios=[_view(request, r) for r in records])

    @router.get("/{scenario_id}", response_model=ScenarioView,
                summary="A scenario: status, progress, log, outputs")
    def read(request: Request, scenario_id: int,
             _: Annotated[Principal, Depends(principal)]) -> ScenarioView:
        with request.app.state.engine.connect() as conn:
            return _view(request, jobs.get(conn, scenario_id))

    @router.get("/{scenario_id}/files/{name}", summary="A raster or the summary of a run",
                response_class=FileResponse)
    def file(request: Request, scenario_id: int, name: str,
             _: Annotated[Principal, Depends(principal)]) -> FileResponse:
        with request.app.state.engine.connect() as conn:
            record = jobs.get(conn, scenario_id)
        # Only names the run published: never a path a client made up.
        if record.status != "succeeded" or name not in record.outputs.get("files", []):
            raise NotFound(f"scenario {scenario_id} has no file {name!r}")
        path = scenario_folder(root, scenario_id) / name
        if not path.is_file():
            raise NotFound(f"scenario {scenario_id} has no file {name!r}")
        return FileResponse(path, media_type="image/tiff" if name.endswith(".tif")
                            else "application/json")

    @router.post("/{scenario_id}/cancel", response_model=ScenarioView,
                 summary="Cancel a queued or running scenario")
    def cancel(request: Request, scenario_id: int,
               _: Annotated[Principal, Depends(runner)]) -> ScenarioView:
        with request.app.state.engine.connect() as conn:
            return _view(request, jobs.cancel(conn, scenario_id))

    @router.post("/{scenario_id}/rerun", response_model=ScenarioView,
                 summary="Queue a failed or cancelled scenario again")
    def rerun(request: Request, scenario_id: int,
              _: Annotated[Principal, Depends(runner)]) -> ScenarioView:
        with request.app.state.engine.connect() as conn:
            record = jobs.rerun(conn, scenario_id)
        wake(request)
        return _view(request, record)

    @router.delete("/{scenario_id}", status_code=204,
                   summary="Delete a scenario with its results (a running one stops)")
    def delete(request: Request, scenario_id: int,
               _: Annotated[Principal, Depends(runner)]) -> Response:
        with request.app.state.engine.connect() as conn:
            jobs.delete(conn, scenario_id, root)
        return Response(status_code=204)

    return router
