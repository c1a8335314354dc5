"""A standalone flood run over any DEM, with no database: GeoTIFFs in, COGs, CSV and JSON out.

Outputs in the run folder: ``max_depth.tif``, ``max_velocity.tif`` (m/s),
``arrival_time.tif`` (seconds from the start until the depth first exceeded 0.15 m; nodata
where it never did) and ``depth_<seconds>s.tif`` at each interval (Cloud-Optimized GeoTIFFs,
float32, nodata outside the DEM), ``points.csv`` (depth at each point over time) and
``mass_balance.json`` (the water budget and the run's inputs).

Rain is uniform (a hyetograph) unless a raster on the DEM's grid scales it per cell
(``rain_field``): intensities in mm/h over a hyetograph of 1 mm/h, or factors of a storm.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError
from rasterio.transform import rowcol

from simulation.flood.errors import FloodInputError
from simulation.flood.rain import Hyetograph, SpatialRain
from simulation.flood.solver import (
    Boundaries,
    Edge,
    Grid,
    Infiltration,
    Options,
    Progress,
    Result,
    State,
    simulate,
)

NODATA = -9999.0


@dataclass(frozen=True)
class Raster:
    values: np.ndarray  # float64, NaN where the file has no data
    profile: dict


@dataclass
class GridRun:
    """Everything a standalone run needs; the outputs go to ``out``."""

    dem: Path
    rain: Hyetograph
    duration_s: float
    manning: float | Path
    out: Path
    boundary: str = "closed"
    points: Path | None = None
    map_every_s: float = 600.0
    points_every_s: float = 60.0
    rain_field: Path | None = None
    infiltration: Infiltration | None = None
    options: Options = field(default_factory=Options)


def read_raster(path: Path, what: str) -> Raster:
    """One band as float64 with NaN for nodata; a north-up grid in metres is required."""
    try:
        with rasterio.open(path) as src:
            band = src.read(1, masked=True).astype(np.float64)
            profile = src.profile.copy()
            transform, crs = src.transform, src.crs
    except RasterioIOError as exc:
        raise FloodInputError(f"cannot read the {what} {path}: {exc}") from None
    if transform.b != 0 or transform.d != 0 or transform.e >= 0:
        raise FloodInputError(f"the {what} {path} must be a north-up grid without rotation")
    if crs is not None and crs.is_geographic:
        raise FloodInputError(f"the {what} {path} is in degrees ({crs.to_string()}): "
                              "reproject it to a metric CRS first")
    values = band.filled(np.nan)
    values[~np.isfinite(values)] = np.nan
    return Raster(values, profile)


def load_grid(run: GridRun) -> tuple[Grid, Raster]:
    dem = read_raster(run.dem, "DEM")
    if not np.isfinite(dem.values).any():
        raise FloodInputError(f"the DEM {run.dem} has no valid cells")
    transform = dem.profile["transform"]
    if isinstance(run.manning, Path):
        rough = read_raster(run.manning, "Manning's n grid")
        if (rough.values.shape != dem.values.shape
                or not rough.profile["transform"].almost_equals(transform)):
            raise FloodInputError(f"the Manning's n grid {run.manning} must have the DEM's "
                                  "size and position")
        manning: float | np.ndarray = rough.values
    else:
        manning = run.manning
    grid = Grid(dem.values, abs(transform.a), abs(transform.e), manning)
    return grid, dem


def spatial_rain(run: GridRun, grid: Grid, dem: Raster) -> Hyetograph | SpatialRain:
    """The run's hyetograph, scaled per cell by ``rain_field`` when there is one."""
    if run.rain_field is None:
        return run.rain
    field = read_raster(run.rain_field, "rain raster")
    if (field.values.shape != dem.values.shape
            or not field.profile["transform"].almost_equals(dem.profile["transform"])):
        raise FloodInputError(f"the rain raster {run.rain_field} must have the DEM's size and "
                              "position")
    values = field.values[grid.active]
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise FloodInputError(f"the rain raster {run.rain_field} must hold a value of 0 or "
                              "more on every DEM cell")
    return SpatialRain((run.rain,), np.where(grid.active, field.values, 0.0)[None])


def read_points(path: Path, dem: Raster) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``name,x,y`` rows (x, y in the DEM's CRS) as names and cell rows and columns."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise FloodInputError(f"cannot read points {path}: {exc.strerror}") from None
    if not rows or not {"name", "x", "y"} <= set(rows[0]):
        raise FloodInputError(f"points {path} needs a header with the columns name, x and y, "
                              "and at least one row")
    names, xs, ys = [], [], []
    for line, row in enumerate(rows, start=2):
        try:
            xs.append(float(row["x"]))
            ys.append(float(row["y"]))
        except (TypeError, ValueError):
            raise FloodInputError(f"points {path} line {line}: x and y must be numbers") from None
        names.append(row["name"] or f"p{line - 1}")
    if len(set(names)) != len(names):
        raise FloodInputError(f"points {path}: names must be unique")
    r, c = rowcol(dem.profile["transform"], xs, ys)
    r, c = np.asarray(r), np.asarray(c)
    ny, nx = dem.values.shape
    inside = (r >= 0) & (r < ny) & (c >= 0) & (c < nx)
    if not inside.all():
        outside = ", ".join(n for n, ok in zip(names, inside, strict=True) if not ok)
        raise FloodInputError(f"points {path}: outside the DEM: {outside}")
    return names, r, c


def write_cog(path: Path, values: np.ndarray, dem: Raster, active: np.ndarray,
              signed: bool = False) -> None:
    """A float32 COG (nodata off the grid and where ``values`` is NaN; negative values, the
    round-off of a dry cell, as 0 unless ``signed``), written under a temporary name so no
    half-written file is left."""
    shown = values if signed else np.maximum(values, 0.0)
    data = np.where(active & np.isfinite(values), shown, NODATA).astype(np.float32)
    profile = {"driver": "COG", "dtype": "float32", "count": 1, "nodata": NODATA,
               "width": data.shape[1], "height": data.shape[0],
               "crs": dem.profile.get("crs"), "transform": dem.profile["transform"],
               "compress": "deflate", "predictor": 2}
    partial = path.with_name(path.name + ".partial")
    with rasterio.open(partial, "w", **profile) as dst:
        dst.write(data, 1)
    os.replace(partial, path)


def result_rasters(result: Result) -> dict[str, np.ndarray]:
    """The rasters of a run's maxima and first flooding, by file name."""
    return {"max_depth.tif": result.max_depth, "max_velocity.tif": result.max_velocity,
            "arrival_time.tif": result.arrival_time}


def run_grid(run: GridRun, progress: Progress | None = None) -> dict:
    """Run the case and write its outputs; returns the summary written to the JSON."""
    if run.boundary not in ("closed", "free"):
        raise FloodInputError(f"boundary must be closed or free, not {run.boundary!r}")
    if not run.map_every_s > 0 or not run.points_every_s > 0:
        raise FloodInputError("output intervals must be positive")
    grid, dem = load_grid(run)
    rain = spatial_rain(run, grid, dem)
    names, rows, cols = read_points(run.points, dem) if run.points else ([], None, None)
    run.out.mkdir(parents=True, exist_ok=True)
    map_times = set(np.arange(run.map_every_s, run.duration_s + 1e-6, run.map_every_s))
    point_times = set(np.arange(run.points_every_s, run.duration_s + 1e-6, run.points_every_s))
    series: list[list[float]] = []
    maps: list[str] = []

    def report(state: State) -> None:
        t = round(state.t, 6)
        if names and any(abs(t - p) < 1e-6 for p in point_times):
            series.append([t, *np.maximum(state.h[rows, cols], 0.0).tolist()])
        if any(abs(t - m) < 1e-6 for m in map_times):
            name = f"depth_{round(t):06d}s.tif"
            write_cog(run.out / name, state.h, dem, grid.active)
            maps.append(name)

    state = State.dry(grid, run.options.dtype)
    if names:
        series.append([0.0, *([0.0] * len(names))])
    result: Result = simulate(
        grid, run.duration_s, rain=rain, boundaries=Boundaries.all(Edge(run.boundary)),
        infiltration=run.infiltration, options=run.options, state=state,
        report_times=sorted(map_times | point_times), on_report=report, progress=progress)
    for name, values in result_rasters(result).items():
        write_cog(run.out / name, values, dem, grid.active)
    if names:
        with (run.out / "points.csv").open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["time_s", *names])
            out.writerows([[f"{v:.6g}" for v in row] for row in series])
    summary = {
        "mass_balance": result.mass_balance.to_dict(),
        "steps": result.steps,
        "steps_with_outflow_limited": result.limited_steps,
        "wall_s": result.wall_s,
        "cell_updates_per_s": result.cell_updates_per_s,
        "max_depth_m": float(np.max(result.max_depth[grid.active])),
        "outputs": [*result_rasters(result), *maps, *(["points.csv"] if names else [])],
        "inputs": {
            "dem": str(run.dem), "cells": list(grid.shape), "cell_size_m": [grid.dx, grid.dy],
            "crs": str(dem.profile.get("crs")), "duration_s": run.duration_s,
            "rain_total_mm": result.mass_balance.rain * 1000.0
            / (grid.active_cells * grid.cell_area),  # the mean over the cells
            "rain_peak_mm_h": run.rain.peak_mm_h,
            "rain_field": str(run.rain_field) if run.rain_field else None,
            "manning": str(run.manning), "boundary": run.boundary,
            "points": str(run.points) if run.points else None,
            "infiltration": vars(run.infiltration) if run.infiltration else None,
            "options": vars(run.options),
        },
    }
    (run.out / "mass_balance.json").write_text(json.dumps(summary, indent=2))
    return summary
