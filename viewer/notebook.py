"""pydeck for notebook users: the platform's layers as a ``pydeck.Deck``, shown with nothing
fetched from outside the platform (needs the ``notebook`` extra: ``pip install .[notebook]``).

    from viewer.notebook import city_deck, show
    deck = city_deck("http://127.0.0.1:8000", scenario=3)
    show(deck, "http://127.0.0.1:8000")

pydeck's own ``to_html``/``show`` load deck.gl from jsdelivr and CSS from three other CDNs,
and its default base map from Carto; MVTLayer fetches its worker from unpkg. Here:

- the deck has no base map (``map_provider=None``): the platform's vector tiles are drawn as
  deck.gl layers instead;
- the MVT worker is the one the viewer's build ships (``/viewer/workers/mvt-worker.js``);
- :func:`to_html` writes a page of our own that loads pydeck's deck.gl bundle from the
  platform (``/viewer/pydeck/index.js``, served from the installed pydeck package).

The page's requests go to the platform, so the platform must allow the notebook's origin
(``CIM_SERVER_CORS_ORIGINS``, e.g. ``["http://localhost:8888"]``), or the page must be served
from the platform itself. pydeck treats plain strings as JavaScript expressions, so string
literals below are quoted (``"'meters'"``).
"""

from __future__ import annotations

import html
import json
from typing import Any

import pydeck as pdk

BUILDINGS_3D = "3dtiles/buildings/tileset.json"
VECTOR_TILES = "tiles/WebMercatorQuad/{z}/{x}/{y}"
MVT_WORKER = "viewer/workers/mvt-worker.js"
BUNDLE = "viewer/pydeck/index.js"
# The base map's colours by tile layer (the catalog's style colours, as RGB).
BASE_COLOURS = {"water_bodies": [140, 196, 232], "waterways": [90, 160, 210],
                "roads": [246, 210, 122], "bridges": [110, 110, 110],
                "admin_units": [200, 190, 210]}
FLOOD_COLOURS = {"passable": [161, 218, 180], "with_care": [253, 174, 97],
                 "closed": [215, 25, 28]}


def _root(platform: str) -> str:
    return platform.rstrip("/") + "/"


def _colour_by_layer(colours: dict[str, list[int]], default: list[int]) -> str:
    """An accessor expression (pydeck makes every plain string one): the colour of a
    feature's MVT layer."""
    cases = "".join(f"properties.layerName === {json.dumps(layer)} ? {colour} : "
                    for layer, colour in colours.items())
    return f"{cases}{default}"


def city_deck(platform: str, *, longitude: float = 114.503, latitude: float = 30.4935,
              zoom: float = 15.5, pitch: float = 55.0, bearing: float = -25.0,
              buildings: bool = True, scenario: int | None = None) -> pdk.Deck:
    """A deck of the platform's base map (vector tiles), its 3D Tiles buildings and, given
    a flood ``scenario``, that run's flooded roads (public; buildings and hotspots are
    internal and need a key, which a notebook page cannot send)."""
    root = _root(platform)
    layers = [pdk.Layer(
        "MVTLayer", data=f"{root}{VECTOR_TILES}", id="base-map",
        binary=False, min_zoom=0, max_zoom=16,
        load_options={"mvt": {"workerUrl": f"{root}{MVT_WORKER}"}},
        get_fill_color=_colour_by_layer(BASE_COLOURS, [230, 226, 218]),
        get_line_color=_colour_by_layer(BASE_COLOURS, [180, 180, 180]),
        line_width_min_pixels=1, get_point_radius=4, point_radius_units="'pixels'",
        pickable=True)]
    if buildings:
        # Tile3DLayer's default loader reads 3D Tiles; plain glb content needs no worker.
        layers.append(pdk.Layer("Tile3DLayer", data=f"{root}{BUILDINGS_3D}",
                                id="buildings-3d", pickable=True))
    if scenario is not None:
        layers.append(pdk.Layer(
            "GeoJsonLayer", id=f"flood-roads-{scenario}",
            data=f"{root}collections/flood_roads/items?filter=scenario_id={scenario}"
                 f"&limit=10000",
            get_line_color=_flood_colour(), line_width_min_pixels=4))
    view = pdk.ViewState(longitude=longitude, latitude=latitude, zoom=zoom, pitch=pitch,
                         bearing=bearing)
    return pdk.Deck(layers=layers, initial_view_state=view, map_provider=None,
                    map_style=None, tooltip=True)


def _flood_colour() -> str:
    cases = "".join(f"properties.flood_class === {json.dumps(c)} ? {rgb} : "
                    for c, rgb in FLOOD_COLOURS.items())
    return f"{cases}[44, 127, 184]"


PAGE = """<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>{title}</title>
<script src="{bundle}"></script>
<style>html, body, #deck {{ margin: 0; width: 100%; height: 100%; }}</style>
</head>
<body>
<div id="deck"></div>
<script>
window.deck = createDeck({{container: document.getElementById('deck'), jsonInput: {spec},
  tooltip: true, customLibraries: null, configuration: null}});
</script>
</body>
</html>
"""


def to_html(deck: pdk.Deck, platform: str, title: str = "City model") -> str:
    """A page drawing ``deck`` with deck.gl from the platform: no request leaves it."""
    spec = deck.to_json().replace("</", "<\\/")  # never close the script early
    return PAGE.format(title=html.escape(title), bundle=html.escape(_root(platform) + BUNDLE),
                       spec=spec)


def show(deck: pdk.Deck, platform: str, height: int = 500) -> Any:
    """The page in an iframe for Jupyter (the platform must allow the notebook's origin)."""
    from IPython.display import HTML

    document = html.escape(to_html(deck, platform), quote=True)
    return HTML(f'<iframe srcdoc="{document}" width="100%" height="{height}" '
                f'style="border: none"></iframe>')
