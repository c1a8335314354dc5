"""Lakes, ponds and reservoirs in the low ground, with levels consistent with the terrain."""

from __future__ import annotations

from dataclasses import dataclass, replace

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry import Polygon

from cim.demo import names
from cim.demo.frame import CRS, Extent, RealData, as_multipolygons, ids
from cim.demo.streets import ARTERIAL, StreetPlan
from cim.demo.terrain import Surface

# kind: (radius range m, bed depth below the normal level m, name suffix)
KINDS = {
    "lake": ((150.0, 320.0), (2.5, 4.0), "湖"),
    "pond": ((35.0, 80.0), (1.5, 2.5), "塘"),
    "reservoir": ((100.0, 170.0), (3.0, 4.5), "水库"),
}
KM2_PER_WATER_BODY = 3.5
REACH = 1.8  # the noised shore stays within this many radii of the centre
VERTICES = 72


@dataclass(frozen=True)
class WaterBody:
    """A star-shaped noised ellipse: ``radius`` scaled by harmonics, stretched and turned."""

    cx: float
    cy: float
    radius: float
    stretch: float
    angle: float
    harmonics: np.ndarray  # (k, 3): order, amplitude, phase
    kind: str
    name: str
    depth: float
    normal_level: float
    warning_level: float

    def _shore_radius(self, theta: np.ndarray) -> np.ndarray:
        wobble = np.zeros_like(theta)
        for order, amp, phase in self.harmonics:
            wobble += amp * np.cos(order * theta + phase)
        return self.radius * (1 + wobble)

    def polygon(self) -> Polygon:
        theta = np.linspace(0, 2 * np.pi, VERTICES, endpoint=False)
        r = self._shore_radius(theta)
        u, v = r * (1 + self.stretch) * np.cos(theta), r * (1 - self.stretch) * np.sin(theta)
        c, s = np.cos(self.angle), np.sin(self.angle)
        return shapely.Polygon(np.column_stack([self.cx + u * c - v * s, self.cy + u * s + v * c]))

    def relative_radius(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        c, s = np.cos(self.angle), np.sin(self.angle)
        dx, dy = x - self.cx, y - self.cy
        u = (dx * c + dy * s) / (1 + self.stretch)
        v = (-dx * s + dy * c) / (1 - self.stretch)
        return np.hypot(u, v) / self._shore_radius(np.arctan2(v, u))

    def bounds(self) -> tuple[float, float, float, float]:
        return shapely.bounds(self.polygon())


def place_water(
    extent: Extent, real: RealData, plan: StreetPlan, surface: Surface, rng: np.random.Generator
) -> list[WaterBody]:
    """A lake on an arterial (so there is a bridge), then more water in the lowest ground.

    Water that finds no room becomes a pond, which nearly always does.
    """
    n = max(2, round(extent.area_km2 / KM2_PER_WATER_BODY))
    kinds = ["lake", *map(str, rng.choice(list(KINDS), p=[0.35, 0.5, 0.15], size=n - 1))]
    avoid = shapely.union_all(
        [real.road_zone, real.sample_zone, *plan.rows.geometry[plan.rows["tunnel"]]]
    )
    bodies: list[WaterBody] = []
    taken: set[str] = set()
    for i, wanted in enumerate(kinds):
        for kind in dict.fromkeys((wanted, "pond")):
            (r_lo, r_hi), (d_lo, d_hi), suffix = KINDS[kind]
            radius = rng.uniform(r_lo, r_hi)
            on_arterial = i == 0 and kind == wanted
            x, y = _arterial_points(plan) if on_arterial else _random_points(extent, rng)
            ok = _room(x, y, REACH * radius, extent, avoid, plan.crossings, bodies)
            if ok.any():
                break
        else:
            continue
        best = np.nonzero(ok)[0][np.argmin(surface.at(x[ok], y[ok]))]
        shape = WaterBody(
            cx=float(x[best]),
            cy=float(y[best]),
            radius=radius,
            stretch=rng.uniform(0.0, 0.25),
            angle=rng.uniform(0, np.pi),
            harmonics=np.column_stack(
                [
                    np.arange(2, 6),
                    rng.uniform(0, 0.35, 4) / np.arange(2, 6),
                    rng.uniform(0, 2 * np.pi, 4),
                ]
            ),
            kind=kind,
            name=names.place_names(rng, 1, suffix, taken)[0],
            depth=rng.uniform(d_lo, d_hi),
            normal_level=0.0,
            warning_level=0.0,
        )
        bodies.append(_with_levels(shape, surface, rng))
    return bodies


def _room(
    x: np.ndarray,
    y: np.ndarray,
    reach: float,
    extent: Extent,
    avoid: shapely.Geometry,
    crossings: np.ndarray,
    bodies: list[WaterBody],
) -> np.ndarray:
    """Which centres leave water of this reach inside the district, clear of the real data,
    the underpasses, the arterial crossings and the other water."""
    ok = (
        (x > extent.x0 + reach)
        & (x < extent.x1 - reach)
        & (y > extent.y0 + reach)
        & (y < extent.y1 - reach)
        & (shapely.distance(shapely.points(x, y), avoid) > reach + 150)
    )
    if len(crossings):
        gap = np.hypot(x[:, None] - crossings[:, 0], y[:, None] - crossings[:, 1])
        ok &= gap.min(axis=1) > reach + 80
    for other in bodies:
        ok &= np.hypot(x - other.cx, y - other.cy) > reach + REACH * other.radius + 150
    return ok


def _arterial_points(plan: StreetPlan) -> tuple[np.ndarray, np.ndarray]:
    rows = plan.rows[plan.rows["road_class"].isin(ARTERIAL) & ~plan.rows["through"]]
    points = shapely.get_coordinates(shapely.segmentize(rows.geometry.values, 50.0))
    return points[:, 0], points[:, 1]


def _random_points(extent: Extent, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return (rng.uniform(extent.x0, extent.x1, 200), rng.uniform(extent.y0, extent.y1, 200))


def _with_levels(body: WaterBody, surface: Surface, rng: np.random.Generator) -> WaterBody:
    """Normal level a little below the lowest shore, warning level between the two."""
    shore = shapely.get_coordinates(body.polygon())
    lowest = float(surface.at(shore[:, 0], shore[:, 1]).min())
    freeboard = rng.uniform(0.6, 1.2)
    normal = round(lowest - freeboard, 2)
    warning = round(normal + min(rng.uniform(0.5, 0.9), 0.8 * freeboard), 2)
    return replace(body, normal_level=normal, warning_level=warning)


def water_layer(bodies: list[WaterBody]) -> gpd.GeoDataFrame:
    polygons = np.array([b.polygon() for b in bodies], dtype=object)
    return gpd.GeoDataFrame(
        {
            "source_id": ids("w", len(bodies)),
            "name": [b.name for b in bodies],
            "kind": [b.kind for b in bodies],
            "area_m2": np.round(shapely.area(polygons), 1),
            "normal_level": [b.normal_level for b in bodies],
            "warning_level": [b.warning_level for b in bodies],
        },
        geometry=as_multipolygons(polygons),
        crs=CRS,
    )
