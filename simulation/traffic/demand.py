"""Travel demand: an OD matrix of the analysed hour, from the city model or imported.

From the city model, in the classic first two steps of the four-step model:

1. **Trip ends.** Each zone produces and attracts car trips in proportion to the floor area of
   its buildings by use (footprint × floors; floors from height / 3 m where missing; building
   parts left out, their parent counts), at the daily rates of ``RATES`` times the peak-hour
   factor (the share of the day's trips in the analysed hour, 0.10 by default). Attractions
   are then scaled to the productions' total. A building outside every zone counts in the
   nearest one within ``NEAREST_ZONE_M`` (1 km); farther ones (a district the network does
   not reach) are left out and reported.
2. **Distribution.** A doubly constrained gravity model T_ij = a_i b_j P_i A_j exp(−β c_ij)
   (balanced by Furness iterations), c the free-flow travel time between zone centroids and,
   within a zone, half the time to its nearest neighbour. β is calibrated by Hyman's method
   (Hyman 1969; Ortúzar & Willumsen, *Modelling Transport*, 4th ed., §5.5) so that the mean
   trip time matches a target: ``DEFAULT_MEAN_TRIP_MIN``, or less where the zones are so
   close that even with no deterrence the trips are shorter on average
   (``FLAT_SHARE`` of that mean). On a scene too small to calibrate on (one zone, zones at
   one place, or trip ends that fix the mean trip time whatever β) the default target falls
   back to β = 0, no deterrence: trips spread in proportion to the attractions, balanced by
   Furness, and the run logs why (``Distribution.note``); an explicit target stays an error.

Daily car trips per 100 m² of floor area (``RATES``): indicative planning values of the order
of the trip-rate tables of Chinese city traffic impact assessments (car mode share of about a
quarter), not a survey of Wuhan; calibrate them to a household survey before operational use.
Uses not listed count as ``other``.

| use         | produced | attracted |
| ----------- | -------- | --------- |
| residential | 1.2      | 0.3       |
| office      | 0.4      | 1.6       |
| commercial  | 0.8      | 3.0       |
| retail      | 0.8      | 3.0       |
| industrial  | 0.2      | 0.6       |
| education   | 0.1      | 1.0       |
| healthcare  | 0.5      | 1.5       |
| public      | 0.3      | 0.8       |
| other       | 0.3      | 0.3       |

Imported: rows of ``origin,destination,trips`` (trips in the analysed hour between zone ids of
the network, e.g. ``grid:3_4`` or an administrative unit's id); repeated pairs add up.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Container, Iterable
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from sqlalchemy import Connection, text

from simulation.traffic.assignment import Demand, Network, shortest_costs
from simulation.traffic.errors import TrafficInputError
from simulation.traffic.network import Area, area_condition

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class TripRate:
    produced: float
    attracted: float


RATES: dict[str, TripRate] = {
    "residential": TripRate(1.2, 0.3),
    "office": TripRate(0.4, 1.6),
    "commercial": TripRate(0.8, 3.0),
    "retail": TripRate(0.8, 3.0),
    "industrial": TripRate(0.2, 0.6),
    "education": TripRate(0.1, 1.0),
    "healthcare": TripRate(0.5, 1.5),
    "public": TripRate(0.3, 0.8),
    "other": TripRate(0.3, 0.3),
}
STOREY_M = 3.0
NEAREST_ZONE_M = 1000.0
PEAK_HOUR_FACTOR = 0.10
DEFAULT_MEAN_TRIP_MIN = 15.0
FLAT_SHARE = 0.75
FURNESS_TOLERANCE = 1e-6
FURNESS_MAX_ITER = 200
HYMAN_TOLERANCE = 0.005  # relative error of the mean trip time
HYMAN_MAX_ITER = 30


@dataclass(frozen=True, eq=False)
class TripEnds:
    """Trips produced and attracted per zone in the analysed hour, the floor area behind
    them (m² per zone and use) and the floor area too far from every zone to count."""

    produced: np.ndarray
    attracted: np.ndarray
    floor_area: dict[str, np.ndarray]
    left_out_m2: float = 0.0


@dataclass(frozen=True, eq=False)
class Distribution:
    """The gravity model's matrix, its calibrated β (per minute) and mean trip time;
    ``note`` says why β was not calibrated (the fallback), or None."""

    demand: Demand
    beta: float
    mean_trip_min: float
    target_min: float
    iterations: int
    note: str | None = None


def read_floor_area(conn: Connection, crs: int, area: Area | None = None
                    ) -> gpd.GeoDataFrame:
    """Current buildings (touching ``area``) as points in the city's CRS with their use and
    floor area, m²."""
    where, params = area_condition(area)
    sql = text(f"""
        SELECT coalesce(use, 'other') AS use, floors, height,
               ST_Area(ST_Transform(geom, :srid)) AS footprint_m2,
               ST_Transform(ST_PointOnSurface(geom), :srid) AS geom
        FROM cim.buildings WHERE valid_to IS NULL AND parent_id IS NULL AND {where}""")
    frame = gpd.read_postgis(sql, conn, geom_col="geom", params={"srid": crs, **params},
                             crs=crs)
    floors = frame["floors"].to_numpy(dtype=float, na_value=np.nan)
    height = frame["height"].to_numpy(dtype=float, na_value=STOREY_M)
    floors = np.where(np.isfinite(floors) & (floors > 0), floors,
                      np.maximum(1.0, np.round(height / STOREY_M)))
    frame["floor_area_m2"] = frame["footprint_m2"].to_numpy(float) * floors
    return frame


def trip_ends(buildings: gpd.GeoDataFrame, zones: gpd.GeoDataFrame,
              peak_hour_factor: float = PEAK_HOUR_FACTOR) -> TripEnds:
    """Productions and attractions per zone (in ``zones`` order) from buildings as points with
    ``use`` and ``floor_area_m2``, both in the zones' CRS."""
    n = len(zones)
    points = buildings.geometry.values
    polygons = zones.geometry.values
    inside_point, inside_zone = shapely.STRtree(polygons).query(points, "within")
    zone_of = np.full(len(points), -1)
    zone_of[inside_point] = inside_zone  # a point on a shared edge: either zone will do
    outside = np.flatnonzero(zone_of < 0)
    if len(outside):
        found, nearest = shapely.STRtree(polygons).query_nearest(
            points[outside], max_distance=NEAREST_ZONE_M)
        first = np.unique(found, return_index=True)[1]
        zone_of[outside[found[first]]] = nearest[first]
    counted = zone_of >= 0
    uses = buildings["use"].where(buildings["use"].isin(RATES), "other").to_numpy()[counted]
    area = buildings["floor_area_m2"].to_numpy(float)
    left_out = float(area[~counted].sum())
    area, zone_of = area[counted], zone_of[counted]
    floor_area: dict[str, np.ndarray] = {}
    produced, attracted = np.zeros(n), np.zeros(n)
    for use, rate in RATES.items():
        mine = uses == use
        if not mine.any():
            continue
        per_zone = np.bincount(zone_of[mine], weights=area[mine], minlength=n)
        floor_area[use] = per_zone
        produced += per_zone / 100.0 * rate.produced
        attracted += per_zone / 100.0 * rate.attracted
    produced *= peak_hour_factor
    total = attracted.sum()
    attracted = attracted * (produced.sum() / total) if total > 0 else attracted
    return TripEnds(produced, attracted, floor_area, left_out)


def zone_costs(network: Network) -> np.ndarray:
    """Free-flow minutes between zone centroids; within a zone half the time to the nearest
    other zone; inf where no path joins them."""
    zones = np.arange(network.num_zones)
    cost = shortest_costs(network, network.free_flow_time + network.fixed_cost, zones)
    cost = cost[:, network.zone_nodes]
    off = cost.copy()
    np.fill_diagonal(off, np.inf)
    nearest = off.min(axis=1)
    np.fill_diagonal(cost, np.where(np.isfinite(nearest), nearest / 2.0, 0.0))
    return cost


def furness(produced: np.ndarray, attracted: np.ndarray, weight: np.ndarray
            ) -> tuple[np.ndarray, int]:
    """The matrix proportional to ``weight`` whose rows sum to ``produced`` and columns to
    ``attracted`` (as nearly as the pattern of zero weights allows)."""
    trips = weight * produced[:, None] * attracted[None, :]
    for iteration in range(1, FURNESS_MAX_ITER + 1):
        rows = trips.sum(axis=1)
        trips *= np.divide(produced, rows, out=np.zeros_like(rows), where=rows > 0)[:, None]
        cols = trips.sum(axis=0)
        trips *= np.divide(attracted, cols, out=np.zeros_like(cols), where=cols > 0)[None, :]
        rows = trips.sum(axis=1)
        error = np.abs(rows - produced).sum() / max(produced.sum(), 1e-12)
        if error < FURNESS_TOLERANCE:
            return trips, iteration
    return trips, FURNESS_MAX_ITER


def _mean_cost(trips: np.ndarray, cost: np.ndarray) -> float:
    total = trips.sum()
    reachable = np.isfinite(cost)
    return float(np.sum(trips[reachable] * cost[reachable]) / total) if total > 0 else 0.0


def _gravity(ends: TripEnds, cost: np.ndarray, beta: float) -> tuple[np.ndarray, float]:
    # Costs above each row's least: the Furness factors absorb the difference, and a large
    # β cannot underflow every weight of a row.
    finite = np.isfinite(cost)
    least = np.min(np.where(finite, cost, np.inf), axis=1, keepdims=True)
    excess = np.where(finite, cost - np.where(np.isfinite(least), least, 0.0), 0.0)
    weight = np.where(finite, np.exp(-beta * excess), 0.0)
    trips, _ = furness(ends.produced, ends.attracted, weight)
    return trips, _mean_cost(trips, cost)


def distribute(ends: TripEnds, cost: np.ndarray, mean_trip_min: float | None = None
               ) -> Distribution:
    """The gravity model with β calibrated by Hyman's method to ``mean_trip_min``.

    With the default target, a network whose trip ends leave the mean trip time little room
    (two zones, say) keeps the nearest mean it reaches; an explicit target it cannot reach
    is an error.
    """
    if ends.produced.sum() <= 0:
        raise TrafficInputError("the zones produce no trips: no buildings with floor area "
                                "near the roads")
    finite = cost[np.isfinite(cost)]
    scale = float(finite.max()) if finite.size else 1.0
    _, flat_mean = _gravity(ends, cost, 1e-6 / max(scale, 1e-9))
    if mean_trip_min is None:
        target = min(DEFAULT_MEAN_TRIP_MIN, FLAT_SHARE * flat_mean)
    elif mean_trip_min >= flat_mean:
        raise TrafficInputError(
            f"a mean trip time of {mean_trip_min:g} min is more than this network allows "
            f"({flat_mean:.3g} min with no deterrence at all): ask for less")
    else:
        target = mean_trip_min
    if target <= 0:
        return _uncalibrated(ends, cost, target, 0, "every trip takes no time (one zone, or "
                             "zones at one place): no trip time to calibrate β on")
    # Hyman's secant steps, kept inside the bracket of β known to be too small (mean above
    # the target) and too large: the mean falls as β grows, but not linearly.
    low, high = 0.0, math.inf
    beta_prev, mean_prev, beta = 0.0, flat_mean, 1.0 / target
    trips, mean = _gravity(ends, cost, beta)
    iterations = 1
    while abs(mean - target) > HYMAN_TOLERANCE * target and iterations < HYMAN_MAX_ITER:
        if abs(mean - mean_prev) < 1e-9 * target:
            if mean_trip_min is None:
                return _uncalibrated(ends, cost, target, iterations,
                                     f"the trip ends fix the mean trip time at {mean:.3g} min "
                                     "whatever β")
            break
        if mean > target:
            low = beta
        else:
            high = beta
        if iterations == 1:
            step = beta * mean / target  # Hyman's second estimate
        else:
            step = ((target - mean_prev) * beta - (target - mean) * beta_prev) / (
                mean - mean_prev)
        if not (math.isfinite(step) and low < step < high):
            step = (low + high) / 2.0 if math.isfinite(high) else 2.0 * beta
        beta_prev, mean_prev, beta = beta, mean, step
        trips, mean = _gravity(ends, cost, beta)
        iterations += 1
    if mean_trip_min is not None and abs(mean - target) > 0.05 * target:
        raise TrafficInputError(
            f"the gravity model cannot reach a mean trip time of {target:.3g} min on this "
            f"network (got {mean:.3g} min)")
    note = None
    if abs(mean - target) > HYMAN_TOLERANCE * target:
        note = (f"Hyman's method stopped after {iterations} iterations at a mean trip of "
                f"{mean:.3g} min (target {target:.3g}): β kept at {beta:.4g}/min")
        log.warning("gravity model: %s", note)
    return Distribution(Demand(trips), beta, mean, target, iterations, note)


def _uncalibrated(ends: TripEnds, cost: np.ndarray, target: float, iterations: int,
                  why: str) -> Distribution:
    """The documented fallback of a scene too small to calibrate on: β = 0."""
    note = f"{why}; β not calibrated, 0 (no deterrence)"
    log.warning("gravity model: %s", note)
    trips, mean = _gravity(ends, cost, 0.0)
    return Distribution(Demand(trips), 0.0, mean, target, iterations, note)


def read_od_csv(path: Path) -> list[tuple[str, str, float]]:
    """Rows of an ``origin,destination,trips`` CSV (with that header)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not {"origin", "destination", "trips"} <= set(
                    name.strip() for name in reader.fieldnames):
                raise TrafficInputError(f"{path.name}: the header must be "
                                        "origin,destination,trips")
            rows = []
            for number, row in enumerate(reader, start=2):
                row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
                try:
                    trips = float(row["trips"])
                except ValueError:
                    raise TrafficInputError(f"{path.name} line {number}: trips "
                                            f"{row['trips']!r} is not a number") from None
                if not math.isfinite(trips) or trips < 0:
                    raise TrafficInputError(f"{path.name} line {number}: trips must be "
                                            "finite and not negative")
                rows.append((row["origin"], row["destination"], trips))
    except OSError as exc:
        raise TrafficInputError(f"cannot read {path}: {exc.strerror}") from None
    return rows


def check_zone_ids(rows: Iterable[tuple[str, str, float]], zone_ids: Container[str]) -> None:
    """Refuses OD rows whose origin or destination is not one of ``zone_ids``, naming them."""
    unknown = sorted({z for o, d, _ in rows for z in (o, d) if z not in zone_ids})
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise TrafficInputError(f"{len(unknown)} zone ids of the OD matrix are not zones of "
                                f"the network: {shown}")


def od_matrix(rows: Iterable[tuple[str, str, float]], zone_ids: list[str]) -> Demand:
    """An OD matrix over the network's zones from (origin, destination, trips) rows."""
    index = {zone: i for i, zone in enumerate(zone_ids)}
    rows = list(rows)
    check_zone_ids(rows, index)
    trips = np.zeros((len(zone_ids), len(zone_ids)))
    if rows:
        origin = np.array([index[o] for o, _, _ in rows])
        dest = np.array([index[d] for _, d, _ in rows])
        np.add.at(trips, (origin, dest), np.array([t for _, _, t in rows], dtype=float))
    return Demand(trips)


def served(network: Network, demand: Demand) -> tuple[Demand, float]:
    """The demand whose origin reaches its destination on ``network``, and the trips that
    cannot (which the assignment must leave out)."""
    origins = np.flatnonzero(demand.trips.sum(axis=1) > 0)
    if len(origins) == 0:
        return demand, 0.0
    cost = shortest_costs(network, network.free_flow_time + network.fixed_cost, origins)
    reach = np.isfinite(cost[:, network.zone_nodes])
    reach[np.arange(len(origins)), origins] = True  # trips within a zone need no road
    keep = np.zeros_like(demand.trips, dtype=bool)
    keep[origins] = reach
    trips = np.where(keep, demand.trips, 0.0)
    return Demand(trips), float(demand.trips.sum() - trips.sum())
