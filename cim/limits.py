"""What one client or one request may cost the server, and what one imported archive may
unpack to.

* Rate limits: a token bucket per API key (per client address without a valid key) in each
  server process; past it a request gets 429 with ``Retry-After``. Buckets live in memory, so
  ``cim serve --workers N`` counts per process (a key may reach N times the rate).
* Requests in flight: each server process runs a few at once and queues the rest, first
  come first served, each for a bounded time (:class:`InFlightLimit`).
* Request bodies: counted as they arrive; past ``max_body_bytes`` the request gets 413
  before more than that is held in memory.
* Statement timeouts: a request's queries run under PostgreSQL's ``statement_timeout``; a
  cancelled query is a 503 naming the limit (see :func:`database_failure`).
* Archives: a zipped Shapefile is read in place through GDAL's ``/vsizip`` (nothing is
  written to disk, so member names cannot escape a folder, and a zip inside it is not
  opened), but a small zip can unpack to gigabytes: :func:`check_archive` refuses one
  before GDAL reads it, and :func:`check_raster` a raster too big to read whole.
"""

# No postponed annotations: FastAPI resolves the wrapped dependency at definition time.
import asyncio
import math
import struct
import time
import zipfile
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, BinaryIO

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy.exc import DBAPIError

from cim.access import Principal
from cim.ingest.errors import ReaderError
from cim.observability import ASGIApp, Message, Receive, Scope, Send
from cim.settings import LimitsSettings
from layers.auth import _api_key, _bearer
from layers.errors import Unauthorized

MAX_BUCKETS = 100_000
"""Buckets kept before idle (full) ones are dropped: bounds memory under many addresses."""


class RateLimited(Exception):
    """Too many requests from one key or address (HTTP 429, with Retry-After)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}


class PayloadTooLarge(Exception):
    """A request body above the server's limit (HTTP 413)."""


class ArchiveRefused(ReaderError):
    """An input that would unpack to too much, or names paths outside itself."""


class TokenBuckets:
    """Token buckets by name: ``burst`` requests at once, then ``rate`` per second.

    Used from the event loop only (the dependency is async), so it needs no lock."""

    def __init__(self, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, at)

    def take(self, name: str) -> float:
        """0 if the request may go ahead (and counts it), else the seconds until it may."""
        now = self.clock()
        tokens, at = self._buckets.get(name, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[name] = (tokens, now)
            return (1.0 - tokens) / self.rate
        if len(self._buckets) >= MAX_BUCKETS and name not in self._buckets:
            self._prune(now)
        self._buckets[name] = (tokens - 1.0, now)
        return 0.0

    def _prune(self, now: float) -> None:
        full = [n for n, (t, at) in self._buckets.items()
                if t + (now - at) * self.rate >= self.burst]
        for name in full or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[name]


def rate_limited(principal: Callable[..., Any],
                 limits: LimitsSettings) -> Callable[..., Awaitable[Principal]]:
    """The principal dependency (called with its own arguments), charging each request to
    its key's bucket, or its client address's when it has no key or a key that is refused:
    guessing keys is limited like anything else.

    Every data route depends on the principal, so wrapping it limits them all, while
    ``/health``, ``/ready`` and ``/metrics`` stay free for probes."""
    buckets = TokenBuckets(limits.requests_per_second, limits.burst)

    def charge(name: str, whom: str) -> None:
        wait = buckets.take(name)
        if wait > 0:
            raise RateLimited(
                f"more than {limits.requests_per_second:g} requests per second (bursts of "
                f"{limits.burst}) {whom}; try again in {math.ceil(wait)} s",
                retry_after=math.ceil(wait))

    async def limited(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        api_key: Annotated[str | None, Depends(_api_key)],
    ) -> Principal:
        client = request.client.host if request.client else "unknown"
        try:
            who = await principal(request, bearer, api_key)
        except Unauthorized:
            charge(f"address:{client}", f"from {client}")
            raise
        if who.anonymous:
            charge(f"address:{client}", f"from {client}")
        else:
            charge(f"key:{who.name}", f"for the key {who.name!r}")
        return who

    return limited


class BodyLimit:
    """ASGI middleware: a request body past ``max_bytes`` raises :class:`PayloadTooLarge`
    from ``receive``, inside the app, so the app's error table answers it (413)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        received = 0

        def refuse(size: str) -> PayloadTooLarge:
            return PayloadTooLarge(f"the request body is {size} bytes; this server takes at "
                                   f"most {self.max_bytes:,}")

        async def counted() -> Message:
            nonlocal received
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise refuse(f"{int(declared):,}")
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise refuse(f"more than {self.max_bytes:,}")
            return message

        await self.app(scope, counted, send)


class InFlightLimit:
    """ASGI middleware: at most ``max_requests`` requests run at once in this process; the
    next ones wait their turn (first come, first served), each for at most ``max_wait_s``,
    then go ahead anyway.

    Every request on the event loop shares it: a request that waits for PostgreSQL several
    times (a write) waits behind every request ready to run, each time. Few at once keep
    those turns short, so the time a busy server adds is paid once, on arrival, and about
    alike by every kind of request, instead of once per round trip. The bounded wait keeps
    requests stuck in the database (a lock, a query near its timeout) from holding the
    others back for longer than that."""

    def __init__(self, app: ASGIApp, max_requests: int, max_wait_s: float) -> None:
        self.app, self.max_requests, self.max_wait_s = app, max_requests, max_wait_s
        # Made on the loop that serves: a semaphore waited on from another loop raises (one
        # app under successive test clients, each with its loop).
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.max_requests <= 0:
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(self.max_requests))
        slots, held = self._slots[1], True
        if slots.locked():
            try:
                async with asyncio.timeout(self.max_wait_s):
                    await slots.acquire()
            except TimeoutError:
                held = False
        else:
            await slots.acquire()
        try:
            await self.app(scope, receive, send)
        finally:
            if held:
                slots.release()


def database_failure(exc: DBAPIError, timeout_ms: int) -> tuple[str, dict[str, str]]:
    """A user-safe message (never the SQL) and headers for a database error answered 503.

    A statement past the timeout is the server protecting the other requests: the client
    may ask for less. Anything else means the database is out of reach for now."""
    if getattr(exc.orig, "sqlstate", None) == "57014":  # query_canceled: statement_timeout
        return (f"the query took longer than this server allows "
                f"({timeout_ms:,} ms); ask for less (a smaller bbox, a "
                "simpler filter, a lower limit)"), {}
    return "the database is not reachable at the moment; try again shortly", \
        {"Retry-After": "5"}


def check_archive(path: Path, limits: LimitsSettings) -> None:
    """Refuse a zip that unpacks to more than the limits allow, or names paths that leave it.

    The sizes a zip declares cannot be trusted: GDAL's ``/vsizip`` inflates each member to
    the end of its deflate stream whatever its headers say (measured: a member declared as
    100 bytes gave GDAL 2 MB). So every member is inflated here, in bounded steps and
    without keeping the output, and what it really unpacks to is counted."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ReaderError(f"{path.name}: not a readable zip archive ({exc})") from None
    if len(members) > limits.max_archive_members:
        raise ArchiveRefused(f"{path.name} holds {len(members):,} files; at most "
                             f"{limits.max_archive_members:,} are accepted "
                             "(CIM_LIMITS_MAX_ARCHIVE_MEMBERS)")
    for member in members:
        parts = PurePosixPath(member.filename.replace("\\", "/")).parts
        if member.filename.startswith(("/", "\\")) or ".." in parts \
                or (parts and ":" in parts[0]):
            raise ArchiveRefused(f"{path.name} names a file outside the archive "
                                 f"({member.filename!r}): refused")
    packed = max(path.stat().st_size, 1)
    # Past this many bytes the archive is refused either way: stop counting there.
    cap = min(limits.max_unpacked_bytes, max(int(packed * limits.max_unpack_ratio), 1_000_000))
    unpacked = 0
    with path.open("rb") as f:
        for member in members:
            unpacked += _inflated_size(f, member, path.name, cap - unpacked + 1)
            if unpacked > cap:
                break
    if unpacked > limits.max_unpacked_bytes:
        raise ArchiveRefused(f"{path.name} unpacks to more than "
                             f"{limits.max_unpacked_bytes:,} bytes, the most accepted "
                             "(CIM_LIMITS_MAX_UNPACKED_BYTES)")
    if unpacked > 1_000_000 and unpacked / packed > limits.max_unpack_ratio:
        raise ArchiveRefused(f"{path.name} unpacks more than "
                             f"{limits.max_unpack_ratio:g} times its size (a zip bomb?), the "
                             "most accepted (CIM_LIMITS_MAX_UNPACK_RATIO)")


def _inflated_size(f: BinaryIO, member: zipfile.ZipInfo, name: str, cap: int) -> int:
    """What one member really unpacks to, counted up to just past ``cap``."""
    f.seek(member.header_offset)
    header = f.read(30)
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise ArchiveRefused(f"{name}: {member.filename!r} has no local header: refused")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    f.seek(member.header_offset + 30 + name_length + extra_length)
    if member.compress_type == zipfile.ZIP_STORED:
        return member.compress_size
    if member.compress_type != zipfile.ZIP_DEFLATED:
        raise ArchiveRefused(f"{name}: {member.filename!r} uses a compression GDAL does not "
                             "read (only stored and deflated members are accepted)")
    inflater, total, pending = zlib.decompressobj(-zlib.MAX_WBITS), 0, b""
    while not inflater.eof and total <= cap:
        if not pending:
            pending = f.read(1 << 16)
            if not pending:
                break
        total += len(inflater.decompress(pending, 1 << 20))  # at most 1 MiB held at once
        pending = inflater.unconsumed_tail
    return total


def check_raster(name: str, width: int, height: int, limits: LimitsSettings) -> None:
    """Refuse a raster too big to read whole: a compressed GeoTIFF of zeros can be a few
    kilobytes on disk and terabytes in memory."""
    if width * height > limits.max_raster_cells:
        raise ArchiveRefused(f"{name} has {width:,} x {height:,} cells; at most "
                             f"{limits.max_raster_cells:,} are accepted "
                             "(CIM_LIMITS_MAX_RASTER_CELLS)")


def error_headers(exc: Exception) -> dict[str, str] | None:
    """Headers an error carries for its response (Retry-After on a 429)."""
    headers: Any = getattr(exc, "headers", None)
    return dict(headers) if headers else None
