"""Which tiles of a TileMatrixSet a lon/lat envelope touches, at any zoom, without listing them.

Ranges are computed from the matrix definition (origin, cell size), so evicting a 1 km area
at zoom 22 costs the same as at zoom 0.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import morecantile
import numpy as np
from pyproj import CRS, Transformer

CGCS2000_QUAD = morecantile.TileMatrixSet.custom(
    [-180, -90, 180, 90], CRS.from_epsg(4490), id="CGCS2000Quad", matrix_scale=[2, 1],
    title="CGCS2000 geographic quad: two tiles at zoom 0, as China's national base maps")
GRIDS = morecantile.tms.register({CGCS2000_QUAD.id: CGCS2000_QUAD})
"""morecantile's grids and ours; the API serves ``SERVED`` of them."""
SERVED = ("WebMercatorQuad", CGCS2000_QUAD.id)

BBox = tuple[float, float, float, float]
"""west, south, east, north (lon/lat) or left, bottom, right, top (grid CRS)."""
TileRange = tuple[int, int, int, int]
"""x0, y0, x1, y1, inclusive."""


@functools.cache
def grid(tms_id: str) -> morecantile.TileMatrixSet:
    """A grid by id, looked up once: ``GRIDS.get`` deep-copies it (over a millisecond) each
    time, which per tile request or per eviction adds up."""
    return GRIDS.get(tms_id)


@functools.cache
def _from_lonlat(tms_id: str) -> tuple[BBox, Transformer]:
    """The grid's lon/lat limits and the transformer into its CRS, made once: morecantile's
    ``tms.bbox`` reprojects the grid's bounds on every access (``tms.xy`` reads it too),
    which was a sixth of an edit's eviction cost."""
    tms = grid(tms_id)
    return (tuple(tms.bbox), Transformer.from_crs(tms.geographic_crs,
                                                  CRS.from_wkt(tms.crs.to_wkt()),
                                                  always_xy=True))


def project(tms: morecantile.TileMatrixSet, bboxes: Sequence[BBox]) -> list[BBox]:
    """The lon/lat ``bboxes`` in the grid's CRS, clipped to the grid (those outside it
    left out), transformed in one call."""
    (left, bottom, right, top), transformer = _from_lonlat(tms.id)
    boxes = np.array(bboxes, dtype=float).reshape(-1, 4)
    boxes = np.column_stack([np.maximum(boxes[:, 0], left), np.maximum(boxes[:, 1], bottom),
                             np.minimum(boxes[:, 2], right), np.minimum(boxes[:, 3], top)])
    boxes = boxes[(boxes[:, 0] <= boxes[:, 2]) & (boxes[:, 1] <= boxes[:, 3])]
    xmin, ymin = transformer.transform(boxes[:, 0], boxes[:, 1])
    xmax, ymax = transformer.transform(boxes[:, 2], boxes[:, 3])
    return [(float(a), float(b), float(c), float(d))
            for a, b, c, d in zip(xmin, ymin, xmax, ymax, strict=True)]


def tile_range(tms: morecantile.TileMatrixSet, z: int, xy: BBox, margin: float) -> TileRange:
    """Tiles at zoom ``z`` within ``margin`` (a fraction of a tile) of the projected ``xy``."""
    matrix = tms.matrix(z)
    origin_x, origin_y = matrix.pointOfOrigin
    if tms._invert_axis:  # the origin is written in the CRS's axis order (lat, lon)
        origin_x, origin_y = origin_y, origin_x
    width = matrix.cellSize * matrix.tileWidth
    height = matrix.cellSize * matrix.tileHeight
    left, bottom, right, top = xy

    def clamp(value: float, size: int) -> int:
        return min(max(math.floor(value), 0), size - 1)

    return (clamp((left - origin_x) / width - margin, matrix.matrixWidth),
            clamp((origin_y - top) / height - margin, matrix.matrixHeight),
            clamp((right - origin_x) / width + margin, matrix.matrixWidth),
            clamp((origin_y - bottom) / height + margin, matrix.matrixHeight))
