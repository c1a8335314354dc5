"""HTTP responses with validators: an ETag from the body, 304 when the client has it."""

from __future__ import annotations

import hashlib

from fastapi import Request
from fastapi.responses import Response


def digest_of(data: bytes) -> str:
    """The content digest an ETag is made of."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def cached(request: Request, body: bytes | str, media_type: str,
           max_age: int = 60, headers: dict[str, str] | None = None,
           version: int | None = None, digest: str | None = None) -> Response:
    """The body with ``ETag`` and ``Cache-Control``; 304 Not Modified if ``If-None-Match``
    already names it. A short max-age keeps clients close to the city as imports change it,
    and the ETag makes each revalidation cheap. A city object's ETag starts with its version
    id, so a later ``If-Match`` can tell which version the client saw. ``digest``: the
    body's ``digest_of``, when the caller keeps it (the tile cache)."""
    data = body.encode() if isinstance(body, str) else body
    digest = digest or digest_of(data)
    etag = f'"{digest}"' if version is None else f'"{version}-{digest}"'
    # What a key reads may be classified: no shared cache may keep it for others.
    keyed = "authorization" in request.headers or "x-api-key" in request.headers
    headers = {**(headers or {}), "ETag": etag,
               "Cache-Control": f"{'private' if keyed else 'public'}, max-age={max_age}"}
    wanted = request.headers.get("if-none-match", "")
    if etag in {tag.strip() for tag in wanted.split(",")} or wanted.strip() == "*":
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=media_type, headers=headers)


def versions_matched(if_match: str) -> set[int] | None:
    """The version ids an ``If-Match`` header names; None for ``*`` (any current version)."""
    if if_match.strip() == "*":
        return None
    matched = set()
    for tag in if_match.split(","):
        version, _, _ = tag.strip().removeprefix("W/").strip('"').partition("-")
        if version.isdigit():
            matched.add(int(version))
    return matched
