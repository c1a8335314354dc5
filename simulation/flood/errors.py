"""Flood errors; every message is meant for the engineer who set up the run."""

from __future__ import annotations


class FloodInputError(Exception):
    """An input (DEM, rain, roughness, points, parameters) is missing or unusable."""


class ScenarioNotFound(Exception):
    """No scenario has that id."""


class ScenarioConflict(Exception):
    """The scenario's status does not allow the action (cancel a finished run, rerun one
    that succeeded)."""


class Cancelled(Exception):
    """The run was cancelled, or its worker is stopping; nothing is published."""
