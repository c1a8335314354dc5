"""The viewer's traffic panel in a real headless Chromium against a real `cim serve` with its
scenario worker: a traffic scenario launched from the page over the tiny square of streets
of the traffic tests (the fast middle road closed), its links drawn with widths by volume and
colours by volume/capacity before and after, its totals, emergency routes clicked on the map,
and the URL's scenario restored on reload."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from cim.access import Role, create_key
from layers.model import Classification
from tests import test_traffic_scenarios as traffic
from tests import test_viewer as viewer
from tests.servers import serving

browser, tab = viewer.browser, viewer.tab


@pytest.fixture
def square(engine, tmp_path):
    """The traffic tests' square of streets with a fast middle road across it."""
    return traffic.load_ladder(engine, tmp_path)


def _shot(tab, path) -> np.ndarray:
    tab.page.evaluate("window.__cim.ready = false; window.__cim.settle()")
    tab.wait_render()
    tab.page.screenshot(path=str(path))
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def purple(r, g, b):  # an emergency route, #7b3294
    return (abs(r - 123) < 25) & (g < 80) & (abs(b - 148) < 25)


def ramp(r, g, b):  # a colour of the v/c ramp (green to dark red), not grey or purple
    return (np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b) > 60) \
        & ~purple(r, g, b)


def grey(r, g, b):  # a closed link
    return (abs(r - 90) < 12) & (abs(g - 90) < 12) & (abs(b - 90) < 12)


def test_a_traffic_scenario_runs_from_the_panel_with_links_totals_and_routes(square, settings,
                                                                            tab, tmp_path):
    with square.begin() as conn:
        key = create_key(conn, "analyst", Role.analyst, Classification.internal)
    lon, lat = traffic.lonlat(300, 300)
    middle, south, north = (traffic.lonlat(*p) for p in ((300, 300), (300, 0), (300, 600)))
    page = tab.page
    with serving(square, settings) as server:
        # MapLibre's roads and own traffic layer off: what is coloured is the panel's drawing.
        tab.open(f"{server}/#view=16/{lat}/{lon}/0/0&layers=buildings")
        page.click("#traffic summary")
        page.fill("#traffic-key", key)
        page.dispatch_event("#traffic-key", "change")
        page.fill("#traffic-close", "t:m")
        page.select_option("#traffic-grid", "300")
        od = tmp_path / "od.csv"
        od.write_text("origin,destination,trips\n" + "".join(
            f"{o},{d},{n}\n" for o, d, n in traffic.OD))
        page.set_input_files("#traffic-od", str(od))
        page.uncheck("#traffic-view")  # the whole square, not just what the view shows
        page.click("#traffic-run")
        page.wait_for_function("document.querySelector('#traffic-status').textContent"
                               " === 'Done: traffic scenario 1'", timeout=120_000)
        page.wait_for_function("location.hash.includes('traffic=1')")

        # Totals: the closure costs vehicle-hours, every trip still arrives.
        assert page.eval_on_selector_all("#traffic-totals tr[data-total=trips] td",
                                         "cells => cells.map(c => c.textContent)") \
            == ["1,500", "1,500"]
        hours = [float(v.replace(",", "")) for v in page.eval_on_selector_all(
            "#traffic-totals tr[data-total=vehicle_hours] td",
            "cells => cells.map(c => c.textContent)")]
        assert hours[1] > hours[0] > 0
        assert page.eval_on_selector_all("#traffic-totals tr[data-total=unserved_trips] td",
                                         "cells => cells.map(c => c.textContent)") == ["0", "0"]

        # After: the middle road closed (grey), its flow round the square (green, wide).
        pixels = _shot(tab, tmp_path / "viewer-traffic-after.png")
        assert viewer.pixel_near(tab, pixels, *middle, grey)
        assert not viewer.pixel_near(tab, pixels, *middle, ramp)
        assert viewer.pixel_near(tab, pixels, *south, ramp) \
            or viewer.pixel_near(tab, pixels, *north, ramp)
        # Before: the middle road carried the trips.
        page.check("input[name=traffic-when][value=before]")
        pixels = _shot(tab, tmp_path / "viewer-traffic-before.png")
        assert viewer.pixel_near(tab, pixels, *middle, ramp)
        wide = ramp(*np.moveaxis(pixels, -1, 0))
        at = page.evaluate(f"window.__cim.project({middle[0]}, {middle[1]})")
        x, y = round(at["x"]), round(at["y"])
        assert wide[y - 20:y + 21, x].sum() >= 8  # the busiest link is drawn widest

        # An emergency route from the square's west side to its east side, on the scenario's
        # network: round the closed middle road.
        page.click("#traffic-start")
        for end in (traffic.lonlat(0, 300), traffic.lonlat(600, 300)):
            point = page.evaluate(f"window.__cim.project({end[0]}, {end[1]})")
            page.mouse.click(point["x"], point["y"])
        assert page.is_hidden("#record")  # the clicks placed points, they picked nothing
        page.click("#traffic-route")
        page.wait_for_selector("#traffic-routes li")
        text = page.text_content("#traffic-routes li")
        assert re.fullmatch(r"1: \d+\.\d min, 1\.\d\d km", text), text
        pixels = _shot(tab, tmp_path / "viewer-traffic-route.png")
        assert viewer.pixel_near(tab, pixels, *south, purple) \
            or viewer.pixel_near(tab, pixels, *north, purple)

        # The URL reopens the scenario.
        page.reload()
        tab.wait_render()
        page.wait_for_function("document.querySelector('#traffic-status').textContent"
                               " === 'Done: traffic scenario 1'")
        assert page.evaluate("document.getElementById('traffic').open") is True
        page.wait_for_selector("#traffic-totals tr[data-total=vehicle_km]")
        tab.clean()
