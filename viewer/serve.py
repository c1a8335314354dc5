"""Serving the built viewer from the API, with no CDN: the page at the API's root for
browsers, its files under ``/viewer/``.

``/`` is also the OGC landing page, so it is negotiated: ``f=html`` or ``f=json`` decide when
given, else the ``Accept`` header (a browser's ``text/html`` gets the page; ``*/*``,
``application/json`` and a missing header keep the JSON that OGC clients, OWSLib and GDAL
expect). The negotiation is a small ASGI middleware in front of the app, so the landing
route stays a plain JSON route and every other path costs one string comparison.
"""

import importlib.util
import logging
from pathlib import Path

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders, QueryParams
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

DIST = Path(__file__).parent / "dist"
ASSETS = "/viewer"
PYDECK = "/viewer/pydeck"
HTML_TYPES = {"text/html", "application/xhtml+xml"}
JSON_TYPES = {"application/json", "application/geo+json"}
NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>Viewer not built</title>
<p>The web viewer has not been built. Run <code>make up</code>, or
<code>cd viewer &amp;&amp; npm ci &amp;&amp; npm run build</code>, then restart
<code>cim serve</code>. The API itself works: <a href="?f=json">landing page</a>,
<a href="collections">collections</a>.</p>"""


def quality(accept: str, types: set[str]) -> float:
    """The highest q an ``Accept`` header gives any of ``types`` by name (0 if none)."""
    best = 0.0
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        if media.lower() not in types:
            continue
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        best = max(best, q)
    return best


def wants_html(accept: str, f: str | None) -> bool:
    if f is not None:
        return f.lower() == "html"
    html = quality(accept, HTML_TYPES)
    return html > 0 and html > quality(accept, JSON_TYPES)


class ViewerAtRoot:
    """Answers ``GET /`` with the viewer's page when the client prefers HTML; otherwise
    passes the request on, adding ``Vary: Accept`` so caches keep the two apart."""

    def __init__(self, app: ASGIApp, dist: Path) -> None:
        self.app = app
        self.index = dist / "index.html"
        self.built = self.index.is_file()

    def page(self) -> HTMLResponse:
        headers = {"Vary": "Accept", "Cache-Control": "no-cache"}
        if not self.built:
            return HTMLResponse(NOT_BUILT, status_code=503, headers=headers)
        # Read per request: a rebuild (new hashed file names) shows without a restart. The
        # <base> makes the build's relative asset URLs point under /viewer/.
        html = self.index.read_text(encoding="utf-8")
        return HTMLResponse(html.replace("<head>", '<head>\n  <base href="viewer/">', 1),
                            headers=headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        root = scope.get("root_path", "")
        if (scope["type"] != "http" or scope["method"] not in ("GET", "HEAD")
                or scope["path"] not in ("/", f"{root}/")):
            await self.app(scope, receive, send)
            return
        f = QueryParams(scope["query_string"]).get("f")
        if wants_html(Headers(scope=scope).get("accept", ""), f):
            await self.page()(scope, receive, send)
            return

        async def send_with_vary(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("Vary", "Accept")
            await send(message)

        await self.app(scope, receive, send_with_vary)


def pydeck_bundle() -> Path | None:
    """The folder of the deck.gl bundle that the installed pydeck's pages load (from a CDN by
    default), or None without pydeck (the ``notebook`` extra). Found, not imported."""
    spec = importlib.util.find_spec("pydeck")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "nbextension" / "static"
    return folder if (folder / "index.js").is_file() else None


def mount_viewer(app: FastAPI, dist: Path = DIST) -> None:
    """The page at ``/`` (negotiated), the built files under ``/viewer/``, and pydeck's
    bundle under ``/viewer/pydeck/`` for notebooks (:mod:`viewer.notebook`)."""
    app.add_middleware(ViewerAtRoot, dist=dist)
    bundle = pydeck_bundle()
    if bundle is not None:  # before /viewer: the first mount that matches wins
        app.mount(PYDECK, StaticFiles(directory=bundle), name="pydeck")
    if (dist / "index.html").is_file():
        app.mount(ASSETS, StaticFiles(directory=dist), name="viewer")
    else:
        log.warning("the viewer is not built (%s missing): run `make up` or "
                    "`npm ci && npm run build` in viewer/", dist / "index.html")
