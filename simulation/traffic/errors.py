"""Traffic errors; every message is meant for the engineer who set up the run."""

from __future__ import annotations

from simulation.errors import ScenarioInputError


class TrafficInputError(ScenarioInputError):
    """An input (network, trips, flows, parameters, road layer) is missing or unusable."""
