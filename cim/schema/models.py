"""The city model: one versioned table per class of city object, in the ``cim`` schema.

Every city object row is one *version*: ``id`` is the object's stable id, ``vid`` the
version's own key, and ``[valid_from, valid_to)`` the time the version was the truth
(``valid_to`` NULL for the current one). Nothing is updated in place: an edit closes
the current version and writes a new one, a delete only closes it (see ``cim.history``).

Geometries are stored in EPSG:4326 (``geom``, 2D and typed so every client reads them);
when the source had heights the original 3D geometry is kept beside it in ``geom_3d``.
Attributes a source has that the schema has no column for are kept in ``attributes``.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, ClassVar

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

from cim.names import CITY_LAYERS, SCHEMA

SRID = 4326

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA, naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSONB,
        datetime: DateTime(timezone=True),
        float: Double,
        str: Text,
    }


class Provenance(enum.StrEnum):
    real = "real"
    synthetic = "synthetic"


class Import(Base):
    """One run of ``cim import`` (or ``cim demo load``) that changed the city."""

    __tablename__ = "imports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(server_default=func.now())
    finished_at: Mapped[datetime | None]
    path: Mapped[str]
    format: Mapped[str]
    layer: Mapped[str]
    source: Mapped[str]
    input_crs: Mapped[str | None]
    provenance: Mapped[str]
    status: Mapped[str] = mapped_column(server_default="running")
    report: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))


def _geom(kind: str, dims: int = 2) -> Geometry:
    # spatial_index is created explicitly below so history-aware indexes stay in one place.
    return Geometry(kind, srid=SRID, dimension=dims, spatial_index=False)


class CityObject(Base):
    """Columns every versioned city object has."""

    __abstract__ = True
    cim_level_default: int = 1
    geometry_kind: str = "GEOMETRY"

    vid: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(comment="Stable object id, the same across versions.")
    valid_from: Mapped[datetime] = mapped_column(server_default=func.now())
    valid_to: Mapped[datetime | None]
    source: Mapped[str]
    source_id: Mapped[str | None] = mapped_column(comment="The object's id in its source.")
    import_id: Mapped[int | None] = mapped_column(ForeignKey("imports.id"))
    provenance: Mapped[str] = mapped_column(server_default=Provenance.real.value)
    cim_level: Mapped[int] = mapped_column(SmallInteger)
    name: Mapped[str | None]
    attributes: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))

    @declared_attr
    def geom(cls) -> Mapped[Any]:
        return mapped_column(_geom(cls.geometry_kind), nullable=False)

    @declared_attr
    def geom_3d(cls) -> Mapped[Any]:
        return mapped_column(_geom("GEOMETRYZ", 3), nullable=True)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        name = cls.__tablename__
        return (
            Index(
                f"uq_{name}_current_id",
                "id",
                unique=True,
                postgresql_where=text("valid_to IS NULL"),
            ),
            Index(f"ix_{name}_id_valid_from", "id", "valid_from"),
            Index(f"ix_{name}_geom", "geom", postgresql_using="gist"),
            Index(f"ix_{name}_import_id", "import_id"),
        )


class Building(CityObject):
    __tablename__ = "buildings"
    geometry_kind = "MULTIPOLYGON"
    cim_level_default = 2

    height: Mapped[float] = mapped_column(comment="Top of the building above the ground, m.")
    min_height: Mapped[float] = mapped_column(
        server_default="0", comment="Bottom above the ground, m (building parts, overhangs).")
    height_estimated: Mapped[bool] = mapped_column(Boolean, server_default="false")
    floors: Mapped[int | None]
    use: Mapped[str | None]
    year_built: Mapped[int | None]
    roof_shape: Mapped[str | None]
    roof_height: Mapped[float | None]
    status: Mapped[str] = mapped_column(server_default="existing")
    address_id: Mapped[str | None]
    parent_id: Mapped[str | None] = mapped_column(comment="Building a part belongs to.")
    ground_elevation: Mapped[float | None]


class WaterBody(CityObject):
    __tablename__ = "water_bodies"
    geometry_kind = "MULTIPOLYGON"

    kind: Mapped[str]
    area_m2: Mapped[float | None]
    normal_level: Mapped[float | None] = mapped_column(comment="Normal water level, m a.s.l.")
    warning_level: Mapped[float | None] = mapped_column(comment="Warning water level, m a.s.l.")


class Waterway(CityObject):
    __tablename__ = "waterways"
    geometry_kind = "MULTILINESTRING"

    kind: Mapped[str]
    width: Mapped[float | None]


class DrainageNode(CityObject):
    __tablename__ = "drainage_nodes"
    geometry_kind = "POINT"
    cim_level_default = 2

    kind: Mapped[str]
    invert_elevation: Mapped[float | None]
    ground_elevation: Mapped[float | None]
    capacity_m3s: Mapped[float | None] = mapped_column(comment="Pump or inlet capacity.")


class DrainagePipe(CityObject):
    __tablename__ = "drainage_pipes"
    geometry_kind = "LINESTRING"
    cim_level_default = 2

    shape: Mapped[str] = mapped_column(server_default="circular")
    diameter_m: Mapped[float | None]
    width_m: Mapped[float | None]
    height_m: Mapped[float | None]
    upstream_invert: Mapped[float | None]
    downstream_invert: Mapped[float | None]
    length_m: Mapped[float | None]
    roughness: Mapped[float | None] = mapped_column(comment="Manning's n.")
    material: Mapped[str | None]
    from_node: Mapped[str | None]
    to_node: Mapped[str | None]


class Catchment(CityObject):
    __tablename__ = "catchments"
    geometry_kind = "MULTIPOLYGON"

    outlet_node: Mapped[str | None]
    area_m2: Mapped[float | None]
    impervious_fraction: Mapped[float | None]


class Road(CityObject):
    __tablename__ = "roads"
    geometry_kind = "MULTILINESTRING"

    road_class: Mapped[str]
    lanes: Mapped[int | None]
    max_speed_kmh: Mapped[float | None]
    oneway: Mapped[bool] = mapped_column(Boolean, server_default="false")
    bridge: Mapped[bool] = mapped_column(Boolean, server_default="false")
    tunnel: Mapped[bool] = mapped_column(Boolean, server_default="false")
    capacity_vph: Mapped[float | None]
    surface: Mapped[str | None]


class Structure(CityObject):
    """Bridges, underpasses, tunnels and culverts as infrastructure assets."""

    __tablename__ = "structures"
    cim_level_default = 2

    kind: Mapped[str]
    road_id: Mapped[str | None]
    clearance_m: Mapped[float | None]
    deck_elevation: Mapped[float | None]
    low_point_elevation: Mapped[float | None]
    length_m: Mapped[float | None]


class Asset(CityObject):
    """Any other network asset (gas, power, lighting, telecom, ...) with a type."""

    __tablename__ = "assets"

    asset_type: Mapped[str]
    subtype: Mapped[str | None]
    status: Mapped[str | None]
    address_id: Mapped[str | None]


class Sensor(CityObject):
    __tablename__ = "sensors"
    geometry_kind = "POINT"

    kind: Mapped[str]
    unit: Mapped[str | None]
    status: Mapped[str | None]
    target_id: Mapped[str | None] = mapped_column(comment="Object the sensor watches.")


class Address(CityObject):
    __tablename__ = "addresses"
    geometry_kind = "POINT"

    full_address: Mapped[str]
    street: Mapped[str | None]
    house_number: Mapped[str | None]
    postcode: Mapped[str | None]
    admin_code: Mapped[str | None]


class AdminUnit(CityObject):
    __tablename__ = "admin_units"
    geometry_kind = "MULTIPOLYGON"

    level: Mapped[str]
    code: Mapped[str | None]
    parent_code: Mapped[str | None]


class Dem(CityObject):
    """A terrain model: the raster lives as a COG under storage, registered here."""

    __tablename__ = "dems"
    geometry_kind = "POLYGON"

    path: Mapped[str] = mapped_column(comment="COG path, relative to the storage root.")
    crs_epsg: Mapped[int | None]
    resolution: Mapped[float]
    width: Mapped[int]
    height: Mapped[int]
    nodata: Mapped[float | None]
    min_elevation: Mapped[float | None]
    max_elevation: Mapped[float | None]


class Observation(Base):
    """Sensor readings: append-only, keyed (sensor, time) so a range scan reads one sensor."""

    __tablename__ = "observations"
    __table_args__ = (Index("ix_observations_observed_at_brin", "observed_at",
                            postgresql_using="brin"),)

    sensor_id: Mapped[str] = mapped_column(primary_key=True)
    observed_at: Mapped[datetime] = mapped_column(primary_key=True)
    value: Mapped[float]
    quality: Mapped[int] = mapped_column(SmallInteger, server_default="0")


CITY_CLASSES: dict[str, type[CityObject]] = {
    cls.__tablename__: cls
    for cls in (
        Building,
        WaterBody,
        Waterway,
        DrainageNode,
        DrainagePipe,
        Catchment,
        Road,
        Structure,
        Asset,
        Sensor,
        Address,
        AdminUnit,
        Dem,
    )
}
"""Versioned city object classes by table name (the ``--layer`` names of ``cim import``)."""
if tuple(CITY_CLASSES) != CITY_LAYERS:
    raise RuntimeError(f"cim.names.CITY_LAYERS {CITY_LAYERS} differs from the models' "
                       f"tables {tuple(CITY_CLASSES)}")
