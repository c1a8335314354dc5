"""The viewer's buildings from the 3D Tiles (Tile3DLayer over the built tileset), drawn and
picked in a real headless Chromium against a real `cim serve` that reads the tileset from its
storage root. Without a tileset the vector tiles' extrusion stays (tests/test_viewer.py)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tests import test_viewer as viewer
from tests.servers import serving
from tiles.threed.api import tilesets_folder
from tiles.threed.build import build_buildings

# The 25 office buildings and the browser fixtures of the viewer's tests.
city, browser, tab = viewer.city, viewer.browser, viewer.tab


def test_buildings_come_from_the_3d_tiles_and_pick_their_records(city, settings, tab, tmp_path):
    build_buildings(city, tilesets_folder(settings.storage.root) / "buildings", leaf_size=4)
    lon, lat = viewer.centre(3)
    with serving(city, settings) as server:
        tab.open(f"{server}/#view=17.2/{lat}/{lon + 0.0008}/0/50")
        # The extrusion gives way: MapLibre filters every building out, deck draws the glb.
        assert tab.page.evaluate("JSON.stringify(window.__cim.map.getFilter('buildings'))") \
            == '["==",["literal",1],0]'
        shot = tmp_path / "viewer-3dtiles.png"
        tab.page.screenshot(path=str(shot))
        pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
        office = lambda r, g, b: b - r > 20  # noqa: E731  #9db7d5, shaded
        assert viewer.pixel_near(tab, pixels, lon, lat, office), f"no 3D building: {shot}"
        assert (pixels[..., 2] - pixels[..., 0] > 20).sum() > 5000, shot

        # A click on a 3D building opens its record: the id is read from the glb's
        # feature ids and property table, not looked up by position.
        viewer.click(tab, lon, lat, "t:B03")
        assert "Found by position" not in tab.page.text_content("#record")
        assert tab.page.text_content("#record tr[data-key=height] td") == "13"
        lon9, lat9 = viewer.centre(9)
        viewer.click(tab, lon9, lat9, "t:B09")
        tab.page.screenshot(path=str(tmp_path / "viewer-3dtiles-picked.png"))

        # The layer panel's buildings toggle hides and shows the 3D layer.
        tab.page.click("#record .close")
        tab.page.click("[data-layer=buildings] input")
        tab.page.wait_for_function("!location.hash.includes('buildings')")
        tab.page.wait_for_timeout(500)
        tab.page.screenshot(path=str(tmp_path / "viewer-3dtiles-hidden.png"))
        pixels = np.asarray(Image.open(tmp_path / "viewer-3dtiles-hidden.png").convert("RGB"))
        assert not viewer.pixel_near(tab, pixels.astype(int), lon, lat, office)
        tab.clean()
