"""Flood errors; every message is meant for the engineer who set up the run."""

from __future__ import annotations


class FloodInputError(Exception):
    """An input (DEM, rain, roughness, points, parameters) is missing or unusable."""
