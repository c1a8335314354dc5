"""Coordinate reference systems the feature API reads and writes (OGC API - Features Part 2).

Storage is EPSG:4326 in longitude/latitude order; responses may be asked for in any CRS of
``supported_crs``. Coordinates follow each CRS's authority axis order, as Part 2 requires:
EPSG:4326 and EPSG:4490 are latitude first, the CGCS2000 Gauss-Kruger grids northing first,
so those are swapped on the way out (and a ``bbox-crs`` bbox on the way in).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from pyproj import CRS, Transformer

from layers.errors import InvalidParameter

CRS84_URI = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG_URI = "http://www.opengis.net/def/crs/EPSG/0/{code}"
COMMON_SRIDS = (4326, 3857, 4490)
"""Offered besides CRS84 and the city's own projected CRS (EPSG:4547 for Wuhan)."""

_EPSG_FORMS = re.compile(
    r"^(?:\[?EPSG:(\d+)\]?|https?://www\.opengis\.net/def/crs/EPSG/0/(\d+))$", re.IGNORECASE)


@dataclass(frozen=True)
class Crs:
    """A CRS the API speaks: its URI, PostGIS SRID, axis order and coordinate precision."""

    uri: str
    srid: int
    northing_first: bool
    precision: int
    """Decimals in GeoJSON: about 1 cm in degrees or in metres."""


CRS84 = Crs(CRS84_URI, 4326, northing_first=False, precision=7)


@cache
def _epsg(code: int) -> Crs:
    crs = CRS.from_epsg(code)
    first = crs.axis_info[0].direction if crs.axis_info else "east"
    return Crs(EPSG_URI.format(code=code), code, northing_first=first in ("north", "south"),
               precision=7 if crs.is_geographic else 2)


def supported_crs(city_srid: int) -> list[Crs]:
    """CRS84 first (the default), then EPSG codes in a stable order."""
    codes = dict.fromkeys((*COMMON_SRIDS, city_srid))
    return [CRS84, *(_epsg(code) for code in codes)]


def resolve(value: str | None, supported: list[Crs], parameter: str) -> Crs:
    """The CRS a request names (URI or ``EPSG:n``), CRS84 when it names none."""
    if value is None:
        return CRS84
    wanted = value.strip()
    if wanted.upper() in ("CRS84", "[OGC:CRS84]", "OGC:CRS84"):
        wanted = CRS84_URI
    match = _EPSG_FORMS.match(wanted)
    if match:
        wanted = EPSG_URI.format(code=match.group(1) or match.group(2))
    for crs in supported:
        if crs.uri == wanted:
            return crs
    raise InvalidParameter(f"{parameter} {value!r} is not offered; use one of "
                           + ", ".join(crs.uri for crs in supported))


@cache
def _to_crs84(srid: int) -> Transformer:
    return Transformer.from_crs(srid, 4326, always_xy=True)


def bounds_in_crs84(bounds: list[float], crs: Crs) -> tuple[float, float, float, float]:
    """Easting/northing bounds of ``crs`` as the CRS84 box around them (edges densified)."""
    box = _to_crs84(crs.srid).transform_bounds(*bounds, densify_pts=21)
    if not all(abs(v) < float("inf") for v in box):
        raise InvalidParameter(f"bbox {bounds} lies outside the area {crs.uri} covers")
    return box
