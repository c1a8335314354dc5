"""The notebook helper: a pydeck deck of the platform's layers drawn in a real headless
Chromium with pydeck's own deck.gl bundle served by the platform, and no request leaving
it. The page is served at the platform's origin, as a notebook server with
CIM_SERVER_CORS_ORIGINS would be allowed to."""

from __future__ import annotations

import httpx
import numpy as np
from PIL import Image

from tests import test_viewer as viewer
from tests.servers import serving
from tiles.threed.api import tilesets_folder
from tiles.threed.build import build_buildings
from viewer.notebook import BUNDLE, city_deck, to_html

city, scene, browser, tab = viewer.city, viewer.scene, viewer.browser, viewer.tab
DRAWN = ("() => window.deck && window.deck.props.layers.length > 0"
         " && window.deck.props.layers.every(l => l.isLoaded)")


def test_pydeck_draws_the_platform_offline(scene, settings, tab, tmp_path):
    build_buildings(scene, tilesets_folder(settings.storage.root) / "buildings", leaf_size=4)
    lon, lat = viewer.centre(3)
    with serving(scene, settings) as server:
        assert httpx.get(f"{server}/{BUNDLE}").status_code == 200
        deck = city_deck(server, longitude=lon + 0.0008, latitude=lat, zoom=17.2, pitch=50,
                         bearing=0)
        page = to_html(deck, server)
        assert "cdn" not in page and "unpkg" not in page and "mapbox" not in page
        tab.context.route(f"{server}/notebook.html",
                          lambda route: route.fulfill(body=page, content_type="text/html"))
        tab.page.goto(f"{server}/notebook.html")
        tab.page.wait_for_function(DRAWN, timeout=45_000)
        tab.page.wait_for_timeout(300)  # one more frame after the last tile
        tab.page.wait_for_function(DRAWN)
        shot = tmp_path / "notebook.png"
        tab.page.screenshot(path=str(shot))
        pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
        tab.page.evaluate(
            "window.__cim = {project: (lon, lat) => { const [x, y] ="
            " window.deck.getViewports()[0].project([lon, lat]); return {x, y}; }}")
        # pydeck's deck.gl 9.3 ignores the glb's colours by use: grey, lit buildings on white.
        grey = lambda r, g, b: (r < 215) & (abs(r - b) < 12)  # noqa: E731
        assert viewer.pixel_near(tab, pixels, lon, lat, grey), f"no building: {shot}"
        assert viewer.pixel_near(tab, pixels, *viewer.lonlat(*viewer.LAKE),
                                 lambda r, g, b: (abs(r - 140) < 25) & (abs(b - 232) < 25)), shot
        tab.clean()
