"""The city schema (SQLAlchemy + GeoAlchemy2) and its Alembic migrations."""
