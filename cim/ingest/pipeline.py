"""``cim import``: read a file, map and validate its features, and load them with history.

The whole import is one database transaction. A file that cannot be read, has no CRS or
does not fit the layer changes nothing; features that fail validation are listed in the
report and, unless ``skip_invalid`` is set, make the import change nothing either.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS
from sqlalchemy import Engine

from cim.ingest import geometry as geo
from cim.ingest.crs import crs_label, resolve_crs
from cim.ingest.errors import CrsError, ImportRejected, MappingError, ReaderError
from cim.ingest.fields import (
    ID_ALIASES,
    REFERENCE_COLUMNS,
    SPECS,
    LayerSpec,
    convert,
    out_of_range,
    parse_maps,
)
from cim.ingest.formats import Format, detect_format
from cim.ingest.heights import fill_heights
from cim.ingest.load import Loader
from cim.ingest.registry import close_import, open_import
from cim.ingest.report import ImportReport, Rejection, Repair
from cim.schema.models import CITY_CLASSES, SRID, CityObject, Provenance

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]
WGS84 = CRS.from_epsg(SRID)
CHUNK_ROWS = 50_000
# Measures the schema keeps in metres: missing ones are computed in the city's projected CRS.
AREA_COLUMNS = ("area_m2",)
LENGTH_COLUMNS = ("length_m",)


@dataclass
class ImportOptions:
    layer: str
    crs: str | None = None
    maps: list[str] = field(default_factory=list)
    source: str | None = None
    id_field: str | None = None
    source_layer: str | None = None
    gcj02: bool = False
    provenance: Provenance = Provenance.real
    skip_invalid: bool = False
    replace: bool = False
    cim_level: int | None = None


def read_features(path: Path, fmt: Format, options: ImportOptions) -> gpd.GeoDataFrame:
    if fmt is Format.cityjson:
        if options.layer != "buildings":
            raise MappingError("CityJSON imports into --layer buildings only")
        from cim.ingest.cityjson import read_cityjson

        return read_cityjson(path)
    if fmt is Format.osm:
        from cim.ingest.osm import read_osm

        return read_osm(path, options.layer)
    from cim.ingest.vector import read_vector

    return read_vector(path, fmt, options.source_layer)


class _Rows:
    """Rejections collected per row while the checks run, first reason wins."""

    def __init__(self, n: int) -> None:
        self.reasons = np.full(n, None, dtype=object)

    def reject(self, mask: np.ndarray, reason: str | np.ndarray) -> None:
        target = mask & (self.reasons == None)  # noqa: E711
        if isinstance(reason, np.ndarray):
            self.reasons[target] = reason[target]
        else:
            self.reasons[target] = reason

    def merge(self, reasons: np.ndarray) -> None:
        self.reject(reasons != None, reasons)  # noqa: E711

    @property
    def ok(self) -> np.ndarray:
        return self.reasons == None  # noqa: E711


def _source_ids(frame: pd.DataFrame, id_field: str | None, geoms: np.ndarray,
                report: ImportReport) -> tuple[pd.Series, str | None]:
    """The features' ids in their source: ``--id-field``, a usual id column, or a digest."""
    lower = {c.lower(): c for c in frame.columns}
    if id_field is not None:
        if id_field not in frame.columns:
            raise MappingError(f"--id-field {id_field!r} is not a field of the input")
        column = id_field
    else:
        column = next((lower[a] for a in ID_ALIASES if a in lower), None)
    if column is None:
        report.warnings.append(
            "no id field found: objects are identified by their geometry, so a re-import "
            "matches only unchanged shapes (give --id-field)"
        )
        wkb = shapely.to_wkb(geoms, hex=True)
        return pd.Series([None if w is None else uuid.uuid5(uuid.NAMESPACE_OID, w).hex
                          for w in wkb], index=frame.index, dtype="string"), None
    ids = frame[column]
    # Whole numbers read as floats become integer ids (7, not 7.0) while they are exact.
    if pd.api.types.is_float_dtype(ids) and ((ids.dropna() % 1 == 0)
                                             & (ids.dropna().abs() < 2**53)).all():
        ids = ids.astype("Int64")
    return ids.astype("string"), column


def _map_fields(frame: pd.DataFrame, spec: LayerSpec, maps: list[str], rows: _Rows,
                claimed: set[str]) -> pd.DataFrame:
    """Schema columns from source columns; out-of-range values reject their row."""
    overrides = parse_maps(maps, spec)
    lower = {c.lower(): c for c in frame.columns if c not in claimed}
    out = pd.DataFrame(index=frame.index)
    for f in spec.fields:
        if f.name in overrides:
            source = overrides[f.name].source
            if source not in frame.columns:
                raise MappingError(f"--map {f.name}={source}: the input has no field {source!r}")
            factor = overrides[f.name].factor
        else:
            source = next((lower[a.lower()] for a in f.aliases if a.lower() in lower), None)
            factor = None
        if source is None or source in claimed:
            out[f.name] = convert(f, pd.Series(pd.NA, index=frame.index, dtype=object))
            continue
        claimed.add(source)
        lower.pop(source.lower(), None)
        values = convert(f, frame[source], factor)
        bad = out_of_range(f, values)
        if bad.any():
            shown = values.astype("string").fillna("").to_numpy()
            rows.reject(bad, np.array(
                [f"{f.name} {v} outside {f.low:g}..{f.high:g} (field {source!r})" for v in shown],
                dtype=object))
        out[f.name] = values
    for column, default in spec.required.items():
        # Convert the default once, then fill: not once per row.
        value = convert(next(f for f in spec.fields if f.name == column),
                        pd.Series([default], dtype=object)).iloc[0]
        out[column] = out[column].fillna(value)
    return out


def _attributes(frame: pd.DataFrame, unclaimed: list[str]) -> list[str]:
    """Each row's unmapped source values as JSON (NULLs left out)."""
    if not unclaimed:
        return ["{}"] * len(frame)
    records = frame[unclaimed].astype(object).where(frame[unclaimed].notna(), None)
    return [
        json.dumps({k: v for k, v in rec.items() if v is not None}, default=str,
                   ensure_ascii=False)
        for rec in records.to_dict("records")
    ]


def _measure(geoms: np.ndarray, city_crs: CRS, out: pd.DataFrame) -> None:
    """Fill missing areas and lengths, measured in the city's metric CRS."""
    wanted = [c for c in (*AREA_COLUMNS, *LENGTH_COLUMNS)
              if c in out.columns and out[c].isna().any()]
    if not wanted:
        return
    metric = geo.reproject(shapely.force_2d(geoms), WGS84, city_crs)
    for column in wanted:
        values = shapely.area(metric) if column in AREA_COLUMNS else shapely.length(metric)
        out[column] = out[column].fillna(pd.Series(values, index=out.index))


@dataclass(frozen=True)
class Identity:
    """Each input row's source id, decided once for the whole file."""

    ids: pd.Series
    column: str | None
    duplicate: np.ndarray


def identify(gdf: gpd.GeoDataFrame, id_field: str | None, report: ImportReport) -> Identity:
    frame = gdf.drop(columns=[gdf.geometry.name])
    ids, column = _source_ids(frame, id_field, np.asarray(gdf.geometry.array), report)
    duplicate = ids.duplicated(keep="first").to_numpy() & ids.notna().to_numpy()
    return Identity(ids, column, duplicate)


def prepare(gdf: gpd.GeoDataFrame, identity: Identity, model: type[CityObject],
            options: ImportOptions, source: str, crs: CRS, city_crs: CRS,
            report: ImportReport) -> pd.DataFrame:
    """Checked, mapped and reprojected rows for :class:`cim.ingest.load.Loader`.

    ``gdf`` may be a slice of the input (its index gives the rows' positions in the file);
    rejections, repairs and estimates are added to ``report``.
    """
    spec = SPECS[model.__tablename__]
    n = len(gdf)
    rows = _Rows(n)
    frame = pd.DataFrame(gdf.drop(columns=[gdf.geometry.name]))
    frame = frame.drop(columns=[c for c in ("geom_3d",) if c in frame.columns])
    raw_geoms = np.asarray(gdf.geometry.array, dtype=object)
    if "geom_3d" in gdf.columns:
        raw_3d = np.asarray(gdf["geom_3d"].to_numpy(), dtype=object)
    else:
        raw_3d = np.where(shapely.has_z(raw_geoms), raw_geoms, None)

    kind = model.geometry_kind
    flat = shapely.force_2d(raw_geoms) if shapely.has_z(raw_geoms).any() else raw_geoms
    geoms, rejected, repaired = geo.check_and_repair(flat, kind)
    rows.merge(rejected)
    geoms, rejected = geo.coerce(geoms, kind)
    rows.merge(rejected)
    rows.reject(shapely.is_missing(geoms), f"no {kind.lower()} parts in the geometry")

    if options.gcj02:
        from cim.ingest.gcj02 import gcj02_to_wgs84_geometries

        geoms = gcj02_to_wgs84_geometries(geoms)
        raw_3d = gcj02_to_wgs84_geometries(raw_3d)
        report.warnings.append("GCJ-02 coordinates converted to WGS84 (about 1-2 m accuracy)")
    else:
        geoms = geo.reproject(geoms, crs, WGS84)
        raw_3d = geo.reproject(raw_3d, crs, WGS84)
    rows.reject(geo.outside_lonlat(geoms),
                f"coordinates fall outside the Earth in {report.input_crs}: wrong --crs?")

    positions = gdf.index.to_numpy()
    source_ids, id_column = identity.ids.iloc[positions], identity.column
    rows.reject(source_ids.isna().to_numpy(), "missing id")
    dup = identity.duplicate[positions]
    if dup.any():
        reasons = np.full(n, None, dtype=object)
        reasons[dup] = [f"duplicate id {v!r}" for v in source_ids[dup]]
        rows.merge(reasons)

    claimed = {id_column} if id_column else set()
    mapped = _map_fields(frame, spec, options.maps, rows, claimed)
    if model.__tablename__ == "buildings":
        estimated, reasons = fill_heights(mapped)
        rows.merge(reasons)
        report.estimated_heights += int((estimated & rows.ok).sum())
    unclaimed = [c for c in frame.columns if c not in claimed]

    ok = rows.ok
    report.rejected += [
        Rejection(row=int(positions[i]), reason=str(rows.reasons[i]),
                  source_id=None if pd.isna(source_ids.iloc[i]) else source_ids.iloc[i])
        for i in np.flatnonzero(~ok)
    ]
    report.repaired += [
        Repair(row=int(positions[i]), source_id=source_ids.iloc[i], reason=str(repaired[i]))
        for i in np.flatnonzero((repaired != None) & ok)  # noqa: E711
    ]

    out = mapped[ok].copy()
    out["source_id"] = source_ids[ok].to_numpy()
    out["id"] = source + ":" + out["source_id"]
    for ref in REFERENCE_COLUMNS:
        if ref in out.columns:
            out[ref] = (source + ":" + out[ref].astype("string")).where(out[ref].notna())
    out["source"] = source
    out["provenance"] = options.provenance.value
    out["cim_level"] = options.cim_level or _cim_level(model, raw_3d[ok])
    out["attributes"] = _attributes(frame[ok], unclaimed)
    _measure(geoms[ok], city_crs, out)
    out["geom"] = geo.hex_ewkb(geoms[ok])
    out["geom_3d"] = geo.hex_ewkb(raw_3d[ok])
    return out


def _cim_level(model: type[CityObject], geoms_3d: np.ndarray) -> np.ndarray | int:
    """CIM level by class; buildings with their own 3D (roof) geometry reach level 3."""
    if model.__tablename__ == "buildings":
        return np.where(shapely.is_missing(geoms_3d), model.cim_level_default, 3)
    return model.cim_level_default


@dataclass(frozen=True)
class _Input:
    """A file read and understood: its rows, CRS and ids, ready to check in chunks."""

    model: type[CityObject]
    source: str
    gdf: gpd.GeoDataFrame
    crs: CRS
    identity: Identity


def _read_input(path: Path, options: ImportOptions,
                step: Progress) -> tuple[_Input, ImportReport]:
    fmt = detect_format(path)
    model = CITY_CLASSES.get(options.layer)
    if model is None or options.layer == "dems":
        known = ", ".join(sorted(CITY_CLASSES))
        if options.layer == "dems":
            raise MappingError("DEMs are imported with --layer dems from a GeoTIFF")
        raise MappingError(f"unknown layer {options.layer!r}; layers: {known}")
    if fmt.is_raster:
        raise MappingError(f"{path.name} is a raster: only --layer dems takes rasters")
    source = options.source or path.name.split(".")[0]
    report = ImportReport(path=str(path), format=fmt.value, layer=options.layer, source=source)

    step("read", 0.0)
    gdf = read_features(path, fmt, options).reset_index(drop=True)
    report.features_read = len(gdf)
    for kind, count in gdf.attrs.get("skipped", {}).items():
        report.warnings.append(f"skipped {count} input objects: {kind}")
    if len(gdf) == 0:
        raise ReaderError(f"{path.name} holds no features")
    given = options.crs
    if options.gcj02 and given is None and gdf.crs is None:
        given = "4326"  # GCJ-02 data seldom declares a CRS: it is longitude/latitude
    crs, notes = resolve_crs(gdf.crs, given)
    if options.gcj02 and not crs.is_geographic:
        raise CrsError(f"--gcj02 needs longitude/latitude input, not {crs_label(crs)}")
    report.warnings += notes
    report.input_crs = "GCJ-02" if options.gcj02 else crs_label(crs)
    identity = identify(gdf, options.id_field, report)
    return _Input(model, source, gdf, crs, identity), report


def _chunks(data: _Input, options: ImportOptions, city_crs: int, report: ImportReport,
            step: Progress) -> Iterator[pd.DataFrame]:
    """Checked chunks of the input, in file order; findings go to ``report``."""
    n = len(data.gdf)
    for start in range(0, n, CHUNK_ROWS):
        step("validate and load", start / n)
        yield prepare(data.gdf.iloc[start:start + CHUNK_ROWS], data.identity, data.model,
                      options, data.source, data.crs, CRS.from_epsg(city_crs), report)


def check_file(path: Path, options: ImportOptions, *, city_crs: int,
               progress: Progress | None = None) -> ImportReport:
    """Validate a file as an import would, touching no database (``cim import --check``)."""
    started = time.perf_counter()
    step = progress or (lambda stage, fraction: None)
    data, report = _read_input(path, options, step)
    for _ in _chunks(data, options, city_crs, report, step):
        pass
    report.status = "rejected" if report.rejected else "checked"
    report.seconds = time.perf_counter() - started
    return report


def import_file(
    engine: Engine,
    path: Path,
    options: ImportOptions,
    *,
    city_crs: int,
    progress: Progress | None = None,
) -> ImportReport:
    """Import one file into one layer, all or nothing; returns the report (raises on error)."""
    started = time.perf_counter()
    step = progress or (lambda stage, fraction: None)
    data, report = _read_input(path, options, step)
    model, source, n = data.model, data.source, len(data.gdf)

    with engine.begin() as conn:
        report.import_id = open_import(conn, report, options.provenance)
        with Loader(conn, model, report.import_id, source=source, replace=options.replace,
                    expected_rows=n) as loader:
            # Check chunk k+1 while PostgreSQL parses chunk k; a strict import that meets a
            # rejection stops loading but checks on, so its report is complete.
            for frame in _chunks(data, options, city_crs, report, step):
                if not report.rejected or options.skip_invalid:
                    loader.write(frame)
            if report.rejected and not options.skip_invalid:
                report.status = "rejected"
                report.seconds = time.perf_counter() - started
                raise ImportRejected(report)
            step("index", 1.0)
        counts = loader.counts
        report.inserted, report.updated = counts.inserted, counts.updated
        report.unchanged, report.deleted = counts.unchanged, counts.deleted
        report.status = "completed"
        report.seconds = time.perf_counter() - started
        close_import(conn, report)
    log.info("import %s into %s: %s", path.name, options.layer, report.summary())
    return report
