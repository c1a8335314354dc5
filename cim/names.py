"""The city schema's name and its versioned layers' table names.

Kept apart from ``cim.schema`` (SQLAlchemy, GeoAlchemy2, Alembic) so that the CLI can print
them in its help without importing the models: ``cim --help`` stays quick.
``cim.schema.models`` checks its classes against this list when it is imported.
"""

SCHEMA = "cim"

CITY_LAYERS: tuple[str, ...] = (
    "buildings",
    "water_bodies",
    "waterways",
    "drainage_nodes",
    "drainage_pipes",
    "catchments",
    "roads",
    "structures",
    "assets",
    "sensors",
    "addresses",
    "admin_units",
    "dems",
)
"""Versioned city object tables (the ``--layer`` names of ``cim import``)."""
