"""The scenario kinds the platform runs, each with its comparison hook: one line a kind."""

from __future__ import annotations

from dataclasses import replace

from simulation.flood.compare import COMPARER as FLOOD_COMPARER
from simulation.flood.scenario import KIND as FLOOD
from simulation.jobs import ScenarioKind
from simulation.traffic.compare import COMPARER as TRAFFIC_COMPARER
from simulation.traffic.scenario import KIND as TRAFFIC

KINDS: dict[str, ScenarioKind] = {kind.name: kind for kind in (
    replace(FLOOD, compare=FLOOD_COMPARER), replace(TRAFFIC, compare=TRAFFIC_COMPARER))}
