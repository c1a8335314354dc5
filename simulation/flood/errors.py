"""Errors of the flood engine."""

from __future__ import annotations

from simulation.errors import ScenarioInputError


class FloodInputError(ScenarioInputError):
    """An input (DEM, rain, roughness, points, parameters) is missing or unusable."""
