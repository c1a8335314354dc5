"""Scenario runs as persisted jobs, and the flood results they publish.

A scenario row is the job: its inputs, status, progress, log and outputs. Result rows are
written in the one transaction that marks the scenario succeeded, so a reader never sees a
half-published run; they go with their scenario (ON DELETE CASCADE). A result's ``id`` is
``<scenario id>/<object id>``, unique across scenarios, as the feature API needs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Computed,
    Double,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from cim.schema.models import SRID, Base

KINDS = ("flood", "traffic")
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE = ("queued", "running")
ROAD_CLASSES = ("passable", "with_care", "closed")


class Scenario(Base):
    __tablename__ = "scenarios"
    __table_args__ = (
        CheckConstraint(f"kind IN {KINDS}", name="kind"),
        CheckConstraint(f"status IN {STATUSES}", name="status"),
        CheckConstraint("progress BETWEEN 0 AND 100", name="progress"),
        Index("ix_scenarios_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    kind: Mapped[str]
    name: Mapped[str | None]
    inputs: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(server_default="queued")
    progress: Mapped[float] = mapped_column(server_default="0")
    log: Mapped[str] = mapped_column(server_default="")
    outputs: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    created_by: Mapped[str]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None]


def _scenario_id() -> Mapped[int]:
    return mapped_column(BigInteger, ForeignKey("scenarios.id", ondelete="CASCADE"), index=True)


def _result_id(object_column: str) -> Mapped[str]:
    return mapped_column(Text, Computed(f"scenario_id::text || '/' || {object_column}",
                                                  persisted=True),
                         primary_key=True)


class FloodRoad(Base):
    """A road of the scenario's area with the deepest water along it."""

    __tablename__ = "flood_roads"
    __table_args__ = (
        CheckConstraint(f"flood_class IN {ROAD_CLASSES}", name="flood_class"),
        Index("ix_flood_roads_geom", "geom", postgresql_using="gist"),
    )

    id: Mapped[str] = _result_id("road_id")
    scenario_id: Mapped[int] = _scenario_id()
    road_id: Mapped[str]
    name: Mapped[str | None]
    road_class: Mapped[str | None]
    max_depth_m: Mapped[float] = mapped_column(Double)
    flood_class: Mapped[str]
    flooded_length_m: Mapped[float] = mapped_column(Double)
    geom: Mapped[Any] = mapped_column(Geometry("MULTILINESTRING", srid=SRID,
                                               spatial_index=False), nullable=False)


class FloodBuilding(Base):
    """A building with water against its footprint."""

    __tablename__ = "flood_buildings"
    __table_args__ = (Index("ix_flood_buildings_geom", "geom", postgresql_using="gist"),)

    id: Mapped[str] = _result_id("building_id")
    scenario_id: Mapped[int] = _scenario_id()
    building_id: Mapped[str]
    use: Mapped[str | None]
    depth_m: Mapped[float] = mapped_column(Double)
    floors_affected: Mapped[int] = mapped_column(SmallInteger)
    people: Mapped[float] = mapped_column(Double)
    hotspot_rank: Mapped[int | None] = mapped_column(Integer)
    geom: Mapped[Any] = mapped_column(Geometry("MULTIPOLYGON", srid=SRID, spatial_index=False),
                                      nullable=False)


class FloodHotspot(Base):
    """A connected area of deep water, ranked by the volume it holds."""

    __tablename__ = "flood_hotspots"
    __table_args__ = (Index("ix_flood_hotspots_geom", "geom", postgresql_using="gist"),)

    id: Mapped[str] = _result_id("rank::text")
    scenario_id: Mapped[int] = _scenario_id()
    rank: Mapped[int] = mapped_column(Integer)
    max_depth_m: Mapped[float] = mapped_column(Double)
    area_m2: Mapped[float] = mapped_column(Double)
    volume_m3: Mapped[float] = mapped_column(Double)
    buildings: Mapped[int] = mapped_column(Integer)
    people: Mapped[float] = mapped_column(Double)
    geom: Mapped[Any] = mapped_column(Geometry("MULTIPOLYGON", srid=SRID, spatial_index=False),
                                      nullable=False)


class FloodUnderpass(Base):
    """An underpass with the depth of water at its low point."""

    __tablename__ = "flood_underpasses"
    __table_args__ = (
        CheckConstraint(f"flood_class IN {ROAD_CLASSES}", name="flood_class"),
        Index("ix_flood_underpasses_geom", "geom", postgresql_using="gist"),
    )

    id: Mapped[str] = _result_id("structure_id")
    scenario_id: Mapped[int] = _scenario_id()
    structure_id: Mapped[str]
    name: Mapped[str | None]
    max_depth_m: Mapped[float] = mapped_column(Double)
    flood_class: Mapped[str]
    geom: Mapped[Any] = mapped_column(Geometry("GEOMETRY", srid=SRID, spatial_index=False),
                                      nullable=False)
