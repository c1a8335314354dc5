"""The viewer's comparison of two flood scenarios and its shareable state, in a real headless
Chromium against a real `cim serve`: a 2-year and a 100-year storm over the tiny bowl district
of the scenario tests, compared from the panel with the swipe (A left of the divider, B right
of it), a time slider moving both sides, the difference layer from the difference tiles, the
divider dragged, all restored from the URL; and a URL restoring the infrastructure toggles, the
underground mode, the hillshade, the terrain and a scenario's time. The difference tiles are
also checked over HTTP. Two traffic scenarios over the traffic tests' square of streets (the
fast middle road closed in A, open in B) compare with the swipe and the difference layer."""

from __future__ import annotations

import io

import httpx
import morecantile
import numpy as np
from PIL import Image
from pyproj import Transformer

from cim.access import Role, create_key
from layers.model import Classification
from tests import test_flood_scenarios as flood
from tests import test_traffic_scenarios as traffic
from tests import test_viewer as viewer
from tests import test_viewer_traffic as traffic_viewer
from tests.servers import serving
from tiles.threed.api import tilesets_folder
from tiles.threed.infrastructure import build_infrastructure

district, browser, tab = flood.district, viewer.browser, viewer.tab
square = traffic_viewer.square
TO_LONLAT = Transformer.from_crs("EPSG:4547", "EPSG:4326", always_xy=True)
TMS = morecantile.tms.get("WebMercatorQuad")
WIDTH = 1280  # the tab's viewport, which the map fills


# The ids of the compare group's depth layers that deck.gl draws.
DEPTH_LAYERS = """() => window.__cim.map._controls.find(c => c._deck)._deck.props.layers
  .filter(l => l.id.includes('-depth-')).map(l => l.id)"""


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def _water(window: np.ndarray) -> np.ndarray:
    """Pixels of the depth ramp's blues (drawn at 0.8 opacity over the pale map)."""
    r, b = window[..., 0], window[..., 2]
    return (b - r > 25) & (b > 120)


def _red(window: np.ndarray) -> np.ndarray:
    r, g, b = window[..., 0], window[..., 1], window[..., 2]
    return (r - b > 40) & (r - g > 30)


def _scenarios(engine, settings) -> tuple[int, int]:
    """A, a 2-year storm, and B, a 100-year one: B floods deeper and wider."""
    a = flood._run(engine, settings, return_period=2)["id"]
    b = flood._run(engine, settings)["id"]
    return a, b


def test_difference_tiles_are_red_where_b_is_deeper(district, settings):
    a, b = _scenarios(district, settings)
    tile = TMS.tile(*TO_LONLAT.transform(flood.CX, flood.CY), 18)
    with serving(district, settings) as server:
        over = httpx.get(f"{server}/scenarios/{a}/compare/{b}/maps/18/{tile.x}/{tile.y}.png")
        assert over.status_code == 200 and over.headers["content-type"] == "image/png"
        rgba = np.asarray(Image.open(io.BytesIO(over.content)).convert("RGBA")).astype(int)
        drawn = rgba[..., 3] > 0
        assert (_red(rgba[..., :3]) & drawn).sum() > 100
        assert not ((rgba[..., 2] - rgba[..., 0] > 40) & drawn).any()  # nowhere shallower
        # The other way round, the same cells are blue.
        back = httpx.get(f"{server}/scenarios/{b}/compare/{a}/maps/18/{tile.x}/{tile.y}.png")
        rgba = np.asarray(Image.open(io.BytesIO(back.content)).convert("RGBA")).astype(int)
        assert ((rgba[..., 2] - rgba[..., 0] > 40) & (rgba[..., 3] > 0)).sum() > 100
        far = TMS.tile(*TO_LONLAT.transform(flood.CX + 5000, flood.CY), 18)
        assert httpx.get(f"{server}/scenarios/{a}/compare/{b}/maps/18/{far.x}/{far.y}.png"
                         ).status_code == 204
        missing = httpx.get(f"{server}/scenarios/{a}/compare/99/maps/18/{tile.x}/{tile.y}.png")
        assert missing.status_code == 404 and "99" in missing.json()["description"]
        outside = httpx.get(f"{server}/scenarios/{a}/compare/{b}/maps/2/9/9.png")
        assert outside.status_code == 404


def test_two_flood_scenarios_compare_with_a_swipe_and_a_difference_layer(district, settings,
                                                                          tab, tmp_path):
    a, b = _scenarios(district, settings)
    lon, lat = TO_LONLAT.transform(flood.CX, flood.CY)
    page = tab.page
    tab.expected_failures = (f"/scenarios/{a}/compare/77",)  # refused below on purpose
    with serving(district, settings) as server:
        tab.open(f"{server}/#view=18/{lat}/{lon}/0/0&layers=roads")
        page.click("#compare summary")

        # A pair that cannot compare is said in words, and nothing is drawn.
        page.fill("#compare-a", str(a))
        page.fill("#compare-b", "77")
        page.click("#compare-run")
        page.wait_for_function("document.querySelector('#compare-status').textContent"
                               ".includes('cannot be compared')")
        assert "no scenario 77" in page.text_content("#compare-status")
        assert page.is_hidden("#compare-result") and "compare=" not in page.evaluate(
            "location.hash")

        page.fill("#compare-b", str(b))
        page.click("#compare-run")
        page.wait_for_function("document.querySelector('#compare-status').textContent"
                               f" === 'Flood scenario {b} against {a}'")
        page.wait_for_function(f"location.hash.includes('compare={a},{b}&swipe=0.5')")
        page.evaluate("window.__cim.ready = false; window.__cim.settle()")
        tab.wait_render()
        shot = tmp_path / "viewer-compare-swipe.png"
        page.screenshot(path=str(shot))
        pixels = _pixels(shot)

        # The divider stands on the bowl's centre: left of it A's (shallower, smaller) pool,
        # right of it B's. The bowl is round and its two houses sit point-symmetrically, so
        # the north-west quarter and the south-east one turned by 180° differ only by the
        # scenario (the road through the centre left out).
        centre = page.evaluate(f"window.__cim.project({lon}, {lat})")
        x, y = round(centre["x"]), round(centre["y"])
        assert abs(x - WIDTH / 2) <= 1
        edge = page.evaluate(f"window.__cim.project("
                             f"{TO_LONLAT.transform(flood.CX + 40, flood.CY)[0]}, {lat})")
        radius = round(edge["x"]) - x  # 40 m, the bowl's rim
        left = pixels[y - radius:y - 12, x - radius:x - 4]
        right = pixels[y + 12:y + radius, x + 4:x + radius][::-1, ::-1]
        wet_a, wet_b = _water(left), _water(right)
        # Where both are wet, B's water is the darker blue (deeper), and more of it is deep.
        both = wet_a & wet_b
        darkness_a, darkness_b = (side[both].sum(axis=-1).mean() for side in (left, right))
        assert both.sum() > 1000 and darkness_b < darkness_a - 30, (darkness_a, darkness_b, shot)
        deep_a, deep_b = ((wet & (side.sum(axis=-1) < 450)).sum()
                          for wet, side in ((wet_a, left), (wet_b, right)))
        assert deep_b > 1.3 * deep_a, (deep_a, deep_b, shot)  # 1.43 with the bowl a level pool
        assert page.text_content("#swipe .side.a") == f"A: scenario {a}"

        # The time slider moves both sides together over the depth maps both have (every
        # 30 minutes, the maximum last): half an hour into the storm, both pools are paler.
        assert page.is_visible("#compare-time-row")
        assert page.text_content("#compare-time-label") == "maximum"
        assert page.get_attribute("#compare-time", "max") == "2"  # 0:30, 1:00, the maximum
        assert page.input_value("#compare-time") == "2"
        page.evaluate("const s = document.getElementById('compare-time'); s.value = '0';"
                      " s.dispatchEvent(new Event('input'))")
        page.wait_for_function("location.hash.includes('ctime=1800')")
        assert page.text_content("#compare-time-label") == "0:30"
        drawn = page.evaluate(DEPTH_LAYERS)
        assert drawn == [f"compare-a-depth-{a}-depth_001800s.tif",
                         f"compare-b-depth-{b}-depth_001800s.tif"], drawn
        page.evaluate("window.__cim.ready = false; window.__cim.settle()")
        tab.wait_render()
        shot = tmp_path / "viewer-compare-time.png"
        page.screenshot(path=str(shot))
        early = _pixels(shot)
        for half, wet, at_max in ((early[y - radius:y - 12, x - radius:x - 4], wet_a, left),
                                  (early[y + 12:y + radius, x + 4:x + radius][::-1, ::-1],
                                   wet_b, right)):
            now = _water(half) & wet
            assert now.sum() > 300, shot
            assert half[now].sum(axis=-1).mean() > at_max[now].sum(axis=-1).mean() + 10, shot

        # The difference layer: B − A in diverging colours, red where B is deeper.
        page.uncheck("#compare-swipe")
        page.check("#compare-diff")
        page.wait_for_function("location.hash.includes('swipe=off&ctime=1800&diff=1')")
        page.evaluate("window.__cim.ready = false; window.__cim.settle()")
        tab.wait_render()
        assert page.is_visible("#compare-legend")
        assert "deeper in B" in page.text_content("#compare-legend")
        shot = tmp_path / "viewer-compare-difference.png"
        page.screenshot(path=str(shot))
        pixels = _pixels(shot)
        assert _red(pixels[y - radius:y + radius, x - radius:x + radius]).sum() > 300, shot
        assert not _water(pixels[y - radius:y + radius, x - radius:x + radius]).any(), shot
        assert page.text_content("#compare-summary tr:nth-child(3) td") != "0"

        # The swipe back on, its divider dragged to three quarters of the width.
        page.check("#compare-swipe")
        page.mouse.move(WIDTH / 2, 600)
        page.mouse.down()
        page.mouse.move(WIDTH * 0.6, 600)
        page.mouse.move(WIDTH * 0.75, 600)
        page.mouse.up()
        page.wait_for_function("location.hash.includes('swipe=0.75&ctime=1800&diff=1')")

        # The URL restores all of it.
        page.reload()
        tab.wait_render()
        page.wait_for_function("document.querySelector('#compare-status').textContent"
                               f" === 'Flood scenario {b} against {a}'")
        assert page.is_checked("#compare-swipe") and page.is_checked("#compare-diff")
        assert page.evaluate("document.getElementById('swipe').style.left") == "75%"
        assert page.text_content("#compare-time-label") == "0:30"
        assert page.evaluate(DEPTH_LAYERS) == drawn
        assert page.evaluate("document.getElementById('compare').open") is True
        page.evaluate("window.__cim.ready = false; window.__cim.settle()")
        tab.wait_render()
        shot = tmp_path / "viewer-compare-restored.png"
        page.screenshot(path=str(shot))
        pixels = _pixels(shot)
        assert _red(pixels[y - radius:y + radius, x - radius:x + radius]).sum() > 300, shot
        tab.clean()


def test_two_traffic_scenarios_compare_with_a_swipe_and_a_difference_layer(square, settings,
                                                                            tab, tmp_path):
    a = traffic.run(square, settings, od=traffic.OD, close_roads=["t:m"]).id
    b = traffic.run(square, settings, od=traffic.OD).id
    lon, lat = traffic.lonlat(300, 300)
    west, east = traffic.lonlat(150, 300), traffic.lonlat(450, 300)  # the middle road
    round_ = traffic.lonlat(300, 0), traffic.lonlat(300, 600)  # the south and north streets
    grey, ramp = traffic_viewer.grey, traffic_viewer.ramp
    page = tab.page
    with serving(square, settings) as server:
        # MapLibre's roads and own traffic layer off: what is coloured is the comparison.
        tab.open(f"{server}/#view=16/{lat}/{lon}/0/0&layers=buildings")
        page.click("#compare summary")
        page.fill("#compare-a", str(a))
        page.fill("#compare-b", str(b))
        page.click("#compare-run")
        page.wait_for_function("document.querySelector('#compare-status').textContent"
                               f" === 'Traffic scenario {b} against {a}'")
        page.wait_for_function(f"location.hash.includes('compare={a},{b}&swipe=0.5')")
        assert "ctime" not in page.evaluate("location.hash")  # no time for traffic
        assert page.is_hidden("#compare-time-row")

        # The divider stands on the square's middle: west of it A's middle road, closed
        # (grey); east of it B's, open and busy (the v/c ramp).
        shot = tmp_path / "viewer-compare-traffic-swipe.png"
        pixels = traffic_viewer._shot(tab, shot)
        assert viewer.pixel_near(tab, pixels, *west, grey), shot
        assert not viewer.pixel_near(tab, pixels, *west, ramp), shot
        assert viewer.pixel_near(tab, pixels, *east, ramp), shot
        assert not viewer.pixel_near(tab, pixels, *east, grey), shot

        # The difference, B − A: the middle road gains the trips (red, the whole road), the
        # streets round the square lose them (blue).
        page.uncheck("#compare-swipe")
        page.check("#compare-diff")
        page.wait_for_function("location.hash.includes('swipe=off&diff=1')")
        assert "more traffic in B" in page.text_content("#compare-legend")
        shot = tmp_path / "viewer-compare-traffic-difference.png"
        pixels = traffic_viewer._shot(tab, shot)
        for place in (west, east):
            assert viewer.pixel_near(tab, pixels, *place, lambda r, g, b: (r - b > 100)
                                     & (r - g > 100)), shot
        assert any(viewer.pixel_near(tab, pixels, *place, lambda r, g, b: b - r > 100)
                   for place in round_), shot
        tab.clean()


def test_a_url_restores_infrastructure_relief_and_time(district, settings, tab, tmp_path):
    a, _ = _scenarios(district, settings)
    build_infrastructure(district, tilesets_folder(settings.storage.root), settings.storage.root)
    with district.begin() as conn:
        key = create_key(conn, "engineer", Role.viewer, Classification.internal)
    lon, lat = TO_LONLAT.transform(flood.CX, flood.CY)
    page = tab.page
    with serving(district, settings) as server:
        tab.open(f"{server}/#view=17/{lat}/{lon}/0/0&layers=roads")
        assert not page.is_checked("#terrain")
        page.click("#flood summary")  # the key, typed once for the tab
        page.fill("#flood-key", key)
        page.dispatch_event("#flood-key", "change")
        # Listed for the key before the link is pasted: applied earlier it would be dropped.
        page.wait_for_selector("#infrastructure-list li[data-tileset=drainage]")
        shared = (f"#view=17/{lat:.6f}/{lon:.6f}/20/50&layers=roads,buildings"
                  f"&scenario={a}&time=1800&infra=drainage&underground=1&hillshade=1&terrain=1")
        page.goto(f"{server}/{shared}")
        page.reload()
        # Terrain, relief, pipes and a pitched view: slow under software WebGL.
        page.wait_for_function(viewer.READY, timeout=180_000)
        assert page.evaluate("window.__cim.errors") == []
        page.wait_for_function("document.getElementById('flood-time-label').textContent"
                               " === '0:30'", timeout=120_000)
        page.wait_for_selector("#infrastructure-list li[data-tileset=drainage] input:checked")
        for toggle in ("#underground", "#hillshade", "#terrain"):
            assert page.is_checked(toggle), toggle
        assert page.evaluate("window.__cim.map.getTerrain()?.source") == "terrain"
        assert page.evaluate("Boolean(window.__cim.map.getLayer('hillshade'))")
        # Translucent surface: the underground mode is on.
        assert page.evaluate("window.__cim.map.getPaintProperty('roads', 'line-opacity')") \
            == 0.25
        hash_ = page.evaluate("location.hash")
        for part in (f"scenario={a}&time=1800", "infra=drainage", "underground=1",
                     "hillshade=1", "terrain=1"):
            assert part in hash_, hash_
        page.screenshot(path=str(tmp_path / "viewer-state-restored.png"))

        # Switched off in the page, the URL follows.
        page.uncheck("#terrain")
        page.uncheck("#underground")
        page.wait_for_function("!location.hash.includes('terrain=1')"
                               " && !location.hash.includes('underground=1')")
        assert page.evaluate("window.__cim.map.getTerrain()") is None
        tab.clean()
