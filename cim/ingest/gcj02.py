"""GCJ-02 ↔ WGS84 for coordinates taken from Chinese web maps (Amap/Gaode, Tencent, ...).

GCJ-02 is WGS84 plus a deliberate, smoothly varying offset of a few hundred metres. The
official transformation is not published; what is used here is the public formula
reverse-engineered from it (sine series on the Krasovsky 1940 ellipsoid), which matches the
official one to roughly 1–2 m. ``gcj02_to_wgs84`` inverts that formula iteratively and
reproduces it to well under a millimetre, so the error of a round trip is negligible but the
1–2 m of the formula itself remain. As in the public algorithm, points outside China's rough
bounding box (``in_china``) are not offset at all.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import shapely

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]

# Krasovsky 1940 ellipsoid, on which the offset is expressed.
_A = 6378245.0
_EE = 0.00669342162296594323

# China's rough bounding box as used by the public algorithm (lon/lat, degrees).
_LON_MIN, _LON_MAX = 72.004, 137.8347
_LAT_MIN, _LAT_MAX = 0.8293, 55.8271

# 1e-10° is about 0.01 mm; the iteration contracts by a factor ~1e-4 per step.
_INVERSE_TOLERANCE_DEG = 1e-10
_INVERSE_MAX_STEPS = 10


def in_china(lon: ArrayLike, lat: ArrayLike) -> npt.NDArray[np.bool_]:
    """Whether each point lies in the box where GCJ-02 applies an offset."""
    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    return (lon >= _LON_MIN) & (lon <= _LON_MAX) & (lat >= _LAT_MIN) & (lat <= _LAT_MAX)


def wgs84_to_gcj02(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """GCJ-02 lon/lat of WGS84 lon/lat (arrays broadcast; points outside China unchanged)."""
    lon, lat = np.broadcast_arrays(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))
    dlon, dlat = _offset(lon, lat)
    inside = in_china(lon, lat)
    return np.where(inside, lon + dlon, lon), np.where(inside, lat + dlat, lat)


def gcj02_to_wgs84(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """WGS84 lon/lat of GCJ-02 lon/lat, inverting ``wgs84_to_gcj02`` to sub-millimetre.

    Fixed-point iteration: the offset changes by only ~1e-4 of a step per step, so each
    iteration gains about four digits.
    """
    gcj_lon, gcj_lat = np.broadcast_arrays(
        np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    )
    wgs_lon, wgs_lat = gcj_lon.copy(), gcj_lat.copy()
    for _ in range(_INVERSE_MAX_STEPS):
        fwd_lon, fwd_lat = wgs84_to_gcj02(wgs_lon, wgs_lat)
        err_lon, err_lat = fwd_lon - gcj_lon, fwd_lat - gcj_lat
        wgs_lon, wgs_lat = wgs_lon - err_lon, wgs_lat - err_lat
        if max(_max_abs(err_lon), _max_abs(err_lat)) < _INVERSE_TOLERANCE_DEG:
            break
    return np.asarray(wgs_lon), np.asarray(wgs_lat)


def gcj02_to_wgs84_geometries(geoms: npt.NDArray[np.object_]) -> npt.NDArray[np.object_]:
    """Shapely geometries in GCJ-02 lon/lat moved to WGS84; Z values, if any, are kept."""

    def to_wgs84(coords: FloatArray) -> FloatArray:
        out = coords.copy()
        out[:, 0], out[:, 1] = gcj02_to_wgs84(coords[:, 0], coords[:, 1])
        return out

    return shapely.transform(np.asarray(geoms, dtype=object), to_wgs84, include_z=None)


def _offset(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The GCJ-02 offset (degrees) at WGS84 lon/lat, ignoring the China box."""
    x, y = lon - 105.0, lat - 35.0
    dlat_m = _lat_series(x, y)
    dlon_m = _lon_series(x, y)
    phi = np.radians(lat)
    w = 1.0 - _EE * np.sin(phi) ** 2
    meridian_radius = _A * (1.0 - _EE) / (w * np.sqrt(w))
    parallel_radius = _A / np.sqrt(w) * np.cos(phi)
    return np.degrees(dlon_m / parallel_radius), np.degrees(dlat_m / meridian_radius)


def _lat_series(x: FloatArray, y: FloatArray) -> FloatArray:
    """Northward offset in metres (the published polynomial-plus-sines form)."""
    poly = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x))
    return (
        poly
        + _sines(x, (20.0, 6.0), (20.0, 2.0))
        + _sines(y, (20.0, 1.0), (40.0, 1.0 / 3.0))
        + _sines(y, (160.0, 1.0 / 12.0), (320.0, 1.0 / 30.0))
    )


def _lon_series(x: FloatArray, y: FloatArray) -> FloatArray:
    """Eastward offset in metres (the published polynomial-plus-sines form)."""
    poly = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x))
    return (
        poly
        + _sines(x, (20.0, 6.0), (20.0, 2.0))
        + _sines(x, (20.0, 1.0), (40.0, 1.0 / 3.0))
        + _sines(x, (150.0, 1.0 / 12.0), (300.0, 1.0 / 30.0))
    )


def _sines(t: FloatArray, *terms: tuple[float, float]) -> FloatArray:
    """Two thirds of Σ amplitude·sin(frequency·π·t), the building block of both series."""
    return sum(amp * np.sin(freq * np.pi * t) for amp, freq in terms) * (2.0 / 3.0)


def _max_abs(values: FloatArray) -> float:
    return float(np.max(np.abs(values), initial=0.0))
