"""The tiles of a 3D Tiles tileset: a quadtree of the buildings, and its tileset.json.

Tiles are cells of a global geographic quadtree (level z splits longitude into 2^z and
latitude into 2^z steps), named ``z-x-y``, so a cell's name does not depend on the data's
extent and an edit elsewhere renames nothing. The root is the smallest cell holding every
building's centre. Refinement is additive: a cell with more than ``leaf_size`` buildings
keeps its ``keep`` largest ones (seen from afar) and hands the rest to its four children.
A tile's geometric error is the largest building its descendants hold: the size of what is
missing on screen while only it is drawn, so it shrinks downwards by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

MAX_LEVEL = 24
"""Cells of ~2 m: buildings sharing a centre below that stay together in a leaf."""


@dataclass
class Tile:
    level: int
    x: int
    y: int
    members: np.ndarray
    """Indices (into the build's building arrays) of the buildings drawn by this tile."""
    geometric_error: float = 0.0
    children: list[Tile] = field(default_factory=list)
    region: np.ndarray | None = None
    """west, south, east, north (degrees), lowest and highest height (m) of its subtree."""

    @property
    def name(self) -> str:
        return f"{self.level}-{self.x}-{self.y}"

    def walk(self) -> list[Tile]:
        tiles = [self]
        for child in self.children:
            tiles.extend(child.walk())
        return tiles


def _cell(lon: np.ndarray, lat: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
    n = 2**level
    x = np.clip(np.floor((lon + 180.0) / 360.0 * n), 0, n - 1).astype(np.int64)
    y = np.clip(np.floor((lat + 90.0) / 180.0 * n), 0, n - 1).astype(np.int64)
    return x, y


def quadtree(lon: np.ndarray, lat: np.ndarray, size: np.ndarray, bounds: np.ndarray,
             leaf_size: int, keep: int) -> Tile | None:
    """The tile tree of buildings with centres ``lon``, ``lat``, visual sizes ``size`` (m)
    and ``bounds`` (n, 6) as regions are; None when there are none."""
    if not len(lon):
        return None
    level = 0
    while level < MAX_LEVEL:
        x, y = _cell(lon, lat, level + 1)
        if x.min() != x.max() or y.min() != y.max():
            break
        level += 1
    x, y = _cell(lon[:1], lat[:1], level)
    root = Tile(level, int(x[0]), int(y[0]), np.arange(len(lon)))
    _split(root, lon, lat, size, leaf_size, keep)
    _regions(root, bounds)
    return root


def _split(tile: Tile, lon: np.ndarray, lat: np.ndarray, size: np.ndarray,
           leaf_size: int, keep: int) -> None:
    everyone = tile.members
    if len(everyone) <= leaf_size or tile.level >= MAX_LEVEL:
        return
    order = everyone[np.argsort(-size[everyone], kind="stable")]
    tile.members, rest = np.sort(order[:keep]), order[keep:]
    tile.geometric_error = float(size[rest].max())
    x, y = _cell(lon[rest], lat[rest], tile.level + 1)
    quadrant = (x - 2 * tile.x) + 2 * (y - 2 * tile.y)
    for q in range(4):
        inside = np.sort(rest[quadrant == q])
        if len(inside):
            child = Tile(tile.level + 1, 2 * tile.x + q % 2, 2 * tile.y + q // 2, inside)
            _split(child, lon, lat, size, leaf_size, keep)
            tile.children.append(child)


def _regions(tile: Tile, bounds: np.ndarray) -> np.ndarray:
    """Each tile's region: its own buildings' and its children's, so children lie inside."""
    parts = [bounds[tile.members]] + [_regions(c, bounds)[None, :] for c in tile.children]
    stacked = np.concatenate(parts)
    tile.region = np.concatenate([stacked[:, [0, 1]].min(axis=0), stacked[:, [2, 3]].max(axis=0),
                                  stacked[:, [4]].min(axis=0), stacked[:, [5]].max(axis=0)])
    return tile.region


def _radians(region: np.ndarray) -> list[float]:
    return [math.radians(v) for v in region[:4]] + [float(region[4]), float(region[5])]


def _translation(offset: np.ndarray) -> list[float]:
    """A column-major 4x4 that moves the tile's local coordinates by ``offset``."""
    return [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0,
            *(float(v) for v in offset), 1.0]


def tileset_document(root: Tile, centres: dict[str, np.ndarray], top_error: float,
                     extras: dict[str, object]) -> dict[str, object]:
    """tileset.json (3D Tiles 1.1). Each tile's transform moves its content to its centre in
    ECEF; transforms compose down the tree, so a child's is the offset from its parent's."""

    def node(tile: Tile, parent_centre: np.ndarray) -> dict[str, object]:
        centre = centres[tile.name]
        body: dict[str, object] = {
            "boundingVolume": {"region": _radians(tile.region)},
            "geometricError": tile.geometric_error,
            "refine": "ADD",
            "transform": _translation(centre - parent_centre),
        }
        if len(tile.members):
            body["content"] = {"uri": f"{tile.name}.glb"}
        if tile.children:
            body["children"] = [node(child, centre) for child in tile.children]
        return body

    return {"asset": {"version": "1.1", "generator": "cim-platform tiles.threed"},
            "extras": extras,
            "geometricError": top_error,
            "root": node(root, np.zeros(3))}


BATCHES_PER_SLOT = 4
"""Batches of tiles per worker thread: enough that the last ones even out the finish."""


def in_batches(tiles: list[Tile], size: int) -> list[list[Tile]]:
    """Consecutive tiles in batches of about ``size`` members each."""
    batches: list[list[Tile]] = [[]]
    count = 0
    for tile in tiles:
        if count >= size:
            batches.append([])
            count = 0
        batches[-1].append(tile)
        count += len(tile.members)
    return [b for b in batches if b]
