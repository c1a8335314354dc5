"""The compare panel's "city now | planned" mode in a real headless Chromium against a real
`cim serve`: over the row of office buildings of the viewer tests, one planned and one under
construction; left of the swipe's divider only the buildings standing today, right of it the
planned ones too, highlighted by status; the divider moved by a pasted link; all restored
from the URL; and the map as it was once cleared. With a 3D Tiles tileset (whose glb tiles
carry no status) the vector tiles' extrusion stands in while the mode is on."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cim.history import update_object
from tests import test_viewer as viewer
from tests.servers import serving
from tiles.threed.api import tilesets_folder
from tiles.threed.build import build_buildings

city, server, browser, tab = viewer.city, viewer.server, viewer.browser, viewer.tab
PLANNED, BUILDING = 5, 7  # B05 is planned, B07 under construction; B06 stands between them
NO_EXTRUSION = '["==",["literal",1],0]'  # buildings3d.js's filter while the 3D Tiles draw


def office(r, g, b):
    """The catalog's office colour #9db7d5 (walls and roofs shaded)."""
    return (b - r > 20) & (b - g > 10)


def planned(r, g, b):
    """planned.js's magenta (214, 51, 132), lit."""
    return (r - g > 60) & (b - g > 30)


def building(r, g, b):
    """planned.js's orange for under construction (245, 130, 32), lit."""
    return (r - b > 80) & (g - b > 40)


def empty(r, g, b):
    """The pale background #f2efe9: nothing drawn."""
    return (r > 225) & (g > 220) & (b > 210)


def _shot(tab, path) -> np.ndarray:
    tab.page.evaluate("window.__cim.ready = false; window.__cim.settle()")
    tab.wait_render()
    tab.page.screenshot(path=str(path))
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def _at(tab, pixels, i, test) -> bool:
    """Whether the middle of building ``i`` is drawn as ``test`` says (all of its 5 x 5 px)."""
    point = tab.page.evaluate(f"window.__cim.project({viewer.centre(i)[0]}, "
                              f"{viewer.centre(i)[1]})")
    x, y = round(point["x"]), round(point["y"])
    window = pixels[y - 2:y + 3, x - 2:x + 3]
    return bool(test(window[..., 0], window[..., 1], window[..., 2]).all())


def _plan(city) -> None:
    with city.begin() as conn:
        update_object(conn, "buildings", f"t:B{PLANNED:02d}", {"status": "planned"})
        update_object(conn, "buildings", f"t:B{BUILDING:02d}", {"status": "under_construction"})


def test_the_city_now_left_of_the_divider_and_as_planned_right_of_it(city, server, tab,
                                                                      tmp_path):
    _plan(city)
    lon, lat = viewer.centre(6)
    page = tab.page
    tab.open(f"{server}/#view=17.5/{lat}/{lon}/0/0")
    pixels = _shot(tab, tmp_path / "viewer-planned-before.png")
    for i in (4, PLANNED, BUILDING, 8):  # every building drawn alike: no status shown
        assert _at(tab, pixels, i, office), i

    page.click("#compare summary")
    page.click("#compare-planned")
    page.wait_for_function("document.querySelector('#compare-status').textContent"
                           " === 'The city now (left) and as planned (right)'")
    page.wait_for_function("location.hash.includes('compare=planned&swipe=0.5')")
    assert page.text_content("#swipe .side.a") == "Now"
    assert page.text_content("#swipe .side.b") == "Planned"
    assert page.text_content("#compare-summary") == "Planned buildings1Under construction1"
    assert page.is_hidden("#compare-diff-row") and page.is_hidden("#compare-time-row")
    shot = tmp_path / "viewer-planned-swipe.png"
    pixels = _shot(tab, shot)
    # The divider stands on B06: the planned B05 left of it is not there yet, the
    # building site B07 right of it is orange, and the buildings standing today stay.
    assert _at(tab, pixels, PLANNED, empty), shot
    assert _at(tab, pixels, BUILDING, building), shot
    for i in (3, 4, 8, 9):  # B06 is under the divider's grip
        assert _at(tab, pixels, i, office), (i, shot)

    # A pasted link moves the divider to a tenth of the width: B05 is right of it now.
    page.goto(f"{server}/#view=17.5/{lat}/{lon}/0/0&compare=planned&swipe=0.1")
    page.wait_for_function("document.getElementById('swipe').style.left === '10%'")
    shot = tmp_path / "viewer-planned-moved.png"
    pixels = _shot(tab, shot)
    assert _at(tab, pixels, PLANNED, planned), shot
    assert _at(tab, pixels, BUILDING, building), shot

    # The URL restores the mode and the divider.
    page.reload()
    tab.wait_render()
    page.wait_for_function("document.querySelector('#compare-status').textContent"
                           " === 'The city now (left) and as planned (right)'")
    assert page.evaluate("document.getElementById('swipe').style.left") == "10%"
    shot = tmp_path / "viewer-planned-restored.png"
    pixels = _shot(tab, shot)
    assert _at(tab, pixels, PLANNED, planned), shot

    # Cleared: every building is the map's own again, in its use's colour.
    page.click("#compare-clear")
    page.wait_for_function("!location.hash.includes('compare=')")
    assert page.is_hidden("#swipe")
    shot = tmp_path / "viewer-planned-cleared.png"
    pixels = _shot(tab, shot)
    for i in (4, PLANNED, BUILDING, 8):
        assert _at(tab, pixels, i, office), (i, shot)
    tab.clean()


def test_the_extrusion_stands_in_for_the_3d_tiles_while_planned_is_shown(city, settings, tab,
                                                                         tmp_path):
    _plan(city)
    build_buildings(city, tilesets_folder(settings.storage.root) / "buildings", leaf_size=4)
    lon, lat = viewer.centre(6)
    page = tab.page
    filter_ = "JSON.stringify(window.__cim.map.getFilter('buildings'))"
    with serving(city, settings) as server:
        tab.open(f"{server}/#view=17.5/{lat}/{lon}/0/0&compare=planned&swipe=0.5")
        page.wait_for_function("document.querySelector('#compare-status').textContent"
                               " === 'The city now (left) and as planned (right)'")
        assert "status" in page.evaluate(filter_)
        shot = tmp_path / "viewer-planned-3dtiles.png"
        pixels = _shot(tab, shot)
        assert _at(tab, pixels, PLANNED, empty), shot  # the 3D Tiles would draw it
        assert _at(tab, pixels, BUILDING, building), shot
        assert _at(tab, pixels, 4, office) and _at(tab, pixels, 8, office), shot

        page.click("#compare-clear")
        page.wait_for_function(f"{filter_} === {NO_EXTRUSION!r}")
        shot = tmp_path / "viewer-planned-3dtiles-cleared.png"
        pixels = _shot(tab, shot)
        for i in (4, PLANNED, BUILDING, 8):  # the glb tiles again, in their use's colour
            assert _at(tab, pixels, i, office), (i, shot)
        tab.clean()


def test_planned_buildings_are_picked_hidden_with_the_layer_and_kept_out_below_zoom_15(
        city, server, tab, tmp_path):
    _plan(city)
    lon, lat = viewer.centre(6)
    page = tab.page
    tab.open(f"{server}/#view=17.5/{lat}/{lon}/0/0&compare=planned&swipe=0.1")
    page.wait_for_function("document.querySelector('#compare-status').textContent"
                           " === 'The city now (left) and as planned (right)'")
    # A click on a planned (deck.gl) building opens its record like any building's.
    viewer.click(tab, *viewer.centre(PLANNED), f"t:B{PLANNED:02d}")
    assert page.text_content("#record tr[data-key=status] td") == "planned"
    viewer.click(tab, *viewer.centre(BUILDING), f"t:B{BUILDING:02d}")
    assert page.text_content("#record tr[data-key=status] td") == "under_construction"
    page.keyboard.press("Escape")

    # The panel's buildings toggle hides the planned ones too, and brings them back.
    page.uncheck("#layers [data-layer=buildings] input")
    shot = tmp_path / "viewer-planned-hidden.png"
    pixels = _shot(tab, shot)
    for i in (4, PLANNED, BUILDING):
        assert _at(tab, pixels, i, empty), (i, shot)
    page.check("#layers [data-layer=buildings] input")
    shot = tmp_path / "viewer-planned-shown.png"
    pixels = _shot(tab, shot)
    assert _at(tab, pixels, PLANNED, planned) and _at(tab, pixels, 4, office), shot

    # Below zoom 15 the tiles carry the status too: left of the divider B05 is not built yet.
    page.goto(f"{server}/#view=14.9/{lat}/{lon}/0/0&compare=planned&swipe=0.5")
    page.wait_for_function("location.hash.startsWith('#view=14.9')")
    shot = tmp_path / "viewer-planned-z14.png"
    pixels = _shot(tab, shot)
    assert _at(tab, pixels, PLANNED, empty), shot
    assert _at(tab, pixels, BUILDING, building), shot
    assert _at(tab, pixels, 4, office), shot
    tab.clean()
