"""Errors of the public APIs; ``cim.app`` maps them to HTTP statuses and OGC bodies."""

from fastapi.responses import JSONResponse


class InvalidParameter(ValueError):
    """A request parameter the client must correct (HTTP 400)."""


class NotFound(LookupError):
    """No such collection, feature or tile, or not for this reader (HTTP 404)."""


class Unauthorized(PermissionError):
    """No valid credentials where they are needed (HTTP 401)."""


class Forbidden(PermissionError):
    """Valid credentials without the right to do this (HTTP 403)."""


class NotWritable(ValueError):
    """A collection read from a view or computed: it takes no writes (HTTP 405)."""


class PreconditionFailed(ValueError):
    """``If-Match`` names a version that is no longer current (HTTP 412)."""


def ogc_exception(code: str, description: str, status: int) -> JSONResponse:
    """The OGC API exception body."""
    return JSONResponse({"code": code, "description": description}, status_code=status)
