"""Two flood scenarios side by side: the difference of their maximum depths (B − A, a COG) and
the roads that flood (deeper than 0.15 m: with care or closed) in one of them only.

``GET /scenarios/{a}/compare/{b}`` (:mod:`simulation.api`, through ``COMPARER``, the flood
kind's compare hook) answers the figures and the roads, and links
``.../max_depth_difference.tif``, made on request (nothing is stored: a comparison can never
go stale when a scenario is deleted or rerun); ``cim flood compare A B`` prints the same and
writes the raster. B's raster is resampled onto A's grid when their areas or cells differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from pydantic import BaseModel
from rasterio.enums import Resampling
from rasterio.warp import reproject
from sqlalchemy import Connection, text

from simulation import jobs
from simulation.errors import ScenarioConflict
from simulation.flood.grid_run import Raster, write_cog
from simulation.jobs import JobContext

MAX_DEPTH_FILE = "max_depth.tif"
DIFFERENCE_FILE = "max_depth_difference.tif"
FLOODED = ("with_care", "closed")


class RoadChange(BaseModel):
    road_id: str
    name: str | None
    depth_a_m: float | None
    depth_b_m: float | None
    class_a: str | None
    class_b: str | None


class FloodComparison(BaseModel):
    kind: Literal["flood"] = "flood"
    a: int
    b: int
    max_depth_a_m: float
    max_depth_b_m: float
    flooded_volume_a_m3: float | None
    flooded_volume_b_m3: float | None
    deeper_cells: int
    shallower_cells: int
    largest_rise_m: float
    largest_fall_m: float
    roads_flooded_in_a_only: list[RoadChange]
    roads_flooded_in_b_only: list[RoadChange]
    links: list[dict[str, str]] = []


def _published(conn: Connection, ctx: JobContext, scenario_id: int
               ) -> tuple[jobs.ScenarioRecord, Path]:
    record = jobs.get(conn, scenario_id)
    if record.kind != "flood" or record.status != "succeeded":
        raise ScenarioConflict(f"scenario {scenario_id} is a {record.status} {record.kind} "
                               "scenario: only succeeded flood scenarios can be compared")
    path = jobs.published_file(ctx, record, MAX_DEPTH_FILE)
    if path is None:
        raise ScenarioConflict(f"scenario {scenario_id} has no {MAX_DEPTH_FILE}")
    return record, path


def _read(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as src:
        return src.read(1, masked=True).filled(np.nan).astype(np.float64), src.profile.copy()


def difference(path_a: Path, path_b: Path) -> tuple[np.ndarray, dict]:
    """B − A on A's grid (NaN where either has no data), and A's profile."""
    a, profile = _read(path_a)
    b, profile_b = _read(path_b)
    if b.shape != a.shape or profile_b["transform"] != profile["transform"] \
            or profile_b["crs"] != profile["crs"]:
        on_a = np.full(a.shape, np.nan)
        reproject(b, on_a, src_transform=profile_b["transform"], src_crs=profile_b["crs"],
                  src_nodata=np.nan, dst_transform=profile["transform"],
                  dst_crs=profile["crs"], dst_nodata=np.nan, resampling=Resampling.bilinear)
        b = on_a
    return b - a, profile


def _roads(conn: Connection, a: int, b: int) -> tuple[list[RoadChange], list[RoadChange]]:
    rows = conn.execute(text("""
        SELECT coalesce(a.road_id, b.road_id), coalesce(a.name, b.name), a.max_depth_m,
               b.max_depth_m, a.flood_class, b.flood_class,
               coalesce(a.flood_class = ANY(:flooded), false) AS in_a
        FROM (SELECT * FROM cim.flood_roads WHERE scenario_id = :a) a
        FULL JOIN (SELECT * FROM cim.flood_roads WHERE scenario_id = :b) b USING (road_id)
        WHERE coalesce(a.flood_class = ANY(:flooded), false)
              <> coalesce(b.flood_class = ANY(:flooded), false)
        ORDER BY greatest(coalesce(a.max_depth_m, 0), coalesce(b.max_depth_m, 0)) DESC,
                 1"""), {"a": a, "b": b, "flooded": list(FLOODED)}).all()
    changes = [(RoadChange(road_id=r[0], name=r[1], depth_a_m=r[2], depth_b_m=r[3],
                           class_a=r[4], class_b=r[5]), r[6]) for r in rows]
    return [c for c, in_a in changes if in_a], [c for c, in_a in changes if not in_a]


def compare(conn: Connection, ctx: JobContext, a: int, b: int,
            raster_out: Path | None = None) -> FloodComparison:
    """Compare two succeeded flood scenarios; writes the difference COG to ``raster_out``."""
    record_a, path_a = _published(conn, ctx, a)
    record_b, path_b = _published(conn, ctx, b)
    change, profile = difference(path_a, path_b)
    valid = np.isfinite(change)
    if raster_out is not None:
        write_cog(raster_out, change, Raster(np.empty(0), profile), valid, signed=True)
    only_a, only_b = _roads(conn, a, b)
    # Centimetre changes are the round-off of two runs, not a difference worth a cell.
    return FloodComparison(
        a=a, b=b, max_depth_a_m=record_a.outputs.get("max_depth_m", 0.0),
        max_depth_b_m=record_b.outputs.get("max_depth_m", 0.0),
        flooded_volume_a_m3=record_a.outputs.get("flooded_volume_m3"),
        flooded_volume_b_m3=record_b.outputs.get("flooded_volume_m3"),
        deeper_cells=int(np.count_nonzero(change[valid] > 0.01)),
        shallower_cells=int(np.count_nonzero(change[valid] < -0.01)),
        largest_rise_m=float(max(change[valid].max(initial=0.0), 0.0)),
        largest_fall_m=float(max(-change[valid].min(initial=0.0), 0.0)),
        roads_flooded_in_a_only=only_a, roads_flooded_in_b_only=only_b)


def write_difference(conn: Connection, ctx: JobContext, a: int, b: int, out: Path) -> None:
    """The difference of the maximum depths (B − A) as a COG at ``out``."""
    compare(conn, ctx, a, b, out)


COMPARER = jobs.Comparer(run=compare, model=FloodComparison,
                         files={DIFFERENCE_FILE: write_difference})
