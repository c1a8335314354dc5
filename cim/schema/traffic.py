"""Results of traffic scenarios: one row per directed road link, before and after.

Written in the transaction that marks the scenario succeeded and removed with it (ON DELETE
CASCADE), like the flood results (:mod:`cim.schema.scenarios`). ``link`` numbers the links
within a scenario and ``from_node`` / ``to_node`` its junctions, so a scenario's rows are its
routable network (``simulation.traffic.routing``).
"""

from __future__ import annotations

from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import CheckConstraint, Double, Index, Integer
from sqlalchemy.orm import Mapped, mapped_column

from cim.schema.models import SRID, Base
from cim.schema.scenarios import _result_id, _scenario_id

LINK_STATUSES = ("open", "changed", "added", "flooded", "closed")


class TrafficLink(Base):
    """A directed road link of a traffic scenario with its volumes and times before (the
    base case) and after (the scenario); ``None`` where the link does not exist or is closed."""

    __tablename__ = "traffic_links"
    __table_args__ = (
        CheckConstraint(f"status IN {LINK_STATUSES}", name="status"),
        Index("ix_traffic_links_geom", "geom", postgresql_using="gist"),
    )

    id: Mapped[str] = _result_id("link::text")
    scenario_id: Mapped[int] = _scenario_id()
    link: Mapped[int] = mapped_column(Integer)
    road_id: Mapped[str]
    road_class: Mapped[str | None]
    from_node: Mapped[int] = mapped_column(Integer)
    to_node: Mapped[int] = mapped_column(Integer)
    status: Mapped[str]
    lanes: Mapped[float] = mapped_column(Double)
    capacity_vph: Mapped[float] = mapped_column(Double)
    length_m: Mapped[float] = mapped_column(Double)
    free_speed_kmh: Mapped[float] = mapped_column(Double)
    max_depth_m: Mapped[float | None] = mapped_column(Double)
    volume_before: Mapped[float | None] = mapped_column(Double)
    volume_after: Mapped[float | None] = mapped_column(Double)
    volume_change: Mapped[float | None] = mapped_column(Double)
    voc_before: Mapped[float | None] = mapped_column(Double)
    voc_after: Mapped[float | None] = mapped_column(Double)
    speed_before_kmh: Mapped[float | None] = mapped_column(Double)
    speed_after_kmh: Mapped[float | None] = mapped_column(Double)
    delay_before_s: Mapped[float | None] = mapped_column(Double)
    delay_after_s: Mapped[float | None] = mapped_column(Double)
    time_after_min: Mapped[float | None] = mapped_column(Double)
    geom: Mapped[Any] = mapped_column(Geometry("LINESTRING", srid=SRID, spatial_index=False),
                                      nullable=False)
