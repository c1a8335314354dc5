"""How source attributes map onto the schema: per layer, each column's aliases, type and range.

A source column is taken for a schema column when its name matches one of the aliases
(case-insensitive, first match wins) unless ``--map column=source_field[*factor]`` says
otherwise. Source columns nobody claims are kept in the ``attributes`` JSON, so an import
never drops a value silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cim.ingest.errors import MappingError

Kind = str  # "float" | "int" | "bool" | "str"


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    aliases: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    vocabulary: dict[str, str] | None = None
    """Source value (lower case) -> canonical value; values not listed become ``other``."""


@dataclass(frozen=True)
class LayerSpec:
    table: str
    geometry: str  # "polygon" | "line" | "point" | "any"
    fields: tuple[Field, ...]
    required: dict[str, str] = field(default_factory=dict)
    """Columns that must not be NULL, with the value used when the source has none."""


BUILDING_USES = {
    **dict.fromkeys(
        ["residential", "apartments", "house", "dormitory", "detached", "terrace",
         "semidetached_house", "bungalow", "residence"], "residential"),
    **dict.fromkeys(["commercial", "retail", "mall", "shop", "supermarket", "hotel",
                     "kiosk", "restaurant"], "commercial"),
    **dict.fromkeys(["office", "offices"], "office"),
    **dict.fromkeys(["industrial", "warehouse", "factory", "manufacture", "storage_tank"],
                    "industrial"),
    **dict.fromkeys(["public", "civic", "government", "townhall", "public_building",
                     "library", "museum", "theatre", "stadium", "sports_centre"], "public"),
    **dict.fromkeys(["school", "university", "college", "kindergarten", "education"],
                    "education"),
    **dict.fromkeys(["hospital", "clinic", "healthcare"], "healthcare"),
    **dict.fromkeys(["church", "temple", "mosque", "religious", "cathedral"], "religious"),
    **dict.fromkeys(["train_station", "transportation", "parking", "garage", "garages"],
                    "transport"),
    "mixed": "mixed",
    "mixed_use": "mixed",
}
ROAD_CLASSES = {
    v: v.removesuffix("_link")
    for v in ["motorway", "trunk", "primary", "secondary", "tertiary", "motorway_link",
              "trunk_link", "primary_link", "secondary_link", "tertiary_link"]
} | {v: v for v in ["residential", "service", "unclassified", "living_street", "track",
                    "pedestrian", "footway", "cycleway", "path", "steps", "busway", "rail"]}
ROOF_SHAPES = {v: v for v in ["flat", "gabled", "hipped", "pyramidal", "skillion", "dome",
                              "mansard", "gambrel", "round", "onion", "half-hipped"]}
BUILDING_STATUS = {
    "planned": "planned", "proposed": "planned", "construction": "under_construction",
    "under_construction": "under_construction", "existing": "existing", "yes": "existing",
    "demolished": "demolished", "razed": "demolished",
}
WATER_KINDS = {v: v for v in ["lake", "reservoir", "pond", "river", "canal", "basin"]} | {
    "riverbank": "river", "lagoon": "lake", "oxbow": "lake", "water": "lake",
    "stream": "river",
}
WATERWAY_KINDS = {v: v for v in ["river", "canal", "stream", "drain", "ditch"]}
ADMIN_LEVELS = {v: v for v in ["province", "city", "district", "subdistrict",
                                "community_grid"]} | {
    # OpenStreetMap admin_level as used in China.
    "4": "province", "5": "city", "6": "district", "8": "subdistrict", "10": "community_grid",
}
NODE_KINDS = {v: v for v in ["manhole", "inlet", "outfall", "pumping_station", "junction",
                             "storage"]} | {"pump": "pumping_station", "gully": "inlet"}

NAME = Field("name", "str", ("name", "name:zh", "name_zh", "NAME", "名称"))
# Given values are kept; missing ones are measured in the city's CRS on import.
AREA = Field("area_m2", "float", ("area_m2", "shape_area"), 0, 1e11)
LENGTH = Field("length_m", "float", ("length_m", "shape_length"), 0, 1e7)


def _spec(table: str, geometry: str, *fields: Field, **required: str) -> LayerSpec:
    return LayerSpec(table, geometry, (NAME, *fields), required)


SPECS: dict[str, LayerSpec] = {
    s.table: s
    for s in (
        _spec(
            "buildings", "polygon",
            Field("height", "float", ("height", "building:height", "hgt", "bldg_height",
                                      "measuredheight"), 0.5, 1000),
            Field("min_height", "float", ("min_height", "building:min_height"), 0, 1000),
            Field("floors", "int", ("floors", "building:levels", "levels", "storeys",
                                    "floor", "num_floors"), 0, 200),
            Field("use", "str", ("use", "building:use", "usage", "function", "kind_detail",
                                 "building"), vocabulary=BUILDING_USES),
            Field("year_built", "int", ("year_built", "start_date", "yearofconstruction",
                                        "construction_year"), 1000, 2100),
            Field("roof_shape", "str", ("roof_shape", "roof:shape", "rooftype"),
                  vocabulary=ROOF_SHAPES),
            Field("roof_height", "float", ("roof_height", "roof:height"), 0, 300),
            Field("status", "str", ("status", "lifecycle", "lifecycle_status"),
                  vocabulary=BUILDING_STATUS),
            Field("address_id", "str", ("address_id",)),
            Field("parent_id", "str", ("parent_id", "root_id")),
            Field("ground_elevation", "float", ("ground_elevation", "elevation", "ele"),
                  -500, 9000),
            status="existing", min_height="0",
        ),
        _spec(
            "water_bodies", "polygon",
            Field("kind", "str", ("kind", "water", "natural", "waterway", "landuse", "type"),
                  vocabulary=WATER_KINDS),
            Field("normal_level", "float", ("normal_level",), -500, 9000),
            Field("warning_level", "float", ("warning_level",), -500, 9000),
            AREA,
            kind="lake",
        ),
        _spec(
            "waterways", "line",
            Field("kind", "str", ("kind", "waterway", "fclass", "type"),
                  vocabulary=WATERWAY_KINDS),
            Field("width", "float", ("width",), 0, 30000),
            kind="river",
        ),
        _spec(
            "drainage_nodes", "point",
            Field("kind", "str", ("kind", "type", "node_type"), vocabulary=NODE_KINDS),
            Field("invert_elevation", "float", ("invert_elevation", "invert", "invert_el"),
                  -500, 9000),
            Field("ground_elevation", "float", ("ground_elevation", "rim_elevation", "rim"),
                  -500, 9000),
            Field("capacity_m3s", "float", ("capacity_m3s", "capacity"), 0, 1000),
            kind="manhole",
        ),
        _spec(
            "drainage_pipes", "line",
            Field("shape", "str", ("shape", "xsection")),
            Field("diameter_m", "float", ("diameter_m", "diameter", "dia"), 0.01, 10),
            Field("width_m", "float", ("width_m",), 0.01, 50),
            Field("height_m", "float", ("height_m",), 0.01, 50),
            Field("upstream_invert", "float", ("upstream_invert", "us_invert", "in_offset"),
                  -500, 9000),
            Field("downstream_invert", "float",
                  ("downstream_invert", "ds_invert", "out_offset"), -500, 9000),
            Field("roughness", "float", ("roughness", "manning_n", "n"), 0.005, 0.1),
            Field("material", "str", ("material",)),
            LENGTH,
            Field("from_node", "str", ("from_node", "us_node", "inlet_node")),
            Field("to_node", "str", ("to_node", "ds_node", "outlet_node")),
            shape="circular",
        ),
        _spec(
            "catchments", "polygon",
            Field("outlet_node", "str", ("outlet_node", "outlet")),
            Field("impervious_fraction", "float", ("impervious_fraction", "imperv"), 0, 1),
            AREA,
        ),
        _spec(
            "roads", "line",
            Field("road_class", "str", ("road_class", "class", "highway", "kind_detail",
                                        "fclass"), vocabulary=ROAD_CLASSES),
            Field("lanes", "int", ("lanes",), 1, 20),
            Field("max_speed_kmh", "float", ("max_speed_kmh", "maxspeed", "speed_limit"),
                  1, 200),
            Field("oneway", "bool", ("oneway",)),
            Field("bridge", "bool", ("bridge", "is_bridge")),
            Field("tunnel", "bool", ("tunnel", "is_tunnel")),
            Field("capacity_vph", "float", ("capacity_vph", "capacity"), 0, 50000),
            Field("surface", "str", ("surface",)),
            road_class="other", oneway="false", bridge="false", tunnel="false",
        ),
        _spec(
            "structures", "any",
            Field("kind", "str", ("kind", "type", "structure")),
            Field("road_id", "str", ("road_id",)),
            Field("clearance_m", "float", ("clearance_m", "maxheight", "clearance"), 0, 100),
            Field("deck_elevation", "float", ("deck_elevation",), -500, 9000),
            Field("low_point_elevation", "float", ("low_point_elevation",), -500, 9000),
            LENGTH,
            kind="bridge",
        ),
        _spec(
            "assets", "any",
            Field("asset_type", "str", ("asset_type", "type", "utility", "power", "kind")),
            Field("subtype", "str", ("subtype",)),
            Field("status", "str", ("status",)),
            Field("address_id", "str", ("address_id",)),
            asset_type="other",
        ),
        _spec(
            "sensors", "point",
            Field("kind", "str", ("kind", "type", "sensor_type")),
            Field("unit", "str", ("unit", "units")),
            Field("status", "str", ("status",)),
            Field("target_id", "str", ("target_id",)),
            kind="other",
        ),
        _spec(
            "addresses", "point",
            Field("full_address", "str", ("full_address", "address", "display_name")),
            Field("street", "str", ("street", "addr:street", "addr_street")),
            Field("house_number", "str", ("house_number", "addr:housenumber",
                                          "addr_housenumber")),
            Field("postcode", "str", ("postcode", "addr:postcode", "addr_postcode")),
            Field("admin_code", "str", ("admin_code",)),
        ),
        _spec(
            "admin_units", "polygon",
            Field("level", "str", ("level", "admin_level"), vocabulary=ADMIN_LEVELS),
            Field("code", "str", ("code", "adcode")),
            Field("parent_code", "str", ("parent_code",)),
            level="city",
        ),
    )
}
"""Vector layers ``cim import`` accepts (DEMs are raster and handled apart)."""

REFERENCE_COLUMNS = ("address_id", "parent_id", "from_node", "to_node", "outlet_node",
                     "road_id", "target_id")
"""Columns holding another object's source id: prefixed with the source like ``id``."""

ID_ALIASES = ("source_id", "id", "osm_id", "objectid", "fid", "gml_id", "uuid", "identifier")

_MAP_RE = re.compile(r"^(?P<column>\w+)=(?P<source>[^*]+?)(?:\*(?P<factor>[0-9.eE+-]+))?$")


@dataclass(frozen=True)
class ColumnMap:
    source: str
    factor: float | None = None


def parse_maps(items: list[str], spec: LayerSpec) -> dict[str, ColumnMap]:
    """Parse ``--map column=source_field[*factor]`` options against a layer's columns."""
    known = {f.name for f in spec.fields}
    result: dict[str, ColumnMap] = {}
    for item in items:
        match = _MAP_RE.match(item.strip())
        if not match:
            raise MappingError(f"--map {item!r}: expected COLUMN=SOURCE_FIELD[*FACTOR]")
        column = match["column"]
        if column not in known:
            raise MappingError(
                f"--map {item!r}: {spec.table} has no column {column!r}; "
                f"known: {', '.join(sorted(known))}"
            )
        factor = float(match["factor"]) if match["factor"] else None
        result[column] = ColumnMap(match["source"].strip(), factor)
    return result


_NUMBER = re.compile(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?")


def _numeric(values: pd.Series) -> pd.Series:
    """Numbers from numbers or strings like "25 m", "50 km/h", "3;4" (first number wins)."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype("float64")
    text = values.astype("string").str.extract(f"({_NUMBER.pattern})", expand=False)
    return pd.to_numeric(text, errors="coerce").astype("float64")


def _mph_to_kmh(values: pd.Series, raw: pd.Series) -> pd.Series:
    mph = raw.astype("string").str.contains("mph", case=False, na=False)
    return values.where(~mph, values * 1.609344)


def _boolean(values: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(values):
        return values.astype("boolean")
    text = values.astype("string").str.strip().str.lower()
    truthy = text.isin(["yes", "true", "1", "-1", "t", "y", "viaduct"])
    falsy = text.isin(["no", "false", "0", "f", "n", ""])
    out = pd.Series(pd.NA, index=values.index, dtype="boolean")
    out[truthy.fillna(False).to_numpy()] = True
    out[falsy.fillna(False).to_numpy()] = False
    return out


def _vocabulary(values: pd.Series, vocabulary: dict[str, str]) -> pd.Series:
    text = values.astype("string").str.strip().str.lower()
    mapped = text.map(vocabulary, na_action="ignore")
    return mapped.where(text.isna() | mapped.notna(), "other").astype("string")


def _integer(values: pd.Series) -> pd.Series:
    # Infinities and floats past 2**53 hold no exact integer: they become that limit, which
    # lies outside every int field's range, so the row is rejected rather than the import.
    return _numeric(values).round().clip(-2.0**53, 2.0**53).astype("Int64")


CONVERTERS: dict[Kind, Callable[[pd.Series], pd.Series]] = {
    "float": _numeric,
    "int": _integer,
    "bool": _boolean,
    "str": lambda s: s.astype("string").str.strip().replace("", pd.NA),
}


def convert(spec_field: Field, raw: pd.Series, factor: float | None = None) -> pd.Series:
    """Turn a source column into the schema column's type (unparseable values become NULL)."""
    values = CONVERTERS[spec_field.kind](raw)
    if spec_field.name == "max_speed_kmh":
        values = _mph_to_kmh(values, raw)
    if factor is not None:
        values = values * factor
    if spec_field.vocabulary is not None:
        values = _vocabulary(values, spec_field.vocabulary)
    return values


def out_of_range(spec_field: Field, values: pd.Series) -> np.ndarray:
    """Rows whose value lies outside the field's plausible range."""
    if spec_field.low is None or spec_field.kind not in ("float", "int"):
        return np.zeros(len(values), dtype=bool)
    numbers = values.astype("float64").to_numpy(na_value=np.nan)
    with np.errstate(invalid="ignore"):
        bad = (numbers < spec_field.low) | (numbers > spec_field.high)
    return bad & ~np.isnan(numbers)
