"""Sensors with their latest reading, as a view the layer catalog serves.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # One index probe per sensor on (sensor_id, observed_at): fast at any table size.
    op.execute("""
        CREATE VIEW cim.sensors_latest AS
        SELECT s.*, o.observed_at AS latest_at, o.value AS latest_value,
               o.quality AS latest_quality
        FROM cim.sensors s
        LEFT JOIN LATERAL (
            SELECT observed_at, value, quality FROM cim.observations
            WHERE sensor_id = s.id ORDER BY observed_at DESC LIMIT 1
        ) o ON true
    """)


def downgrade() -> None:
    op.execute("DROP VIEW cim.sensors_latest")
