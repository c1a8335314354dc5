"""The request's principal, as a FastAPI dependency every router shares.

A key comes in ``Authorization: Bearer ...`` or ``X-API-Key`` (both declared as OpenAPI
security schemes); no key means the anonymous reader, unless anonymous access is off.
"""

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from cim.access import Principal, Role, principal_for
from cim.db.engine import autocommit_async
from cim.settings import AccessSettings
from layers.errors import Unauthorized
from layers.model import Classification

_bearer = HTTPBearer(auto_error=False, description="An API key made by `cim keys create`.")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False,
                        description="An API key made by `cim keys create`.")


def principal_dependency(access: AccessSettings) -> Callable[..., Principal]:
    anonymous = Principal("anonymous", Role.viewer, Classification(access.anonymous_clearance),
                          anonymous=True)

    async def lookup(request: Request, secret: str) -> Principal | None:
        # Every keyed request asks, so a revoked key is refused at once.
        async with autocommit_async(request.app.state.async_engine) as conn:
            return await conn.run_sync(principal_for, secret)

    # Async, and the key's lookup waits on the event loop: no request hops to a worker
    # thread to learn who is asking.
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
        who = await lookup(request, secret)
        if who is None:
            raise Unauthorized("unknown or revoked API key")
        return who

    return principal
