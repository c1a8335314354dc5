"""The viewer's flood panel in a real headless Chromium against a real `cim serve` with its
scenario worker: the key's 401/403 explained, a small design storm launched from the page
over the tiny bowl district of the scenario tests, its progress followed, then the depth
map tiles, the flooded road and building, the hotspot list and the URL's scenario and
time, restored on reload."""

from __future__ import annotations

import numpy as np
from PIL import Image
from pyproj import Transformer

from cim.access import Role
from tests import test_flood_scenarios as flood
from tests import test_viewer as viewer
from tests.servers import serving

district, keys, browser, tab = flood.district, flood.keys, viewer.browser, viewer.tab
TO_LONLAT = Transformer.from_crs("EPSG:4547", "EPSG:4326", always_xy=True)


def test_a_flood_scenario_runs_from_the_panel_and_its_url_restores_it(district, keys, settings,
                                                                       tab, tmp_path):
    lon, lat = TO_LONLAT.transform(flood.CX, flood.CY)
    page = tab.page
    tab.expected_failures = ("/scenarios/flood",)  # the 401 and 403 asked for below
    with serving(district, settings) as server:
        tab.open(f"{server}/#view=17.6/{lat}/{lon}/0/0&layers=roads,buildings")
        page.click("#flood summary")
        page.select_option("#flood-return", "100")
        page.fill("#flood-duration", "1")
        page.select_option("#flood-cell", "8")
        page.select_option("#flood-every", "30")

        # The area: a box dragged on the map, around the bowl.
        page.check("input[name=flood-area][value=box]")
        corners = [TO_LONLAT.transform(flood.CX + dx, flood.CY + dy)
                   for dx, dy in ((-100, 80), (100, -80))]
        (x0, y0), (x1, y1) = [(p["x"], p["y"]) for p in (
            page.evaluate(f"window.__cim.project({c[0]}, {c[1]})") for c in corners)]
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2)
        page.mouse.move(x1, y1)
        page.mouse.up()
        note = page.text_content("#flood-area-note")
        drawn = [float(v) for v in note.removeprefix("Area: ").replace(" – ", ", ").split(", ")]
        (west, north), (east, south) = corners
        assert np.allclose(drawn, [west, south, east, north], atol=2e-5), note

        # Without a key, and with a key that may not run scenarios: said in words.
        page.click("#flood-run")
        page.wait_for_function("document.querySelector('#flood-status').textContent"
                               ".includes('needs an API key')")
        page.fill("#flood-key", keys[Role.viewer]["X-API-Key"])
        page.dispatch_event("#flood-key", "change")
        page.click("#flood-run")
        page.wait_for_function("document.querySelector('#flood-status').textContent"
                               ".includes('may not run scenarios')")
        assert page.evaluate("sessionStorage.getItem('cim.apiKey')") \
            == keys[Role.viewer]["X-API-Key"]

        page.fill("#flood-key", keys[Role.analyst]["X-API-Key"])
        page.dispatch_event("#flood-key", "change")
        page.click("#flood-run")
        page.wait_for_function("document.querySelector('#flood-status').textContent"
                               " === 'Done: scenario 1'", timeout=120_000)
        page.wait_for_selector("#flood-hotspots li button")
        page.wait_for_function("location.hash.includes('scenario=1&time=max')")
        page.evaluate("window.__cim.ready = false; window.__cim.settle()")
        tab.wait_render()
        shot = tmp_path / "viewer-flood.png"
        page.screenshot(path=str(shot))
        pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
        # Water in the bowl (the depth ramp's blues), the closed road through it in red.
        deep = lambda r, g, b: (b - r > 60) & (b > 120)  # noqa: E731
        assert viewer.pixel_near(tab, pixels, lon + 0.00005, lat + 0.00005, deep), shot
        road = TO_LONLAT.transform(flood.X0 + 40, flood.CY)
        assert viewer.pixel_near(tab, pixels, *road,
                                 lambda r, g, b: (r > 180) & (g < 80) & (b < 80)), shot
        assert page.text_content("#flood-hotspots").startswith("#1:")
        assert page.evaluate("document.getElementById('flood-time').max") == "2"

        # The slider moves through time; the URL follows and restores it.
        page.fill("#flood-time", "0")
        page.dispatch_event("#flood-time", "input")
        page.wait_for_function("location.hash.includes('scenario=1&time=1800')")
        assert page.text_content("#flood-time-label") == "0:30"
        page.click("#flood-play")  # steps on by itself, until paused
        page.wait_for_function("document.getElementById('flood-time-label').textContent"
                               " === '1:00'")
        page.click("#flood-play")
        page.fill("#flood-time", "0")
        page.dispatch_event("#flood-time", "input")
        page.wait_for_function("location.hash.includes('scenario=1&time=1800')")
        page.reload()
        tab.wait_render()
        page.wait_for_function("document.getElementById('flood-time-label').textContent"
                               " === '0:30'")
        assert page.evaluate("document.getElementById('flood').open") is True
        page.screenshot(path=str(tmp_path / "viewer-flood-restored.png"))

        # A hotspot flies there.
        page.click("#flood-hotspots li button")
        page.wait_for_function("window.__cim.map.getZoom() > 17.9", timeout=20_000)
        tab.clean()
