"""What a layer definition says: its source, geometry, properties, zooms, style and class.

Definitions are data (one TOML file each in ``layers/definitions``); these pydantic models
are their schema, so a wrong definition fails loudly when the catalog loads, not when a
tile is drawn.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=63)]
"""A SQL identifier we accept: lower case, digits, underscores (never quoted user input)."""
Colour = Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}([0-9a-fA-F]{2})?$")]
MAX_ZOOM = 24


class Classification(StrEnum):
    """Graded data security (数据分级分类): who may see a layer at all."""

    public = "public"
    internal = "internal"
    restricted = "restricted"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    """Where features come from: a table or view of the ``cim`` schema, optionally filtered."""

    relation: Identifier
    schema_: Identifier = Field(default="cim", alias="schema")
    geometry: Identifier = "geom"
    id_column: Identifier = "id"
    where: dict[Identifier, str | int | float | bool] = Field(
        default_factory=dict, description="Equality conditions, ANDed (values are bound).")
    versioned: bool = Field(
        default=True, description="Rows carry valid_from/valid_to: the source can time travel.")


class Property(_Strict):
    """One exposed property; tiles carry it from ``min_zoom`` on, the feature API always."""

    name: Identifier
    title: str
    column: Identifier | None = None
    min_zoom: int = Field(default=0, ge=0, le=MAX_ZOOM)

    @property
    def source_column(self) -> str:
        return self.column or self.name


class Stop(_Strict):
    value: float
    colour: Colour


class Style(_Strict):
    """A default look, enough for a MapLibre style layer and a legend entry."""

    kind: Literal["fill", "fill-extrusion", "line", "circle"]
    colour: Colour
    opacity: float = Field(default=1.0, ge=0, le=1)
    width: float | None = Field(default=None, gt=0, description="Line width or circle radius.")
    by: Identifier | None = Field(default=None, description="Property colouring the features.")
    categories: dict[str, Colour] = Field(default_factory=dict)
    ramp: list[Stop] = Field(default_factory=list)
    extrude_height: Identifier | None = None
    extrude_base: Identifier | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Style:
        if (self.categories or self.ramp) and self.by is None:
            raise ValueError("categories or ramp need `by`, the property they colour by")
        if self.categories and self.ramp:
            raise ValueError("colour by categories or by a ramp, not both")
        values = [s.value for s in self.ramp]
        if values != sorted(values):
            raise ValueError("ramp stops must be in increasing order")
        if self.kind == "fill-extrusion" and self.extrude_height is None:
            raise ValueError("fill-extrusion needs extrude_height")
        return self


class TileOptions(_Strict):
    """How much of a layer its vector tiles carry at low zooms (the tile's own weight).

    Below ``detail_zoom`` a feature whose bounding box is under ``drop_below_px`` pixels in
    both directions (a tile drawn 512 px wide) is left out: it would not show, yet it costs
    a transform, a clip and its bytes. From ``detail_zoom`` on, tiles hold every feature."""

    id_min_zoom: int = Field(
        default=0, ge=0, le=MAX_ZOOM,
        description="Zoom from which features carry their text id (always their version id).")
    drop_below_px: float = Field(default=0.0, ge=0, le=64)
    detail_zoom: int = Field(default=16, ge=0, le=MAX_ZOOM)


class LayerDefinition(_Strict):
    """One thematic layer of the catalog."""

    id: Identifier
    title: str
    description: str = ""
    group: str = Field(description="Legend group (base map, water, drainage, ...).")
    source: Source
    properties: list[Property]
    min_zoom: int = Field(default=0, ge=0, le=MAX_ZOOM)
    max_zoom: int = Field(default=22, ge=0, le=MAX_ZOOM)
    style: Style
    classification: Classification = Classification.public
    attribution: str | None = None
    tiles: TileOptions = Field(default_factory=TileOptions)

    @model_validator(mode="after")
    def _consistent(self) -> LayerDefinition:
        if self.min_zoom > self.max_zoom:
            raise ValueError(f"min_zoom {self.min_zoom} is above max_zoom {self.max_zoom}")
        names = [p.name for p in self.properties]
        duplicated = {n for n in names if names.count(n) > 1}
        if duplicated:
            raise ValueError(f"properties listed twice: {', '.join(sorted(duplicated))}")
        for used in (self.style.by, self.style.extrude_height, self.style.extrude_base):
            if used is not None and used not in names:
                raise ValueError(f"the style uses {used!r}, which is not an exposed property")
        return self

    def columns(self) -> set[str]:
        """Every source column the definition relies on."""
        src = self.source
        return ({src.geometry, src.id_column, *src.where}
                | {p.source_column for p in self.properties})

