"""Errors of the public APIs; ``cim.app`` maps them to HTTP statuses and OGC bodies."""

from fastapi.responses import JSONResponse


class InvalidParameter(ValueError):
    """A request parameter the client must correct (HTTP 400)."""


class NotFound(LookupError):
    """No such collection, feature or tile, or not for this reader (HTTP 404)."""


def ogc_exception(code: str, description: str, status: int) -> JSONResponse:
    """The OGC API exception body."""
    return JSONResponse({"code": code, "description": description}, status_code=status)
