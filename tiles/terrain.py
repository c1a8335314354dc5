"""The terrain from the registered DEMs (``cim.dems``): Terrain-RGB and hillshade tiles, and
heights sampled at points (what sets buildings and bridges on the ground).

Terrain-RGB is Mapbox's encoding, which MapLibre's ``raster-dem`` sources and deck.gl's
TerrainLayer decode: height = -10000 + (R·65536 + G·256 + B) · 0.1 m, so a PNG carries the
DEM to 0.1 m. Several DEMs are mosaicked finest first. Heights are the DEM's own (metres
above its vertical datum); see the README's 3D section for how they meet the 3D Tiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import morecantile
import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.windows import Window
from sqlalchemy import Connection, text

from tiles.raster import COPIES, in_grid_crs, png, read_tile

OFFSET, STEP = -10000.0, 0.1
"""Mapbox Terrain-RGB: height = OFFSET + STEP · (R·256² + G·256 + B)."""
SUN_AZIMUTH, SUN_ALTITUDE = 315.0, 45.0
"""The cartographers' light: from the north-west, 45° up."""

CURRENT_DEMS = """
    SELECT vid, path, resolution, ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom)
    FROM cim.dems WHERE valid_to IS NULL
      AND geom && ST_MakeEnvelope(:west, :south, :east, :north, 4326)
    ORDER BY resolution, id
"""


@dataclass(frozen=True)
class DemFile:
    vid: int
    path: Path
    resolution: float
    """Cell size in the DEM's own units (metres for the projected grids DEMs come in)."""
    bounds: tuple[float, float, float, float]
    """west, south, east, north in degrees."""


def dems_within(conn: Connection, storage_root: Path,
                bounds: tuple[float, float, float, float] = (-180, -90, 180, 90)
                ) -> list[DemFile]:
    """The current DEMs touching ``bounds`` (lon/lat), finest first."""
    rows = conn.execute(text(CURRENT_DEMS), dict(zip(("west", "south", "east", "north"),
                                                      bounds, strict=True))).all()
    return [DemFile(r[0], storage_root / r[1], float(r[2]), (r[3], r[4], r[5], r[6]))
            for r in rows]


def terrain_rgb(height: np.ndarray) -> np.ndarray:
    """(3, h, w) uint8 bands of heights in metres (rounded to the encoding's 0.1 m)."""
    code = np.clip(np.rint((height - OFFSET) / STEP), 0, 256**3 - 1).astype(np.uint32)
    return np.stack([code >> 16, (code >> 8) & 255, code & 255]).astype(np.uint8)


def hillshade(height: np.ndarray, cell_m: float) -> np.ndarray:
    """Lambertian shading (0-255) of a north-up height grid with square cells of ``cell_m``
    metres, lit by the cartographers' sun; the shade of flat ground is 255·sin(45°)."""
    d_north, d_east = np.gradient(height, cell_m)
    d_north = -d_north  # rows run southwards
    azimuth, altitude = np.radians(SUN_AZIMUTH), np.radians(SUN_ALTITUDE)
    light = np.array([np.sin(azimuth) * np.cos(altitude), np.cos(azimuth) * np.cos(altitude),
                      np.sin(altitude)])
    # The surface's unit normal is (-dz/de, -dz/dn, 1) normalised.
    lit = (-d_east * light[0] - d_north * light[1] + light[2]) / np.sqrt(
        1.0 + d_east**2 + d_north**2)
    return np.rint(255 * np.clip(lit, 0.0, 1.0)).astype(np.uint8)


def ground_cell_m(tms: morecantile.TileMatrixSet, z: int, x: int, y: int) -> float:
    """Metres on the ground per pixel at the tile's centre (Web Mercator stretches by
    1/cos(latitude))."""
    bounds = tms.bounds(x, y, z)
    latitude = (bounds.bottom + bounds.top) / 2
    return tms.matrix(z).cellSize * math.cos(math.radians(latitude))


def _filled(band: np.ma.MaskedArray) -> np.ndarray:
    """Values with no-data cells at the lowest height around, so the encoding and the
    gradients see no cliff down to zero at a DEM's edge."""
    return band.filled(float(band.min()))


def terrain_png(dems: list[DemFile], tms: morecantile.TileMatrixSet, z: int, x: int,
                y: int, cache: Path) -> bytes | None:
    """The Terrain-RGB PNG of a tile; None when it misses the DEMs. Opaque: browsers zero
    the colour of transparent pixels, which a terrain renderer (MapLibre's raster-dem) reads
    as −10,000 m, a cliff at the DEM's edge; pixels off the DEMs carry the lowest height
    around instead."""
    band = read_tile([d.path for d in dems], tms, z, x, y, cache=cache)
    if band is None:
        return None
    return png(terrain_rgb(_filled(band)), np.full(band.shape, True))


def hillshade_png(dems: list[DemFile], tms: morecantile.TileMatrixSet, z: int, x: int,
                  y: int, cache: Path) -> bytes | None:
    """A grey hillshade PNG (transparent off the DEMs); None when it misses them. The tile is
    read with a one-pixel margin so slopes at its edges match the neighbours'."""
    band = read_tile([d.path for d in dems], tms, z, x, y, cache=cache, buffer=1)
    if band is None:
        return None
    shade = hillshade(_filled(band), ground_cell_m(tms, z, x, y))[1:-1, 1:-1]
    return png(shade[None], ~np.ma.getmaskarray(band)[1:-1, 1:-1])


def max_zoom(dems: list[DemFile], tms: morecantile.TileMatrixSet) -> int:
    """The zoom whose pixels first match the finest DEM's cells (deeper zooms interpolate)."""
    if not dems:
        return 0
    finest = min(dems, key=lambda d: d.resolution)
    latitude = (finest.bounds[1] + finest.bounds[3]) / 2
    for z in range(tms.maxzoom + 1):
        if tms.matrix(z).cellSize * math.cos(math.radians(latitude)) <= finest.resolution:
            return z
    return tms.maxzoom


def sample_heights(dems: list[DemFile], lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """DEM heights at points (nearest cell of the finest DEM holding each); NaN off them.
    Each DEM reads only the window around the points it holds."""
    heights = np.full(len(lon), np.nan)
    for dem in dems:
        todo = np.flatnonzero(np.isnan(heights))
        if not len(todo):
            break
        with rasterio.open(dem.path) as src:
            to_dem = Transformer.from_crs(4326, src.crs, always_xy=True)
            px, py = to_dem.transform(lon[todo], lat[todo])
            rows, cols = rasterio.transform.rowcol(src.transform, px, py)
            rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
            inside = (rows >= 0) & (rows < src.height) & (cols >= 0) & (cols < src.width)
            if not inside.any():
                continue
            r0, r1 = rows[inside].min(), rows[inside].max() + 1
            c0, c1 = cols[inside].min(), cols[inside].max() + 1
            window = src.read(1, window=Window(c0, r0, c1 - c0, r1 - r0), masked=True)
            values = window[rows[inside] - r0, cols[inside] - c0]
            heights[todo[inside]] = np.ma.filled(values.astype(float), np.nan)
    return heights



def prepare_terrain(dems: list[DemFile], storage_root: Path) -> None:
    """Make the Web Mercator copies the terrain tiles read, so that no tile request waits for
    one (a city-wide DEM takes minutes to copy)."""
    tms = morecantile.tms.get("WebMercatorQuad")
    for dem in dems:
        in_grid_crs(dem.path, tms, storage_root / COPIES, "bilinear")
