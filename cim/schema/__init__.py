"""The city schema (SQLAlchemy + GeoAlchemy2) and its Alembic migrations."""

# Every table registers with the shared metadata, whichever module a caller imports.
from cim.schema import access, models, scenarios, traffic  # noqa: F401
