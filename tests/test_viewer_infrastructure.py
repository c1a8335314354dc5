"""The viewer's infrastructure toggles in a real headless Chromium against a real `cim serve`:
the drainage network's 3D tileset (internal) is offered and drawn only once a key that may
see it is typed, with the underground mode on; the hillshade lays the DEM's relief under the
map."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
from PIL import Image
from shapely.geometry import LineString

from cim.access import Role, create_key
from cim.ingest.pipeline import ImportOptions, import_file
from layers.model import Classification
from tests import test_terrain as terrain
from tests import test_viewer as viewer
from tests.servers import serving
from tests.test_import_formats import X0, Y0, write
from tiles.threed.api import tilesets_folder
from tiles.threed.infrastructure import build_infrastructure

browser, tab, dem = viewer.browser, viewer.tab, terrain.dem


def test_drainage_is_drawn_with_a_key_and_not_without(engine, settings, tab, tmp_path):
    pipes = gpd.GeoDataFrame({"pid": ["P1"], "diameter_m": [1.5]}, crs="EPSG:4547",
                             geometry=[LineString([(X0, Y0), (X0 + 200, Y0)])])
    import_file(engine, write(pipes, tmp_path / "pipes.gpkg", "GPKG"),
                ImportOptions(layer="drainage_pipes", id_field="pid", source="t"),
                city_crs=4547)
    build_infrastructure(engine, tilesets_folder(settings.storage.root), settings.storage.root)
    with engine.begin() as conn:
        key = create_key(conn, "engineer", Role.viewer, Classification.internal)
    lon, lat = viewer.lonlat(100, 0)
    page = tab.page
    with serving(engine, settings) as server:
        tab.open(f"{server}/#view=17.5/{lat}/{lon}/0/0&layers=roads")
        # Anonymous: the internal network is not offered (and nothing answered 404).
        assert page.eval_on_selector_all("#infrastructure-list li",
                                         "rows => rows.map(r => r.dataset.tileset)") == []
        blank = tmp_path / "viewer-no-drainage.png"
        page.screenshot(path=str(blank))
        page.click("#traffic summary")  # the key is typed once, in a scenario panel
        page.fill("#traffic-key", key)
        page.dispatch_event("#traffic-key", "change")
        page.wait_for_selector("#infrastructure-list li[data-tileset=drainage]")
        page.check("#infrastructure-list li[data-tileset=drainage] input")
        page.check("#underground")
        page.evaluate("window.__cim.ready = false; window.__cim.settle()")
        tab.wait_render()
        shot = tmp_path / "viewer-drainage.png"
        page.screenshot(path=str(shot))
        before, after = (np.asarray(Image.open(p).convert("RGB")).astype(int)
                         for p in (blank, shot))
        point = page.evaluate(f"window.__cim.project({lon}, {lat})")
        x, y = round(point["x"]), round(point["y"])
        # The pipe is drawn where the map was bare before.
        assert np.abs(after[y - 3:y + 4, x - 3:x + 4] - before[y - 3:y + 4, x - 3:x + 4]
                      ).sum(axis=-1).max() > 60, shot
        tab.clean()


def test_hillshade_lights_the_north_west_flank(dem, engine, settings, tab, tmp_path):
    lon, lat = terrain.TO_LONLAT.transform(terrain.HILL_X, terrain.HILL_Y)
    page = tab.page
    with serving(engine, settings) as server:
        tab.open(f"{server}/#view=16.5/{lat}/{lon}/0/0&layers=roads")
        page.check("#hillshade")
        page.evaluate("window.__cim.ready = false; window.__cim.settle()")
        tab.wait_render()
        shot = tmp_path / "viewer-hillshade.png"
        page.screenshot(path=str(shot))
        pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)

        def grey(dx: float, dy: float) -> float:
            at = terrain.TO_LONLAT.transform(terrain.HILL_X + dx, terrain.HILL_Y + dy)
            point = page.evaluate(f"window.__cim.project({at[0]}, {at[1]})")
            x, y = round(point["x"]), round(point["y"])
            return float(pixels[y - 2:y + 3, x - 2:x + 3].mean())

        # The hill's north-west flank faces the light, its south-east flank is in shadow.
        assert grey(-60, 60) > grey(60, -60) + 20, shot
        tab.clean()
