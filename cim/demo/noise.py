"""Smooth seeded random fields (value noise) for terrain and land use."""

from __future__ import annotations

import numpy as np


def _smoothstep(t: np.ndarray) -> np.ndarray:
    return t * t * (3.0 - 2.0 * t)


def separable_bilinear(z: np.ndarray, ix: np.ndarray, wx: np.ndarray, iy: np.ndarray,
                       wy: np.ndarray) -> np.ndarray:
    """Bilinear values of lattice ``z`` on the grid rows ``iy`` x columns ``ix`` (with their
    weights), one axis at a time and in float32: DEM-sized grids are tens of millions of
    cells."""
    wx, wy = wx.astype(np.float32), wy.astype(np.float32)[:, None]
    z = z.astype(np.float32)
    rows = z[:, ix] * (1 - wx) + z[:, ix + 1] * wx
    out = rows[iy] * (1 - wy)
    out += rows[iy + 1] * wy
    return out


class NoiseField:
    """Random values on a square lattice, smoothly interpolated between lattice points.

    Values are standard normal at the lattice points, so the field's spread is about 0.7;
    ``wavelength`` is the lattice spacing, the distance over which the field changes. A
    lattice turned by ``angle`` (radians) keeps its squares from lining up with the streets.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        bounds: tuple[float, float, float, float],
        wavelength: float,
        angle: float = 0.0,
    ) -> None:
        x0, y0, x1, y1 = bounds
        self.centre = ((x0 + x1) / 2, (y0 + y1) / 2)
        self.angle = angle
        # A turned lattice must cover the bounds whichever way they lie in it.
        half_x, half_y = (x1 - x0) / 2, (y1 - y0) / 2
        if angle:
            half_x = half_y = float(np.hypot(half_x, half_y))
        self.origin = (-half_x - wavelength, -half_y - wavelength)
        self.wavelength = wavelength
        nx = int(np.ceil(2 * half_x / wavelength)) + 3
        ny = int(np.ceil(2 * half_y / wavelength)) + 3
        self.lattice = rng.standard_normal((ny, nx))

    def _axis(self, values: np.ndarray, origin: float, size: int) -> tuple[np.ndarray, np.ndarray]:
        f = (np.asarray(values, dtype=float) - origin) / self.wavelength
        i = np.clip(np.floor(f).astype(np.intp), 0, size - 2)
        return i, _smoothstep(np.clip(f - i, 0.0, 1.0))

    def at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The field at points."""
        dx, dy = np.asarray(x) - self.centre[0], np.asarray(y) - self.centre[1]
        c, s = np.cos(self.angle), np.sin(self.angle)
        u, v = dx * c + dy * s, dy * c - dx * s
        ny, nx = self.lattice.shape
        ix, sx = self._axis(u, self.origin[0], nx)
        iy, sy = self._axis(v, self.origin[1], ny)
        lat = self.lattice
        south = lat[iy, ix] * (1 - sx) + lat[iy, ix + 1] * sx
        north = lat[iy + 1, ix] * (1 - sx) + lat[iy + 1, ix + 1] * sx
        return south * (1 - sy) + north * sy

    def on_axes(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """The field on the grid ``ys`` x ``xs`` (rows, columns), interpolated separably,
        which only an unturned lattice allows."""
        if self.angle:
            raise ValueError("on_axes needs a lattice that is not turned")
        ny, nx = self.lattice.shape
        ix, sx = self._axis(np.asarray(xs) - self.centre[0], self.origin[0], nx)
        iy, sy = self._axis(np.asarray(ys) - self.centre[1], self.origin[1], ny)
        return separable_bilinear(self.lattice, ix, sx, iy, sy)
