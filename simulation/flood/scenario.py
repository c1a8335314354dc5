"""A flood scenario on the city model: its inputs, its run, and the atomic publication of
its results.

A run reads its domain (:mod:`simulation.flood.domain`), applies the scenario's measures
(:mod:`simulation.flood.measures`: edits of its own copy, never of the stored city), rains on
it (a Chicago design storm, a hyetograph given inline, or what the city's rain gauges
recorded, :mod:`simulation.flood.gauges`) with drainage and infiltration, writes the rasters
(depth at intervals, maximum depth and speed, time of first flooding) as COGs into a hidden
folder, works out the impacts (:mod:`simulation.flood.impacts`), and publishes everything
at once: the result rows and the scenario's ``succeeded`` in one transaction, the folder
renamed to ``scenarios/<id>/`` under the storage root inside it. A cancelled or failed run
leaves nothing behind.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from rasterio.crs import CRS
from sqlalchemy import Connection, text

from simulation.flood import measures as sponge
from simulation.flood.domain import Bbox, Cover, Domain, build_domain, check_size, find_dem
from simulation.flood.errors import FloodInputError
from simulation.flood.gauges import gauge_readings, recorded_rain
from simulation.flood.grid_run import Raster, result_rasters, write_cog
from simulation.flood.impacts import Impacts, assess
from simulation.flood.rain import (
    WUHAN,
    Hyetograph,
    SpatialRain,
    chicago_hyetograph,
    hyetograph_from_rows,
)
from simulation.flood.solver import Boundaries, Edge, Options, State, simulate
from simulation.jobs import JobContext, Reporter, ScenarioKind, staging_folder, succeed

STORM_STEP_MIN = 5.0
# Shares of the progress bar: reading the domain, the solver, the impacts and publication.
DOMAIN_PCT, SOLVER_PCT = 5.0, 90.0


MAX_RAIN_H = 24.0


class HyetographRain(BaseModel):
    """Rain given as hyetograph rows, by the rules of the CSV (time_min, intensity_mm_h: each
    intensity holds until the next row; a closing 0 row ends the storm)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["hyetograph"]
    rows: list[tuple[float, float]] = Field(min_length=2, max_length=10_000)

    @model_validator(mode="after")
    def _readable(self) -> HyetographRain:
        storm = self.hyetograph()  # a ValueError, which pydantic reports
        if storm.duration_s > MAX_RAIN_H * 3600:
            raise ValueError(f"the hyetograph lasts more than {MAX_RAIN_H:g} h")
        return self

    def hyetograph(self) -> Hyetograph:
        try:
            return hyetograph_from_rows([r[0] for r in self.rows], [r[1] for r in self.rows],
                                        "rain.rows")
        except FloodInputError as exc:
            raise ValueError(str(exc)) from None


class RecordedRain(BaseModel):
    """What the city's rain gauges recorded over a time window, spread over the area by
    inverse distance (``power``) or Thiessen polygons."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["recorded"]
    start: AwareDatetime
    end: AwareDatetime
    method: Literal["idw", "thiessen"] = "idw"
    power: float = Field(default=2.0, gt=0, le=6)

    @model_validator(mode="after")
    def _window(self) -> RecordedRain:
        if not timedelta(0) < self.end - self.start <= timedelta(hours=MAX_RAIN_H):
            raise ValueError(f"the rain window must end after it starts, within "
                             f"{MAX_RAIN_H:g} h")
        return self


class FloodInputs(BaseModel):
    """A flood scenario over (part of) the city: a design storm (``return_period``,
    ``duration_h``, ``peak``) unless ``rain`` gives a hyetograph or a recorded window (whose
    length is then the storm's), with the city as it is unless ``measures`` edit it."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    return_period: float = Field(default=50.0, ge=1, le=100, description="Years.")
    duration_h: float = Field(default=2.0, ge=1, le=24, description="Storm duration, hours.")
    peak: float = Field(default=0.4, ge=0, le=1, description="Chicago peak position r.")
    after_h: float = Field(default=0.0, ge=0, le=6,
                           description="Simulated time after the rain, hours.")
    cell_m: float = Field(default=2.0, ge=1, le=10, description="Cell size, metres.")
    area: tuple[float, float, float, float] | None = Field(
        default=None, description="West, south, east, north in longitude and latitude; "
        "default the DEM's extent.")
    map_every_min: float = Field(default=10.0, ge=1, le=360,
                                 description="Interval of the depth rasters, minutes.")
    precision: Literal["float64", "float32"] = "float64"
    rain: Annotated[HyetographRain | RecordedRain, Field(discriminator="kind")] | None = None
    measures: sponge.Measures = Field(default_factory=sponge.Measures)

    @field_validator("area")
    @classmethod
    def _box(cls, area: tuple[float, float, float, float] | None
             ) -> tuple[float, float, float, float] | None:
        if area is None:
            return None
        west, south, east, north = area
        if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
            raise ValueError("area must be west,south,east,north in degrees with west < east "
                             "and south < north")
        return area

    @property
    def bbox(self) -> Bbox | None:
        return Bbox(*self.area) if self.area else None


def check_inputs(conn: Connection, inputs: FloodInputs, ctx: JobContext) -> None:
    """What can be refused before a job is queued: an area off every DEM, a grid too big,
    green roofs on buildings that do not exist, a rain window no gauge recorded."""
    dem = find_dem(conn, ctx.storage_root, inputs.bbox)
    check_size(inputs.bbox or dem.bbox, inputs.cell_m, ctx.crs)
    for k, roofs in enumerate(inputs.measures.green_roofs):
        known = set(conn.scalars(text(
            "SELECT id FROM cim.buildings WHERE valid_to IS NULL AND id = ANY(:ids)"),
            {"ids": roofs.buildings}))
        unknown = sorted(set(roofs.buildings) - known)
        if unknown:
            raise FloodInputError(f"measures.green_roofs[{k}]: no current building with the "
                                  f"id {unknown[:5]}")
    if isinstance(inputs.rain, RecordedRain) and not gauge_readings(
            conn, inputs.bbox or dem.bbox, inputs.rain.start, inputs.rain.end):
        raise FloodInputError(f"no rain gauge near the area has good readings between "
                              f"{inputs.rain.start.isoformat()} and "
                              f"{inputs.rain.end.isoformat()}")


def _rain(conn: Connection, domain: Domain, inputs: FloodInputs
          ) -> tuple[Hyetograph | SpatialRain, float, str]:
    """The run's rain, its duration (s) and a line for the log."""
    if isinstance(inputs.rain, HyetographRain):
        storm = inputs.rain.hyetograph()
        return storm, storm.duration_s, (
            f"rain: a hyetograph of {len(storm.starts_s)} blocks, {storm.total_mm:.1f} mm over "
            f"{storm.duration_s / 3600:.2f} h, peak {storm.peak_mm_h:.1f} mm/h")
    if isinstance(inputs.rain, RecordedRain):
        window = inputs.rain
        field, notes = recorded_rain(conn, domain.bbox, window.start, window.end,
                                     domain.transform, domain.grid.shape, domain.crs,
                                     window.method, window.power)
        return field, (window.end - window.start).total_seconds(), notes[0]
    storm = chicago_hyetograph(inputs.return_period, inputs.duration_h * 60.0, STORM_STEP_MIN,
                               inputs.peak)
    return storm, inputs.duration_h * 3600.0, (
        f"storm: {WUHAN.name} formula ({WUHAN.note}), {inputs.return_period:g}-year "
        f"{inputs.duration_h:g} h Chicago storm, r {inputs.peak:g}: {storm.total_mm:.1f} mm, "
        f"peak {storm.peak_mm_h:.1f} mm/h")


def run_flood(conn: Connection, ctx: JobContext, scenario_id: int, inputs: FloodInputs,
              reporter: Reporter) -> None:
    """Run the scenario and publish it; ``conn`` is the job's own connection (it holds the
    job's lock and its row's updates)."""
    started = time.perf_counter()
    reporter.progress(0.0, "reading the city model")
    domain = build_domain(conn, ctx.storage_root, ctx.crs, inputs.cell_m, inputs.bbox)
    retention = sponge.apply(domain, inputs.measures)
    storm, rain_s, rain_line = _rain(conn, domain, inputs)
    conn.commit()
    for note in domain.notes:
        reporter.log(note)
    duration_s = rain_s + inputs.after_h * 3600.0
    reporter.log(rain_line)
    reporter.progress(DOMAIN_PCT, "simulating")
    staging = staging_folder(ctx, scenario_id)
    try:
        outputs = _simulate(domain, storm, duration_s, retention, inputs, staging, reporter)
        reporter.progress(SOLVER_PCT, "assessing roads, buildings and hotspots")
        impacts = assess(domain, outputs.pop("max_depth"))
        outputs.update(
            roads={c: int(n) for c, n in impacts.roads["flood_class"].value_counts().items()},
            underpasses={c: int(n) for c, n in
                         impacts.underpasses["flood_class"].value_counts().items()},
            buildings=len(impacts.buildings), hotspots=len(impacts.hotspots),
            people=round(float(impacts.buildings["people"].sum())),
            flooded_volume_m3=round(impacts.flooded_volume_m3, 1),
            wall_s=round(time.perf_counter() - started, 1))
        (staging / "summary.json").write_text(json.dumps(outputs, indent=2))
        reporter.progress(97.0, "publishing")
        _insert_results(conn, scenario_id, impacts)
        succeed(conn, ctx, scenario_id, outputs, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    reporter.log(f"published in {time.perf_counter() - started:.0f} s: "
                 f"{outputs['buildings']} buildings, {outputs['hotspots']} hotspots, roads "
                 f"{outputs['roads']}")


def _simulate(domain: Domain, storm: Hyetograph | SpatialRain, duration_s: float,
              retention: sponge.Retention | None, inputs: FloodInputs, staging: Path,
              reporter: Reporter) -> dict:
    grid = domain.grid
    raster = Raster(np.empty(0), {"crs": CRS.from_epsg(domain.crs),
                                  "transform": domain.transform})
    every = inputs.map_every_min * 60.0
    map_times = list(np.arange(every, duration_s + 1e-6, every))
    maps: list[str] = []

    def on_report(state: State) -> None:
        name = f"depth_{round(state.t):06d}s.tif"
        write_cog(staging / name, state.h, raster, grid.active)
        maps.append(name)

    def progress(stage: str, fraction: float) -> None:
        reporter.progress(DOMAIN_PCT + (SOLVER_PCT - DOMAIN_PCT) * fraction,
                          f"simulating {stage}")

    state = State.dry(grid, inputs.precision)
    state.h[:] = domain.initial_depth
    result = simulate(grid, duration_s, rain=storm,
                      boundaries=Boundaries.all(Edge("free")),
                      infiltration=domain.infiltration, sink=domain.drainage,
                      retention=retention, options=Options(dtype=inputs.precision),
                      state=state, report_times=map_times, on_report=on_report,
                      progress=progress)
    rasters = result_rasters(result)
    for name, values in rasters.items():
        write_cog(staging / name, values, raster, grid.active)
    balance = result.mass_balance
    ratio = duration_s / result.wall_s if result.wall_s > 0 else math.inf
    row, col, deepest = result.deepest_cell()
    reporter.log(
        f"solver: {result.steps} steps in {result.wall_s:.0f} s, "
        f"{result.cell_updates_per_s:.3g} cell-updates/s, simulated/wall {ratio:.2f}; the "
        f"shortest step was set by {deepest:.2f} m of water at row {row}, column {col} "
        f"({Cover(domain.cover[row, col]).name})")
    reporter.log(
        f"water budget (m³): rain {balance.rain:.0f} = Δstorage "
        f"{balance.final_storage - balance.initial_storage:.0f} + edge outflow "
        f"{balance.outflow:.0f} + infiltration {balance.infiltration:.0f} + drainage "
        f"{balance.drainage:.0f} + held in the pipes {balance.pipe_storage:.0f} + retained by "
        f"measures {balance.retention:.0f} (edge inflow {balance.inflow:.0f}; the pipes gave "
        f"{balance.surcharge:.0f} back at manholes); relative error "
        f"{balance.relative_error:.1e}")
    return {"max_depth": result.max_depth, "mass_balance": balance.to_dict(),
            "steps": result.steps, "solver_wall_s": round(result.wall_s, 1),
            "simulated_to_wall": round(ratio, 2),
            "mean_step_s": round(duration_s / result.steps, 3),
            "deepest": {"row": row, "col": col, "depth_m": round(deepest, 3),
                        "cover": Cover(domain.cover[row, col]).name},
            "cells": list(grid.shape), "active_cells": grid.active_cells,
            "max_depth_m": float(np.max(np.where(grid.active, result.max_depth, 0.0))),
            "max_velocity_m_s": float(np.max(np.where(grid.active, result.max_velocity, 0.0))),
            "rain_mm": storm.total_mm,
            "files": [*rasters, *maps, "summary.json"]}


def _insert_results(conn: Connection, scenario_id: int, impacts: Impacts) -> None:
    """The roads, buildings and hotspots, on the job's transaction (published by succeed)."""
    sid = {"sid": scenario_id}
    roads = impacts.roads
    conn.execute(text("""
        INSERT INTO cim.flood_roads (scenario_id, road_id, name, road_class, max_depth_m,
                                     flood_class, flooded_length_m, geom)
        SELECT :sid, r.id, r.name, r.road_class, x.depth, x.class, x.flooded,
               ST_Multi(r.geom)
        FROM unnest(CAST(:vids AS bigint[]), CAST(:depths AS float8[]),
                    CAST(:classes AS text[]), CAST(:flooded AS float8[]))
             AS x(vid, depth, class, flooded)
        JOIN cim.roads r ON r.vid = x.vid"""), {
        **sid, "vids": roads["vid"].tolist(), "depths": roads["max_depth_m"].tolist(),
        "classes": roads["flood_class"].tolist(),
        "flooded": roads["flooded_length_m"].tolist()})
    b = impacts.buildings
    conn.execute(text("""
        INSERT INTO cim.flood_buildings (scenario_id, building_id, use, depth_m,
                                         floors_affected, people, hotspot_rank, geom)
        SELECT :sid, g.id, g.use, x.depth, x.floors, x.people, x.hotspot, g.geom
        FROM unnest(CAST(:vids AS bigint[]), CAST(:depths AS float8[]),
                    CAST(:floors AS int[]), CAST(:people AS float8[]),
                    CAST(:hotspots AS int[])) AS x(vid, depth, floors, people, hotspot)
        JOIN cim.buildings g ON g.vid = x.vid"""), {
        **sid, "vids": b["vid"].tolist(), "depths": b["depth_m"].tolist(),
        "floors": b["floors_affected"].tolist(), "people": b["people"].tolist(),
        "hotspots": [None if pd.isna(h) else int(h) for h in b["hotspot"]]})
    spots = impacts.hotspots.to_crs(4326)
    conn.execute(text("""
        INSERT INTO cim.flood_hotspots (scenario_id, rank, max_depth_m, area_m2, volume_m3,
                                        buildings, people, geom)
        SELECT :sid, x.rank, x.depth, x.area, x.volume, x.buildings, x.people,
               ST_Multi(ST_GeomFromWKB(x.wkb, 4326))
        FROM unnest(CAST(:ranks AS int[]), CAST(:depths AS float8[]),
                    CAST(:areas AS float8[]), CAST(:volumes AS float8[]),
                    CAST(:buildings AS int[]), CAST(:people AS float8[]),
                    CAST(:wkbs AS bytea[]))
             AS x(rank, depth, area, volume, buildings, people, wkb)"""), {
        **sid, "ranks": spots["rank"].astype(int).tolist(),
        "depths": spots["max_depth_m"].tolist(), "areas": spots["area_m2"].tolist(),
        "volumes": spots["volume_m3"].tolist(),
        "buildings": spots["buildings"].astype(int).tolist(),
        "people": spots["people"].tolist(), "wkbs": spots.geometry.to_wkb().tolist()})
    under = impacts.underpasses
    conn.execute(text("""
        INSERT INTO cim.flood_underpasses (scenario_id, structure_id, name, max_depth_m,
                                           flood_class, geom)
        SELECT :sid, s.id, s.name, x.depth, x.class, s.geom
        FROM unnest(CAST(:vids AS bigint[]), CAST(:depths AS float8[]),
                    CAST(:classes AS text[])) AS x(vid, depth, class)
        JOIN cim.structures s ON s.vid = x.vid"""), {
        **sid, "vids": under["vid"].tolist(), "depths": under["max_depth_m"].tolist(),
        "classes": under["flood_class"].tolist()})


KIND = ScenarioKind(
    name="flood", inputs=FloodInputs, check=check_inputs, run=run_flood,
    result_layers={"flood_roads": "Roads by flood depth class",
                   "flood_buildings": "Buildings with water against them",
                   "flood_hotspots": "Hotspots, ranked",
                   "flood_underpasses": "Underpasses by the depth at their low point"},
    summary="Queue a flood scenario (design storm, hyetograph or recorded rain; measures)")
