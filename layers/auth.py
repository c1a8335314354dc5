"""The request's principal, as a FastAPI dependency every router shares.

A key comes in ``Authorization: Bearer ...`` or ``X-API-Key`` (both declared as OpenAPI
security schemes); no key means the anonymous reader, unless anonymous access is off.
"""

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from cim.access import Principal, Role, principal_for
from cim.db.engine import autocommit
from cim.settings import AccessSettings
from layers.errors import Unauthorized
from layers.model import Classification

_bearer = HTTPBearer(auto_error=False, description="An API key made by `cim keys create`.")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False,
                        description="An API key made by `cim keys create`.")


def principal_dependency(access: AccessSettings) -> Callable[..., Principal]:
    anonymous = Principal("anonymous", Role.viewer, Classification(access.anonymous_clearance),
                          anonymous=True)

    def lookup(request: Request, secret: str) -> Principal | None:
        # Every keyed request asks, so a revoked key is refused at once.
        with autocommit(request.app.state.engine) as conn:
            return principal_for(conn, secret)

    # Async so an anonymous request (every cached tile) never waits for a worker thread;
    # only a key's database lookup goes to one.
    async def principal(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        api_key: Annotated[str | None, Depends(_api_key)],
    ) -> Principal:
        secret = api_key or (bearer.credentials if bearer else None)
        if not secret:
            if not access.allow_anonymous:
                raise Unauthorized("this server needs an API key (Authorization: Bearer KEY "
                                   "or X-API-Key: KEY)")
            return anonymous
        who = await run_in_threadpool(lookup, request, secret)
        if who is None:
            raise Unauthorized("unknown or revoked API key")
        return who

    return principal
