"""A traffic scenario on the city model: its inputs, its run, and its publication.

A run builds the car network of the current roads (:mod:`simulation.traffic.network`) and the
demand of the analysed hour (:mod:`simulation.traffic.demand`: from the buildings' floor area,
or an imported OD matrix), applies the scenario's changes (:mod:`simulation.traffic.closures`:
roads changed or added, closed by id, by area or by a flood scenario's water, the demand
scaled), assigns the base case and the scenario to user equilibrium, and publishes one row per
directed road link with volumes and times before and after into ``cim.traffic_links`` (the
catalog layer ``traffic_links``), the totals in the scenario's outputs, all in one
transaction (:func:`simulation.jobs.succeed`).

Trips whose destination the scenario's network no longer reaches are left out of its
assignment and counted as ``unserved_trips``; their vehicle-hours are not in the totals.
"""

from __future__ import annotations

import math
import time
from typing import Annotated, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from shapely.geometry import shape
from sqlalchemy import Connection, text

from simulation.jobs import JobContext, Reporter, ScenarioKind, succeed
from simulation.traffic import closures
from simulation.traffic.assignment import Demand, Network, Result, assign
from simulation.traffic.demand import (
    NEAREST_ZONE_M,
    PEAK_HOUR_FACTOR,
    check_zone_ids,
    distribute,
    od_matrix,
    read_floor_area,
    served,
    trip_ends,
    zone_costs,
)
from simulation.traffic.errors import TrafficInputError
from simulation.traffic.network import RoadNetwork, network_from_database

# Shares of the progress bar: network and demand, then the two assignments.
BASE_PCT, AFTER_PCT, DONE_PCT = 25.0, 60.0, 95.0
# An id or name: no control characters (PostgreSQL's text and jsonb refuse NUL).
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


class RoadChangeInput(BaseModel):
    """New totals over both directions of an existing road."""

    model_config = ConfigDict(extra="forbid")

    road_id: Name
    lanes: float | None = Field(default=None, gt=0, le=20)
    max_speed_kmh: float | None = Field(default=None, gt=0, le=150)
    capacity_vph: float | None = Field(default=None, gt=0, le=40000)

    @model_validator(mode="after")
    def _something(self) -> RoadChangeInput:
        if self.lanes is None and self.max_speed_kmh is None and self.capacity_vph is None:
            raise ValueError(f"the change of road {self.road_id} changes nothing: give lanes, "
                             "max_speed_kmh or capacity_vph")
        return self


class NewRoadInput(BaseModel):
    """A road to add, joined to the network at its two ends."""

    model_config = ConfigDict(extra="forbid")

    coordinates: list[tuple[float, float]] = Field(
        min_length=2, max_length=10000, description="Longitude, latitude pairs.")
    road_class: str = Field(default="secondary", pattern=r"^[a-z_]{1,40}$")
    lanes: float | None = Field(default=None, gt=0, le=20)
    max_speed_kmh: float | None = Field(default=None, gt=0, le=150)
    capacity_vph: float | None = Field(default=None, gt=0, le=40000)
    oneway: bool = False

    @field_validator("coordinates")
    @classmethod
    def _degrees(cls, coordinates: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for lon, lat in coordinates:
            if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                raise ValueError(f"({lon}, {lat}) is not a longitude, latitude pair")
        return coordinates


class TrafficInputs(BaseModel):
    """A traffic scenario: changes to the roads and the demand, assigned beside the base case."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    close_roads: list[Name] = Field(default_factory=list, max_length=100000,
                                   description="Road ids to close in both directions.")
    close_areas: list[dict[str, Any]] = Field(
        default_factory=list, max_length=1000,
        description="GeoJSON Polygons or MultiPolygons (longitude, latitude): every road "
        "link touching one is closed.")
    flood_scenario_id: int | None = Field(
        default=None, description="A succeeded flood scenario whose flooded roads slow down "
        "(Pregnolato et al. 2017) or close (from 0.3 m).")
    change_roads: list[RoadChangeInput] = Field(default_factory=list, max_length=100000)
    add_roads: list[NewRoadInput] = Field(default_factory=list, max_length=1000)
    demand_scale: float = Field(default=1.0, gt=0, le=10,
                                description="The scenario's demand as a multiple of the base.")
    od: list[tuple[Name, Name, float]] | None = Field(
        default=None, max_length=5_000_000,
        description="An imported OD matrix of the analysed hour: (origin zone id, destination "
        "zone id, trips) rows; default: demand from the buildings' floor area.")
    peak_hour_factor: float = Field(default=PEAK_HOUR_FACTOR, gt=0, le=1,
                                    description="Share of the day's trips in the analysed hour.")
    mean_trip_min: float | None = Field(
        default=None, gt=0, le=240, description="Target mean trip time of the gravity model, "
        "minutes (default 15, less on a small network).")
    area: tuple[float, float, float, float] | None = Field(
        default=None, description="West, south, east, north in longitude and latitude: only "
        "the roads and buildings touching it; default the whole city.")
    grid_m: float = Field(default=1000.0, ge=100, le=20000, description="Zone grid cell, m.")
    admin_level: Name | None = Field(
        default=None, description="Zones from administrative units of this "
        "level instead of the grid.")
    connectors: int = Field(default=2, ge=1, le=10)
    gap: float = Field(default=1e-4, ge=1e-8, lt=0.1,
                       description="Relative gap (TSTT - SPTT) / TSTT to reach.")
    max_iter: int = Field(default=1000, ge=1, le=10000)

    @field_validator("area")
    @classmethod
    def _box(cls, area: tuple[float, float, float, float] | None
             ) -> tuple[float, float, float, float] | None:
        if area is not None:
            west, south, east, north = area
            if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
                raise ValueError("area must be west,south,east,north in degrees with "
                                 "west < east and south < north")
        return area

    @field_validator("close_areas")
    @classmethod
    def _polygons(cls, areas: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for number, area in enumerate(areas, start=1):
            try:
                geometry = shape(area)
            except Exception as exc:
                raise ValueError(f"close area {number} is not a GeoJSON geometry: {exc}"
                                 ) from None
            if geometry.geom_type not in ("Polygon", "MultiPolygon") or geometry.is_empty:
                raise ValueError(f"close area {number} must be a Polygon or MultiPolygon, not "
                                 f"{geometry.geom_type}")
            west, south, east, north = geometry.bounds
            if not (west >= -180 and east <= 180 and south >= -90 and north <= 90):
                raise ValueError(f"close area {number} is not in longitude and latitude")
            if not geometry.is_valid:
                raise ValueError(f"close area {number} is not a valid polygon: "
                                 f"{shapely.is_valid_reason(geometry)}")
        return areas

    @field_validator("od")
    @classmethod
    def _trips(cls, od: list[tuple[str, str, float]] | None
               ) -> list[tuple[str, str, float]] | None:
        if od is not None:
            for origin, dest, trips in od:
                if not math.isfinite(trips) or trips < 0:
                    raise ValueError(f"trips from {origin} to {dest} must be finite and not "
                                     "negative")
        return od


def check_inputs(conn: Connection, inputs: TrafficInputs, ctx: JobContext) -> None:
    """What can be refused before a job is queued: an unknown flood scenario, road or level,
    and an imported OD matrix naming zones the network lacks."""
    if inputs.flood_scenario_id is not None:
        row = conn.execute(text("SELECT kind, status FROM cim.scenarios WHERE id = :id"),
                           {"id": inputs.flood_scenario_id}).first()
        if row is None or row.kind != "flood":
            raise TrafficInputError(f"flood_scenario_id: there is no flood scenario "
                                    f"{inputs.flood_scenario_id}")
        if row.status != "succeeded":
            raise TrafficInputError(f"flood_scenario_id: flood scenario "
                                    f"{inputs.flood_scenario_id} is {row.status}, not succeeded")
    named = sorted({*inputs.close_roads, *(c.road_id for c in inputs.change_roads)})
    if named:
        known = set(conn.scalars(text(
            "SELECT id FROM cim.roads WHERE valid_to IS NULL AND id = ANY(:ids)"),
            {"ids": named}))
        unknown = [road for road in named if road not in known]
        if unknown:
            shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise TrafficInputError(f"{len(unknown)} road ids are not current roads: {shown}")
    if inputs.admin_level is not None and not conn.scalar(text(
            "SELECT EXISTS (SELECT 1 FROM cim.admin_units WHERE valid_to IS NULL "
            "AND level = :level)"), {"level": inputs.admin_level}):
        raise TrafficInputError(f"admin_level: no current administrative units of level "
                                f"{inputs.admin_level!r}")
    if inputs.od is not None:
        # The zones are the grid cells holding the built network's nodes (or the units), so
        # only the run's own build names them: 2 s on the 470,000-building city, where a
        # queued job would build it only to fail.
        check_zone_ids(inputs.od, set(_build(conn, inputs, ctx.crs).zones["zone_id"]))


def _build(conn: Connection, inputs: TrafficInputs, crs: int) -> RoadNetwork:
    """The car network and zones of the current roads, as the scenario asks for them."""
    return network_from_database(conn, crs, admin_level=inputs.admin_level,
                                 grid_m=inputs.grid_m, connectors=inputs.connectors,
                                 area=inputs.area)


def build_demand(conn: Connection, built: RoadNetwork, inputs: TrafficInputs, crs: int,
                 reporter: Reporter) -> Demand:
    """The base case's OD matrix: imported, or from the buildings by the gravity model."""
    zone_ids = built.zones["zone_id"].astype(str).tolist()
    if inputs.od is not None:
        demand = od_matrix(inputs.od, zone_ids)
        reporter.log(f"demand: imported OD matrix, {demand.total:.6g} trips in "
                     f"{len(inputs.od)} rows")
        return demand
    buildings = read_floor_area(conn, crs, inputs.area)
    ends = trip_ends(buildings, built.zones, inputs.peak_hour_factor)
    if ends.left_out_m2 > 0:
        reporter.log(f"demand: {ends.left_out_m2:.0f} m² of floor area lies more than "
                     f"{NEAREST_ZONE_M:g} m from every zone of the network and is left out")
    fitted = distribute(ends, zone_costs(built.network), inputs.mean_trip_min)
    area = {use: round(float(a.sum())) for use, a in ends.floor_area.items()}
    reporter.log(f"demand: {len(buildings)} buildings, floor area m² by use {area}; "
                 f"{fitted.demand.total:.6g} trips in the hour (peak-hour factor "
                 f"{inputs.peak_hour_factor:g}); gravity β {fitted.beta:.4g}/min after "
                 f"{fitted.iterations} Hyman iterations, mean trip {fitted.mean_trip_min:.3g} "
                 f"min (target {fitted.target_min:.3g})")
    if fitted.note is not None:
        reporter.log(f"demand: warning: {fitted.note}")
    return fitted.demand


def apply_changes(conn: Connection, built: RoadNetwork, inputs: TrafficInputs, crs: int,
                  reporter: Reporter) -> gpd.GeoDataFrame:
    """The scenario's link table: roads changed and added, then closures and water."""
    table = closures.start(built.links)
    table, unchanged = closures.change_roads(table, [closures.RoadChange(**c.model_dump())
                                                     for c in inputs.change_roads])
    table = closures.add_roads(table, built.nodes, [closures.NewRoad(**r.model_dump())
                                                    for r in inputs.add_roads], crs)
    table, unclosed = closures.close_roads(table, inputs.close_roads)
    for what, missing in (("change", unchanged), ("close", unclosed)):
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            reporter.log(f"{len(missing)} roads to {what} are not in the car network (not "
                         f"for cars, or outside its largest connected part): {shown}")
    if inputs.close_areas:
        table, _ = closures.close_areas(table, [shape(a) for a in inputs.close_areas], crs)
    if inputs.flood_scenario_id is not None:
        depths = pd.read_sql(text("SELECT road_id, max_depth_m FROM cim.flood_roads "
                                  "WHERE scenario_id = :id"), conn,
                             params={"id": inputs.flood_scenario_id})
        table = closures.flood(table, depths.set_index("road_id")["max_depth_m"])
    return table


def _assign(network: Network, demand: Demand, inputs: TrafficInputs, reporter: Reporter,
            first: float, last: float, what: str) -> Result | None:
    """Equilibrium flows, or None when no trip uses the network."""
    origin, dest = np.nonzero(demand.trips)
    if not np.any(origin != dest):
        return None
    return assign(network, demand, gap=inputs.gap, max_iter=inputs.max_iter,
                  progress=lambda stage, f: reporter.progress(first + (last - first) * f,
                                                              f"{what}: {stage}"))


def _totals(result: Result | None, demand: Demand, unserved: float) -> dict[str, Any]:
    return {"trips": round(demand.total + unserved, 3), "unserved_trips": round(unserved, 3),
            "vehicle_hours": round(result.vehicle_hours, 3) if result else 0.0,
            "vehicle_km": round(result.vehicle_km, 3) if result else 0.0,
            "relative_gap": result.relative_gap if result else 0.0,
            "iterations": result.iterations if result else 0,
            "converged": result.converged if result else True}


def link_results(built: RoadNetwork, table: gpd.GeoDataFrame, rows: np.ndarray,
                 before: Result | None, after: Result | None) -> gpd.GeoDataFrame:
    """One row per road link of the scenario's table with its figures before and after
    (NaN where the link is absent or closed)."""
    n, base_links = len(table), len(built.links)
    volume_b, time_b = np.full(n, np.nan), np.full(n, np.nan)
    volume_a, time_a = np.full(n, np.nan), np.full(n, np.nan)
    base = slice(0, base_links)
    volume_b[base] = before.volume if before else 0.0
    time_b[base] = before.time if before else built.network.free_flow_time
    volume_a[rows] = after.volume if after else 0.0
    time_a[rows] = after.time if after else table["free_flow_min"].to_numpy(float)[rows]
    capacity_b = np.full(n, np.nan)
    capacity_b[base] = built.network.capacity
    free_b = np.full(n, np.nan)
    free_b[base] = built.network.free_flow_time
    length_km = table["length_m"].to_numpy(float) / 1000.0
    out = table[["road_id", "road_class", "from_node", "to_node", "status", "lanes",
                 "capacity_vph", "length_m", "speed_kmh", "max_depth_m", "geometry"]].copy()
    out = out.rename(columns={"speed_kmh": "free_speed_kmh"})
    out.insert(0, "link", np.arange(n))
    with np.errstate(divide="ignore", invalid="ignore"):
        out["volume_before"] = volume_b
        out["volume_after"] = volume_a
        out["volume_change"] = np.nan_to_num(volume_a) - np.nan_to_num(volume_b)
        out["voc_before"] = volume_b / capacity_b
        out["voc_after"] = volume_a / table["capacity_vph"].to_numpy(float)
        out["speed_before_kmh"] = length_km / (time_b / 60.0)
        out["speed_after_kmh"] = length_km / (time_a / 60.0)
        out["delay_before_s"] = (time_b - free_b) * 60.0
        out["delay_after_s"] = (time_a - table["base_free_flow_min"].to_numpy(float)) * 60.0
        out["time_after_min"] = time_a
    return out[~table["connector"].to_numpy(bool)].reset_index(drop=True)


def _nullable(values: pd.Series) -> list[float | None]:
    return [None if not math.isfinite(v) else float(v) for v in values.to_numpy(float)]


def insert_links(conn: Connection, scenario_id: int, links: gpd.GeoDataFrame) -> None:
    """The link rows on the job's transaction (published by ``succeed``)."""
    geoms = links.to_crs(4326).geometry.to_wkb().tolist()
    floats = ("max_depth_m", "volume_before", "volume_after", "volume_change", "voc_before",
              "voc_after", "speed_before_kmh", "speed_after_kmh", "delay_before_s",
              "delay_after_s", "time_after_min")
    conn.execute(text(f"""
        INSERT INTO cim.traffic_links (scenario_id, link, road_id, road_class, from_node,
            to_node, status, lanes, capacity_vph, length_m, free_speed_kmh, {", ".join(floats)},
            geom)
        SELECT :sid, x.link, x.road_id, x.road_class, x.from_node, x.to_node, x.status,
               x.lanes, x.capacity_vph, x.length_m, x.free_speed_kmh,
               {", ".join(f"x.{name}" for name in floats)}, ST_GeomFromWKB(x.wkb, 4326)
        FROM unnest(CAST(:link AS int[]), CAST(:road_id AS text[]), CAST(:road_class AS text[]),
                    CAST(:from_node AS int[]), CAST(:to_node AS int[]), CAST(:status AS text[]),
                    CAST(:lanes AS float8[]), CAST(:capacity_vph AS float8[]),
                    CAST(:length_m AS float8[]), CAST(:free_speed_kmh AS float8[]),
                    {", ".join(f"CAST(:{name} AS float8[])" for name in floats)},
                    CAST(:wkb AS bytea[]))
             AS x(link, road_id, road_class, from_node, to_node, status, lanes, capacity_vph,
                  length_m, free_speed_kmh, {", ".join(floats)}, wkb)"""), {
        "sid": scenario_id, "link": links["link"].astype(int).tolist(),
        "road_id": links["road_id"].astype(str).tolist(),
        "road_class": links["road_class"].astype(str).tolist(),
        "from_node": links["from_node"].astype(int).tolist(),
        "to_node": links["to_node"].astype(int).tolist(),
        "status": links["status"].tolist(),
        **{name: links[name].astype(float).tolist()
           for name in ("lanes", "capacity_vph", "length_m", "free_speed_kmh")},
        **{name: _nullable(links[name]) for name in floats}, "wkb": geoms})


def run_traffic(conn: Connection, ctx: JobContext, scenario_id: int, inputs: TrafficInputs,
                reporter: Reporter) -> None:
    """Run the scenario and publish it on the job's own connection."""
    started = time.perf_counter()
    reporter.progress(0.0, "building the car network")
    built = _build(conn, inputs, ctx.crs)
    for line in built.report.lines():
        reporter.log(f"network: {line}")
    reporter.progress(10.0, "demand")
    demand = build_demand(conn, built, inputs, ctx.crs, reporter)
    reporter.progress(20.0, "applying the scenario's changes")
    table = apply_changes(conn, built, inputs, ctx.crs, reporter)
    conn.commit()  # end the read snapshot before the long assignments
    network, rows = closures.open_network(table, built.network)
    status = table.loc[~table["connector"].to_numpy(bool), "status"]
    counts = {s: int(n) for s, n in status.value_counts().items() if s != "open"}
    reporter.log(f"scenario links (directed): {counts or 'no change'}; demand × "
                 f"{inputs.demand_scale:g}")
    base_demand, base_unserved = served(built.network, demand)
    after_demand, after_unserved = served(network, demand.scaled(inputs.demand_scale))
    before = _assign(built.network, base_demand, inputs, reporter, BASE_PCT, AFTER_PCT,
                     "base case")
    after = _assign(network, after_demand, inputs, reporter, AFTER_PCT, DONE_PCT, "scenario")
    totals = {"before": _totals(before, base_demand, base_unserved),
              "after": _totals(after, after_demand, after_unserved)}
    for case, figures in totals.items():
        reporter.log(f"{case}: {figures['vehicle_hours']:.6g} vehicle-hours, "
                     f"{figures['vehicle_km']:.6g} vehicle-km, {figures['unserved_trips']:.6g} "
                     f"of {figures['trips']:.6g} trips unserved, gap "
                     f"{figures['relative_gap']:.2e} after {figures['iterations']} sweeps")
        if not figures["converged"]:
            reporter.log(f"warning: the {case} case did not reach the gap {inputs.gap:g} in "
                         f"{inputs.max_iter} sweeps")
    reporter.progress(DONE_PCT, "publishing")
    links = link_results(built, table, rows, before, after)
    outputs = {**totals, "links": {"road_links": len(links), **counts},
               "zones": built.network.num_zones, "nodes": built.network.num_nodes,
               "demand": "imported" if inputs.od is not None else "city model",
               "wall_s": round(time.perf_counter() - started, 2)}
    insert_links(conn, scenario_id, links)
    succeed(conn, ctx, scenario_id, outputs)


KIND = ScenarioKind(
    name="traffic", inputs=TrafficInputs, check=check_inputs, run=run_traffic,
    result_layers={"traffic_links": "Road links: volumes, v/c, speeds and delays before and "
                                    "after"},
    summary="Queue a traffic scenario: closures, flooded roads, new links, demand")
