"""The catalog: every layer definition, loaded from ``layers/definitions/*.toml``.

Adding a layer is adding a file. :func:`load_catalog` validates each definition on its own
(pydantic) and :func:`missing_in_database` checks them all against the live schema, so a
definition naming a column that does not exist is caught at start-up, not per request.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import Connection, text

from layers.model import Classification, LayerDefinition

DEFINITIONS = Path(__file__).parent / "definitions"
CLEARANCE_ORDER = list(Classification)


class CatalogError(Exception):
    """A layer definition is malformed or does not match the database."""


class Catalog:
    """Layer definitions by id, in legend order (group, then file order)."""

    def __init__(self, layers: list[LayerDefinition]) -> None:
        ids = [layer.id for layer in layers]
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        if duplicated:
            raise CatalogError(f"layer ids defined twice: {', '.join(duplicated)}")
        self._layers = {layer.id: layer for layer in layers}

    def __iter__(self) -> Iterator[LayerDefinition]:
        return iter(self._layers.values())

    def visible_to(self, clearance: Classification) -> list[LayerDefinition]:
        """The layers a reader with this clearance may know exist."""
        rank = CLEARANCE_ORDER.index(clearance)
        return [layer for layer in self
                if CLEARANCE_ORDER.index(layer.classification) <= rank]


def load_catalog(folder: Path = DEFINITIONS) -> Catalog:
    """Every ``*.toml`` definition in ``folder``, sorted by file name."""
    layers = []
    for path in sorted(folder.glob("*.toml")):
        try:
            with path.open("rb") as f:
                layers.append(LayerDefinition.model_validate(tomllib.load(f)))
        except (tomllib.TOMLDecodeError, ValidationError) as exc:
            raise CatalogError(f"{path.name}: {exc}") from None
    return Catalog(layers)


def missing_in_database(conn: Connection, catalog: Catalog) -> list[str]:
    """What the definitions name that the database lacks (empty when all is well)."""
    rows = conn.execute(text(
        "SELECT table_schema, table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = ANY(:schemas)"
    ), {"schemas": sorted({layer.source.schema_ for layer in catalog})}).all()
    columns: dict[tuple[str, str], set[str]] = {}
    for schema, table, column in rows:
        columns.setdefault((schema, table), set()).add(column)
    problems = []
    for layer in catalog:
        key = (layer.source.schema_, layer.source.relation)
        if key not in columns:
            problems.append(f"{layer.id}: no table or view {key[0]}.{key[1]}")
            continue
        wanted = layer.columns() | ({"valid_from", "valid_to"} if layer.source.versioned
                                    else set())
        for column in sorted(wanted - columns[key]):
            problems.append(f"{layer.id}: {key[0]}.{key[1]} has no column {column!r}")
    return problems
