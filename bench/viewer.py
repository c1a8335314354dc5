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
``readPixels`` that waits for the GPU), the page's JS heap and the resident memory of the
whole browser (its own Chromium per row: renderer and GPU processes), the WebGL renderer
string of each row and the load average; for the 3D Tiles, what each camera drew (tiles
selected, triangles). Software WebGL is slow in absolute terms; compare the rows, and rerun
when the load average is high (the machine is shared). A row whose page does not finish
(the naive layer at city scale may not) is printed with what it reached and its memory.

    python bench/viewer.py [--buildings 5000] [--frames 3] [--timeout 600] [--no-naive]

With ``--demo`` it measures instead the first render of the demo city as ``cim demo load``
makes it (the district and the real pieces), at the viewer's home view, with and without
its 3D Tiles, ``--runs`` times each in a fresh browser (the first run meets the server's
cold tile cache), with what the page fetched: the target is under 5 s.

    python bench/viewer.py --demo [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psutil

from cim.db.cluster import Cluster
from cim.db.engine import ensure_database, make_engine
from cim.schema.migrate import upgrade
from cim.settings import DatabaseSettings
from tiles.threed.api import tilesets_folder
from tiles.threed.build import LEAF_SIZE, build_buildings

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
# What the 3D Tiles drew at this camera: the tiles selected and their triangles.
DRAWN_JS = """() => {
  const deck = window.__cim.map._controls.find(c => c._deck)._deck;
  const layer = deck.layerManager.getLayers().find(l => l.id === 'buildings-3d');
  const tileset = layer && layer.state.tileset3d;
  if (!tileset) return null;
  let triangles = 0;
  for (const tile of tileset.selectedTiles) {
    const primitive = tile.content?.gltf?.meshes?.[0]?.primitives?.[0];
    triangles += (primitive?.indices?.value?.length || 0) / 3;
  }
  return {tiles: tileset.selectedTiles.length, triangles};
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


def prepare(buildings: int | None) -> tuple[DatabaseSettings, Path]:
    """The cluster with the city loaded (once) and the storage root with its 3D Tiles:
    ``buildings`` generated ones, or the demo city (None)."""
    folder = OUT / (f"city-{buildings}" if buildings else "demo")
    database = DatabaseSettings(data_dir=folder / "pgdata", port=0)
    Cluster(database.data_dir).start()
    ensure_database(database)
    engine = make_engine(database)
    upgrade(engine)
    storage = folder / "files"
    marker = folder / "loaded"
    env = environment(database, storage)
    if not marker.exists():
        print(f"loading the {'generated' if buildings else 'demo'} city...", flush=True)
        scale = ["--buildings", str(buildings), "--no-real"] if buildings else []
        subprocess.run([CIM, "demo", "load", *scale], env=env, check=True)
        marker.touch()
    # Incremental: a no-op when the tileset is up to date, a rebuild of the tiles whose
    # buildings moved after a change of LEAF_SIZE or of how tiles are drawn.
    print("building the 3D Tiles (only what changed)...", flush=True)
    built = build_buildings(engine, tilesets_folder(storage) / "buildings")
    print(f"  {built.tiles} tiles (leaf size {LEAF_SIZE}), {built.written} written in "
          f"{built.seconds:.0f} s", flush=True)
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


def all_buildings(base: str, out: Path) -> Path:
    """Every building as one GeoJSON file (made once), paged out of the feature API and
    written page by page: 470,000 features held as Python objects would take gigabytes."""
    if out.exists():
        return out
    partial = out.with_suffix(".part")
    url: str | None = f"{base}/collections/buildings/items?limit=10000"
    with partial.open("w", encoding="utf-8") as handle:
        handle.write('{"type": "FeatureCollection", "features": [')
        first = True
        while url:
            page = httpx.get(url, timeout=600).json()
            for feature in page["features"]:
                handle.write(("" if first else ",") + json.dumps(feature))
                first = False
            url = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
        handle.write("]}")
    partial.rename(out)
    return out


@contextmanager
def serving_file(path: Path) -> Iterator[str]:
    """The file's URL on a loopback server of its own (with CORS for the page's origin):
    hundreds of MB are too much to hand through Playwright's request routing."""

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(path.parent), **kwargs)

        def end_headers(self) -> None:
            self.send_header("Access-Control-Allow-Origin", "*")
            super().end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{path.name}"
    finally:
        server.shutdown()


def heap_mb(page) -> float:
    return page.evaluate("performance.memory.usedJSHeapSize") / 1e6


def browser_mb() -> float:
    """Resident memory of every Chromium process this benchmark started (one browser runs at
    a time), MB."""
    processes = psutil.Process().children(recursive=True)
    total = 0
    for process in processes:
        try:
            if "chrom" in process.name():
                total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 1e6


@contextmanager
def chromium(playwright) -> Iterator:
    """A browser of its own for one row, so that its memory is that row's."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
    try:
        yield browser
    finally:
        browser.close()


def measure(page, kind: str, frames: int, timeout_s: float, move, drawn: str,
            first_page) -> dict:
    """Open with ``first_page()``, then frame times at every camera (``move(zoom, pitch)``,
    then wait for ``drawn``); what was reached if the page does not finish in time."""
    result: dict = {"frames": [], "drawn": [], "failed": None}
    try:
        started = time.perf_counter()
        first_page()
        page.wait_for_function(drawn, timeout=timeout_s * 1000)
        result["first"] = time.perf_counter() - started
        result["renderer"] = page.evaluate(RENDERER_JS, kind)
        for zoom, pitch in CAMERAS:
            move(zoom, pitch)
            page.wait_for_function(drawn, timeout=timeout_s * 1000)
            result["frames"].append(page.evaluate(FRAME_JS, [frames, kind]))
            if kind == "ours":
                result["drawn"].append(page.evaluate(DRAWN_JS))
        result["heap"] = heap_mb(page)
    except Exception as error:  # a timeout, or the page crashed (out of memory)
        result["failed"] = f"{type(error).__name__}: {str(error).splitlines()[0]}"
    result["memory"] = browser_mb()
    return result


def measure_ours(playwright, base: str, centre: tuple[float, float], frames: int,
                 timeout_s: float) -> dict:
    with chromium(playwright) as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800}, device_scale_factor=1)
        lon, lat = centre
        zoom, pitch = CAMERAS[-1]

        def move(zoom: float, pitch: float) -> None:
            page.evaluate(f"window.__cim.ready = false; window.__cim.map.jumpTo("
                          f"{{center: [{lon}, {lat}], zoom: {zoom}, pitch: {pitch}, bearing: 0}})")

        return measure(page, "ours", frames, timeout_s, move,
                       "window.__cim && window.__cim.ready",
                       lambda: page.goto(f"{base}/#view={zoom}/{lat}/{lon}/0/{pitch}"))


def measure_naive(playwright, base: str, centre: tuple[float, float], frames: int,
                  geojson: str, timeout_s: float) -> dict:
    lon, lat = centre
    zoom, pitch = CAMERAS[-1]
    spec = json.dumps({"initialViewState": {"longitude": lon, "latitude": lat, "zoom": zoom,
                                            "pitch": pitch, "bearing": 0},
                       "views": [{"@@type": "MapView", "controller": True}],
                       "layers": [{"@@type": "GeoJsonLayer", "id": "naive",
                                   "data": geojson, "extruded": True,
                                   "getElevation": "@@=properties.height || 10",
                                   "getFillColor": [157, 183, 213]}]})
    with chromium(playwright) as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 800},
                                      device_scale_factor=1)
        context.route(f"{base}/naive.html", lambda route: route.fulfill(
            body=NAIVE_PAGE.format(spec=spec), content_type="text/html"))
        page = context.new_page()

        def move(zoom: float, pitch: float) -> None:
            page.evaluate(f"window.deck.setProps({{initialViewState: {{longitude: {lon}, "
                          f"latitude: {lat}, zoom: {zoom}, pitch: {pitch}, bearing: 0}}}})")

        return measure(page, "naive", frames, timeout_s, move, NAIVE_DRAWN,
                       lambda: page.goto(f"{base}/naive.html"))


# What the page fetched before it was ready: requests, bytes, the slowest and the last.
FETCHED_JS = """() => {
  const entries = performance.getEntriesByType('resource');
  const short = e => e.name.replace(location.origin, '');
  const slowest = [...entries].sort((a, b) => b.duration - a.duration).slice(0, 3);
  const last = [...entries].sort((a, b) => b.responseEnd - a.responseEnd).slice(0, 3);
  return {requests: entries.length,
    kB: entries.reduce((sum, e) => sum + e.transferSize, 0) / 1e3,
    loaded: performance.getEntriesByType('navigation')[0].loadEventEnd,
    slowest: slowest.map(e => `${short(e)} ${e.duration.toFixed(0)} ms`),
    last: last.map(e => `${short(e)} at ${e.responseEnd.toFixed(0)} ms`)};
}"""


def first_render(playwright, base: str, timeout_s: float) -> dict:
    """Navigation to a finished render at the home view, in a fresh browser."""
    with chromium(playwright) as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800}, device_scale_factor=1)
        started = time.perf_counter()
        page.goto(f"{base}/")
        page.wait_for_function("window.__cim && window.__cim.ready", timeout=timeout_s * 1000)
        seconds = time.perf_counter() - started
        return {"seconds": seconds, **page.evaluate(FETCHED_JS),
                "renderer": page.evaluate(RENDERER_JS, "ours")}


def demo_city(runs: int, timeout_s: float) -> None:
    from playwright.sync_api import sync_playwright

    database, storage = prepare(None)
    without_tileset = OUT / "no-tileset"
    without_tileset.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p, serving(database, storage) as base, \
                serving(database, without_tileset) as fallback:
            for name, url in [("3D Tiles", base), ("extrusion", fallback)]:
                for run in range(1, runs + 1):
                    r = first_render(p, url, timeout_s)
                    print(f"demo city, {name}, run {run}: first render {r['seconds']:.2f} s "
                          f"(target < 5 s; load event at {r['loaded'] / 1e3:.2f} s), "
                          f"{r['requests']} requests, {r['kB']:.0f} kB; "
                          f"load average {os.getloadavg()}", flush=True)
                    print(f"  slowest: {'; '.join(r['slowest'])}")
                    print(f"  last: {'; '.join(r['last'])}")
            print(f"renderer: {r['renderer']}")
    finally:
        Cluster(database.data_dir).stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--buildings", type=int, default=5000)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds a page may take to draw one camera")
    parser.add_argument("--no-naive", action="store_true",
                        help="leave out the naive layer (minutes at city scale)")
    parser.add_argument("--demo", action="store_true",
                        help="only the demo city's first render (cim demo load)")
    parser.add_argument("--runs", type=int, default=3, help="first renders per row (--demo)")
    args = parser.parse_args()
    if shutil.which(CHROMIUM) is None:
        sys.exit("chromium not found: apt-get install chromium (Debian)")
    if args.demo:
        demo_city(args.runs, args.timeout)
        return
    from playwright.sync_api import sync_playwright

    database, storage = prepare(args.buildings)
    without_tileset = OUT / "no-tileset"
    without_tileset.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        with sync_playwright() as p, serving(database, storage) as base, \
                serving(database, without_tileset) as fallback:
            centre = city_centre(base)
            geojson = OUT / f"city-{args.buildings}" / "naive.geojson"
            if not args.no_naive:
                all_buildings(base, geojson)
            rows.append(("ours, 3D Tiles",
                         measure_ours(p, base, centre, args.frames, args.timeout)))
            rows.append(("ours, extrusion",
                         measure_ours(p, fallback, centre, args.frames, args.timeout)))
            if not args.no_naive:
                with serving_file(geojson) as url:
                    rows.append(("naive GeoJsonLayer",
                                 measure_naive(p, base, centre, args.frames, url,
                                               args.timeout)))
    finally:  # the city stays on disk for the next run; the server process does not
        Cluster(database.data_dir).stop()
    report(args.buildings, 0 if args.no_naive else geojson.stat().st_size, rows,
           args.timeout)


def timed_out(row: dict) -> bool:
    """Whether the row stopped waiting for a frame (rather than crashing)."""
    return (row["failed"] or "").startswith("TimeoutError")


def report(buildings: int, geojson_bytes: int, rows: list[tuple[str, dict]],
           timeout_s: float) -> None:
    naive = (f", {geojson_bytes / 1e6:.0f} MB of GeoJSON for the naive layer"
             if geojson_bytes else "")
    print(f"\n{buildings} buildings{naive}")
    for name, r in rows:
        print(f"renderer, {name}: {r.get('renderer', 'not reached')}")
    print(f"load average (1, 5, 15 min): {os.getloadavg()}")
    cameras = "  ".join(f"{f'z{z:g}/p{pt:g}':>9}" for z, pt in CAMERAS)
    print(f"{'':20} {'first render':>12}  frame ms at {cameras}  {'JS heap':>8}  "
          f"{'browser RSS':>11}")
    for name, r in rows:
        # A camera the page did not draw within the timeout took longer: a lower bound.
        slow = timed_out(r)
        first = (f"{r['first']:>10.1f} s" if "first" in r
                 else f"{f'> {timeout_s:g} s':>12}" if slow else f"{'-':>12}")
        frames = "  ".join([f"{t:>9.0f}" for t in r["frames"]] + [
            f"{f'> {timeout_s * 1e3:g}':>9}" if slow else f"{'-':>9}"
            for _ in CAMERAS[len(r["frames"]):]])
        heap = f"{r['heap']:>6.0f} MB" if "heap" in r else f"{'-':>9}"
        print(f"{name:20} {first}  {'':12}{frames}  {heap}  {r['memory']:>8.0f} MB")
        if r["failed"]:
            print(f"{'':20} did not finish: {r['failed']}")
    drawn = rows[0][1]["drawn"]
    if drawn:
        print("3D Tiles drawn per camera (tiles, thousand triangles): " + ", ".join(
            f"{d['tiles']}, {d['triangles'] / 1e3:.0f}k" if d else "-" for d in drawn))
    if len(rows) < 3:
        return
    naive = rows[2][1]
    for name, r in rows[:2]:
        if len(r["frames"]) < len(CAMERAS):
            print(f"{name}: no ratio (it did not draw every camera)")
            continue
        ratios = []
        for i, ours in enumerate(r["frames"]):
            if i < len(naive["frames"]):
                ratios.append(f"{naive['frames'][i] / ours:.1f}")
            elif timed_out(naive):  # its frame took longer than the timeout
                ratios.append(f"> {timeout_s * 1e3 / ours:.0f}")
            else:
                ratios.append("-")
        print(f"{name}: the naive frame over ours at each camera: {', '.join(ratios)} "
              "(target >= 5)")


if __name__ == "__main__":
    main()
