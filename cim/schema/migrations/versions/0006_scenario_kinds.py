"""Traffic scenarios beside flood ones, and flooded underpasses as a result of their own.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _kinds(kinds: str) -> None:
    op.drop_constraint("kind", "scenarios", type_="check", schema="cim")
    op.create_check_constraint(op.f("ck_scenarios_kind"), "scenarios", f"kind IN {kinds}",
                               schema="cim")


def upgrade() -> None:
    _kinds("('flood', 'traffic')")
    op.create_table(
        "flood_underpasses",
        sa.Column("id", sa.Text, sa.Computed("scenario_id::text || '/' || structure_id",
                                             persisted=True), primary_key=True),
        sa.Column("scenario_id", sa.BigInteger,
                  sa.ForeignKey("cim.scenarios.id", ondelete="CASCADE"), nullable=False),
        sa.Column("structure_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("max_depth_m", sa.Double, nullable=False),
        sa.Column("flood_class", sa.Text, nullable=False),
        sa.Column("geom", Geometry("GEOMETRY", srid=4326, spatial_index=False), nullable=False),
        sa.CheckConstraint("flood_class IN ('passable', 'with_care', 'closed')",
                           name="flood_class"),
        schema="cim",
    )
    op.create_index("ix_flood_underpasses_scenario_id", "flood_underpasses", ["scenario_id"],
                    schema="cim")
    op.create_index("ix_flood_underpasses_geom", "flood_underpasses", ["geom"],
                    postgresql_using="gist", schema="cim")
    # Like the other results: the tile cache hears of what publication and deletion change.
    on, call = "ON cim.flood_underpasses", "FOR EACH STATEMENT EXECUTE FUNCTION cim.record_change()"
    op.execute(f"CREATE TRIGGER changes_insert AFTER INSERT {on} "
               f"REFERENCING NEW TABLE AS new_rows {call}")
    op.execute(f"CREATE TRIGGER changes_delete AFTER DELETE {on} "
               f"REFERENCING OLD TABLE AS old_rows {call}")
    op.execute(f"CREATE TRIGGER changes_truncate AFTER TRUNCATE {on} {call}")


def downgrade() -> None:
    op.drop_table("flood_underpasses", schema="cim")
    op.execute("DELETE FROM cim.scenarios WHERE kind <> 'flood'")
    _kinds("('flood')")
