"""deck.gl's layers on MapLibre's terrain in a real headless Chromium against a real `cim serve`:
over the terrain tests' DEM (a plane 20-30 m up with a 25 m hill), a selected road's deck.gl
outline (a flat layer) lies on the surface where MapLibre drapes the road, not on the plane
at height 0 below it; with the terrain off it is back on that plane."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
from PIL import Image
from shapely.geometry import LineString

from cim.ingest.pipeline import ImportOptions, import_file
from tests import test_terrain as terrain
from tests import test_viewer as viewer
from tests.servers import serving
from tests.test_import_formats import write

browser, tab, dem = viewer.browser, viewer.tab, terrain.dem
ROAD_ID = "t:R9"


def selection(r, g, b):
    """picking.js's highlight (255, 196, 0), blended at its edges; the roads' own layer is
    off, so it is the only yellow."""
    return (r - b > 80) & (g - b > 60) & (r > 120)


def _shot(tab, path) -> np.ndarray:
    tab.page.evaluate("window.__cim.ready = false; window.__cim.settle()")
    tab.wait_render()
    tab.page.screenshot(path=str(path))
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def _near(pixels: np.ndarray, point: dict, test) -> bool:
    x, y = round(point["x"]), round(point["y"])
    window = pixels[y - 3:y + 4, x - 3:x + 4]
    return bool(test(window[..., 0], window[..., 1], window[..., 2]).any())


def test_flat_layers_lie_on_the_terrain(dem, engine, settings, tab, tmp_path):
    # A road running east-west over the hill top, across the camera's view.
    road = gpd.GeoDataFrame(
        {"rid": ["R9"], "highway": ["primary"], "name": ["Hill Road"]}, crs="EPSG:4547",
        geometry=[LineString([(terrain.HILL_X - 200, terrain.HILL_Y),
                              (terrain.HILL_X + 200, terrain.HILL_Y)])])
    import_file(engine, write(road, tmp_path / "road.gpkg", "GPKG"),
                ImportOptions(layer="roads", id_field="rid", source="t"), city_crs=4547)
    lon, lat = terrain.TO_LONLAT.transform(terrain.HILL_X, terrain.HILL_Y)
    top = float(terrain._heights(np.array(terrain.HILL_X), np.array(terrain.HILL_Y)))
    page = tab.page

    def drawn_at(height: float) -> dict:
        """Where the camera draws the hill top's point at ``height`` m: MapLibre's camera
        looks at the terrain at the map's centre (its elevation), deck's unmoved one at 0."""
        return page.evaluate(
            f"(() => {{ const m = window.__cim.map, [x, y] = m.__deck.getViewports()[0]"
            f".project([{lon}, {lat}, {height} - m.transform.elevation]); return {{x, y}}; }})()")
    with serving(engine, settings) as server:
        tab.open(f"{server}/#view=17/{lat}/{lon}/0/60&layers=sensors&terrain=1"
                 f"&select=roads:{ROAD_ID.replace(':', '%3A')}")
        page.wait_for_function("id => document.querySelector('#record .object-id')"
                               "?.textContent === id", arg=ROAD_ID)
        assert page.evaluate("window.__cim.map.getTerrain()?.source") == "terrain"
        shot = tmp_path / "viewer-terrain-draped.png"
        pixels = _shot(tab, shot)
        surface, plane = drawn_at(top), drawn_at(0)
        mapped = page.evaluate(f"window.__cim.project({lon}, {lat})")  # over MapLibre's terrain
        assert abs(mapped["x"] - surface["x"]) < 3 and abs(mapped["y"] - surface["y"]) < 3
        assert abs(surface["y"] - plane["y"]) > 40  # the hill top stands well off the plane
        assert _near(pixels, surface, selection), (surface, shot)
        assert not _near(pixels, plane, selection), (plane, shot)

        # Terrain off: the outline is on the plane at height 0 again, as the map is.
        page.uncheck("#terrain")
        page.wait_for_function("!location.hash.includes('terrain=1')")
        shot = tmp_path / "viewer-terrain-off.png"
        pixels = _shot(tab, shot)
        flat = page.evaluate(f"window.__cim.project({lon}, {lat})")
        assert _near(pixels, flat, selection), (flat, shot)
        tab.clean()
