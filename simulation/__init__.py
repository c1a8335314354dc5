"""Scenario engines over the city model: ``flood/`` (waterlogging) and ``traffic/``, run as
persisted jobs. Built by the flood and traffic issues."""
