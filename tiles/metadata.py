"""What a tile pyramid holds, as TileJSON's ``vector_layers`` (TileJSON, PMTiles, MBTiles)."""

from __future__ import annotations

from typing import Any

from layers.model import MAX_ZOOM, LayerDefinition


def vector_layers(layers: list[LayerDefinition]) -> list[dict[str, Any]]:
    return [
        {"id": layer.id, "description": layer.title, "minzoom": layer.min_zoom,
         "maxzoom": layer.max_zoom, "fields": {p.name: p.title for p in layer.properties}}
        for layer in layers
    ]


def zoom_range(layers: list[LayerDefinition]) -> tuple[int, int]:
    return (min((layer.min_zoom for layer in layers), default=0),
            max((layer.max_zoom for layer in layers), default=MAX_ZOOM))


def attribution(layers: list[LayerDefinition]) -> str:
    return "; ".join(sorted({layer.attribution for layer in layers if layer.attribution}))
