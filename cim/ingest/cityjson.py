"""Read buildings from CityJSON (1.x, 2.0) and CityJSONSeq (``.jsonl``) files.

One row per Building or BuildingPart, from its highest-LOD geometry: a 2D footprint as
``geometry`` and every surface, with absolute heights, as ``geom_3d``. Other CityObject
types are not read; how many of each were passed over is in ``gdf.attrs["skipped"]``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError
from shapely import MultiPolygon, Polygon

from cim.ingest.errors import ReaderError

READ_TYPES = ("Building", "BuildingPart")
ROOF_SHAPE_KEYS = ("roofType", "roof_type", "roofShape", "roof_shape", "roof:shape")
COMPUTED_COLUMNS = (
    "source_id",
    "cityobject_type",
    "parent_id",
    "lod",
    "ground_elevation",
    "height",
    "roof_shape",
    "geometry",
    "geom_3d",
)
"""Columns every result has; an attribute with one of these names becomes ``attributes.<name>``."""

# How deep surfaces are nested in ``boundaries`` (and semantic ``values``) per geometry type.
_SURFACE_DEPTH = {
    "MultiSurface": 0,
    "CompositeSurface": 0,
    "Solid": 1,
    "MultiSolid": 2,
    "CompositeSolid": 2,
}
# A face whose normal is this close to horizontal is a wall: it adds nothing to a footprint.
_VERTICAL_TOLERANCE = 1e-3

Vertices = npt.NDArray[np.float64]
Surface = list[list[int]]
"""A surface as CityJSON writes it: rings (exterior first) of vertex indices."""


def read_cityjson(path: Path) -> gpd.GeoDataFrame:
    """Buildings and building parts of a CityJSON or CityJSONSeq file, one row each.

    Columns: ``source_id`` (the CityObject key), ``cityobject_type``, ``parent_id`` (of a
    BuildingPart), ``lod``, ``ground_elevation`` (min z), ``height`` (max z − min z),
    ``roof_shape``, ``geometry`` (2D footprint, MultiPolygon), ``geom_3d`` (MultiPolygon Z
    of all surfaces), then the object's attributes, nested objects flattened to ``a.b``.
    The CRS is the horizontal part of ``metadata.referenceSystem``, None if absent.
    """
    path = Path(path)
    if path.suffix.lower() == ".jsonl":
        header, chunks = _read_seq(path)
    else:
        header = _read_json(path)
        chunks = iter([(header["CityObjects"], _vertices(header, header, path))])
    crs = _crs(header, path)

    rows: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    for objects, vertices in chunks:
        for obj_id, obj in objects.items():
            if not isinstance(obj, dict):
                raise ReaderError(f"{path}: CityObject {obj_id!r} is not a JSON object")
            obj_type = obj.get("type", "unknown")
            if obj_type not in READ_TYPES:
                skipped[obj_type] += 1
                continue
            row = _object_row(str(obj_id), obj, vertices, path)
            if row is None:
                skipped[f"{obj_type} without geometry"] += 1
            else:
                rows.append(row)
    return _frame(rows, crs, dict(skipped), path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReaderError(f"cannot read {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReaderError(f"{path} is not valid JSON: {exc}") from None
    _check_document(doc, "CityJSON", path)
    return doc


def _read_seq(path: Path) -> tuple[dict[str, Any], Iterator[tuple[dict[str, Any], Vertices]]]:
    """The header line of a CityJSONSeq file, and its features as (objects, vertices)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ReaderError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ReaderError(f"{path} is not UTF-8 text: {exc}") from None
    docs = (_parse_line(line, number, path) for number, line in enumerate(lines, 1))
    docs = (doc for doc in docs if doc is not None)
    header = next(docs, None)
    if header is None:
        raise ReaderError(f"{path} is empty")
    _check_document(header, "CityJSON", path)

    def features() -> Iterator[tuple[dict[str, Any], Vertices]]:
        for feature in docs:
            _check_document(feature, "CityJSONFeature", path)
            yield feature["CityObjects"], _vertices(feature, header, path)

    return header, features()


def _parse_line(line: str, number: int, path: Path) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise ReaderError(f"{path}, line {number}: not valid JSON: {exc}") from None


def _check_document(doc: Any, expected_type: str, path: Path) -> None:
    if not isinstance(doc, dict) or doc.get("type") != expected_type:
        found = doc.get("type") if isinstance(doc, dict) else type(doc).__name__
        raise ReaderError(f"{path}: expected a {expected_type} object, found {found!r}")
    version = str(doc.get("version", ""))
    if expected_type == "CityJSON" and not version.startswith(("1.", "2.")):
        raise ReaderError(f"{path}: unsupported CityJSON version {version!r} (need 1.x or 2.0)")
    if not isinstance(doc.get("CityObjects"), dict):
        raise ReaderError(f"{path}: {expected_type} has no 'CityObjects' object")
    if not isinstance(doc.get("vertices"), list):
        raise ReaderError(f"{path}: {expected_type} has no 'vertices' array")


def _vertices(doc: dict[str, Any], header: dict[str, Any], path: Path) -> Vertices:
    """Real coordinates of ``doc``'s vertices, applying the header's ``transform`` if any."""
    try:
        vertices = np.asarray(doc["vertices"], dtype=float).reshape(-1, 3)
        transform = header.get("transform")
        if transform is not None:
            vertices = vertices * np.asarray(transform["scale"], dtype=float) + np.asarray(
                transform["translate"], dtype=float
            )
    except (ValueError, TypeError, KeyError) as exc:
        raise ReaderError(f"{path}: malformed vertices or transform: {exc}") from None
    return vertices


def _crs(header: dict[str, Any], path: Path) -> CRS | None:
    """Horizontal CRS of ``metadata.referenceSystem`` (an EPSG code where there is one)."""
    metadata = header.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ReaderError(f"{path}: 'metadata' is not a JSON object")
    reference = metadata.get("referenceSystem")
    if not reference:
        return None
    try:
        crs = CRS.from_user_input(reference)
    except CRSError as exc:
        raise ReaderError(f"{path}: unknown referenceSystem {reference!r}: {exc}") from None
    if crs.is_compound:
        crs = crs.sub_crs_list[0]
    epsg = crs.to_epsg()
    return CRS.from_epsg(epsg) if epsg else crs


def _object_row(
    obj_id: str, obj: dict[str, Any], vertices: Vertices, path: Path
) -> dict[str, Any] | None:
    try:
        geometry = _highest_lod(obj.get("geometry") or [])
        if geometry is None:
            return None
        polygons, semantics = _polygons(geometry, vertices)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
        raise ReaderError(
            f"{path}: CityObject {obj_id!r} has a malformed geometry ({problem})"
        ) from None
    if not polygons:
        return None
    geom_3d = MultiPolygon(polygons)
    z = shapely.get_coordinates(geom_3d, include_z=True)[:, 2]
    attributes, parents = obj.get("attributes") or {}, obj.get("parents") or []
    if not isinstance(attributes, dict) or not isinstance(parents, list):
        raise ReaderError(f"{path}: CityObject {obj_id!r}: 'attributes' must be a JSON "
                          "object and 'parents' an array")
    attributes = _flatten(attributes)
    row: dict[str, Any] = {
        "source_id": obj_id,
        "cityobject_type": obj["type"],
        "parent_id": parents[0] if obj["type"] == "BuildingPart" and parents else None,
        "lod": str(geometry["lod"]),
        "ground_elevation": float(z.min()),
        "height": float(z.max() - z.min()),
        "roof_shape": next((attributes[k] for k in ROOF_SHAPE_KEYS if k in attributes), None),
        "geometry": _footprint(polygons, semantics),
        "geom_3d": geom_3d,
    }
    for name, value in attributes.items():
        row[f"attributes.{name}" if name in COMPUTED_COLUMNS else name] = value
    return row


def _highest_lod(geometries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The geometry with the highest LOD ("2.2" > "2" > "1.3"); templates are not read."""
    candidates = [g for g in geometries if g.get("type") in _SURFACE_DEPTH]
    return max(candidates, key=lambda g: float(g["lod"]), default=None)


def _polygons(
    geometry: dict[str, Any], vertices: Vertices
) -> tuple[list[Polygon], list[str | None]]:
    """Every surface as a 3D polygon, with its semantic type (None without semantics)."""
    semantics = geometry.get("semantics") or {}
    kinds = [s["type"] for s in semantics.get("surfaces", [])]
    depth = _SURFACE_DEPTH[geometry["type"]]
    polygons: list[Polygon] = []
    surface_kinds: list[str | None] = []
    for surface, value in _surfaces(geometry["boundaries"], semantics.get("values"), depth):
        rings = [_ring(vertices, ring) for ring in surface]
        if len(rings[0]) < 3:
            continue  # a degenerate face has no area to contribute
        polygons.append(Polygon(rings[0], [r for r in rings[1:] if len(r) >= 3]))
        surface_kinds.append(kinds[value] if value is not None else None)
    return polygons, surface_kinds


def _ring(vertices: Vertices, indices: list[int]) -> Vertices:
    index = np.asarray(indices, dtype=int)
    if index.size and index.min() < 0:
        raise IndexError(f"negative vertex index {index.min()}")
    return vertices[index]


def _surfaces(
    boundaries: list[Any], values: list[Any] | None, depth: int
) -> Iterator[tuple[Surface, int | None]]:
    """Surfaces of nested ``boundaries`` paired with their semantic value index."""
    for i, item in enumerate(boundaries):
        value = values[i] if values is not None else None
        if depth == 0:
            yield item, value
        else:
            yield from _surfaces(item, value, depth - 1)


def _footprint(polygons: list[Polygon], kinds: list[str | None]) -> MultiPolygon:
    """2D footprint: the GroundSurfaces if the semantics name any, else all non-vertical faces."""
    faces = [p for p, kind in zip(polygons, kinds, strict=True) if kind == "GroundSurface"]
    if not faces:
        faces = [p for p in polygons if not _is_vertical(p)]
    flat = shapely.make_valid(shapely.force_2d(np.asarray(faces, dtype=object)))
    return _multipolygon(shapely.union_all(flat))


def _is_vertical(polygon: Polygon) -> bool:
    """Whether the face is (nearly) vertical, from its Newell normal."""
    ring = np.asarray(polygon.exterior.coords)[:-1]
    ring = ring - ring[0]  # local coordinates keep the cross products precise
    nxt = np.roll(ring, -1, axis=0)
    normal = np.array(
        [
            np.sum((ring[:, 1] - nxt[:, 1]) * (ring[:, 2] + nxt[:, 2])),
            np.sum((ring[:, 2] - nxt[:, 2]) * (ring[:, 0] + nxt[:, 0])),
            np.sum((ring[:, 0] - nxt[:, 0]) * (ring[:, 1] + nxt[:, 1])),
        ]
    )
    length = float(np.linalg.norm(normal))
    return length == 0.0 or abs(normal[2]) <= _VERTICAL_TOLERANCE * length


def _multipolygon(geometry: shapely.Geometry) -> MultiPolygon:
    """The polygonal parts of ``geometry`` (make_valid may leave lines or points behind)."""
    parts = shapely.get_parts(shapely.get_parts(geometry))  # collection → multi → single
    return MultiPolygon([p for p in parts if isinstance(p, Polygon) and not p.is_empty])


def _flatten(attributes: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested attribute objects as ``outer.inner`` keys; lists stay as they are."""
    flat: dict[str, Any] = {}
    for key, value in attributes.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _frame(
    rows: list[dict[str, Any]], crs: CRS | None, skipped: dict[str, int], path: Path
) -> gpd.GeoDataFrame:
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(COMPUTED_COLUMNS))
    duplicated = frame["source_id"][frame["source_id"].duplicated()]
    if not duplicated.empty:
        raise ReaderError(f"{path}: CityObject ids repeat: {sorted(set(duplicated))[:5]}")
    gdf = gpd.GeoDataFrame(frame, geometry="geometry", crs=crs)
    gdf.attrs["skipped"] = skipped
    return gdf
