"""One table from exception class to CLI exit code; messages are user-safe by design.

The table is built on first use: its exception classes live beside the code that raises
them (the schema, pandas-based import), which `cim --help` should not have to import."""

from __future__ import annotations

import functools


@functools.cache
def exit_codes() -> dict[type[Exception], int]:
    from pydantic import ValidationError

    from cim.access import AccessError, KeyNotFound
    from cim.backup import BackupError
    from cim.db.errors import DatabaseError
    from cim.history import HistoryError, ObjectNotFound
    from cim.ingest.errors import ImportRejected, IngestError
    from cim.settings import ConfigFileError
    from simulation.errors import ScenarioInputError, ScenarioNotFound
    from tiles.errors import TileError, UnknownLayer

    return {
        ImportRejected: 3,
        IngestError: 2,
        ObjectNotFound: 4,
        UnknownLayer: 4,
        KeyNotFound: 4,
        ScenarioNotFound: 4,
        ScenarioInputError: 2,
        AccessError: 2,
        HistoryError: 2,
        TileError: 2,
        DatabaseError: 5,
        BackupError: 5,
        ConfigFileError: 6,
        ValidationError: 6,  # a setting with a wrong value
    }


def exit_code(exc: Exception) -> int | None:
    """The exit code for a known error, None for a bug (which should show its traceback)."""
    for cls, code in exit_codes().items():
        if isinstance(exc, cls):
            return code
    return None
