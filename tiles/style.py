"""A MapLibre style document (spec v8) for the catalog's vector tiles.

Every catalog layer's default style becomes one style layer, in catalog (legend) order, so a
MapLibre or deck.gl map of the whole city is one URL away.
"""

from __future__ import annotations

from typing import Any

from layers.model import LayerDefinition, Style

BACKGROUND = "#f2efe9"
SOURCE = "cim"
PAINT_PREFIX = {"fill": "fill", "fill-extrusion": "fill-extrusion", "line": "line",
                "circle": "circle"}


def colour_expression(style: Style) -> Any:
    """A MapLibre expression: categories -> match, ramp -> interpolate, else a colour."""
    if style.by and style.categories:
        pairs = [item for value, colour in style.categories.items() for item in (value, colour)]
        return ["match", ["to-string", ["get", style.by]], *pairs, style.colour]
    if style.by and style.ramp:
        stops = [item for stop in style.ramp for item in (stop.value, stop.colour)]
        return ["interpolate", ["linear"], ["to-number", ["get", style.by]], *stops]
    return style.colour


def _paint(style: Style) -> dict[str, Any]:
    prefix = PAINT_PREFIX[style.kind]
    paint: dict[str, Any] = {f"{prefix}-color": colour_expression(style),
                             f"{prefix}-opacity": style.opacity}
    if style.kind == "line":
        paint["line-width"] = style.width or 1.0
    if style.kind == "circle":
        paint["circle-radius"] = style.width or 4.0
    if style.kind == "fill-extrusion":
        paint["fill-extrusion-height"] = ["to-number", ["get", style.extrude_height], 0]
        if style.extrude_base:
            paint["fill-extrusion-base"] = ["to-number", ["get", style.extrude_base], 0]
    return paint


def style_document(layers: list[LayerDefinition], name: str, tilejson_url: str
                   ) -> dict[str, Any]:
    return {
        "version": 8,
        "name": name,
        "sources": {SOURCE: {"type": "vector", "url": tilejson_url}},
        "layers": [
            {"id": "background", "type": "background",
             "paint": {"background-color": BACKGROUND}},
            *[
                {
                    "id": layer.id,
                    "type": layer.style.kind,
                    "source": SOURCE,
                    "source-layer": layer.id,
                    "minzoom": layer.min_zoom,
                    "maxzoom": layer.max_zoom + 1,
                    "paint": _paint(layer.style),
                    "metadata": {"cim:group": layer.group, "cim:title": layer.title},
                }
                for layer in layers
            ],
        ],
    }
