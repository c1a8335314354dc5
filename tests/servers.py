"""A real ``cim serve`` process on loopback for the tests that need one (third-party clients,
browsers, faults), started with the environment a test gives and stopped after it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import Engine

from cim.settings import Settings

CIM = str(Path(sys.executable).parent / "cim")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def cim_serve(env: dict[str, str], probe: str = "/health", timeout_s: float = 120.0,
              workers: int | None = None) -> Iterator[str]:
    """The server's base URL once ``probe`` answers 200; ``env`` is added to this process's."""
    port = free_port()
    processes = [] if workers is None else ["--workers", str(workers)]
    proc = subprocess.Popen([CIM, "serve", "--port", str(port), *processes],
                            env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{base}{probe}", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"cim serve exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"cim serve did not answer {probe} in {timeout_s:.0f} s")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def serving(engine: Engine, settings: Settings) -> Iterator[str]:
    """``cim serve`` over the test database and storage root (3D Tiles, scenario files)."""
    with cim_serve({"CIM_DATABASE_URL": engine.url.render_as_string(hide_password=False),
                    "CIM_STORAGE_ROOT": str(settings.storage.root)}) as base:
        yield base
