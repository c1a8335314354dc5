"""The city model: versioned city object tables, imports and observations.

Revision ID: 0001
Revises:
Create Date: 2026-11-21 11:02:43.100276
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.execute("CREATE SCHEMA IF NOT EXISTS cim")
    op.create_table(
        "imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("format", sa.Text(), nullable=False),
        sa.Column("layer", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("input_crs", sa.Text(), nullable=True),
        sa.Column("provenance", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default="running", nullable=False),
        sa.Column(
            "report",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imports")),
        schema="cim",
    )
    op.create_table(
        "observations",
        sa.Column("sensor_id", sa.Text(), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("quality", sa.SmallInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("sensor_id", "observed_at", name=op.f("pk_observations")),
        schema="cim",
    )
    op.create_index(
        "ix_observations_observed_at_brin",
        "observations",
        ["observed_at"],
        unique=False,
        schema="cim",
        postgresql_using="brin",
    )
    op.create_geospatial_table(
        "addresses",
        sa.Column("full_address", sa.Text(), nullable=False),
        sa.Column("street", sa.Text(), nullable=True),
        sa.Column("house_number", sa.Text(), nullable=True),
        sa.Column("postcode", sa.Text(), nullable=True),
        sa.Column("admin_code", sa.Text(), nullable=True),
        sa.Column("vid", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column(
            "id", sa.Text(), nullable=False, comment="Stable object id, the same across versions."
        ),
        sa.Column(
            "valid_from",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_id", sa.Text(), nullable=True, comment="The object's id in its source."),
        sa.Column("import_id", sa.Integer(), nullable=True),
        sa.Column("provenance", sa.Text(), server_default="real", nullable=False),
        sa.Column("cim_level", sa.SmallInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column(
            "attributes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column(
            "geom_3d",
            Geometry(
                geometry_type="GEOMETRYZ",
                srid=4326,
                dimension=3,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
            ),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["import_id"], ["cim.imports.id"], name=op.f("fk_addresses_import_id_imports")
        ),
        sa.PrimaryKeyConstraint("vid", name=op.f("pk_addresses")),
        schema="cim",
    )
    op.create_geospatial_index(
        "ix_addresses_geom",
        "addresses",
        ["geom"],
        unique=False,
        schema="cim",
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(
        "ix_addresses_id_valid_from", "addresses", ["id", "valid_from"], unique=False, schema="cim"
    )
    op.create_index(
        "ix_addresses_import_id", "addresses", ["import_id"], unique=False, schema="cim"
    )
    op.create_index(
        "uq_addresses_current_id",
        "addresses",
        ["id"],
        unique=True,
        schema="cim",
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.create_geospatial_table(
        "admin_units",
        sa.Column("level", sa.Text(), nullable=False),
        sa.Column("code", sa.Text(), nullable=True),
        sa.Column("parent_code", sa.Text(), nullable=True),
        sa.Column("vid", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column(
            "id", sa.Text(), nullable=False, comment="Stable object id, the same across versions."
        ),
        sa.Column(
            "valid_from",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_id", sa.Text(), nullable=True, comment="The object's id in its source."),
        sa.Column("import_id", sa.Integer(), nullable=True),
        sa.Column("provenance", sa.Text(), server_default="real", nullable=False),
        sa.Column("cim_level", sa.SmallInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column(
            "attributes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="MULTIPOLYGON",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column(
            "geom_3d",
            Geometry(
                geometry_type="GEOMETRYZ",
                srid=4326,
                dimension=3,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
            ),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["import_id"], ["cim.imports.id"], name=op.f("fk_admin_units_import_id_imports")
        ),
        sa.PrimaryKeyConstraint("vid", name=op.f("pk_admin_units")),
        schema="cim",
    )
    op.create_geospatial_index(
        "ix_admin_units_geom",
        "admin_units",
        ["geom"],
        unique=False,
        schema="cim",
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(
        "ix_admin_units_id_valid_from",
        "admin_units",
        ["id", "valid_from"],
        unique=False,
        schema="cim",
    )
    op.create_index(
        "ix_admin_units_import_id", "admin_units", ["import_id"], unique=False, schema="cim"
    )
    op.create_index(
        "uq_admin_units_current_id",
        "admin_units",
        ["id"],
        unique=True,
        schema="cim",
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.create_geospatial_table(
        "assets",
        sa.Column("asset_type", sa.Text(), nullable=False),
        sa.Column("subtype", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=True),
        sa.Column("address_id", sa.Text(), nullable=True),
        sa.Column("vid", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column(
            "id", sa.Text(), nullable=False, comment="Stable object id, the same across versions."
        ),
        sa.Column(
            "valid_from",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_id", sa.Text(), nullable=True, comment="The object's id in its source."),
        sa.Column("import_id", sa.Integer(), nullable=True),
        sa.Column("provenance", sa.Text(), server_default="real", nullable=False),
        sa.Column("cim_level", sa.SmallInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column(
            "attributes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "geom",
            Geometry(
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column(
            "geom_3d",
            Geometry(
                geometry_type="GEOMETRYZ",
                srid=4326,
                dimension=3,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
            ),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["import_id"], ["cim.imports.id"], name=op.f("fk_assets_import_id_imports")
        ),
        sa.PrimaryKeyConstraint("vid", name=op.f("pk_assets")),
        schema="cim",
    )
    op.create_geospatial_index(
        "ix_assets_geom",
        "assets",
        ["geom"],
        unique=False,
        schema="cim",
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(
        "ix_assets_id_valid_from", "assets", ["id", "valid_from"], unique=False, schema="cim"
    )
    op.create_index("ix_assets_import_id", "assets", ["import_id"], unique=False, schema="cim")
    op.create_index(
        "uq_assets_current_id",
        "assets",
        ["id"],
        unique=True,
        schema="cim",
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.create_geospatial_table(
        "buildings",
        sa.Column(
            "height",
            sa.Double(),
            nullable=False,
            comment="Top of the building above the ground, m.",
        ),
        sa.Column(
            "min_height",
            sa.Double(),
            server_default="0",
            nullable=False,
            comment="Bottom above the ground, m (building parts, overhangs).",
        ),
        sa.Column("height_estimated", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("floors", sa.Integer(), nullable=True),
        sa.Column("use", sa.Text(), nullable=True),
        sa.Column("year_built", sa.Integer(), nullable=True),
        sa.Column("roof_shape", sa.Text(), nullable=True),
        sa.Column("roof_height", sa.Double(), nullable=True),
        sa.Column("status", sa.Text(), server_default="existing", nullable=False),
        sa.Column("address_id", sa.Text(), nullable=True),
        sa.Column("parent_id", sa.Text(), nullable=True, comment="Building a part belongs to."),
        sa.Column("ground_elevation", sa.Double(), nullable=True),
        sa.Column("vid", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column(
            "id", sa.Text(), nullable=False, comment="Stable object id, the same across versions."
        ),
        sa.Column(
            "valid_from",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_id", sa.Text(), nullable=True, comment="The object's id in its source."),
        sa.Column("import_id", sa.Integer(), nullable=True),
        sa.Column("provenance", sa.Text(), server_default="real", nullable=False),
        sa.Column("cim_level", sa.SmallInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column(
            "attributes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="MULTIPOLYGON",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column(
            "geom_3d",
            Geometry(
                geometry_type="GEOMETRYZ",
                srid=4326,
                dimension=3,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
            ),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["import_id"], ["cim.imports.id"], name=op.f("fk_buildings_import_id_imports")
        ),
        sa.PrimaryKeyConstraint("vid", name=op.f("pk_buildings")),
        schema="cim",
    )
    op.create_geospatial_index(
        "ix_buildings_geom",
        "buildings",
        ["geom"],
        unique=False,
        schema="cim",
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(
        "ix_buildings_id_valid_from", "buildings", ["id", "valid_from"], unique=False, schema="cim"
    )
    op.create_index(
        "ix_buildings_import_id", "buildings", ["import_id"], unique=False, schema="cim"
    )
    op.create_index(
        "uq_buildings_current_id",
        "buildings",
        ["id"],
        unique=True,
        schema="cim",
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.create_geospatial_table(
        "catchments",
        sa.Column("outlet_node", sa.Text(), nullable=True),
        sa.Column("area_m2", sa.Double(), nullable=True),
        sa.Column("impervious_fraction", sa.Double(), nullable=True),
        sa.Column("vid", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column(
            "id", sa.Text(), nullable=False, comment="Stable object id, the same across versions."
        ),
        sa.Column(
            "valid_from",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_id", sa.Text(), nullable=True, comment="The object's id in its source."),
        sa.Column("import_id", sa.Integer(), nullable=True),
        sa.Column("provenance", sa.Text(), server_default="real", nullable=False),
        sa.Column("cim_level", sa.SmallInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column(
            "attributes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="MULTIPOLYGON",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column(
            "geom_3d",
            Geometry(
                geometry_type="GEOMETRYZ",
                srid=4326,
                dimension=3,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
            ),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["import_id"], ["cim.imports.id"], name=op.f("fk_catchments_import_id_imports")
        ),
        sa.PrimaryKeyConstraint("vid", name=op.f("pk_catchments")),
        schema="cim",
    )
    op.create_geospatial_index(
        "ix_catchments_geom",
        "catchments",
        ["geom"],
        unique=False,
        schema="cim",
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(
        "ix_catchments_id_valid_from",
        "catchments",
        ["id", "valid_from"],
        unique=False,
        schema="cim",
    )
    op.create_index(
        "ix_catchments_import_id", "catchments", ["import_id"], unique=False, schema="cim"
    )
    op.create_index(
        "uq_catchments_current_id",
        "catchments",
        ["id"],
        unique=True,
        schema="cim",
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.create_geospatial_table(
        "dems",
        sa.Column(
            "path", sa.Text(), nullable=False, comment="COG path, relative to the storage root."
        ),
        sa.Column("crs_epsg", sa.Integer(), nullable=True),
        sa.Column("resolution", sa.Double(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("nodata", sa.Double(), nullable=True),
        sa.Column("min_elevation", sa.Double(), nullable=True),
        sa.Column("max_elevation", sa.Double(), nullable=True),
        sa.Column("vid", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column(
            "id", sa.Text(), nullable=False, comment="Stable object id, the same across versions."
        ),
        sa.Column(
            "valid_from",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_id", sa.Text(), nullable=True, comment="The object's id in its source."),
        sa.Column("import_id", sa.Integer(), nullable=True),
        sa.Column("provenance", sa.Text(), server_default="real", nullable=False),
        sa.Column("cim_level", sa.SmallInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column(
            "attributes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="POLYGON",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column(
            "geom_3d",
            Geometry(
                geometry_type="GEOMETRYZ",
                srid=4326,
                dimension=3,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
            ),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["import_id"], ["cim.imports.id"], name=op.f("fk_dems_import_id_imports")
        ),
        sa.PrimaryKeyConstraint("vid", name=op.f("pk_dems")),
        schema="cim",
    )
    op.create_geospatial_index(
        "ix_dems_geom",
        "dems",
        ["geom"],
        unique=False,
        schema="cim",
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(
        "ix_dems_id_valid_from", "dems", ["id", "valid_from"], unique=False, schema="cim"
    )
    op.create_index("ix_dems_import_id", "dems", ["import_id"], unique=False, schema="cim")
    op.create_index(
        "uq_dems_current_id",
        "dems",
        ["id"],
        unique=True,
        schema="cim",
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.create_geospatial_table(
        "drainage_nodes",
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("invert_elevation", sa.Double(), nullable=True),
        sa.Column("ground_elevation", sa.Double(), nullable=True),
        sa.Column("capacity_m3s", sa.Double(), nullable=True, comment="Pump or inlet capacity."),
        sa.Column("vid", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column(
            "id", sa.Text(), nullable=False, comment="Stable object id, the same across versions."
        ),
        sa.Column(
            "valid_from",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_id", sa.Text(), nullable=True, comment="The object's id in its source."),
        sa.Column("import_id", sa.Integer(), nullable=True),
        sa.Column("provenance", sa.Text(), server_default="real", nullable=False),
        sa.Column("cim_level", sa.SmallInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column(
            "attributes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column(
            "geom_3d",
            Geometry(
                geometry_type="GEOMETRYZ",
                srid=4326,
                dimension=3,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
            ),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["import_id"], ["cim.imports.id"], name=op.f("fk_drainage_nodes_import_id_imports")
        ),
        sa.PrimaryKeyConstraint("vid", name=op.f("pk_drainage_nodes")),
        schema="cim",
    )
    op.create_geospatial_index(
        "ix_drainage_nodes_geom",
        "drainage_nodes",
        ["geom"],
        unique=False,
        schema="cim",
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(
        "ix_drainage_nodes_id_valid_from",
        "drainage_nodes",
        ["id", "valid_from"],
        unique=False,
        schema="cim",
    )
    op.create_index(
        "ix_drainage_nodes_import_id", "drainage_nodes", ["import_id"], unique=False, schema="cim"
    )
    op.create_index(
        "uq_drainage_nodes_current_id",
        "drainage_nodes",
        ["id"],
        unique=True,
        schema="cim",
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.create_geospatial_table(
        "drainage_pipes",
        sa.Column("shape", sa.Text(), server_default="circular", nullable=False),
        sa.Column("diameter_m", sa.Double(), nullable=True),
        sa.Column("width_m", sa.Double(), nullable=True),
        sa.Column("height_m", sa.Double(), nullable=True),
        sa.Column("upstream_invert", sa.Double(), nullable=True),
        sa.Column("downstream_invert", sa.Double(), nullable=True),
        sa.Column("length_m", sa.Double(), nullable=True),
        sa.Column("roughness", sa.Double(), nullable=True, comment="Manning's n."),
        sa.Column("material", sa.Text(), nullable=True),
        sa.Column("from_node", sa.Text(), nullable=True),
        sa.Column("to_node", sa.Text(), nullable=True),
        sa.Column("vid", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column(
            "id", sa.Text(), nullable=False, comment="Stable object id, the same across versions."
        ),
        sa.Column(
            "valid_from",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_id", sa.Text(), nullable=True, comment="The object's id in its source."),
        sa.Column("import_id", sa.Integer(), nullable=True),
        sa.Column("provenance", sa.Text(), server_default="real", nullable=False),
        sa.Column("cim_level", sa.SmallInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column(
            "attributes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="LINESTRING",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column(
            "geom_3d",
            Geometry(
                geometry_type="GEOMETRYZ",
                srid=4326,
                dimension=3,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
            ),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["import_id"], ["cim.imports.id"], name=op.f("fk_drainage_pipes_import_id_imports")
        ),
        sa.PrimaryKeyConstraint("vid", name=op.f("pk_drainage_pipes")),
        schema="cim",
    )
    op.create_geospatial_index(
        "ix_drainage_pipes_geom",
        "drainage_pipes",
        ["geom"],
        unique=False,
        schema="cim",
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(
        "ix_drainage_pipes_id_valid_from",
        "drainage_pipes",
        ["id", "valid_from"],
        unique=False,
        schema="cim",
    )
    op.create_index(
        "ix_drainage_pipes_import_id", "drainage_pipes", ["import_id"], unique=False, schema="cim"
    )
    op.create_index(
        "uq_drainage_pipes_current_id",
        "drainage_pipes",
        ["id"],
        unique=True,
        schema="cim",
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.create_geospatial_table(
        "roads",
        sa.Column("road_class", sa.Text(), nullable=False),
        sa.Column("lanes", sa.Integer(), nullable=True),
        sa.Column("max_speed_kmh", sa.Double(), nullable=True),
        sa.Column("oneway", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("bridge", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("tunnel", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("capacity_vph", sa.Double(), nullable=True),
        sa.Column("surface", sa.Text(), nullable=True),
        sa.Column("vid", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column(
            "id", sa.Text(), nullable=False, comment="Stable object id, the same across versions."
        ),
        sa.Column(
            "valid_from",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_id", sa.Text(), nullable=True, comment="The object's id in its source."),
        sa.Column("import_id", sa.Integer(), nullable=True),
        sa.Column("provenance", sa.Text(), server_default="real", nullable=False),
        sa.Column("cim_level", sa.SmallInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column(
            "attributes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="MULTILINESTRING",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column(
            "geom_3d",
            Geometry(
                geometry_type="GEOMETRYZ",
                srid=4326,
                dimension=3,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
            ),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["import_id"], ["cim.imports.id"], name=op.f("fk_roads_import_id_imports")
        ),
        sa.PrimaryKeyConstraint("vid", name=op.f("pk_roads")),
        schema="cim",
    )
    op.create_geospatial_index(
        "ix_roads_geom",
        "roads",
        ["geom"],
        unique=False,
        schema="cim",
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(
        "ix_roads_id_valid_from", "roads", ["id", "valid_from"], unique=False, schema="cim"
    )
    op.create_index("ix_roads_import_id", "roads", ["import_id"], unique=False, schema="cim")
    op.create_index(
        "uq_roads_current_id",
        "roads",
        ["id"],
        unique=True,
        schema="cim",
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.create_geospatial_table(
        "sensors",
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("unit", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=True),
        sa.Column("target_id", sa.Text(), nullable=True, comment="Object the sensor watches."),
        sa.Column("vid", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column(
            "id", sa.Text(), nullable=False, comment="Stable object id, the same across versions."
        ),
        sa.Column(
            "valid_from",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_id", sa.Text(), nullable=True, comment="The object's id in its source."),
        sa.Column("import_id", sa.Integer(), nullable=True),
        sa.Column("provenance", sa.Text(), server_default="real", nullable=False),
        sa.Column("cim_level", sa.SmallInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column(
            "attributes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column(
            "geom_3d",
            Geometry(
                geometry_type="GEOMETRYZ",
                srid=4326,
                dimension=3,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
            ),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["import_id"], ["cim.imports.id"], name=op.f("fk_sensors_import_id_imports")
        ),
        sa.PrimaryKeyConstraint("vid", name=op.f("pk_sensors")),
        schema="cim",
    )
    op.create_geospatial_index(
        "ix_sensors_geom",
        "sensors",
        ["geom"],
        unique=False,
        schema="cim",
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(
        "ix_sensors_id_valid_from", "sensors", ["id", "valid_from"], unique=False, schema="cim"
    )
    op.create_index("ix_sensors_import_id", "sensors", ["import_id"], unique=False, schema="cim")
    op.create_index(
        "uq_sensors_current_id",
        "sensors",
        ["id"],
        unique=True,
        schema="cim",
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.create_geospatial_table(
        "structures",
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("road_id", sa.Text(), nullable=True),
        sa.Column("clearance_m", sa.Double(), nullable=True),
        sa.Column("deck_elevation", sa.Double(), nullable=True),
        sa.Column("low_point_elevation", sa.Double(), nullable=True),
        sa.Column("length_m", sa.Double(), nullable=True),
        sa.Column("vid", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column(
            "id", sa.Text(), nullable=False, comment="Stable object id, the same across versions."
        ),
        sa.Column(
            "valid_from",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_id", sa.Text(), nullable=True, comment="The object's id in its source."),
        sa.Column("import_id", sa.Integer(), nullable=True),
        sa.Column("provenance", sa.Text(), server_default="real", nullable=False),
        sa.Column("cim_level", sa.SmallInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column(
            "attributes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "geom",
            Geometry(
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column(
            "geom_3d",
            Geometry(
                geometry_type="GEOMETRYZ",
                srid=4326,
                dimension=3,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
            ),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["import_id"], ["cim.imports.id"], name=op.f("fk_structures_import_id_imports")
        ),
        sa.PrimaryKeyConstraint("vid", name=op.f("pk_structures")),
        schema="cim",
    )
    op.create_geospatial_index(
        "ix_structures_geom",
        "structures",
        ["geom"],
        unique=False,
        schema="cim",
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(
        "ix_structures_id_valid_from",
        "structures",
        ["id", "valid_from"],
        unique=False,
        schema="cim",
    )
    op.create_index(
        "ix_structures_import_id", "structures", ["import_id"], unique=False, schema="cim"
    )
    op.create_index(
        "uq_structures_current_id",
        "structures",
        ["id"],
        unique=True,
        schema="cim",
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.create_geospatial_table(
        "water_bodies",
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("area_m2", sa.Double(), nullable=True),
        sa.Column(
            "normal_level", sa.Double(), nullable=True, comment="Normal water level, m a.s.l."
        ),
        sa.Column(
            "warning_level", sa.Double(), nullable=True, comment="Warning water level, m a.s.l."
        ),
        sa.Column("vid", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column(
            "id", sa.Text(), nullable=False, comment="Stable object id, the same across versions."
        ),
        sa.Column(
            "valid_from",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_id", sa.Text(), nullable=True, comment="The object's id in its source."),
        sa.Column("import_id", sa.Integer(), nullable=True),
        sa.Column("provenance", sa.Text(), server_default="real", nullable=False),
        sa.Column("cim_level", sa.SmallInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column(
            "attributes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="MULTIPOLYGON",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column(
            "geom_3d",
            Geometry(
                geometry_type="GEOMETRYZ",
                srid=4326,
                dimension=3,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
            ),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["import_id"], ["cim.imports.id"], name=op.f("fk_water_bodies_import_id_imports")
        ),
        sa.PrimaryKeyConstraint("vid", name=op.f("pk_water_bodies")),
        schema="cim",
    )
    op.create_geospatial_index(
        "ix_water_bodies_geom",
        "water_bodies",
        ["geom"],
        unique=False,
        schema="cim",
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(
        "ix_water_bodies_id_valid_from",
        "water_bodies",
        ["id", "valid_from"],
        unique=False,
        schema="cim",
    )
    op.create_index(
        "ix_water_bodies_import_id", "water_bodies", ["import_id"], unique=False, schema="cim"
    )
    op.create_index(
        "uq_water_bodies_current_id",
        "water_bodies",
        ["id"],
        unique=True,
        schema="cim",
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.create_geospatial_table(
        "waterways",
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("width", sa.Double(), nullable=True),
        sa.Column("vid", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column(
            "id", sa.Text(), nullable=False, comment="Stable object id, the same across versions."
        ),
        sa.Column(
            "valid_from",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_id", sa.Text(), nullable=True, comment="The object's id in its source."),
        sa.Column("import_id", sa.Integer(), nullable=True),
        sa.Column("provenance", sa.Text(), server_default="real", nullable=False),
        sa.Column("cim_level", sa.SmallInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column(
            "attributes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="MULTILINESTRING",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column(
            "geom_3d",
            Geometry(
                geometry_type="GEOMETRYZ",
                srid=4326,
                dimension=3,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
            ),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["import_id"], ["cim.imports.id"], name=op.f("fk_waterways_import_id_imports")
        ),
        sa.PrimaryKeyConstraint("vid", name=op.f("pk_waterways")),
        schema="cim",
    )
    op.create_geospatial_index(
        "ix_waterways_geom",
        "waterways",
        ["geom"],
        unique=False,
        schema="cim",
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(
        "ix_waterways_id_valid_from", "waterways", ["id", "valid_from"], unique=False, schema="cim"
    )
    op.create_index(
        "ix_waterways_import_id", "waterways", ["import_id"], unique=False, schema="cim"
    )
    op.create_index(
        "uq_waterways_current_id",
        "waterways",
        ["id"],
        unique=True,
        schema="cim",
        postgresql_where=sa.text("valid_to IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_waterways_current_id",
        table_name="waterways",
        schema="cim",
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.drop_index("ix_waterways_import_id", table_name="waterways", schema="cim")
    op.drop_index("ix_waterways_id_valid_from", table_name="waterways", schema="cim")
    op.drop_geospatial_index(
        "ix_waterways_geom",
        table_name="waterways",
        schema="cim",
        postgresql_using="gist",
        column_name="geom",
    )
    op.drop_geospatial_table("waterways", schema="cim")
    op.drop_index(
        "uq_water_bodies_current_id",
        table_name="water_bodies",
        schema="cim",
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.drop_index("ix_water_bodies_import_id", table_name="water_bodies", schema="cim")
    op.drop_index("ix_water_bodies_id_valid_from", table_name="water_bodies", schema="cim")
    op.drop_geospatial_index(
        "ix_water_bodies_geom",
        table_name="water_bodies",
        schema="cim",
        postgresql_using="gist",
        column_name="geom",
    )
    op.drop_geospatial_table("water_bodies", schema="cim")
    op.drop_index(
        "uq_structures_current_id",
        table_name="structures",
        schema="cim",
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.drop_index("ix_structures_import_id", table_name="structures", schema="cim")
    op.drop_index("ix_structures_id_valid_from", table_name="structures", schema="cim")
    op.drop_geospatial_index(
        "ix_structures_geom",
        table_name="structures",
        schema="cim",
        postgresql_using="gist",
        column_name="geom",
    )
    op.drop_geospatial_table("structures", schema="cim")
    op.drop_index(
        "uq_sensors_current_id",
        table_name="sensors",
        schema="cim",
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.drop_index("ix_sensors_import_id", table_name="sensors", schema="cim")
    op.drop_index("ix_sensors_id_valid_from", table_name="sensors", schema="cim")
    op.drop_geospatial_index(
        "ix_sensors_geom",
        table_name="sensors",
        schema="cim",
        postgresql_using="gist",
        column_name="geom",
    )
    op.drop_geospatial_table("sensors", schema="cim")
    op.drop_index(
        "uq_roads_current_id",
        table_name="roads",
        schema="cim",
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.drop_index("ix_roads_import_id", table_name="roads", schema="cim")
    op.drop_index("ix_roads_id_valid_from", table_name="roads", schema="cim")
    op.drop_geospatial_index(
        "ix_roads_geom",
        table_name="roads",
        schema="cim",
        postgresql_using="gist",
        column_name="geom",
    )
    op.drop_geospatial_table("roads", schema="cim")
    op.drop_index(
        "uq_drainage_pipes_current_id",
        table_name="drainage_pipes",
        schema="cim",
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.drop_index("ix_drainage_pipes_import_id", table_name="drainage_pipes", schema="cim")
    op.drop_index("ix_drainage_pipes_id_valid_from", table_name="drainage_pipes", schema="cim")
    op.drop_geospatial_index(
        "ix_drainage_pipes_geom",
        table_name="drainage_pipes",
        schema="cim",
        postgresql_using="gist",
        column_name="geom",
    )
    op.drop_geospatial_table("drainage_pipes", schema="cim")
    op.drop_index(
        "uq_drainage_nodes_current_id",
        table_name="drainage_nodes",
        schema="cim",
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.drop_index("ix_drainage_nodes_import_id", table_name="drainage_nodes", schema="cim")
    op.drop_index("ix_drainage_nodes_id_valid_from", table_name="drainage_nodes", schema="cim")
    op.drop_geospatial_index(
        "ix_drainage_nodes_geom",
        table_name="drainage_nodes",
        schema="cim",
        postgresql_using="gist",
        column_name="geom",
    )
    op.drop_geospatial_table("drainage_nodes", schema="cim")
    op.drop_index(
        "uq_dems_current_id",
        table_name="dems",
        schema="cim",
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.drop_index("ix_dems_import_id", table_name="dems", schema="cim")
    op.drop_index("ix_dems_id_valid_from", table_name="dems", schema="cim")
    op.drop_geospatial_index(
        "ix_dems_geom", table_name="dems", schema="cim", postgresql_using="gist", column_name="geom"
    )
    op.drop_geospatial_table("dems", schema="cim")
    op.drop_index(
        "uq_catchments_current_id",
        table_name="catchments",
        schema="cim",
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.drop_index("ix_catchments_import_id", table_name="catchments", schema="cim")
    op.drop_index("ix_catchments_id_valid_from", table_name="catchments", schema="cim")
    op.drop_geospatial_index(
        "ix_catchments_geom",
        table_name="catchments",
        schema="cim",
        postgresql_using="gist",
        column_name="geom",
    )
    op.drop_geospatial_table("catchments", schema="cim")
    op.drop_index(
        "uq_buildings_current_id",
        table_name="buildings",
        schema="cim",
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.drop_index("ix_buildings_import_id", table_name="buildings", schema="cim")
    op.drop_index("ix_buildings_id_valid_from", table_name="buildings", schema="cim")
    op.drop_geospatial_index(
        "ix_buildings_geom",
        table_name="buildings",
        schema="cim",
        postgresql_using="gist",
        column_name="geom",
    )
    op.drop_geospatial_table("buildings", schema="cim")
    op.drop_index(
        "uq_assets_current_id",
        table_name="assets",
        schema="cim",
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.drop_index("ix_assets_import_id", table_name="assets", schema="cim")
    op.drop_index("ix_assets_id_valid_from", table_name="assets", schema="cim")
    op.drop_geospatial_index(
        "ix_assets_geom",
        table_name="assets",
        schema="cim",
        postgresql_using="gist",
        column_name="geom",
    )
    op.drop_geospatial_table("assets", schema="cim")
    op.drop_index(
        "uq_admin_units_current_id",
        table_name="admin_units",
        schema="cim",
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.drop_index("ix_admin_units_import_id", table_name="admin_units", schema="cim")
    op.drop_index("ix_admin_units_id_valid_from", table_name="admin_units", schema="cim")
    op.drop_geospatial_index(
        "ix_admin_units_geom",
        table_name="admin_units",
        schema="cim",
        postgresql_using="gist",
        column_name="geom",
    )
    op.drop_geospatial_table("admin_units", schema="cim")
    op.drop_index(
        "uq_addresses_current_id",
        table_name="addresses",
        schema="cim",
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.drop_index("ix_addresses_import_id", table_name="addresses", schema="cim")
    op.drop_index("ix_addresses_id_valid_from", table_name="addresses", schema="cim")
    op.drop_geospatial_index(
        "ix_addresses_geom",
        table_name="addresses",
        schema="cim",
        postgresql_using="gist",
        column_name="geom",
    )
    op.drop_geospatial_table("addresses", schema="cim")
    op.drop_index(
        "ix_observations_observed_at_brin",
        table_name="observations",
        schema="cim",
        postgresql_using="brin",
    )
    op.drop_table("observations", schema="cim")
    op.drop_table("imports", schema="cim")
    op.execute("DROP SCHEMA IF EXISTS cim")
