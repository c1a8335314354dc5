"""What the server says about itself: request ids, one structured log line per request,
Prometheus metrics, and logs that never show a password.

``RequestObserver`` is plain ASGI middleware (no per-request task or body copy): it gives
each request an id (the caller's ``X-Request-Id`` when it looks like one), times it, counts
it by route template and status, counts tile cache hits and misses from the ``X-Cache``
header the tile routes set, and logs it. Each app has its own metrics registry, so several
apps in one process (the tests) never mix their figures. Under ``cim serve --workers N`` each
worker process counts its own requests: ``shared_metrics`` gives them prometheus_client's
multiprocess mode (a folder of per-process files, ``PROMETHEUS_MULTIPROC_DIR``), and
``/metrics`` sums them, whichever worker answers the scrape.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import os
import re
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
log = logging.getLogger("cim.requests")

_GIVEN_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_PASSWORD_IN_URL = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]+):[^@\s]*@",
                              re.IGNORECASE)
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def redact(text: str) -> str:
    """``scheme://user:password@host`` with the password replaced by ``***``."""
    return _PASSWORD_IN_URL.sub(r"\g<scheme>:***@", text)


class Metrics:
    """The server's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("cim_http_requests", "HTTP requests answered.",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("cim_http_request_duration_seconds",
                                 "Time to answer an HTTP request.", ["method", "route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.tile_cache = Counter("cim_tile_cache_requests", "Tile requests by cache result.",
                                  ["result"], registry=self.registry)
        # prometheus_client chose per-process files at import if the folder was set then.
        self.multiprocess = MULTIPROC_DIR in os.environ

    def collected(self) -> CollectorRegistry:
        """What ``/metrics`` shows: this process's registry, or every worker's files summed."""
        if not self.multiprocess:
            return self.registry
        every = CollectorRegistry()
        MultiProcessCollector(every)
        return every


@contextmanager
def shared_metrics(workers: int) -> Iterator[None]:
    """With several workers, a folder their metrics go to (removed afterwards), set in the
    environment they inherit; a folder already configured is kept."""
    if workers < 2 or MULTIPROC_DIR in os.environ:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="cim-metrics-") as folder:
        os.environ[MULTIPROC_DIR] = folder
        try:
            yield
        finally:
            del os.environ[MULTIPROC_DIR]


class RequestObserver:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics
        # Ids unique across processes without a random draw per request: a random prefix
        # per process, then a counter.
        self.prefix, self.counter = secrets.token_hex(4), itertools.count()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _GIVEN_ID.match(given) else f"{self.prefix}{next(self.counter):08x}"
        token = request_id.set(rid)
        started = time.perf_counter()
        status, cache = 500, None

        async def observed_send(message: Message) -> None:
            nonlocal status, cache
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                cache = next((v for k, v in headers if k.lower() == b"x-cache"), None)
                headers.append((b"x-request-id", rid.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            elapsed = time.perf_counter() - started
            # The route template, not the path: /collections/{collectionId}/items, bounded.
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(scope["method"], route).observe(elapsed)
            if cache is not None:
                self.metrics.tile_cache.labels(cache.decode()).inc()
            if log.isEnabledFor(logging.INFO):
                # The record made directly: Logger.info would also look for the caller's
                # frame, a third of the line's cost on every request.
                log.handle(log.makeRecord(
                    log.name, logging.INFO, __file__, 0, "%s %s %d %.1f ms",
                    (scope["method"], scope["path"], status, elapsed * 1000), None,
                    extra={"route": route, "status": status,
                           "duration_ms": round(elapsed * 1000, 1)}))
            request_id.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, request id, message, extras."""

    FIELDS = ("route", "status", "duration_ms")

    def __init__(self) -> None:
        super().__init__()
        self._second, self._time = -1, ""  # the last second formatted, reused within it

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second, self._time = second, self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
        entry = {"time": self._time,
                 "level": record.levelname, "logger": record.name,
                 "request_id": request_id.get(), "message": redact(record.getMessage())}
        entry.update({k: getattr(record, k) for k in self.FIELDS if hasattr(record, k)})
        if record.exc_info:
            entry["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": JsonFormatter}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["stderr"], "level": "INFO"},
    # uvicorn's loggers go through the root handler; its access log is ours (one line each).
    "loggers": {name: {"handlers": [], "propagate": True}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
}
"""``logging.config.dictConfig`` for ``cim serve``; uvicorn applies it in every worker."""
