"""HTTP routes of scenarios of every kind: queue one (``POST /scenarios/{kind}``, the body
being the kind's inputs), follow it, cancel, rerun or delete it, fetch its files. Its results
are catalog layers (``flood_roads``, ...), served by the feature and tile APIs with
``filter=scenario_id=N`` and linked from the scenario. Two succeeded scenarios of one kind
compare (``GET /scenarios/{a}/compare/{b}``) through their kind's ``compare`` hook, with the
comparison's files made on request beside it.

Anyone may read scenarios; running, cancelling, rerunning and deleting take an analyst's or
an admin's key. The run itself happens on the server's worker thread (``jobs.Worker``).
"""

import operator
import shutil
import tempfile
from collections.abc import Callable, Mapping
from functools import reduce
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel
from sqlalchemy import Engine
from starlette.background import BackgroundTask

from cim.access import Principal, Role
from layers.api import read_engine_for
from layers.errors import Forbidden, NotFound, Unauthorized
from simulation import jobs
from simulation.jobs import JobContext, ScenarioKind

RUNNERS = frozenset({Role.analyst, Role.admin})
MEDIA_TYPES = {".tif": "image/tiff; application=geotiff; profile=cloud-optimized",
               ".geojson": "application/geo+json"}


class Link(BaseModel):
    href: str
    rel: str
    title: str
    type: str | None = None


class ScenarioView(jobs.ScenarioRecord):
    links: list[Link]


class ScenarioList(BaseModel):
    scenarios: list[ScenarioView]


def _view(request: Request, record: jobs.ScenarioRecord,
          kinds: Mapping[str, ScenarioKind]) -> ScenarioView:
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
                  for layer, title in kinds[record.kind].result_layers.items()]
    return ScenarioView(**record.model_dump(), links=links)


def scenarios_router(ctx: JobContext, kinds: Mapping[str, ScenarioKind],
                     principal: Callable[..., Principal]) -> APIRouter:
    router = APIRouter(prefix="/scenarios", tags=["Scenarios"])
    ReadDb = Annotated[Engine, Depends(read_engine_for(principal))]

    def view(request: Request, record: jobs.ScenarioRecord) -> ScenarioView:
        return _view(request, record, kinds)

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

    def create_route(kind: ScenarioKind) -> None:
        # One route per kind, so that OpenAPI documents each kind's own inputs.
        def create(request: Request, response: Response,
                   inputs: Annotated[kind.inputs, Body()],  # type: ignore[name-defined]
                   who: Annotated[Principal, Depends(runner)]) -> ScenarioView:
            with request.app.state.engine.connect() as conn:
                kind.check(conn, inputs, ctx)
                scenario_id = jobs.enqueue(conn, kind, inputs, who.name)
                conn.commit()
                record = jobs.get(conn, scenario_id)
            wake(request)
            response.headers["Location"] = f"{str(request.base_url).rstrip('/')}/scenarios/" \
                                           f"{scenario_id}"
            return view(request, record)

        router.add_api_route(f"/{kind.name}", create, methods=["POST"], status_code=201,
                             response_model=ScenarioView, summary=kind.summary,
                             operation_id=f"create_{kind.name}_scenario")

    for kind in kinds.values():
        create_route(kind)

    @router.get("", response_model=ScenarioList, summary="Recent scenarios, newest first")
    def listing(request: Request, db: ReadDb,
                kind: Literal[tuple(kinds)] | None = None  # type: ignore[valid-type]
                ) -> ScenarioList:
        with db.connect() as conn:
            records = jobs.recent(conn, kind)
        return ScenarioList(scenarios=[view(request, r) for r in records])

    @router.get("/{scenario_id}", response_model=ScenarioView,
                summary="A scenario: status, progress, log, outputs")
    def read(request: Request, scenario_id: int, db: ReadDb) -> ScenarioView:
        with db.connect() as conn:
            return view(request, jobs.get(conn, scenario_id))

    @router.get("/{scenario_id}/files/{name}", summary="A raster or the summary of a run",
                response_class=FileResponse)
    def file(request: Request, scenario_id: int, name: str, db: ReadDb) -> FileResponse:
        with db.connect() as conn:
            path = jobs.published_file(ctx, jobs.get(conn, scenario_id), name)
        if path is None:
            raise NotFound(f"scenario {scenario_id} has no file {name!r}")
        return FileResponse(path, media_type="image/tiff" if name.endswith(".tif")
                            else "application/json")

    comparers = [kind.compare for kind in kinds.values() if kind.compare is not None]
    models = tuple(c.model for c in comparers)
    if models:
        compare_routes(router, ctx, kinds, principal, reduce(operator.or_, models))

    @router.post("/{scenario_id}/cancel", response_model=ScenarioView,
                 summary="Cancel a queued or running scenario")
    def cancel(request: Request, scenario_id: int,
               _: Annotated[Principal, Depends(runner)]) -> ScenarioView:
        with request.app.state.engine.connect() as conn:
            return view(request, jobs.cancel(conn, scenario_id))

    @router.post("/{scenario_id}/rerun", response_model=ScenarioView,
                 summary="Queue a failed or cancelled scenario again")
    def rerun(request: Request, scenario_id: int,
              _: Annotated[Principal, Depends(runner)]) -> ScenarioView:
        with request.app.state.engine.connect() as conn:
            record = jobs.rerun(conn, scenario_id)
        wake(request)
        return view(request, record)

    @router.delete("/{scenario_id}", status_code=204,
                   summary="Delete a scenario with its results (a running one stops)")
    def delete(request: Request, scenario_id: int,
               _: Annotated[Principal, Depends(runner)]) -> Response:
        with request.app.state.engine.connect() as conn:
            jobs.delete(conn, ctx, scenario_id)
        return Response(status_code=204)

    return router


def compare_routes(router: APIRouter, ctx: JobContext, kinds: Mapping[str, ScenarioKind],
                   principal: Callable[..., Principal], model: object) -> None:
    """``GET /scenarios/{a}/compare/{b}`` and its files, for every kind with a compare hook;
    scenarios of two kinds, or unfinished ones, are a 409."""
    ReadDb = Annotated[Engine, Depends(read_engine_for(principal))]

    @router.get("/{a}/compare/{b}", response_model=model,
                summary="Compare two succeeded scenarios of one kind (B against A)")
    def comparison(request: Request, a: int, b: int, db: ReadDb) -> BaseModel:
        with db.connect() as conn:
            comparer = jobs.comparer(conn, kinds, a, b)
            result = comparer.run(conn, ctx, a, b)
        own = f"{str(request.base_url).rstrip('/')}/scenarios/{a}/compare/{b}"
        links = [Link(href=f"{own}/{name}", rel="enclosure", title=name,
                      type=MEDIA_TYPES.get(Path(name).suffix))
                 for name in comparer.files]
        return result.model_copy(update={"links": [link.model_dump(exclude_none=True)
                                                   for link in links]})

    @router.get("/{a}/compare/{b}/{name}", response_class=FileResponse,
                summary="A file of the comparison of two scenarios, made on request")
    def comparison_file(a: int, b: int, name: str, db: ReadDb) -> FileResponse:
        folder = Path(tempfile.mkdtemp(prefix="cim-compare-"))
        try:
            with db.connect() as conn:
                writer = jobs.comparer(conn, kinds, a, b).files.get(name)
                if writer is None:
                    raise NotFound(f"the comparison of scenarios {a} and {b} has no file "
                                   f"{name!r}")
                writer(conn, ctx, a, b, folder / name)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        stem, suffix = Path(name).stem, Path(name).suffix
        return FileResponse(folder / name, media_type=MEDIA_TYPES.get(suffix, "application/json"),
                            filename=f"{stem}_{a}_{b}{suffix}",
                            background=BackgroundTask(shutil.rmtree, folder, True))
