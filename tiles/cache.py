"""The server-side tile cache: gzip-compressed tiles in a byte-bounded LRU in front of a folder.

Tiles are compressed once, when the cache is filled, so a hit costs no CPU beyond the copy.
Keys are (tileset, tile matrix set, z, x, y); a tileset is one collection, or a base map named
after the exact set of layers it draws (readers with different clearances get different base
maps). Eviction takes lon/lat envelopes and the layers a change touched and drops, at every
zoom held, the tiles within the tile buffer of each envelope (``tiles.invalidation`` feeds it).
An evicted tile leaves the disk but stays in memory marked stale, with the time it became
so: ``in_memory`` and ``get`` never return it, ``stale_copy`` does, for the tile routes to
answer at once while one render refreshes it (stale-while-revalidate, ``tiles.api``).

A render that started before an eviction covering its tile is not stored as fresh
(``generation`` and the log of recent evictions), so a tile drawn from data read just before
a change can never outlive the change's eviction, while evictions elsewhere (under a stream
of edits, several a second) leave it alone. It still replaces an older stale copy in
memory, stale from that eviction on: under a stream of edits a render is rarely fresh on
arrival, and readers of the stale copy then see the newer one. Until the invalidation feed
has caught up with the database the cache is inactive: reads miss and nothing is stored.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import threading
import time
from collections import OrderedDict, defaultdict, deque
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import morecantile
from sqlalchemy import Engine

from cim.db.engine import autocommit
from layers.model import LayerDefinition
from layers.responses import digest_of
from tiles.grid import GRIDS, BBox, TileRange, grid, project, tile_range
from tiles.mvt import BUFFER, EXTENT, render_tile

ENTRY_OVERHEAD = 200
"""Bytes an entry costs beyond its tile (key, dict slot), so empty tiles count too."""
DIRECT_UNLINK = 16
"""Ranges up to this many tiles are removed by path; larger ones by listing the folders."""
LAYERS_FILE = "layers.json"
EVICTIONS_KEPT = 1024
"""Recent evictions remembered for staleness checks; a render older than all of them is
refused (renders take milliseconds, evictions come a few a second at most)."""


@dataclass(frozen=True)
class Tileset:
    """What a tile holds: its name in keys and paths, and the layers drawn in it."""

    name: str
    layers: frozenset[str]

    @classmethod
    def collection(cls, layer_id: str) -> Tileset:
        return cls(layer_id, frozenset({layer_id}))

    @classmethod
    def base_map(cls, layer_ids: Iterable[str]) -> Tileset:
        layers = frozenset(layer_ids)
        digest = hashlib.blake2b(",".join(sorted(layers)).encode(), digest_size=6).hexdigest()
        # A hyphen never occurs in a layer id, so a base map never collides with a collection.
        return cls(f"base-{digest}", layers)


@dataclass(frozen=True)
class TileKey:
    tileset: str
    tms: str
    z: int
    x: int
    y: int


def compress(tile: bytes) -> bytes:
    """gzip with a fixed mtime: the same tile always gives the same bytes (and ETag). Level 1
    costs a sixth of level 9's time for 11 % more bytes (a dense zoom-13 tile: 5.8 ms against
    38.5 ms); every cache miss pays it, so it is worth the bytes."""
    return gzip.compress(tile, compresslevel=1, mtime=0) if tile else b""


class TileCache:
    """Compressed tiles in memory (LRU, bounded in bytes) and, when attached, in a folder."""

    def __init__(self, memory_bytes: int) -> None:
        self.memory_bytes = memory_bytes
        self.folder: Path | None = None
        self.active = False
        self.generation = 0
        self._floor = 0  # renders started before this generation are never stored
        # (generation, monotonic time, layers, tile ranges) of each recent eviction
        self._evictions: deque[tuple[int, float, frozenset[str], _Ranges]] = deque()
        self._lock = threading.Lock()
        self._memory: OrderedDict[TileKey, bytes] = OrderedDict()
        self._born: dict[TileKey, int] = {}  # the generation each held tile was drawn from
        self._digests: dict[TileKey, str] = {}  # ETag digests of held tiles, made once
        self._stale_since: dict[TileKey, float] = {}  # monotonic time of the first eviction
        self._size = 0
        self._index: dict[tuple[str, str, int], set[tuple[int, int]]] = defaultdict(set)
        self._tilesets: dict[str, frozenset[str]] = {}
        self._described: set[str] = set()
        self._disk: dict[str, frozenset[str] | None] = {}  # tilesets in the folder, by name
        self._disk_inodes: dict[str, int] = {}  # and their folders' inodes
        self._disk_listed: int | None = None  # the folder's mtime when it was listed

    def attach(self, folder: Path | None) -> None:
        """Use ``folder`` as the disk tier (None: memory only); memory starts empty."""
        with self._lock:
            self.folder = folder
            self._memory.clear()
            self._born.clear()
            self._digests.clear()
            self._stale_since.clear()
            self._index.clear()
            self._size = 0
            self._described.clear()
            self._disk, self._disk_inodes, self._disk_listed = {}, {}, None
            self.generation += 1
            self._floor = self.generation
            self._evictions.clear()

    def _path(self, key: TileKey) -> Path:
        assert self.folder is not None
        return self.folder / key.tileset / key.tms / str(key.z) / str(key.x) / f"{key.y}.mvt.gz"

    def stale(self, key: TileKey, layers: frozenset[str], generation: int) -> bool:
        """Whether a tile of ``layers`` read or rendered from ``generation`` on may be out of
        date: an eviction since then covered it (or is no longer remembered)."""
        with self._lock:
            return self._stale_at(key, layers, generation) is not None

    def _stale_at(self, key: TileKey, layers: frozenset[str], generation: int) -> float | None:
        """When the first eviction after ``generation`` covering the tile came (-inf when no
        longer remembered), or None if none did."""
        if generation < self._floor:
            return -math.inf
        first = None
        for at, when, evicted, ranges in reversed(self._evictions):
            if at <= generation:
                break
            if evicted & layers and _covers(ranges, key):
                first = when
        return first

    def in_memory(self, key: TileKey) -> bytes | None:
        """The tile if the memory tier holds it fresh (no disk access: safe on an event
        loop)."""
        if not self.active:
            return None
        with self._lock:
            data = self._memory.get(key)
            if data is None or key in self._stale_since:
                return None
            self._memory.move_to_end(key)
            return data

    def stale_copy(self, key: TileKey) -> tuple[bytes, float] | None:
        """The evicted tile memory still holds and how many seconds ago it became stale
        (None if it holds none, or holds it fresh)."""
        if not self.active:
            return None
        with self._lock:
            since = self._stale_since.get(key)
            if since is None:
                return None
            self._memory.move_to_end(key)
            return self._memory[key], time.monotonic() - since

    def get(self, key: TileKey) -> bytes | None:
        if not self.active:
            return None
        data = self.in_memory(key)
        if data is not None:
            return data
        with self._lock:
            generation = self.generation
        if self.folder is None:
            return None
        try:
            data = self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        with self._lock:
            # Not evicted while we read it (a tileset not seen yet: only if nothing was).
            layers = self._tilesets.get(key.tileset)
            fresh = (generation == self.generation if layers is None
                     else self._stale_at(key, layers, generation) is None)
            if fresh:
                self._remember(key, data, generation)
        return data

    def put(self, tileset: Tileset, key: TileKey, data: bytes, generation: int) -> bool:
        """Store a tile rendered after ``generation`` was read; False if that is now stale
        (it then only replaces an older stale copy in memory)."""
        with self._lock:
            if not self.active:
                return False
            since = self._stale_at(key, tileset.layers, generation)
            if since is not None:
                if since > -math.inf and key in self._stale_since \
                        and generation > self._born[key]:
                    self._remember(key, data, generation)
                    self._stale_since[key] = since
                return False
            self._tilesets[tileset.name] = tileset.layers
            self._remember(key, data, generation)
        if self.folder is not None:
            self._write(tileset, key, data)
            # An eviction logged since the check above may have looked for this file first.
            if self.stale(key, tileset.layers, generation):
                self._path(key).unlink(missing_ok=True)
                return False
        return True

    def digest(self, key: TileKey, data: bytes) -> str:
        """The ETag digest of ``data``, kept while memory holds it as ``key``'s tile: a hit
        is then served without hashing it again (hashing was the server's largest cost)."""
        with self._lock:
            if self._memory.get(key) is data and key in self._digests:
                return self._digests[key]
        made = digest_of(data)
        with self._lock:
            if self._memory.get(key) is data:
                self._digests[key] = made
        return made

    def _remember(self, key: TileKey, data: bytes, generation: int) -> None:
        if key in self._memory:
            self._size -= len(self._memory.pop(key)) + ENTRY_OVERHEAD
            self._stale_since.pop(key, None)
            self._digests.pop(key, None)
        self._memory[key] = data
        self._born[key] = generation
        self._index[key.tileset, key.tms, key.z].add((key.x, key.y))
        self._size += len(data) + ENTRY_OVERHEAD
        while self._size > self.memory_bytes and self._memory:
            old, dropped = self._memory.popitem(last=False)
            self._born.pop(old, None)
            self._digests.pop(old, None)
            self._stale_since.pop(old, None)
            self._index[old.tileset, old.tms, old.z].discard((old.x, old.y))
            self._size -= len(dropped) + ENTRY_OVERHEAD

    def _write(self, tileset: Tileset, key: TileKey, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        if tileset.name not in self._described:
            describe = self.folder / tileset.name / LAYERS_FILE  # type: ignore[operator]
            _atomic_write(describe, json.dumps(sorted(tileset.layers)).encode())
            self._described.add(tileset.name)
        _atomic_write(path, data)

    def _disk_tilesets(self) -> dict[str, frozenset[str] | None]:
        """Tilesets in the folder with their layers (None when unknown: evict on any change).

        Other processes (the other workers, ``cim tiles seed``) add tilesets, so the folder
        is listed again whenever its modification time moved; a tileset whose layers were
        unknown is looked at again every time."""
        if self.folder is None:
            return {}
        try:
            listed = self.folder.stat().st_mtime_ns
        except OSError:  # not made yet
            return {}
        if listed != self._disk_listed:
            with os.scandir(self.folder) as entries:
                inodes = {entry.name: entry.inode() for entry in entries if entry.is_dir()}
            # The state file's rewrites move the time too (every second under edits): a
            # tileset folder still there keeps the layers read from it.
            self._disk = {name: self._disk.get(name) if self._disk_inodes.get(name) == inode
                          else None for name, inode in inodes.items()}
            self._disk_inodes = inodes
            # Timestamps move in clock ticks: a tileset added within the tick of a listing
            # would leave the time as it was, so a listing that recent is not kept.
            settled = time.time_ns() - listed > 1_000_000_000
            self._disk_listed = listed if settled else None
        for name in [n for n, layers in self._disk.items() if layers is None]:
            with suppress(OSError, ValueError):  # not described yet: still unknown
                self._disk[name] = frozenset(json.loads(
                    (self.folder / name / LAYERS_FILE).read_text()))
        return self._disk

    def evict(self, layers: set[str], bboxes: Sequence[BBox]) -> int:
        """Drop the tiles of tilesets drawing any of ``layers`` near any lon/lat envelope
        from disk, and mark them stale in memory.

        Returns how many tiles were evicted (memory and disk counted separately)."""
        ranges = _Ranges(bboxes, BUFFER / EXTENT)
        removed = 0
        now = time.monotonic()
        # Logged first, then disk, then memory: a read or render in flight can then neither
        # put a stale tile back in memory as fresh nor leave one on disk.
        with self._lock:
            self.generation += 1
            self._evictions.append((self.generation, now, frozenset(layers), ranges))
            if len(self._evictions) > EVICTIONS_KEPT:
                self._floor = self._evictions.popleft()[0]
        for name, drawn in self._disk_tilesets().items():
            if drawn is None or drawn & layers:
                removed += _evict_folder(self.folder / name, ranges)  # type: ignore[operator]
        with self._lock:
            for (name, tms, z), held in list(self._index.items()):
                if not self._tilesets.get(name, frozenset()) & layers:
                    continue
                for x, y in _within(held, ranges.at(tms, z)):
                    # The first eviction's time stays: it bounds how long a copy is served.
                    self._stale_since.setdefault(TileKey(name, tms, z, x, y), now)
                    removed += 1
        return removed

    def clear(self) -> None:
        """Forget every tile in memory (the folder is the caller's to remove)."""
        self.attach(self.folder)


class _Ranges:
    """Tile ranges of a batch of envelopes per grid and zoom, computed once and deduplicated."""

    def __init__(self, bboxes: Sequence[BBox], margin: float) -> None:
        self.bboxes, self.margin = bboxes, margin
        self._projected: dict[str, list[BBox]] = {}
        self._ranges: dict[tuple[str, int], set[TileRange]] = {}

    def at(self, tms_id: str, z: int) -> set[TileRange]:
        if (tms_id, z) not in self._ranges:
            tms = grid(tms_id)
            if tms_id not in self._projected:
                self._projected[tms_id] = project(tms, self.bboxes)
            self._ranges[tms_id, z] = {tile_range(tms, z, xy, self.margin)
                                       for xy in self._projected[tms_id]}
        return self._ranges[tms_id, z]


def _covers(ranges: _Ranges, key: TileKey) -> bool:
    return any(x0 <= key.x <= x1 and y0 <= key.y <= y1
               for x0, y0, x1, y1 in ranges.at(key.tms, key.z))


def _area(r: TileRange) -> int:
    return (r[2] - r[0] + 1) * (r[3] - r[1] + 1)


def _within(held: set[tuple[int, int]], ranges: set[TileRange]) -> list[tuple[int, int]]:
    """The held (x, y) inside any range: enumerate small ranges, scan for large ones."""
    found: set[tuple[int, int]] = set()
    for x0, y0, x1, y1 in ranges:
        if _area((x0, y0, x1, y1)) <= len(held):
            found.update((x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)
                         if (x, y) in held)
        else:
            found.update((x, y) for x, y in held if x0 <= x <= x1 and y0 <= y <= y1)
    return list(found)


def _numbered(folder: Path) -> dict[int, Path]:
    try:
        return {int(p.name.split(".")[0]): p for p in folder.iterdir()
                if p.name.split(".")[0].isdigit()}
    except (FileNotFoundError, NotADirectoryError):
        return {}


def _evict_folder(folder: Path, ranges: _Ranges) -> int:
    removed = 0
    for tms_dir in folder.iterdir() if folder.is_dir() else ():
        if not tms_dir.is_dir() or tms_dir.name not in GRIDS.list():
            continue
        for z, z_dir in _numbered(tms_dir).items():
            columns: dict[int, Path] | None = None
            for x0, y0, x1, y1 in ranges.at(tms_dir.name, z):
                if _area((x0, y0, x1, y1)) <= DIRECT_UNLINK:
                    paths = [z_dir / str(x) / f"{y}.mvt.gz"
                             for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]
                else:
                    columns = _numbered(z_dir) if columns is None else columns
                    paths = [p for x, column in columns.items() if x0 <= x <= x1
                             for y, p in _numbered(column).items() if y0 <= y <= y1]
                for path in paths:
                    try:
                        path.unlink()
                        removed += 1
                    except FileNotFoundError:
                        pass
    return removed


def _atomic_write(path: Path, data: bytes) -> None:
    # A reader never sees half a file: write aside, then rename over.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def cached_tile(cache: TileCache | None, engine: Engine, tileset: Tileset,
                layers: list[LayerDefinition], tms: morecantile.TileMatrixSet,
                z: int, x: int, y: int) -> tuple[bytes, bool]:
    """The gzip-compressed tile (empty bytes for an empty tile) and whether it was a hit."""
    key = TileKey(tileset.name, tms.id, z, x, y)
    if cache is not None:
        data = cache.get(key)
        if data is not None:
            return data, True
    generation = cache.generation if cache is not None else 0  # read before the render
    with autocommit(engine) as conn:
        data = compress(render_tile(conn, layers, tms, z, x, y))
    if cache is not None:
        cache.put(tileset, key, data, generation)
    return data, False
