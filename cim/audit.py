"""Reading the append-only audit log over HTTP: admins only, newest first, paged by id.

(No postponed annotations here: FastAPI resolves the route's dependencies at definition
time.)
"""

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy import text

from cim.access import Principal, Role
from layers.errors import Forbidden, Unauthorized

MAX_PAGE = 1000


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    layer: str
    object_id: str
    before_vid: int | None
    after_vid: int | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class AuditPage(BaseModel):
    entries: list[AuditEntryOut]
    next: str | None = None


def audit_router(principal: Callable[..., Any]) -> APIRouter:
    router = APIRouter(tags=["Audit"])

    def admin(who: Annotated[Principal, Depends(principal)]) -> Principal:
        if who.anonymous:
            raise Unauthorized("the audit log needs an admin's API key")
        if who.role is not Role.admin:
            raise Forbidden(f"the {who.role} role cannot read the audit log; admin can")
        return who

    @router.get("/audit", response_model=AuditPage, dependencies=[Depends(admin)],
                summary="The audit log of writes, newest first (admins only)")
    def audit(
        request: Request,
        actor: Annotated[str | None, Query(description="Key name (or oidc:subject).")] = None,
        layer: Annotated[str | None, Query(description="Table written, e.g. buildings.")] = None,
        object_id: Annotated[str | None, Query(alias="objectId")] = None,
        action: Literal["create", "replace", "update", "delete"] | None = None,
        since: Annotated[datetime | None, Query(description="From this time (RFC 3339).")] = None,
        until: Annotated[datetime | None, Query(description="Before this time.")] = None,
        before_id: Annotated[int | None, Query(
            alias="beforeId", ge=1, description="Entries older than this id (paging).")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> AuditPage:
        filters = {"actor": actor, "layer": layer, "object_id": object_id, "action": action}
        where = [f"{column} = :{column}" for column, value in filters.items()
                 if value is not None]
        where += [condition for condition, value in (("at >= :since", since),
                                                     ("at < :until", until),
                                                     ("id < :before_id", before_id))
                  if value is not None]
        sql = ("SELECT id, at, actor, action, layer, object_id, before_vid, after_vid, before, "
               "after FROM cim.audit_log" + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY id DESC LIMIT :limit")
        params = {**filters, "since": since, "until": until, "before_id": before_id,
                  "limit": limit + 1}
        with request.app.state.engine.connect() as conn:
            rows = conn.execute(text(sql), params).mappings().all()
        entries = [AuditEntryOut(**row) for row in rows[:limit]]
        following = None
        if len(rows) > limit:
            following = str(request.url.include_query_params(beforeId=entries[-1].id))
        return AuditPage(entries=entries, next=following)

    return router
