"""Embedded PostGIS cluster manager and SQLAlchemy engine."""
