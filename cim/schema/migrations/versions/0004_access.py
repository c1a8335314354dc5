"""API keys and the append-only audit log of writes through the API.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String, nullable=False, unique=True),
        sa.Column("digest", sa.String, nullable=False, unique=True),
        sa.Column("role", sa.String, nullable=False),
        sa.Column("clearance", sa.String, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("role IN ('viewer', 'editor', 'analyst', 'admin')", name="role"),
        sa.CheckConstraint("clearance IN ('public', 'internal', 'restricted')",
                           name="clearance"),
        schema="cim",
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("actor", sa.String, nullable=False),
        sa.Column("action", sa.String, nullable=False),
        sa.Column("layer", sa.String, nullable=False),
        sa.Column("object_id", sa.String, nullable=False),
        sa.Column("before_vid", sa.BigInteger),
        sa.Column("after_vid", sa.BigInteger),
        sa.Column("before", postgresql.JSONB),
        sa.Column("after", postgresql.JSONB),
        schema="cim",
    )
    op.create_index("ix_audit_log_layer_object_id", "audit_log", ["layer", "object_id"],
                    schema="cim")
    # Append-only: history cannot be rewritten through SQL either.
    op.execute("""
        CREATE FUNCTION cim.audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'cim.audit_log is append-only';
        END $$;
        CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON cim.audit_log
            FOR EACH ROW EXECUTE FUNCTION cim.audit_log_append_only();
    """)


def downgrade() -> None:
    op.drop_table("audit_log", schema="cim")
    op.execute("DROP FUNCTION cim.audit_log_append_only()")
    op.drop_table("api_keys", schema="cim")
