"""Recognise an input file's format from its name (and, for JSON, its first bytes)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from cim.ingest.errors import ReaderError


class Format(StrEnum):
    geopackage = "GeoPackage"
    geojson = "GeoJSON"
    shapefile = "Shapefile"
    flatgeobuf = "FlatGeobuf"
    cityjson = "CityJSON"
    osm = "OSM"
    geotiff = "GeoTIFF"

    @property
    def is_raster(self) -> bool:
        return self is Format.geotiff


SUFFIXES = {
    ".gpkg": Format.geopackage,
    ".geojson": Format.geojson,
    ".geojsonl": Format.geojson,
    ".zip": Format.shapefile,
    ".shp": Format.shapefile,
    ".fgb": Format.flatgeobuf,
    ".cityjson": Format.cityjson,
    ".jsonl": Format.cityjson,
    ".osm": Format.osm,
    ".pbf": Format.osm,
    ".tif": Format.geotiff,
    ".tiff": Format.geotiff,
}


def detect_format(path: Path) -> Format:
    if not path.exists():
        raise ReaderError(f"{path}: no such file")
    if path.is_dir():
        raise ReaderError(f"{path} is a folder: give the file itself (zip a Shapefile)")
    suffix = path.suffix.lower()
    if suffix == ".json":
        with path.open("rb") as f:
            head = f.read(4096)
        return Format.cityjson if b'"CityJSON"' in head else Format.geojson
    if suffix in SUFFIXES:
        return SUFFIXES[suffix]
    supported = ", ".join(sorted(SUFFIXES))
    raise ReaderError(f"{path.name}: unsupported file type {suffix!r}; supported: {supported}")
