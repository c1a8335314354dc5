"""Benchmark: the web viewer in headless Chromium with software WebGL (llvmpipe), beside the
naive way, in one run (issue 7).

The generated city (``cim demo load --buildings N --no-real``) in the benchmark's own
cluster under ``bench/out/viewer`` (loaded once), its 3D Tiles built there, then for:

* **ours, 3D Tiles**: the viewer with the buildings' tileset (``Tile3DLayer``);
* **ours, extrusion**: the same viewer over a storage root without a tileset (MapLibre's
  ``fill-extrusion`` from the vector tiles: the fallback);
* **naive**: one deck.gl ``GeoJsonLayer`` extruding every building from a single GeoJSON
  (fetched whole from the feature API), drawn by pydeck's deck.gl bundle from the platform;

it prints the time from navigation to a finished render, the frame time at five fixed
camera positions from street level to the city overview (a forced redraw, then a 1-pixel
``readPixels`` that waits for the GPU), the page's JS heap, the WebGL renderer string and
the load average. Software WebGL is slow in absolute terms; compare the rows, and rerun
when the load average is high (the machine is shared).

    python bench/viewer.py [--buildings 5000] [--frames 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from cim.db.cluster import Cluster
from cim.db.engine import ensure_database, make_engine
from cim.schema.migrate import upgrade
from cim.settings import DatabaseSettings
from tiles.threed.api import tilesets_folder
from tiles.threed.build import build_buildings

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "out" / "viewer"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-quic",
        "--disable-dev-shm-usage", "--ignore-gpu-blocklist", "--enable-unsafe-swiftshader",
        "--use-gl=angle", "--use-angle=gl-egl"]
# zoom, pitch: street level to the city overview.
CAMERAS = [(18.0, 60.0), (17.0, 55.0), (16.0, 50.0), (15.0, 45.0), (13.5, 40.0)]
CIM = str(Path(sys.executable).parent / "cim")

# One forced frame, timed until the GPU is done (gl.finish() does not block in Chrome).
FRAME_JS = """async ([frames, kind]) => {
  const canvas = kind === 'ours' ? window.__cim.map.getCanvas()
    : document.querySelector('#deck canvas');
  const gl = canvas.getContext('webgl2');
  const pixel = new Uint8Array(4);
  const once = () => new Promise(resolve => {
    if (kind === 'ours') {
      window.__cim.map.once('render', resolve);
      window.__cim.map.triggerRepaint();
    } else {
      window.deck.redraw('bench');
      resolve();
    }
  });
  await once();  // warm
  const started = performance.now();
  for (let i = 0; i < frames; i++) {
    await once();
    gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, pixel);
  }
  return (performance.now() - started) / frames;
}"""
RENDERER_JS = """kind => {
  const canvas = kind === 'ours' ? window.__cim.map.getCanvas()
    : document.querySelector('#deck canvas');
  const gl = canvas.getContext('webgl2');
  return gl.getParameter(gl.getExtension('WEBGL_debug_renderer_info').UNMASKED_RENDERER_WEBGL);
}"""
NAIVE_DRAWN = ("() => window.deck && window.deck.props.layers.length > 0"
               " && window.deck.props.layers.every(l => l.isLoaded)")
NAIVE_PAGE = """<!doctype html><html><head><meta charset="utf-8">
<script src="/viewer/pydeck/index.js"></script>
<style>html, body, #deck {{ margin: 0; width: 100%; height: 100%; }}</style></head>
<body><div id="deck"></div><script>
window.deck = createDeck({{container: document.getElementById('deck'), jsonInput: {spec},
  tooltip: false, customLibraries: null, configuration: null}});
</script></body></html>"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(buildings: int) -> tuple[DatabaseSettings, Path]:
    """The cluster with the city loaded (once) and the storage root with its 3D Tiles."""
    folder = OUT / f"city-{buildings}"
    database = DatabaseSettings(data_dir=folder / "pgdata", port=0)
    Cluster(database.data_dir).start()
    ensure_database(database)
    engine = make_engine(database)
    upgrade(engine)
    storage = folder / "files"
    marker = folder / "loaded"
    env = environment(database, storage)
    if not marker.exists():
        print(f"loading the generated city ({buildings} buildings)...", flush=True)
        subprocess.run([CIM, "demo", "load", "--buildings", str(buildings), "--no-real"],
                       env=env, check=True)
        marker.touch()
    tileset = tilesets_folder(storage) / "buildings"
    if not (tileset / "tileset.json").exists():
        print("building the 3D Tiles...", flush=True)
        build_buildings(engine, tileset)
    engine.dispose()
    return database, storage


def environment(database: DatabaseSettings, storage: Path) -> dict[str, str]:
    url = make_engine(database).url.render_as_string(hide_password=False)
    return {**os.environ, "CIM_DATABASE_URL": url, "CIM_STORAGE_ROOT": str(storage)}


@contextmanager
def serving(database: DatabaseSettings, storage: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([CIM, "serve", "--port", str(port)],
                            env=environment(database, storage),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise RuntimeError("cim serve did not start")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def city_centre(base: str) -> tuple[float, float]:
    collection = httpx.get(f"{base}/collections/buildings").json()
    west, south, east, north = collection["extent"]["spatial"]["bbox"][0]
    return (west + east) / 2, (south + north) / 2


def all_buildings(base: str) -> bytes:
    """Every building as one GeoJSON, paged out of the feature API."""
    features: list[dict] = []
    url: str | None = f"{base}/collections/buildings/items?limit=10000"
    while url:
        page = httpx.get(url, timeout=300).json()
        features += page["features"]
        url = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
    return json.dumps({"type": "FeatureCollection", "features": features}).encode()


def heap_mb(page) -> float:
    return page.evaluate("performance.memory.usedJSHeapSize") / 1e6


def measure_ours(browser, base: str, centre: tuple[float, float], frames: int) -> dict:
    context = browser.new_context(viewport={"width": 1280, "height": 800},
                                  device_scale_factor=1)
    page = context.new_page()
    lon, lat = centre
    zoom, pitch = CAMERAS[-1]
    started = time.perf_counter()
    page.goto(f"{base}/#view={zoom}/{lat}/{lon}/0/{pitch}")
    page.wait_for_function("window.__cim && window.__cim.ready", timeout=600_000)
    first = time.perf_counter() - started
    times = []
    for zoom, pitch in CAMERAS:
        page.evaluate(f"window.__cim.ready = false; window.__cim.map.jumpTo("
                      f"{{center: [{lon}, {lat}], zoom: {zoom}, pitch: {pitch}, bearing: 0}})")
        page.wait_for_function("window.__cim.ready", timeout=600_000)
        times.append(page.evaluate(FRAME_JS, [frames, "ours"]))
    result = {"first": first, "frames": times, "heap": heap_mb(page),
              "renderer": page.evaluate(RENDERER_JS, "ours")}
    context.close()
    return result


def measure_naive(browser, base: str, centre: tuple[float, float], frames: int,
                  geojson: bytes) -> dict:
    context = browser.new_context(viewport={"width": 1280, "height": 800},
                                  device_scale_factor=1)
    lon, lat = centre
    zoom, pitch = CAMERAS[-1]
    spec = json.dumps({"initialViewState": {"longitude": lon, "latitude": lat, "zoom": zoom,
                                            "pitch": pitch, "bearing": 0},
                       "views": [{"@@type": "MapView", "controller": True}],
                       "layers": [{"@@type": "GeoJsonLayer", "id": "naive",
                                   "data": f"{base}/naive.geojson", "extruded": True,
                                   "getElevation": "@@=properties.height || 10",
                                   "getFillColor": [157, 183, 213]}]})
    context.route(f"{base}/naive.html", lambda route: route.fulfill(
        body=NAIVE_PAGE.format(spec=spec), content_type="text/html"))
    context.route(f"{base}/naive.geojson", lambda route: route.fulfill(
        body=geojson, content_type="application/geo+json"))
    page = context.new_page()
    started = time.perf_counter()
    page.goto(f"{base}/naive.html")
    page.wait_for_function(NAIVE_DRAWN, timeout=600_000)
    first = time.perf_counter() - started
    times = []
    for zoom, pitch in CAMERAS:
        page.evaluate(f"window.deck.setProps({{initialViewState: {{longitude: {lon}, "
                      f"latitude: {lat}, zoom: {zoom}, pitch: {pitch}, bearing: 0}}}})")
        page.wait_for_function(NAIVE_DRAWN, timeout=600_000)
        times.append(page.evaluate(FRAME_JS, [frames, "naive"]))
    result = {"first": first, "frames": times, "heap": heap_mb(page),
              "renderer": page.evaluate(RENDERER_JS, "naive")}
    context.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--buildings", type=int, default=5000)
    parser.add_argument("--frames", type=int, default=3)
    args = parser.parse_args()
    if shutil.which(CHROMIUM) is None:
        sys.exit("chromium not found: apt-get install chromium (Debian)")
    from playwright.sync_api import sync_playwright

    database, storage = prepare(args.buildings)
    without_tileset = OUT / "no-tileset"
    without_tileset.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        with sync_playwright() as p, serving(database, storage) as base, \
                serving(database, without_tileset) as fallback:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            centre = city_centre(base)
            geojson = all_buildings(base)
            rows.append(("ours, 3D Tiles", measure_ours(browser, base, centre, args.frames)))
            rows.append(("ours, extrusion",
                         measure_ours(browser, fallback, centre, args.frames)))
            rows.append(("naive GeoJsonLayer",
                         measure_naive(browser, base, centre, args.frames, geojson)))
            browser.close()
    finally:  # the city stays on disk for the next run; the server process does not
        Cluster(database.data_dir).stop()
    print(f"\n{args.buildings} buildings, {len(geojson) / 1e6:.0f} MB of GeoJSON for the "
          f"naive layer; renderer: {rows[0][1]['renderer']}")
    print(f"load average (1, 5, 15 min): {os.getloadavg()}")
    cameras = "  ".join(f"z{z:g}/p{pt:g}" for z, pt in CAMERAS)
    print(f"{'':20} {'first render':>12}  frame ms at {cameras}  {'JS heap':>8}")
    for name, r in rows:
        frames = "  ".join(f"{t:>9.0f}" for t in r["frames"])
        print(f"{name:20} {r['first']:>10.1f} s  {frames}  {r['heap']:>6.0f} MB")
    naive = rows[2][1]["frames"][-1]
    for name, r in rows[:2]:
        print(f"{name}: at the city overview the naive frame is {naive / r['frames'][-1]:.1f} "
              "times ours (target >= 5)")


if __name__ == "__main__":
    main()
