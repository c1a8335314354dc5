"""Traffic scenario results: per directed road link, volumes and times before and after.

Like the flood results, the table feeds the tile cache's change capture
(``cim.record_change`` of 0003), so publishing or deleting a scenario evicts its tiles.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "traffic_links",
        sa.Column("id", sa.Text, sa.Computed("scenario_id::text || '/' || link::text",
                                             persisted=True), primary_key=True),
        sa.Column("scenario_id", sa.BigInteger,
                  sa.ForeignKey("cim.scenarios.id", ondelete="CASCADE"), nullable=False),
        sa.Column("link", sa.Integer, nullable=False),
        sa.Column("road_id", sa.Text, nullable=False),
        sa.Column("road_class", sa.Text),
        sa.Column("from_node", sa.Integer, nullable=False),
        sa.Column("to_node", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("lanes", sa.Double, nullable=False),
        sa.Column("capacity_vph", sa.Double, nullable=False),
        sa.Column("length_m", sa.Double, nullable=False),
        sa.Column("free_speed_kmh", sa.Double, nullable=False),
        sa.Column("max_depth_m", sa.Double),
        *(sa.Column(name, sa.Double) for name in (
            "volume_before", "volume_after", "volume_change", "voc_before", "voc_after",
            "speed_before_kmh", "speed_after_kmh", "delay_before_s", "delay_after_s",
            "time_after_min")),
        sa.Column("geom", Geometry("LINESTRING", srid=4326, spatial_index=False),
                  nullable=False),
        sa.CheckConstraint("status IN ('open', 'changed', 'added', 'flooded', 'closed')",
                           name="status"),
        schema="cim",
    )
    op.create_index("ix_traffic_links_scenario_id", "traffic_links", ["scenario_id"],
                    schema="cim")
    op.create_index("ix_traffic_links_geom", "traffic_links", ["geom"],
                    postgresql_using="gist", schema="cim")
    on, call = "ON cim.traffic_links", "FOR EACH STATEMENT EXECUTE FUNCTION cim.record_change()"
    op.execute(f"CREATE TRIGGER changes_insert AFTER INSERT {on} "
               f"REFERENCING NEW TABLE AS new_rows {call}")
    op.execute(f"CREATE TRIGGER changes_delete AFTER DELETE {on} "
               f"REFERENCING OLD TABLE AS old_rows {call}")
    op.execute(f"CREATE TRIGGER changes_truncate AFTER TRUNCATE {on} {call}")


def downgrade() -> None:
    op.drop_table("traffic_links", schema="cim")
