"""Vectorised geometry checks, repair, type coercion and reprojection (shapely 2, pyproj).

Every function takes and returns numpy arrays of geometries aligned with the input rows;
problems come back as an array of reasons (``None`` where the row is fine) so the caller
can reject rows without a Python loop over features.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import shapely
from pyproj import CRS, Transformer

from cim.schema.models import SRID

POLYGONAL = (shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON)
LINEAR = (shapely.GeometryType.LINESTRING, shapely.GeometryType.MULTILINESTRING,
          shapely.GeometryType.LINEARRING)
PUNTAL = (shapely.GeometryType.POINT, shapely.GeometryType.MULTIPOINT)
FAMILIES = {"POLYGON": POLYGONAL, "MULTIPOLYGON": POLYGONAL, "LINESTRING": LINEAR,
            "MULTILINESTRING": LINEAR, "POINT": PUNTAL}
FAMILY_NAMES = {POLYGONAL: "polygon", LINEAR: "line", PUNTAL: "point"}


def _no_reasons(n: int) -> np.ndarray:
    return np.full(n, None, dtype=object)


def _of_family(types: np.ndarray, family: tuple) -> np.ndarray:
    return np.isin(types, [int(t) for t in family])


def _regroup(geoms: np.ndarray, keep_family: tuple, constructor) -> np.ndarray:
    """Rebuild each geometry from its parts of one family (e.g. polygons of a collection)."""
    n = len(geoms)
    parts, index = shapely.get_parts(geoms, return_index=True)
    keep = _of_family(shapely.get_type_id(parts), keep_family)
    parts, index = parts[keep], index[keep]
    # Polygons come out of MultiPolygons as parts already; lines may be multi again.
    out = np.full(n, None, dtype=object)
    if len(parts):
        present = np.unique(index)
        rebuilt = constructor(parts, indices=np.searchsorted(present, index))
        out[present] = rebuilt
    return out


def check_and_repair(
    geoms: np.ndarray, kind: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reject empty, wrong-type and unrepairable geometries; repair invalid ones.

    Returns (geometries, rejection reasons, repair notes).
    """
    geoms = np.asarray(geoms, dtype=object).copy()
    n = len(geoms)
    rejected, repaired = _no_reasons(n), _no_reasons(n)
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    rejected[missing] = "empty or missing geometry"

    family = FAMILIES.get(kind)
    if family is not None:
        types = shapely.get_type_id(geoms)
        collection = types == shapely.GeometryType.GEOMETRYCOLLECTION
        wrong = ~missing & ~_of_family(types, family) & ~collection
        for type_id in np.unique(types[wrong]):
            rows = wrong & (types == type_id)
            # The OGC name (MultiLineString...), as GEOS reports it for that type.
            name = geoms[rows][0].geom_type
            rejected[rows] = f"expected {FAMILY_NAMES[family]} geometry, got {name}"

    invalid = ~missing & (rejected == None) & ~shapely.is_valid(geoms)  # noqa: E711
    if invalid.any():
        why = shapely.is_valid_reason(geoms[invalid])
        fixed = shapely.make_valid(geoms[invalid])
        if family is not None:
            ctor = shapely.multipolygons if family is POLYGONAL else (
                shapely.multilinestrings if family is LINEAR else shapely.multipoints)
            fixed = _regroup(fixed, family, ctor)
        lost = shapely.is_missing(fixed) | shapely.is_empty(fixed)
        rows = np.flatnonzero(invalid)
        geoms[rows] = fixed
        rejected[rows[lost]] = [f"invalid geometry ({w}) that repair cannot save"
                                for w in why[lost]]
        repaired[rows[~lost]] = [f"repaired with make_valid: {w}" for w in why[~lost]]
    return geoms, rejected, repaired


MULTI = {
    "MULTIPOLYGON": (shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON,
                     POLYGONAL, shapely.multipolygons),
    "MULTILINESTRING": (shapely.GeometryType.LINESTRING, shapely.GeometryType.MULTILINESTRING,
                        LINEAR, shapely.multilinestrings),
}


def _to_multi(geoms: np.ndarray, single, multi, family: tuple, constructor) -> np.ndarray:
    """Wrap single parts into multi-geometries; collections are rebuilt from their parts."""
    types = shapely.get_type_id(geoms)
    singles = types == single
    if not (singles | (types == multi)).all():
        return _regroup(geoms, family, constructor)
    out = geoms.copy()
    if singles.any():
        # One part per row: the constructor's last axis is the parts axis.
        out[singles] = constructor(geoms[singles][:, np.newaxis])
    return out


def coerce(geoms: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Shape geometries into the column's type (Polygon -> MultiPolygon, one-part multi ->
    single, mergeable lines -> one line); rows that cannot fit get a reason."""
    n = len(geoms)
    rejected = _no_reasons(n)
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    out = np.full(n, None, dtype=object)
    rows = np.flatnonzero(ok)
    g = geoms[rows]
    if kind in MULTI:
        out[rows] = _to_multi(g, *MULTI[kind])
    elif kind in ("LINESTRING", "POINT"):
        single = shapely.line_merge(g) if kind == "LINESTRING" else g
        parts = shapely.get_num_geometries(single)
        multi = shapely.get_type_id(single) == (
            shapely.GeometryType.MULTILINESTRING if kind == "LINESTRING"
            else shapely.GeometryType.MULTIPOINT)
        single = np.where(multi & (parts == 1), shapely.get_geometry(single, 0), single)
        out[rows] = single
        still_multi = multi & (parts != 1)
        rejected[rows[still_multi]] = [
            f"a single {kind.lower()} is needed, got {p} disconnected parts"
            for p in parts[still_multi]
        ]
    else:
        out[rows] = g
    # One ring orientation (exterior counter-clockwise, as RFC 7946 asks) so the same shape
    # read from a Shapefile (clockwise) and a GeoPackage compares equal on re-import.
    present = ~shapely.is_missing(out)
    out[present] = shapely.orient_polygons(out[present], exterior_cw=False)
    return out, rejected


@lru_cache(maxsize=16)
def _transformer(source: CRS, target: CRS) -> Transformer:
    # Building a transformer costs tens of milliseconds: once per CRS pair, not per chunk.
    return Transformer.from_crs(source, target, always_xy=True)


def reproject(geoms: np.ndarray, source: CRS, target: CRS) -> np.ndarray:
    """Transform geometries (2D or 3D, mixed) between CRSs, always in lon/lat-east/north order."""
    if source.equals(target) or shapely.is_missing(geoms).all():
        return geoms
    transformer = _transformer(source, target)

    def fn(coords: np.ndarray) -> np.ndarray:
        return np.column_stack(transformer.transform(*coords.T))

    out = np.asarray(geoms, dtype=object).copy()
    has_z = shapely.has_z(out)
    for mask, with_z in ((has_z, True), (~has_z, False)):
        if mask.any():
            out[mask] = shapely.transform(out[mask], fn, include_z=with_z)
    return out


def outside_lonlat(geoms: np.ndarray) -> np.ndarray:
    """Rows whose lon/lat bounds are not finite or leave [-180, 180] x [-90, 90]."""
    b = shapely.bounds(geoms)
    with np.errstate(invalid="ignore"):
        ok = (np.isfinite(b).all(axis=1) & (b[:, 0] >= -180) & (b[:, 2] <= 180)
              & (b[:, 1] >= -90) & (b[:, 3] <= 90))
    return ~ok & ~shapely.is_missing(geoms)


def hex_ewkb(geoms: np.ndarray) -> np.ndarray:
    """Hex EWKB with SRID (what COPY hands PostGIS); None stays None."""
    present = ~shapely.is_missing(geoms)
    out = np.full(len(geoms), None, dtype=object)
    if present.any():
        # Binary WKB then bytes.hex is about 2.5 times faster than GEOS' hex writer.
        wkb = shapely.to_wkb(shapely.set_srid(geoms[present], SRID), include_srid=True,
                             output_dimension=3)
        out[present] = [w.hex() for w in wkb]
    return out
