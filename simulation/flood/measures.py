"""Sponge-city and drainage measures as edits of a scenario's domain, never of the stored city.

- Green roofs: the roofs of the chosen buildings (by id, or every building in an area) hold
  back the first ``retention_mm`` of the water on them; the rest runs off as before.
- Permeable pavement: ground in an area takes up to ``infiltration_mm_h`` more, for the
  whole run (the pavement's base does not fill within a storm).
- Storage ponds: the ground in an area is dug out to hold ``volume_m3`` below its edge (the
  volume over the area's cells, which count as water from then on, so a full pond is not a
  hotspot, and as a level pool, so a full pond's depth does not shorten the time step).
- Drainage upgrades: inlet capacities and network capacities (the pipes reaching the
  outlets) multiplied by factors; pumps add their m³/s to the network of the inlet nearest
  to them.

Green roofs and pavement take water after each step as a store of the solver, its own term
(``retention``) in the water budget; ponds are terrain, their water stays in storage.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from numba import njit
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pyproj import Transformer
from shapely.geometry import shape

from simulation.flood.domain import Cover, Domain, burn
from simulation.flood.errors import FloodInputError

PUMP_REACH_M = 500.0
"""A pump joins the network of the nearest inlet at most this far away."""

Coordinates = tuple[float, float]


def _area(value: dict) -> dict:
    """A GeoJSON Polygon or MultiPolygon in longitude and latitude, valid and not empty."""
    try:
        geometry = shape(value)
    except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"area must be a GeoJSON Polygon or MultiPolygon: {exc}") from None
    if geometry.geom_type not in ("Polygon", "MultiPolygon") or geometry.is_empty:
        raise ValueError("area must be a GeoJSON Polygon or MultiPolygon")
    if not geometry.is_valid:
        raise ValueError(f"area is not a valid polygon: {shapely.is_valid_reason(geometry)}")
    west, south, east, north = geometry.bounds
    if max(abs(west), abs(east)) > 180 or max(abs(south), abs(north)) > 90:
        raise ValueError("area coordinates must be longitude and latitude in degrees")
    return value


class _Measure(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("area", check_fields=False)
    @classmethod
    def _valid_area(cls, value: dict | None) -> dict | None:
        return None if value is None else _area(value)


class GreenRoofs(_Measure):
    buildings: list[str] = Field(default_factory=list, max_length=100_000,
                                 description="Building ids; with area, those too.")
    area: dict | None = Field(default=None, description="GeoJSON polygon (lon/lat): every "
                              "building in it.")
    retention_mm: float = Field(gt=0, le=300, description="Water each roof holds back, mm.")

    @model_validator(mode="after")
    def _some(self) -> GreenRoofs:
        if not self.buildings and self.area is None:
            raise ValueError("green roofs need building ids or an area")
        return self


class PermeablePavement(_Measure):
    area: dict = Field(description="GeoJSON polygon (lon/lat).")
    infiltration_mm_h: float = Field(gt=0, le=3000)


class StoragePond(_Measure):
    area: dict = Field(description="GeoJSON polygon (lon/lat).")
    volume_m3: float = Field(gt=0, le=1e7)


class Pump(_Measure):
    at: Coordinates = Field(description="Longitude, latitude.")
    m3s: float = Field(gt=0, le=1000)


class DrainageUpgrade(_Measure):
    inlet_factor: float = Field(default=1.0, gt=0, le=20)
    pipe_factor: float = Field(default=1.0, gt=0, le=20)
    pumps: list[Pump] = Field(default_factory=list, max_length=100)


class Measures(_Measure):
    """Edits a scenario makes to its own copy of the city."""

    green_roofs: list[GreenRoofs] = Field(default_factory=list, max_length=100)
    permeable_pavement: list[PermeablePavement] = Field(default_factory=list, max_length=100)
    storage_ponds: list[StoragePond] = Field(default_factory=list, max_length=100)
    drainage: DrainageUpgrade | None = None

    @property
    def any(self) -> bool:
        return bool(self.green_roofs or self.permeable_pavement or self.storage_ponds
                    or self.drainage)


@njit(cache=True, nogil=True)
def _retain(h: np.ndarray, rows: np.ndarray, cols: np.ndarray, rate: np.ndarray,
            room: np.ndarray, dt: float) -> float:
    """Take from each store's cell the least of its depth, its rate and its room left."""
    taken = 0.0
    for k in range(rows.shape[0]):
        before = h[rows[k], cols[k]]
        if before <= 0.0 or room[k] <= 0.0:
            continue
        h[rows[k], cols[k]] = before - min(before, rate[k] * dt, room[k])
        # Counted as the change of the stored depth: exact in float32 as in float64.
        change = float(before) - float(h[rows[k], cols[k]])
        room[k] -= change
        taken += change
    return taken


@dataclass
class Retention:
    """Per-cell stores (m/s they can take, m of room left): the solver's ``retention``."""

    rows: np.ndarray
    cols: np.ndarray
    rate_m_s: np.ndarray
    room_m: np.ndarray
    cell_area: float

    def remove(self, h: np.ndarray, dt: float) -> float:
        if not len(self.rows):
            return 0.0
        return _retain(h, self.rows, self.cols, self.rate_m_s, self.room_m, dt) * self.cell_area


def _to_city(domain: Domain, area: dict) -> shapely.Geometry:
    to_city = Transformer.from_crs(4326, domain.crs, always_xy=True)
    return shapely.transform(shape(area), to_city.transform, interleaved=False)


def _mask(domain: Domain, areas: list[dict]) -> np.ndarray:
    """The domain's cells inside any of the areas (lon/lat GeoJSON)."""
    shapes = [_to_city(domain, area) for area in areas]
    burnt = burn(gpd.GeoSeries(shapes), 1.0, domain.transform, domain.grid.shape)
    return (burnt > 0) & domain.grid.active


def _ground(domain: Domain, area: dict, measure: str) -> np.ndarray:
    """The open ground (no building, no water) of the grid within ``area``."""
    cells = _mask(domain, [area]) & (domain.cover != Cover.building) \
        & (domain.cover != Cover.water)
    if not cells.any():
        raise FloodInputError(f"{measure}: the area covers no ground of the grid")
    return cells


def apply(domain: Domain, measures: Measures) -> Retention | None:
    """Edit the domain in place; returns the stores of green roofs and pavement (or None).
    Each measure that finds nothing to act on is refused (a typo in an id or an area)."""
    grid = domain.grid
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    rates: list[np.ndarray] = []
    rooms: list[np.ndarray] = []

    def store(mask: np.ndarray, rate: float, room: float) -> None:
        r, c = np.nonzero(mask)
        rows.append(r)
        cols.append(c)
        rates.append(np.full(len(r), rate))
        rooms.append(np.full(len(r), room))

    for k, roofs in enumerate(measures.green_roofs):
        chosen = domain.buildings["id"].isin(roofs.buildings).to_numpy()
        unknown = set(roofs.buildings) - set(domain.buildings["id"])
        if unknown:
            raise FloodInputError(f"green_roofs[{k}]: no building in the area with the id "
                                  f"{sorted(unknown)[:5]}")
        if roofs.area is not None:
            area = _to_city(domain, roofs.area)
            chosen |= domain.buildings.geometry.intersects(area).to_numpy()
        footprints = domain.buildings.geometry[chosen]
        roof = (burn(footprints, 1.0, domain.transform, grid.shape) > 0) \
            & (domain.cover == Cover.building) & grid.active
        if not roof.any():
            raise FloodInputError(f"green_roofs[{k}]: no building roof on the grid")
        store(roof, np.inf, roofs.retention_mm / 1000.0)
        domain.notes.append(f"green roofs: {int(chosen.sum())} buildings hold back "
                            f"{roofs.retention_mm:g} mm ({int(roof.sum())} cells)")
    for k, pavement in enumerate(measures.permeable_pavement):
        ground = _ground(domain, pavement.area, f"permeable_pavement[{k}]")
        store(ground, pavement.infiltration_mm_h / 3.6e6, np.inf)
        domain.notes.append(f"permeable pavement: {pavement.infiltration_mm_h:g} mm/h over "
                            f"{ground.sum() * grid.cell_area:.0f} m²")
    for k, pond in enumerate(measures.storage_ponds):
        # Ground only: a pond dug under a lake would lower the lake.
        cells = _ground(domain, pond.area, f"storage_ponds[{k}]")
        depth = pond.volume_m3 / (cells.sum() * grid.cell_area)
        grid.z[cells] -= depth
        domain.cover[cells] = Cover.water
        grid.pool[cells] = True  # level when it fills: its depth must not set the step
        domain.notes.append(f"storage pond: {pond.volume_m3:g} m³ over "
                            f"{cells.sum() * grid.cell_area:.0f} m² ({depth:.2f} m deep)")
    if measures.drainage is not None:
        _upgrade(domain, measures.drainage)
    if not rows:
        return None
    return Retention(np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64),
                     np.concatenate(rates), np.concatenate(rooms), grid.cell_area)


def _upgrade(domain: Domain, upgrade: DrainageUpgrade) -> None:
    drainage = domain.drainage
    before = drainage.capacity_m3s
    drainage.capacity = drainage.capacity * upgrade.inlet_factor
    drainage.network_capacity = drainage.network_capacity * upgrade.pipe_factor
    to_city = Transformer.from_crs(4326, domain.crs, always_xy=True)
    x = domain.transform.c + (drainage.cols + 0.5) * domain.transform.a
    y = domain.transform.f + (drainage.rows + 0.5) * domain.transform.e
    for k, pump in enumerate(upgrade.pumps):
        px, py = to_city.transform(*pump.at)
        distance = np.hypot(x - px, y - py)
        if not len(distance) or distance.min() > PUMP_REACH_M:
            raise FloodInputError(f"drainage.pumps[{k}]: no inlet within {PUMP_REACH_M:g} m "
                                  "of the pump")
        drainage.network_capacity[drainage.network[np.argmin(distance)]] += pump.m3s
    domain.notes.append(f"drainage upgrade: inlets × {upgrade.inlet_factor:g}, networks × "
                        f"{upgrade.pipe_factor:g}, {len(upgrade.pumps)} pumps: capacity "
                        f"{before:.1f} → {drainage.capacity_m3s:.1f} m³/s")
