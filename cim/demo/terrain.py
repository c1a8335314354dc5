"""The terrain: a smooth ground surface anchored on the real road elevations, and the DEM.

The surface is the level streets are built at. It follows the real roads' Z (33-48 m) near
them and a gentle seeded relief elsewhere. The DEM adds what makes waterlogging: plots sit
a little above the streets, underpasses are trenches several metres deep and lakes are
basins below their normal level. Buildings are not burnt in (a bare-earth model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.features import rasterize
from shapely.geometry import LineString

from cim.demo.frame import CRS, RealRoads
from cim.demo.noise import NoiseField, separable_bilinear

NODATA = -9999.0
MEAN_GROUND = 39.0  # the real roads' median elevation
SURFACE_STEP = 50.0  # m between the coarse surface's nodes
ROAD_INFLUENCE = 700.0  # m over which the real road elevations fade into the regional relief
PLOT_LIFT = 0.3  # plots sit this much above the street grade
# Regional relief away from the real roads: (amplitude m, wavelength m, lattice angle rad).
# Pairs of turned lattices hide each other's squares.
RELIEF = ((1.8, 2500.0, 0.4), (1.8, 2100.0, 1.2), (0.6, 700.0, 0.7), (0.6, 600.0, 1.5))


@dataclass(frozen=True)
class Surface:
    """The smooth street-grade surface on a coarse grid (rows ``ys``, columns ``xs``)."""

    xs: np.ndarray
    ys: np.ndarray
    z: np.ndarray

    def _weights(self, values: np.ndarray, axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f = (np.asarray(values, dtype=float) - axis[0]) / (axis[1] - axis[0])
        i = np.clip(np.floor(f).astype(np.intp), 0, len(axis) - 2)
        return i, np.clip(f - i, 0.0, 1.0)

    def at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Bilinear elevation at points."""
        ix, wx = self._weights(x, self.xs)
        iy, wy = self._weights(y, self.ys)
        z = self.z
        south = z[iy, ix] * (1 - wx) + z[iy, ix + 1] * wx
        north = z[iy + 1, ix] * (1 - wx) + z[iy + 1, ix + 1] * wx
        return south * (1 - wy) + north * wy

    def on_grid(self, grid: Grid) -> np.ndarray:
        """Bilinear resampling onto a DEM grid, separably and in float32."""
        ix, wx = self._weights(grid.xs, self.xs)
        iy, wy = self._weights(grid.ys, self.ys)
        return separable_bilinear(self.z, ix, wx, iy, wy)


def fit_surface(
    roads: RealRoads, bounds: tuple[float, float, float, float], rng: np.random.Generator
) -> Surface:
    """Inverse-distance weighting of the real road elevations, blended into seeded relief."""
    x0, y0, x1, y1 = bounds
    xs = np.arange(x0 - SURFACE_STEP, x1 + 2 * SURFACE_STEP, SURFACE_STEP)
    ys = np.arange(y0 - SURFACE_STEP, y1 + 2 * SURFACE_STEP, SURFACE_STEP)
    box = (xs[0], ys[0], xs[-1], ys[-1])
    gx, gy = np.meshgrid(xs, ys)
    z = np.full(gx.shape, MEAN_GROUND)
    for amplitude, wavelength, angle in RELIEF:
        z += amplitude * NoiseField(rng, box, wavelength, angle).at(gx, gy)

    # Only nodes near the real roads feel them; the weighting is done in chunks of nodes.
    vx, vy, vz = roads.vertices.T
    reach = 3 * ROAD_INFLUENCE
    cols = np.nonzero((xs > vx.min() - reach) & (xs < vx.max() + reach))[0]
    rows = np.nonzero((ys > vy.min() - reach) & (ys < vy.max() + reach))[0]
    if cols.size and rows.size:
        window = np.ix_(rows, cols)
        idw, nearest = _idw(gx[window].ravel(), gy[window].ravel(), vx, vy, vz)
        weight = np.exp(-((nearest / ROAD_INFLUENCE) ** 2)).reshape(z[window].shape)
        z[window] = weight * idw.reshape(weight.shape) + (1 - weight) * z[window]
    return Surface(xs=xs, ys=ys, z=z)


def _idw(
    x: np.ndarray, y: np.ndarray, vx: np.ndarray, vy: np.ndarray, vz: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """IDW (power 2, 25 m smoothing) of ``vz`` at points, and each point's nearest distance."""
    value = np.empty_like(x)
    nearest = np.empty_like(x)
    for start in range(0, x.size, 4096):
        part = slice(start, start + 4096)
        d2 = (x[part, None] - vx) ** 2 + (y[part, None] - vy) ** 2
        w = 1.0 / (d2 + 25.0**2)
        value[part] = (w @ vz) / w.sum(axis=1)
        nearest[part] = np.sqrt(d2.min(axis=1))
    return value, nearest


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid: ``width`` x ``height`` cells of ``cell`` m from (x0, y1)."""

    x0: float
    y1: float
    cell: float
    width: int
    height: int

    @classmethod
    def covering(cls, bounds: tuple[float, float, float, float], cell: float) -> Grid:
        x0, y0, x1, y1 = bounds
        width, height = int(np.ceil((x1 - x0) / cell)), int(np.ceil((y1 - y0) / cell))
        return cls(x0=x0, y1=y0 + height * cell, cell=cell, width=width, height=height)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (
            self.x0,
            self.y1 - self.height * self.cell,
            self.x0 + self.width * self.cell,
            self.y1,
        )

    @property
    def transform(self) -> Affine:
        return Affine(self.cell, 0.0, self.x0, 0.0, -self.cell, self.y1)

    @property
    def xs(self) -> np.ndarray:
        return self.x0 + (np.arange(self.width) + 0.5) * self.cell

    @property
    def ys(self) -> np.ndarray:
        return self.y1 - (np.arange(self.height) + 0.5) * self.cell

    def window(self, bounds: tuple[float, float, float, float]) -> tuple[slice, slice]:
        """Rows and columns of the cells that overlap ``bounds``."""
        x0, y0, x1, y1 = bounds
        c0 = max(int((x0 - self.x0) // self.cell), 0)
        c1 = min(int((x1 - self.x0) // self.cell) + 1, self.width)
        r0 = max(int((self.y1 - y1) // self.cell), 0)
        r1 = min(int((self.y1 - y0) // self.cell) + 1, self.height)
        return slice(r0, r1), slice(c0, c1)

    def sample(self, dem: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The value of the cell each point falls in (points outside take the nearest)."""
        col = np.clip(((np.asarray(x) - self.x0) // self.cell).astype(np.intp), 0, self.width - 1)
        row = np.clip(((self.y1 - np.asarray(y)) // self.cell).astype(np.intp), 0, self.height - 1)
        return dem[row, col].astype(float)


@dataclass(frozen=True)
class Trench:
    """An underpass: the road along ``line`` sinks ``depth`` m, ramping over ``ramp`` m."""

    line: LineString
    depth: float
    half_width: float
    ramp: float


class Basin(Protocol):
    """A lake bed: what the DEM needs to know about a water body."""

    normal_level: float
    depth: float

    def bounds(self) -> tuple[float, float, float, float]: ...

    def relative_radius(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """0 at the centre, 1 on the shore."""
        ...


def build_dem(
    surface: Surface,
    grid: Grid,
    streets: tuple[np.ndarray, np.ndarray],
    trenches: Sequence[Trench],
    basins: Sequence[Basin],
    rng: np.random.Generator,
) -> np.ndarray:
    """The DEM: surface, micro-relief, plots above streets, underpass trenches and lake beds.

    ``streets`` are carriageway polygons and how far each is sunk below the plots beside it.
    """
    dem = surface.on_grid(grid)
    dem += 0.12 * NoiseField(rng, grid.bounds, 80.0).on_axes(grid.xs, grid.ys)
    dem += PLOT_LIFT
    polygons, depths = streets
    if len(polygons):
        dem -= rasterize(
            zip(polygons, depths, strict=True),
            out_shape=dem.shape,
            transform=grid.transform,
            fill=0.0,
            dtype="float32",
        )
    for trench in trenches:
        _carve_trench(dem, grid, trench)
    for basin in basins:
        _carve_basin(dem, grid, basin)
    return dem


def _cell_centres(grid: Grid, rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(grid.xs[cols], grid.ys[rows])


def _carve_trench(dem: np.ndarray, grid: Grid, trench: Trench) -> None:
    (ax, ay), (bx, by) = shapely.get_coordinates(trench.line)[[0, -1]]
    half = np.hypot(bx - ax, by - ay) / 2
    ux, uy = (bx - ax) / (2 * half), (by - ay) / (2 * half)
    mx, my = (ax + bx) / 2, (ay + by) / 2
    reach = half + trench.ramp
    rows, cols = grid.window((mx - reach, my - reach, mx + reach, my + reach))
    x, y = _cell_centres(grid, rows, cols)
    along = np.abs((x - mx) * ux + (y - my) * uy)
    across = np.abs((x - mx) * uy - (y - my) * ux)
    ramp = np.clip((along - half) / trench.ramp, 0.0, 1.0)
    profile = 0.5 * (1 + np.cos(np.pi * ramp))  # 1 in the covered part, easing to 0
    sink = np.where(across <= trench.half_width, trench.depth * profile, 0.0)
    dem[rows, cols] -= sink.astype(np.float32)


def _carve_basin(dem: np.ndarray, grid: Grid, basin: Basin) -> None:
    rows, cols = grid.window(basin.bounds())
    x, y = _cell_centres(grid, rows, cols)
    rho = basin.relative_radius(x, y)
    bed = basin.normal_level - 0.3 - basin.depth * np.clip(1 - rho**2, 0, 1) ** 0.6
    window = dem[rows, cols]
    dem[rows, cols] = np.where(rho < 1, np.minimum(window, bed), window)


def write_dem(path: Path, dem: np.ndarray, grid: Grid) -> None:
    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": 1,
        "dtype": "float32",
        "crs": CRS,
        "transform": grid.transform,
        "nodata": NODATA,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "predictor": 3,
        "num_threads": "all_cpus",
    }
    with rasterio.open(path, "w", **profile) as out:
        out.write(dem, 1)
