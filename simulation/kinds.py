"""The scenario kinds the platform runs: one line a kind."""

from __future__ import annotations

from simulation.flood.scenario import KIND as FLOOD
from simulation.jobs import ScenarioKind
from simulation.traffic.scenario import KIND as TRAFFIC

KINDS: dict[str, ScenarioKind] = {kind.name: kind for kind in (FLOOD, TRAFFIC)}
