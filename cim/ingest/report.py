"""The validation and import report: what was read, stored, repaired, estimated and rejected."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Rejection(BaseModel):
    row: int = Field(description="0-based position of the feature in the input.")
    source_id: str | None
    reason: str


class Repair(BaseModel):
    row: int
    source_id: str | None
    reason: str


class ImportReport(BaseModel):
    path: str
    format: str
    layer: str
    source: str
    input_crs: str | None = None
    import_id: int | None = None
    status: str = "running"
    features_read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    estimated_heights: int = 0
    rejected: list[Rejection] = []
    repaired: list[Repair] = []
    warnings: list[str] = []
    seconds: float = 0.0

    @property
    def stored(self) -> int:
        return self.inserted + self.updated

    def summary(self) -> str:
        parts = [f"{self.features_read} read"]
        if self.import_id is not None:  # something was stored
            parts += [f"{self.inserted} new", f"{self.updated} updated",
                      f"{self.unchanged} unchanged"]
            if self.deleted:
                parts.append(f"{self.deleted} deleted")
        parts += [f"{len(self.repaired)} repaired", f"{len(self.rejected)} rejected"]
        if self.estimated_heights:
            parts.append(f"{self.estimated_heights} heights estimated")
        return ", ".join(parts)
