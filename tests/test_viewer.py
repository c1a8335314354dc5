"""The web viewer: `/` negotiated between the page and the OGC landing JSON, and the page
itself in a real headless Chromium against a real `cim serve` (software WebGL, llvmpipe; see
the browser recipe in the shared notes), with every request checked to stay on loopback."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from urllib.parse import unquote, urlparse

import geopandas as gpd
import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from pyproj import Transformer
from shapely.geometry import LineString, Point, box

from cim.history import update_object
from cim.ingest.observations import import_observations
from cim.ingest.pipeline import ImportOptions, import_file
from tests import test_features_api as features_api
from tests.test_import_formats import X0, Y0, write
from viewer.serve import DIST, mount_viewer, wants_html

CHROMIUM = "/usr/bin/chromium"
# llvmpipe through ANGLE/EGL: 3-4 times faster than SwiftShader, and needs the blocklist off.
ARGS = ["--no-sandbox", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-quic",
        "--disable-dev-shm-usage", "--ignore-gpu-blocklist", "--enable-unsafe-swiftshader",
        "--use-gl=angle", "--use-angle=gl-egl"]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
READY = "() => window.__cim && (window.__cim.ready || window.__cim.errors.length > 0)"
TO_LONLAT = Transformer.from_crs("EPSG:4547", "EPSG:4326", always_xy=True)

# The feature API tests' fixtures: the 25 office buildings, a test client, a live server.
city, client, server = features_api.city, features_api.client, features_api.server


def lonlat(x: float, y: float) -> tuple[float, float]:
    """Longitude and latitude of a point given in metres from the fixtures' origin."""
    return TO_LONLAT.transform(X0 + x, Y0 + y)


def centre(i: int) -> tuple[float, float]:
    """The middle of the city fixture's building ``i`` (20 x 15 m, every 30 m eastwards)."""
    return lonlat(30 * i + 10, 7.5)


ROAD, LAKE, GAUGE = (150, -20), (250, 80), (300, -40)


@pytest.fixture
def scene(city, tmp_path):
    """Beside the 25 office buildings: a primary road south of them, a lake north of them
    and a rain gauge with one reading."""
    for layer, properties, geometry in [
        ("roads", {"rid": "R1", "highway": "primary", "name": "Test Road"},
         LineString([(X0 - 50, Y0 + ROAD[1]), (X0 + 800, Y0 + ROAD[1])])),
        ("water_bodies", {"rid": "L1", "kind": "lake", "name": "Test Lake"},
         box(X0 + 100, Y0 + 40, X0 + 400, Y0 + 120)),
        ("sensors", {"rid": "S1", "kind": "rain_gauge", "unit": "mm", "name": "Gauge 1"},
         Point(X0 + GAUGE[0], Y0 + GAUGE[1])),
    ]:
        frame = gpd.GeoDataFrame({k: [v] for k, v in properties.items()}, geometry=[geometry],
                                 crs="EPSG:4547")
        import_file(city, write(frame, tmp_path / f"{layer}.gpkg", "GPKG"),
                    ImportOptions(layer=layer, id_field="rid", source="t"), city_crs=4547)
    readings = tmp_path / "readings.csv"
    readings.write_text("sensor_id,observed_at,value\nS1,2026-07-01T08:00:00+08:00,12.5\n")
    import_observations(city, readings, source="t")
    return city


BROWSER_HTML = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize(("accept", "f", "html"), [
    (BROWSER_HTML, None, True),
    ("application/json", None, False),
    ("*/*", None, False),
    ("", None, False),
    ("text/html;q=0.5, application/json", None, False),
    ("application/json", "html", True),
    (BROWSER_HTML, "json", False),
])
def test_negotiation(accept, f, html):
    assert wants_html(accept, f) is html


def test_root_serves_the_page_to_browsers_and_json_to_the_rest(client):
    if not (DIST / "index.html").is_file():
        pytest.fail("viewer/dist is not built: `make test` builds it (npm ci && npm run build)")
    page = client.get("/", headers={"Accept": BROWSER_HTML})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<base href="viewer/">' in page.text and "Accept" in page.headers["vary"]
    script = page.text.split('<script type="module" crossorigin src="./')[1].split('"')[0]
    asset = client.get(f"/viewer/{script}")
    assert asset.status_code == 200 and "javascript" in asset.headers["content-type"]
    for headers, params in [({"Accept": "application/json"}, {}), ({}, {}),
                            ({"Accept": BROWSER_HTML}, {"f": "json"})]:
        landing = client.get("/", headers=headers, params=params)
        assert landing.headers["content-type"] == "application/json"
        assert "Accept" in landing.headers["vary"]
        assert {"service-desc", "data"} <= {link["rel"] for link in landing.json()["links"]}
    assert client.get("/", params={"f": "html"}).headers["content-type"].startswith("text/html")


def test_an_unbuilt_viewer_says_how_to_build_it(tmp_path):
    app = FastAPI()
    app.get("/")(lambda: {"landing": True})
    mount_viewer(app, tmp_path)  # no index.html there
    with TestClient(app) as unbuilt:
        page = unbuilt.get("/", headers={"Accept": BROWSER_HTML})
        assert page.status_code == 503 and "npm ci" in page.text
        assert unbuilt.get("/").json() == {"landing": True}


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if shutil.which(CHROMIUM) is None:
        pytest.fail("chromium not found: `make test` installs it (Debian package chromium)")
    if not (DIST / "index.html").is_file():
        pytest.fail("viewer/dist is not built: `make test` builds it (npm ci && npm run build)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


class Page:
    """A fresh page that records console errors and aborts (and records) every request
    that would leave the machine."""

    def __init__(self, browser, locale: str = "en-US") -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 800},
                                           device_scale_factor=1, locale=locale)
        self.external: list[str] = []
        self.console: list[str] = []
        self.expected_failures: tuple[str, ...] = ()
        """Ends of URLs a test makes fail on purpose (a refused request)."""
        self.context.route("**/*", self._only_loopback)
        self.page = self.context.new_page()
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda e: self.console.append(str(e)))
        # Requests not yet answered: said when a render never finishes.
        self.in_flight: set[str] = set()
        self.page.on("request", lambda r: self.in_flight.add(r.url))
        self.page.on("requestfinished", lambda r: self.in_flight.discard(r.url))
        self.page.on("requestfailed", lambda r: self.in_flight.discard(r.url))

    def _on_console(self, message) -> None:
        # Chromium logs every 4xx answer as an error: only those a test asks for are allowed.
        url = message.location.get("url", "")
        if message.type == "error" and not (
                message.text.startswith("Failed to load resource")
                and url.endswith(self.expected_failures)):
            self.console.append(f"{message.text} ({url})")

    def _only_loopback(self, route) -> None:
        url = route.request.url
        if url.startswith(("data:", "blob:")) or urlparse(url).hostname in LOOPBACK:
            route.continue_()
        else:
            self.external.append(url)
            route.abort()

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.wait_render()

    def wait_render(self) -> None:
        try:
            self.page.wait_for_function(READY, timeout=45_000)
        except PlaywrightTimeout:
            pending = self.page.evaluate("window.__cim?.pending?.() ?? 'the page has not started'")
            raise AssertionError(f"no finished render in 45 s; still loading: {pending}; "
                                 f"requests unanswered: {sorted(self.in_flight)}") from None
        assert self.page.evaluate("window.__cim.errors") == []

    def clean(self) -> None:
        assert self.console == [] and self.external == []


@pytest.fixture
def tab(browser) -> Iterator[Page]:
    page = Page(browser)
    yield page
    page.context.close()


def pixel_near(tab: Page, pixels: np.ndarray, lon: float, lat: float,
               test) -> bool:
    """Whether ``test(r, g, b)`` holds for a pixel within 2 px of where a place is drawn."""
    point = tab.page.evaluate(f"window.__cim.project({lon}, {lat})")
    x, y = round(point["x"]), round(point["y"])
    window = pixels[y - 2:y + 3, x - 2:x + 3]
    return bool(test(window[..., 0], window[..., 1], window[..., 2]).any())


def click(tab: Page, lon: float, lat: float, expected_id: str) -> None:
    point = tab.page.evaluate(f"window.__cim.project({lon}, {lat})")
    tab.page.mouse.click(point["x"], point["y"])
    tab.page.wait_for_function("id => document.querySelector('#record .object-id')"
                               "?.textContent === id", arg=expected_id, timeout=20_000)


def test_viewer_draws_the_city_and_picks_objects(scene, server, tab, tmp_path):
    with scene.begin() as conn:  # a second version, for the record's history
        update_object(conn, "buildings", "t:B03", {"height": 33.0})
    lon, lat = centre(3)
    tab.open(f"{server}/#view=17.2/{lat}/{lon + 0.0008}/0/50")

    renderer = tab.page.evaluate(
        "() => { const gl = window.__cim.map.getCanvas().getContext('webgl2');"
        " return gl.getParameter(gl.getExtension('WEBGL_debug_renderer_info')"
        ".UNMASKED_RENDERER_WEBGL); }")
    assert "llvmpipe" in renderer  # the fast software path, not a silent fallback

    # The panel lists exactly the catalog layers an anonymous reader may see.
    listed = tab.page.eval_on_selector_all(
        "#layers [data-layer]",
        "rows => rows.map(r => [r.dataset.layer, r.querySelector('.title').textContent])")
    collections = {c["id"]: c["title"]
                   for c in httpx.get(f"{server}/collections").json()["collections"]}
    assert dict(listed) == collections and "buildings" in collections
    assert "drainage_pipes" not in collections

    # Drawn in the catalog's colours: office buildings #9db7d5 (walls shaded darker), the
    # lake #8cc4e8, the primary road #f6d27a, over the background #f2efe9.
    shot = tmp_path / "viewer.png"
    tab.page.screenshot(path=str(shot))
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert ((pixels[..., 2] - pixels[..., 0] > 20).sum() > 5000), f"few coloured pixels: {shot}"
    assert pixel_near(tab, pixels, lon, lat, lambda r, g, b: b - r > 20), f"no building: {shot}"
    assert pixel_near(tab, pixels, *lonlat(*LAKE),
                      lambda r, g, b: (abs(r - 0x8c) < 25) & (abs(b - 0xe8) < 25)), shot
    assert pixel_near(tab, pixels, *lonlat(*ROAD), lambda r, g, b: r - b > 60), shot

    # A sensor shows its latest reading on hover.
    gauge = tab.page.evaluate(f"window.__cim.project({lonlat(*GAUGE)[0]}, {lonlat(*GAUGE)[1]})")
    tab.page.mouse.move(gauge["x"], gauge["y"])
    tab.page.wait_for_selector("#tooltip:not([hidden])")
    assert tab.page.text_content("#tooltip").startswith("Gauge 1: 12.5 mm")

    # Clicks open full records from the feature API, with the history of versioned layers.
    click(tab, lon, lat, "t:B03")
    tab.page.wait_for_selector("#record .history li:nth-child(2)")
    assert tab.page.text_content("#record tr[data-key=height] td") == "33"
    assert "height: 13 → 33" in tab.page.text_content("#record .history")
    assert "select=buildings:t%3AB03" in tab.page.evaluate("location.hash")
    tab.page.screenshot(path=str(tmp_path / "viewer-picked.png"))
    click(tab, *lonlat(*ROAD), "t:R1")
    assert tab.page.text_content("#record tr[data-key=road_class] td") == "primary"
    click(tab, *lonlat(*LAKE), "t:L1")
    click(tab, *lonlat(*GAUGE), "t:S1")
    assert tab.page.text_content("#record tr[data-key=latest_value] td") == "12.5"
    tab.clean()


def test_viewer_restores_a_shared_view_and_finds_by_position(server, tab, tmp_path):
    tab.open(f"{server}/")  # no hash: the home view, written into the URL to share
    assert tab.page.evaluate("location.hash").startswith("#view=")
    assert tab.page.evaluate("location.pathname") == "/"
    lon, lat = centre(5)
    shared = (f"#view=14.6/{lat:.6f}/{lon:.6f}/30/40"
              f"&layers=water_bodies,buildings,sensors&select=buildings:t%3AB07")
    tab.page.goto(f"{server}/{shared}")  # a pasted link: applied in place
    tab.page.wait_for_function("document.querySelector('#record .object-id')?.textContent"
                               " === 't:B07'")
    tab.page.reload()  # and restored from the URL when the page loads
    tab.wait_render()
    view = tab.page.evaluate("(() => { const m = window.__cim.map, c = m.getCenter();"
                             " return [m.getZoom(), c.lat, c.lng, m.getBearing(), m.getPitch()];"
                             " })()")
    assert np.allclose(view, [14.6, lat, lon, 30, 40], atol=1e-5)
    shown = tab.page.eval_on_selector_all("#layers input:checked",
                                          "boxes => boxes.map(b => b.closest('li').dataset.layer)")
    assert shown == ["water_bodies", "buildings", "sensors"]
    assert tab.page.evaluate("window.__cim.map.getLayoutProperty('roads', 'visibility')") == "none"
    tab.page.wait_for_selector("#record .object-id")
    assert tab.page.text_content("#record .object-id") == "t:B07"
    assert unquote(tab.page.evaluate("location.hash")).startswith("#view=14.6/")
    tab.page.click("#dimension")  # to the flat map, and the URL follows
    tab.page.wait_for_function("location.hash.split('&')[0].endsWith('/30/0')")

    # Zoom 14 tiles carry no text id for buildings: a click finds the object by position.
    point = tab.page.evaluate(f"window.__cim.project({lon}, {lat})")
    tab.page.mouse.click(point["x"], point["y"])
    tab.page.wait_for_function("document.querySelector('#record .object-id')?.textContent"
                               " === 't:B05'", timeout=20_000)
    assert "Found by position" in tab.page.text_content("#record")
    tab.page.screenshot(path=str(tmp_path / "viewer-by-position.png"))
    tab.clean()
