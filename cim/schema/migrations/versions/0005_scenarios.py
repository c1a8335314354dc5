"""Scenario jobs and the flood results they publish.

The result tables feed the tile cache's change capture (``cim.record_change`` of 0003), so
publishing or deleting a scenario evicts the flood layers' cached tiles where it changed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RESULTS = ("flood_roads", "flood_buildings", "flood_hotspots")


def _result(name: str, object_column: str, geometry: str, *columns: sa.Column) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.Text, sa.Computed(f"scenario_id::text || '/' || {object_column}",
                              persisted=True),
                  primary_key=True),
        sa.Column("scenario_id", sa.BigInteger,
                  sa.ForeignKey("cim.scenarios.id", ondelete="CASCADE"), nullable=False),
        *columns,
        sa.Column("geom", Geometry(geometry, srid=4326, spatial_index=False), nullable=False),
        schema="cim",
    )
    op.create_index(f"ix_{name}_scenario_id", name, ["scenario_id"], schema="cim")
    op.create_index(f"ix_{name}_geom", name, ["geom"], postgresql_using="gist", schema="cim")
    on, call = f"ON cim.{name}", "FOR EACH STATEMENT EXECUTE FUNCTION cim.record_change()"
    op.execute(f"CREATE TRIGGER changes_insert AFTER INSERT {on} "
               f"REFERENCING NEW TABLE AS new_rows {call}")
    op.execute(f"CREATE TRIGGER changes_delete AFTER DELETE {on} "
               f"REFERENCING OLD TABLE AS old_rows {call}")
    op.execute(f"CREATE TRIGGER changes_truncate AFTER TRUNCATE {on} {call}")


def upgrade() -> None:
    op.create_table(
        "scenarios",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("inputs", postgresql.JSONB, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="queued"),
        sa.Column("progress", sa.Double, nullable=False, server_default="0"),
        sa.Column("log", sa.Text, nullable=False, server_default=""),
        sa.Column("outputs", postgresql.JSONB, nullable=False,
                  server_default=sa.text("'{}'::jsonb")),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("error", sa.Text),
        sa.CheckConstraint("kind IN ('flood')", name="kind"),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name="status"),
        sa.CheckConstraint("progress BETWEEN 0 AND 100", name="progress"),
        schema="cim",
    )
    op.create_index("ix_scenarios_status_id", "scenarios", ["status", "id"], schema="cim")
    _result(
        "flood_roads", "road_id", "MULTILINESTRING",
        sa.Column("road_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("road_class", sa.Text),
        sa.Column("max_depth_m", sa.Double, nullable=False),
        sa.Column("flood_class", sa.Text, nullable=False),
        sa.Column("flooded_length_m", sa.Double, nullable=False),
        sa.CheckConstraint("flood_class IN ('passable', 'with_care', 'closed')",
                           name="flood_class"),
    )
    _result(
        "flood_buildings", "building_id", "MULTIPOLYGON",
        sa.Column("building_id", sa.Text, nullable=False),
        sa.Column("use", sa.Text),
        sa.Column("depth_m", sa.Double, nullable=False),
        sa.Column("floors_affected", sa.SmallInteger, nullable=False),
        sa.Column("people", sa.Double, nullable=False),
        sa.Column("hotspot_rank", sa.Integer),
    )
    _result(
        "flood_hotspots", "rank::text", "MULTIPOLYGON",
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("max_depth_m", sa.Double, nullable=False),
        sa.Column("area_m2", sa.Double, nullable=False),
        sa.Column("volume_m3", sa.Double, nullable=False),
        sa.Column("buildings", sa.Integer, nullable=False),
        sa.Column("people", sa.Double, nullable=False),
    )


def downgrade() -> None:
    for name in RESULTS:
        op.drop_table(name, schema="cim")
    op.drop_table("scenarios", schema="cim")
