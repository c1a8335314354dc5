"""Import errors; every message is meant for the data steward who ran the import."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cim.ingest.report import ImportReport


class IngestError(Exception):
    """Base of import errors: the import changed nothing."""


class ReaderError(IngestError):
    """The file could not be read (missing, malformed, unsupported)."""


class MappingError(IngestError):
    """The options do not fit the layer (unknown layer, column or mapping)."""


class CrsError(IngestError):
    """The input's coordinate reference system is missing, unknown or contradictory."""


class ImportRejected(IngestError):
    """Validation rejected features and the import was strict: nothing was stored."""

    def __init__(self, report: ImportReport) -> None:
        self.report = report
        super().__init__(
            f"{len(report.rejected)} of {report.features_read} features rejected; "
            "nothing was imported (use --skip-invalid to load the valid ones)"
        )
