"""OpenAPI 3 links between operations: how a response's ids feed the next request.

A created feature's id comes back only in its ``Location`` header, and its version in the
``ETag`` a write's ``If-Match`` needs; a queued scenario's id is its body's ``id``. Writing
that down in the document lets a client (and schemathesis's stateful tests) follow a real
id from a POST to the GET, PUT, PATCH and DELETE of that object instead of guessing ids.
The table is applied to the document FastAPI builds, so the routes stay as they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI

ITEMS = "/collections/{collectionId}/items"
ITEM = "/collections/{collectionId}/items/{featureId}"
SCENARIO = "/scenarios/{scenario_id}"
SCENARIO_KIND = re.compile(r"^/scenarios/[a-z_]+$")  # POST /scenarios/{kind}, one per kind

SAME_COLLECTION = {"path.collectionId": "$request.path.collectionId"}
# Location is .../collections/{collectionId}/items/{featureId}: the id is its last segment.
CREATED_ID = {**SAME_COLLECTION,
              "path.featureId": "$response.header.Location#regex:/items/([^/?#]+)$"}
SAME_ID = {**SAME_COLLECTION, "path.featureId": "$request.path.featureId"}
VERSION = {"header.if-match": "$response.header.ETag"}  # as FastAPI names the parameter

Link = tuple[str, str, str, str, str, dict[str, str]]
"""(method, path, status, target method, target path, parameters)."""


def _links(paths: dict[str, Any]) -> Iterator[Link]:
    yield "get", "/collections", "200", "get", "/collections/{collectionId}", {
        "path.collectionId": "$response.body#/collections/0/id"}
    yield "get", "/collections", "200", "get", ITEMS, {
        "path.collectionId": "$response.body#/collections/0/id"}
    yield "post", ITEMS, "201", "get", ITEM, CREATED_ID
    for method in ("put", "patch", "delete"):
        yield "post", ITEMS, "201", method, ITEM, {**CREATED_ID, **VERSION}
        yield "get", ITEM, "200", method, ITEM, {**SAME_ID, **VERSION}
    for method in ("put", "patch"):
        yield method, ITEM, "200", "get", ITEM, SAME_ID
        yield method, ITEM, "200", "delete", ITEM, {**SAME_ID, **VERSION}
    yield "delete", ITEM, "204", "get", ITEM, SAME_ID
    created = {"path.scenario_id": "$response.body#/id"}
    same = {"path.scenario_id": "$request.path.scenario_id"}
    for path in paths:
        if SCENARIO_KIND.match(path) and "post" in paths[path]:
            for method, target in (("get", SCENARIO), ("post", f"{SCENARIO}/cancel"),
                                   ("post", f"{SCENARIO}/rerun"), ("delete", SCENARIO)):
                yield "post", path, "201", method, target, created
    for method, target in (("post", f"{SCENARIO}/cancel"), ("post", f"{SCENARIO}/rerun"),
                           ("delete", SCENARIO)):
        yield "get", SCENARIO, "200", method, target, same
    yield "post", f"{SCENARIO}/cancel", "200", "post", f"{SCENARIO}/rerun", same
    yield "post", f"{SCENARIO}/rerun", "200", "get", SCENARIO, same


def add_links(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with the links whose both ends it has (the app may leave some out)."""
    paths = document["paths"]
    for method, path, status, target_method, target_path, parameters in _links(paths):
        source, target = paths.get(path, {}).get(method), paths.get(target_path, {})
        if source is None or target_method not in target:
            continue
        operation_id = target[target_method]["operationId"]
        response = source["responses"].setdefault(status, {"description": "Success"})
        response.setdefault("links", {})[operation_id] = {
            "operationId": operation_id, "parameters": parameters}
    return document


def with_links(app: FastAPI) -> None:
    """Serve ``app``'s OpenAPI document with the links (built once, like FastAPI's own)."""
    build: Callable[[], dict[str, Any]] = app.openapi
    linked: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        if not linked:
            linked.append(add_links(build()))
        return linked[0]

    app.openapi = openapi  # type: ignore[method-assign]
