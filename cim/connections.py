"""Keep-alive connections spread evenly over ``cim serve``'s worker processes.

uvicorn's workers share one listening socket, and a worker's event loop accepts every
connection waiting when it looks. Clients that connect together and keep their connections
(a page's tile requests, an application's pool, bench/load.py's 64 clients) were split 38/26
between two workers and stayed so; the busier process then answered every request about
1.5 times slower, for as long as the connections lived.

Each worker counts its open connections in its own slot of a small file all of them map
(:class:`CountedHTTP`, the HTTP protocol ``cim serve`` gives uvicorn). A worker holding two
or more connections above the mean of the workers started answers its next request with
``Connection: close`` (:class:`ConnectionShare`), and the client's new connection goes to
whichever worker accepts it: repeated, the counts even out within a connection or two per
client. A worker sheds one connection at a time, the next only once that one has closed:
shedding on every response while over its share sent a burst of reconnects that the other
worker, idle in its accept loop, took all at once, and the counts swung between 20/44 and
43/21 with 46% of bench/load.py's responses closing their connections.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol

log = logging.getLogger(__name__)

COUNTS_FILE = "CIM_WORKER_CONNECTIONS_FILE"
"""The environment variable naming the shared file (set by ``cim serve`` for its workers)."""
SLOT = 8  # one signed 64-bit count per worker
SLACK = 2
"""Connections above the mean a worker keeps before it sheds one: fewer would move
connections back and forth between evenly loaded workers."""


@contextmanager
def shared_connections(workers: int) -> Iterator[None]:
    """With several workers, a file of one slot each, named in the environment they inherit
    (removed afterwards). A slot reads -1 until its worker has started."""
    if workers < 2:
        yield
        return
    with tempfile.NamedTemporaryFile(prefix="cim-connections-") as file:
        file.write(b"\xff" * (SLOT * workers))  # -1 in two's complement
        file.flush()
        os.environ[COUNTS_FILE] = file.name
        try:
            yield
        finally:
            del os.environ[COUNTS_FILE]


class Counts:
    """Every worker's open connections; this process writes only the slot it locked."""

    def __init__(self, path: str) -> None:
        # The file stays open for the process's life: closing it would drop the slot's lock.
        self._file = open(path, "r+b")  # noqa: SIM115
        fd = self._file.fileno()
        size = os.fstat(fd).st_size
        self.slot = next((i for i in range(size // SLOT) if _lock(fd, i)), None)
        self._counts = memoryview(mmap.mmap(fd, size)).cast("q")
        self._shedding = False  # a connection asked to close has not closed yet
        if self.slot is not None:  # a worker restarted in a dead one's slot starts afresh
            self._counts[self.slot] = 0

    def opened(self) -> None:
        if self.slot is not None:
            self._counts[self.slot] += 1

    def closed(self) -> None:
        if self.slot is not None:
            self._counts[self.slot] -= 1
        self._shedding = False  # any close will do: others are rare on kept-alive connections

    def shed(self) -> bool:
        """Whether to ask a connection to close: none asked is still open, and this process
        holds ``SLACK`` or more connections above the mean of the workers started (one still
        starting would take none of those it sheds). True marks one asked."""
        if self.slot is None or self._shedding:
            return False
        counts = self._counts.tolist()
        started = [n for n in counts if n >= 0]
        self._shedding = counts[self.slot] * len(started) >= sum(started) + SLACK * len(started)
        return self._shedding

    def kept(self) -> None:
        """The connection :meth:`shed` chose was not asked to close after all."""
        self._shedding = False


def _lock(fd: int, slot: int) -> bool:
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, SLOT, slot * SLOT)
        return True
    except OSError:  # another live worker holds it
        return False


@cache
def process_counts() -> Counts | None:
    """This process's view of the shared counts; None outside a multi-worker ``cim serve``."""
    path = os.environ.get(COUNTS_FILE)
    if not path:
        return None
    try:
        return Counts(path)
    except OSError as exc:  # serve on, unbalanced, rather than fail every connection
        log.warning("connection counts unavailable (%s): workers not evened out", exc)
        return None


class CountedHTTP(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's HTTP protocol, counting this worker's open connections."""

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        super().connection_made(transport)
        if (counts := process_counts()) is not None:
            counts.opened()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if (counts := process_counts()) is not None:
            counts.closed()


class ConnectionShare:
    """ASGI middleware: while this worker holds more than its share of the connections, a
    response asks its client to reconnect (``Connection: close``), one connection at a time."""

    def __init__(self, app: ASGIApp, counts: Counts) -> None:
        self.app, self.counts = app, counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.counts.shed():
            await self.app(scope, receive, send)
            return
        asked = False

        async def closing(message: Message) -> None:
            nonlocal asked
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
                asked = True
            await send(message)

        try:
            await self.app(scope, receive, closing)
        finally:
            if not asked:  # no response started (uvicorn answers the error itself)
                self.counts.kept()
