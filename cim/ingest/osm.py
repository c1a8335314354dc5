"""Read buildings, roads and water from OpenStreetMap files (``.osm`` XML, ``.osm.pbf``).

Ways become lines or, when closed, polygons built here from their node locations, so a way
whose nodes are missing from a truncated extract is noticed and counted rather than silently
lost. Multipolygon relations are assembled by libosmium's area builder. Every result is in
EPSG:4326 and keeps the layer's relevant tags under their OSM names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import osmium
import pandas as pd
import shapely
from osmium.filter import KeyFilter
from shapely import LineString, MultiPolygon, Polygon

from cim.ingest.errors import ReaderError

SUFFIXES = (".osm", ".pbf")
"""File endings read (``.osm.pbf`` ends in ``.pbf``)."""

ROAD_CLASSES = frozenset(
    {
        "motorway",
        "motorway_link",
        "trunk",
        "trunk_link",
        "primary",
        "primary_link",
        "secondary",
        "secondary_link",
        "tertiary",
        "tertiary_link",
        "unclassified",
        "residential",
        "living_street",
        "service",
        "road",
        "busway",
    }
)
"""``highway`` values that are roads for vehicles (not footways, cycleways, tracks, ...)."""

WATERWAY_KINDS = frozenset({"river", "canal", "stream", "drain", "ditch"})

_NAME_TAGS = ("name", "name:en", "name:zh")
_ADDRESS_TAGS = ("addr:street", "addr:housenumber", "addr:postcode", "addr:city")

_WKB = osmium.geom.WKBFactory()

Tags = Any  # osmium.osm.TagList: .get(key, default) like a mapping


@dataclass(frozen=True)
class _Layer:
    keys: tuple[str, ...]
    """An object needs one of these tags to be looked at (a fast pre-filter)."""
    accept: Callable[[Tags], bool]
    columns: tuple[str, ...]
    """Tags kept as columns."""
    areas: bool
    """Polygons from closed ways and multipolygons, else lines from ways."""


def _is_building(tags: Tags) -> bool:
    return tags.get("building", "no") != "no" or tags.get("building:part", "no") != "no"


def _is_road(tags: Tags) -> bool:
    return tags.get("highway") in ROAD_CLASSES and tags.get("area") != "yes"


def _is_water_body(tags: Tags) -> bool:
    return (
        tags.get("natural") == "water"
        or "water" in tags
        or tags.get("landuse") == "reservoir"
        or tags.get("waterway") == "riverbank"
    )


def _is_waterway(tags: Tags) -> bool:
    return tags.get("waterway") in WATERWAY_KINDS


LAYERS: dict[str, _Layer] = {
    "buildings": _Layer(
        keys=("building", "building:part"),
        accept=_is_building,
        columns=(
            "building",
            "building:part",
            "building:levels",
            "building:levels:underground",
            "building:min_level",
            "height",
            "min_height",
            "roof:shape",
            "roof:height",
            "roof:levels",
            "building:use",
            "building:material",
            "amenity",
            "start_date",
            *_NAME_TAGS,
            *_ADDRESS_TAGS,
        ),
        areas=True,
    ),
    "roads": _Layer(
        keys=("highway",),
        accept=_is_road,
        columns=(
            "highway",
            "ref",
            "lanes",
            "maxspeed",
            "oneway",
            "junction",
            "bridge",
            "tunnel",
            "layer",
            "surface",
            "width",
            *_NAME_TAGS,
        ),
        areas=False,
    ),
    "water_bodies": _Layer(
        keys=("natural", "water", "landuse", "waterway"),
        accept=_is_water_body,
        columns=("natural", "water", "landuse", "waterway", "intermittent", *_NAME_TAGS),
        areas=True,
    ),
    "waterways": _Layer(
        keys=("waterway",),
        accept=_is_waterway,
        columns=("waterway", "width", "intermittent", "tunnel", "layer", *_NAME_TAGS),
        areas=False,
    ),
}
"""Layers ``read_osm`` can read, by the schema table they feed."""


def read_osm(path: Path, layer: str) -> gpd.GeoDataFrame:
    """One layer of an OSM file, in EPSG:4326.

    Columns: ``source_id`` ("way/123", "relation/45"), the layer's tags (None where a
    feature lacks one) and ``geometry``: MultiPolygon for ``buildings`` and ``water_bodies``,
    LineString for ``roads`` and ``waterways``. Features that could not be built (missing
    nodes, unclosed or too short ways, multipolygons libosmium could not assemble) are
    counted by reason in ``gdf.attrs["skipped"]``.
    """
    spec = LAYERS.get(layer)
    if spec is None:
        raise ReaderError(f"unknown OSM layer {layer!r}; supported: {', '.join(LAYERS)}")
    path = Path(path)
    if not path.name.endswith(SUFFIXES):
        raise ReaderError(f"{path}: not an OSM file (expected {', '.join(SUFFIXES)})")
    if not path.is_file():
        raise ReaderError(f"cannot read {path}: no such file")

    collector = _Collector(spec)
    try:
        collector.read(path)
    except RuntimeError as exc:  # libosmium reports parse errors as RuntimeError subclasses
        raise ReaderError(f"{path} is not a readable OSM file: {exc}") from None
    return collector.frame()


class _Collector:
    """Rows of one layer, and what was skipped, gathered while streaming a file."""

    def __init__(self, spec: _Layer) -> None:
        self.spec = spec
        self.rows: list[dict[str, Any]] = []
        self.skipped: Counter[str] = Counter()
        self.multipolygons: set[int] = set()
        self.assembled: set[int] = set()

    def read(self, path: Path) -> None:
        keys = KeyFilter(*self.spec.keys)
        processor = osmium.FileProcessor(path).with_locations().with_filter(keys)
        if self.spec.areas:
            processor = processor.with_areas(KeyFilter(*self.spec.keys))
        for obj in processor:
            if not self.spec.accept(obj.tags):
                continue
            if obj.is_way():
                self._way(obj)
            elif obj.is_relation() and obj.tags.get("type") == "multipolygon":
                self.multipolygons.add(obj.id)
            elif obj.is_area() and not obj.from_way():
                self._relation_area(obj)
        # A multipolygon libosmium could not assemble (members missing, broken rings).
        self.skipped["relation: not assembled"] += len(self.multipolygons - self.assembled)

    def _way(self, way: osmium.osm.Way) -> None:
        coords = _way_coordinates(way.nodes)
        if coords is None:
            self.skipped["way: missing nodes"] += 1
        elif not self.spec.areas:
            if len(coords) < 2:
                self.skipped["way: fewer than 2 nodes"] += 1
            else:
                self._add(f"way/{way.id}", way.tags, LineString(coords))
        elif not way.is_closed():
            self.skipped["way: not closed"] += 1
        elif len(coords) < 4:
            self.skipped["way: fewer than 4 nodes"] += 1
        else:
            self._add(f"way/{way.id}", way.tags, MultiPolygon([Polygon(coords)]))

    def _relation_area(self, area: osmium.osm.Area) -> None:
        try:
            geometry = shapely.from_wkb(_WKB.create_multipolygon(area))
        except RuntimeError:  # an area without usable rings
            return
        self.assembled.add(area.orig_id())
        self._add(f"relation/{area.orig_id()}", area.tags, geometry)

    def _add(self, source_id: str, tags: Tags, geometry: shapely.Geometry) -> None:
        row = {key: tags.get(key) for key in self.spec.columns}
        self.rows.append({"source_id": source_id, **row, "geometry": geometry})

    def frame(self) -> gpd.GeoDataFrame:
        columns = ["source_id", *self.spec.columns, "geometry"]
        frame = pd.DataFrame(self.rows, columns=columns)
        # Tags are text; a tag no feature has would otherwise be an all-None object column.
        text = ["source_id", *self.spec.columns]
        frame[text] = frame[text].astype("str")
        gdf = gpd.GeoDataFrame(frame, geometry="geometry", crs="EPSG:4326")
        gdf.attrs["skipped"] = {reason: n for reason, n in self.skipped.items() if n}
        return gdf


def _way_coordinates(nodes: Iterable[osmium.osm.NodeRef]) -> npt.NDArray[np.float64] | None:
    """Lon/lat of a way's nodes, None when any node's location is unknown."""
    coords = []
    for node in nodes:
        if not node.location.valid():
            return None
        coords.append((node.lon, node.lat))
    return np.asarray(coords, dtype=float).reshape(-1, 2)
