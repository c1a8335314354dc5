"""A storm over a DEM too big for one worker, split by drainage catchment: each catchment
(plus a buffer) is a task, the per-catchment maximum depths are mosaicked into one COG.

- Catchments: the watershed of the bed (scikit-image) from its minima deeper than
  ``min_depth_m`` (the regional minima of the bed filled by that depth: shallower pits
  belong to the basin they spill into); catchments
  under ``min_cells`` then join the neighbour they share the lowest saddle with.
- A task reads its own window of the DEM (and Manning grid) from shared storage: the
  catchment's bounding box grown by ``buffer_cells``, the cells farther than the buffer from
  the catchment walled off. Water that crosses the divide flows on in the buffer instead of
  piling against a wall. The window's sides on the DEM's edge keep the run's boundary; the
  others are closed (walls, beyond the buffer).
- The cut is metered: a solver store (the ``retention`` hook, a :class:`Sink` that removes
  nothing; grid runs have no sponge-city stores) reads, after every step, the
  discharges on the faces between the catchment and the rest (the same ``q dt`` the depth
  update used) and adds up the volume leaving and entering. The split is refused when, for
  any catchment, that volume exceeds ``max_crossing`` of the rain on it: its water did not
  stay put, and the mosaic would be wrong there.
- Each catchment keeps its own cells of its maximum depth; the pieces do not overlap, and
  ``rasterio.merge`` mosaics them.

Delineation reads the whole bed on the client at the DEM's cell size: a whole-city DEM would
be delineated on a coarser copy (not done here).
"""

from __future__ import annotations

import heapq
import json
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import fsspec
import numba
import numpy as np
import pandas as pd
import rasterio
from distributed import Client, as_completed, get_worker
from rasterio.merge import merge
from rasterio.windows import Window
from scipy import ndimage
from skimage.morphology import local_minima, reconstruction
from skimage.segmentation import watershed

from cim.batch import RETRIES
from simulation.flood.ensemble import publish
from simulation.flood.errors import FloodInputError
from simulation.flood.grid_run import NODATA, Raster, read_raster, write_cog
from simulation.flood.rain import Hyetograph
from simulation.flood.solver import (
    Boundaries,
    Edge,
    Grid,
    Infiltration,
    Options,
    Progress,
    State,
    simulate,
)


class SplitRefused(FloodInputError):
    """Too much water crossed a catchment's edge for the split to stand."""


def delineate(z: np.ndarray, active: np.ndarray, min_depth_m: float, min_cells: int
              ) -> np.ndarray:
    """Catchment labels 1..K per cell (0 off the grid), numbered in row-major order."""
    bed = np.where(active, z, np.nanmax(np.where(active, z, -np.inf)) + 1.0)
    # Pits filled up to min_depth_m (or to their spill level): the regional minima left are
    # the basins (skimage's h_minima marks the bottoms, which a shallow sill can still part).
    filled = reconstruction(bed + min_depth_m, bed, method="erosion")
    markers, _ = ndimage.label(local_minima(filled, connectivity=1, allow_borders=True))
    labels = watershed(bed, markers, mask=active)
    labels = _merge_small(bed, labels, min_cells)
    _, first = np.unique(labels.ravel(), return_index=True)
    order = labels.ravel()[np.sort(first)]
    renumber = np.zeros(labels.max() + 1, np.int64)
    renumber[order[order > 0]] = np.arange(1, np.count_nonzero(order) + 1)
    return renumber[labels]


def _saddles(bed: np.ndarray, labels: np.ndarray) -> pd.Series:
    """The lowest pass (the higher of two neighbouring cells) between each pair of labels."""
    pairs = []
    for a, b, za, zb in ((labels[:, :-1], labels[:, 1:], bed[:, :-1], bed[:, 1:]),
                         (labels[:-1], labels[1:], bed[:-1], bed[1:])):
        edge = (a != b) & (a > 0) & (b > 0)
        pairs.append(pd.DataFrame({"a": np.minimum(a, b)[edge], "b": np.maximum(a, b)[edge],
                                   "z": np.maximum(za, zb)[edge]}))
    return pd.concat(pairs).groupby(["a", "b"])["z"].min()


def _merge_small(bed: np.ndarray, labels: np.ndarray, min_cells: int) -> np.ndarray:
    """Join each catchment under ``min_cells``, smallest first, to the neighbour it shares
    the lowest saddle with."""
    near: dict[int, dict[int, float]] = defaultdict(dict)
    for (a, b), z in _saddles(bed, labels).items():
        near[a][b] = near[b][a] = z
    into = np.arange(labels.max() + 1)
    sizes = np.bincount(labels.ravel(), minlength=len(into))
    queue = [(int(n), k) for k, n in enumerate(sizes) if k > 0 and 0 < n < min_cells]
    heapq.heapify(queue)
    while queue:
        size, small = heapq.heappop(queue)
        if size != sizes[small] or not near[small]:  # grown since queued, or an island
            continue
        other = min(near[small], key=near[small].__getitem__)
        for k, z in near.pop(small).items():
            del near[k][small]
            if k != other and z < near[other].get(k, np.inf):
                near[other][k] = near[k][other] = z
        into[small] = other
        sizes[other] += sizes[small]
        sizes[small] = 0
        if sizes[other] < min_cells:
            heapq.heappush(queue, (int(sizes[other]), other))
    while np.any(into[into] != into):  # follow chains of joins to their end
        into = into[into]
    return into[labels]


@dataclass(frozen=True)
class CatchmentJob:
    """One task: a catchment's window of the DEM, its own cells and the cells it simulates."""

    label: int
    dem: str
    manning: float | str
    row: int
    col: int
    own: np.ndarray  # bool, the window's shape
    active: np.ndarray  # bool: own cells and the buffer
    sides: tuple[str, str, str, str]  # north, south, west, east
    rain: Hyetograph
    duration_s: float
    infiltration: Infiltration | None
    options: Options


@dataclass(frozen=True)
class Crossing:
    """What one catchment's run measured (volumes in m³)."""

    label: int
    cells: int
    rain_m3: float
    out_m3: float
    in_m3: float
    mass_error: float
    max_depth_m: float

    @property
    def fraction(self) -> float:
        return (self.out_m3 + self.in_m3) / self.rain_m3 if self.rain_m3 > 0 else 0.0


class CutMeter:
    """A solver store that takes nothing and adds up the water through the cut's faces."""

    def __init__(self, state: State, own: np.ndarray, dx: float, dy: float) -> None:
        self.state = state
        # Faces between cells j-1 and j (x) or rows i-1 and i (y): +1 where the catchment is
        # before the face, so a positive sign × q leaves it; 0 off the cut.
        self.sign_x = np.zeros(state.qx.shape)
        self.sign_x[:, 1:-1] = own[:, :-1].astype(float) - own[:, 1:]
        self.sign_y = np.zeros(state.qy.shape)
        self.sign_y[1:-1] = own[:-1].astype(float) - own[1:]
        self.dx, self.dy = dx, dy
        self.out_m3 = self.in_m3 = 0.0

    def remove(self, h: np.ndarray, dt: float) -> float:
        for sign, q, width in ((self.sign_x, self.state.qx, self.dy),
                               (self.sign_y, self.state.qy, self.dx)):
            leaving = sign * q
            self.out_m3 += float(np.sum(np.maximum(leaving, 0.0))) * width * dt
            self.in_m3 += float(np.sum(np.maximum(-leaving, 0.0))) * width * dt
        return 0.0


def _piece(staging: str, label: int) -> str:
    return f"{staging}/pieces/c{label:05d}.tif"


def run_catchment(job: CatchmentJob, staging: str) -> Crossing:
    """Simulate one catchment with its buffer; write its own cells' maximum depth into the
    staging folder (path or fsspec URL)."""
    try:
        get_worker()
        numba.set_num_threads(1)  # one solver thread per task slot
    except ValueError:
        pass
    window = Window(job.col, job.row, job.own.shape[1], job.own.shape[0])
    with rasterio.open(job.dem) as src:
        z = src.read(1, window=window, masked=True).astype(np.float64).filled(np.nan)
        profile = {"crs": src.crs, "transform": src.window_transform(window)}
        dx, dy = abs(src.res[0]), abs(src.res[1])
    manning: float | np.ndarray = job.manning if isinstance(job.manning, float) else 0.0
    if isinstance(job.manning, str):
        with rasterio.open(job.manning) as src:
            manning = src.read(1, window=window, masked=True).astype(np.float64).filled(np.nan)
    grid = Grid(z, dx, dy, manning, active=job.active)
    state = State.dry(grid, job.options.dtype)
    meter = CutMeter(state, job.own, dx, dy)
    result = simulate(grid, job.duration_s, rain=job.rain,
                      boundaries=Boundaries(*(Edge(kind) for kind in job.sides)),  # type: ignore[arg-type]
                      infiltration=job.infiltration, retention=meter, options=job.options,
                      state=state)
    depth = np.where(job.own, result.max_depth, np.nan)
    with tempfile.TemporaryDirectory(prefix="cim-catchment-") as folder:
        piece = Path(folder) / "piece.tif"
        write_cog(piece, depth, Raster(depth, profile), job.own)
        fs, path = fsspec.core.url_to_fs(_piece(staging, job.label))
        fs.makedirs(fs._parent(path), exist_ok=True)
        fs.put_file(str(piece), path)
    cells = int(job.own.sum())
    return Crossing(job.label, cells, job.rain.depth_between(0.0, job.duration_s) * cells
                    * dx * dy, meter.out_m3, meter.in_m3,
                    result.mass_balance.relative_error,
                    float(np.nanmax(depth, initial=0.0)))


@dataclass(frozen=True)
class Split:
    """The catchments of a run and how each is cut out."""

    labels: np.ndarray
    profile: dict
    jobs: list[CatchmentJob]


def plan_split(dem: str, manning: float | str, rain: Hyetograph, duration_s: float,
               boundary: str, infiltration: Infiltration | None, options: Options,
               buffer_cells: int, min_depth_m: float, min_cells: int) -> Split:
    """Delineate the DEM's catchments and make one task of each."""
    if boundary not in ("closed", "free"):
        raise FloodInputError(f"boundary must be closed or free, not {boundary!r}")
    bed = read_raster(Path(dem), "DEM")
    active = np.isfinite(bed.values)
    if not active.any():
        raise FloodInputError(f"the DEM {dem} has no valid cells")
    labels = delineate(bed.values, active, min_depth_m, min_cells)
    grow = ndimage.generate_binary_structure(2, 2)
    ny, nx = labels.shape
    jobs = []
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        r0, r1 = max(box[0].start - buffer_cells, 0), min(box[0].stop + buffer_cells, ny)
        c0, c1 = max(box[1].start - buffer_cells, 0), min(box[1].stop + buffer_cells, nx)
        own = labels[r0:r1, c0:c1] == k
        near = ndimage.binary_dilation(own, grow, iterations=buffer_cells)
        sides = tuple(boundary if edge else "closed"
                      for edge in (r0 == 0, r1 == ny, c0 == 0, c1 == nx))
        jobs.append(CatchmentJob(
            k, dem, manning, r0, c0, own, near & active[r0:r1, c0:c1], sides,  # type: ignore[arg-type]
            rain, duration_s, infiltration, options))
    return Split(labels, bed.profile, jobs)


def run_split(split: Split, out: str, max_crossing: float, client: Client | None = None,
              progress: Progress | None = None) -> list[Crossing]:
    """Run every catchment, refuse the split if too much water crossed a cut, else mosaic the
    pieces into ``max_depth.tif`` and publish the folder (staging, then rename)."""
    def work(staging: str) -> list[Crossing]:
        crossings = _run_all(split.jobs, staging, client, progress)
        crossed = [c for c in crossings if c.fraction > max_crossing]
        if crossed:
            worst = max(crossed, key=lambda c: c.fraction)
            raise SplitRefused(
                f"{len(crossed)} of {len(crossings)} catchments lost or gained more than "
                f"{max_crossing:.2%} of their rain across their edges (catchment "
                f"{worst.label}: {worst.fraction:.2%}, {worst.out_m3 + worst.in_m3:.1f} m³): "
                "the split does not hold; use a larger min-depth or min-cells, or run unsplit")
        _mosaic(split, staging)
        _write_table(staging, crossings, max_crossing)
        return crossings

    return publish(out, work)


def _run_all(jobs: list[CatchmentJob], staging: str, client: Client | None,
             progress: Progress | None) -> list[Crossing]:
    done: dict[int, Crossing] = {}

    def report() -> None:
        if progress is not None:
            progress(f"{len(done)} of {len(jobs)} catchments", len(done) / len(jobs))

    report()
    if client is None:
        for job in jobs:
            done[job.label] = run_catchment(job, staging)
            report()
    else:
        futures = [client.submit(run_catchment, job, staging, retries=RETRIES, pure=False)
                   for job in jobs]
        try:
            for future in as_completed(futures):
                crossing = future.result()
                done[crossing.label] = crossing
                report()
        finally:
            client.cancel(futures)
    return [done[job.label] for job in jobs]


def _mosaic(split: Split, staging: str) -> None:
    fs, root = fsspec.core.url_to_fs(staging)
    handles = [fs.open(url_path, "rb") for url_path in
               (fsspec.core.url_to_fs(_piece(staging, job.label))[1] for job in split.jobs)]
    try:
        sources = [rasterio.open(h) for h in handles]
        depth, transform = merge(sources, nodata=NODATA)
        for src in sources:
            src.close()
    finally:
        for h in handles:
            h.close()
    shape = split.labels.shape
    if depth.shape[1:] != shape or not transform.almost_equals(split.profile["transform"]):
        raise FloodInputError("the catchment pieces do not tile the DEM")  # a bug, not input
    values = np.where(depth[0] == NODATA, np.nan, depth[0]).astype(np.float64)
    raster = Raster(values, split.profile)
    with tempfile.TemporaryDirectory(prefix="cim-mosaic-") as folder:
        for name, data in (("max_depth.tif", values),
                           ("catchments.tif", split.labels.astype(np.float64))):
            write_cog(Path(folder) / name, data, raster, split.labels > 0)
            fs.put_file(str(Path(folder) / name), f"{root}/{name}")
    fs.rm(f"{root}/pieces", recursive=True)


def _write_table(staging: str, crossings: list[Crossing], max_crossing: float) -> None:
    fs, root = fsspec.core.url_to_fs(staging)
    rows: list[dict[str, Any]] = [{**asdict(c), "crossing_fraction": c.fraction}
                                  for c in crossings]
    with fs.open(f"{root}/catchments.csv", "w") as f:
        pd.DataFrame(rows).to_csv(f, index=False, float_format="%.9g")
    with fs.open(f"{root}/catchments.json", "w") as f:
        json.dump({"max_crossing": max_crossing, "catchments": rows}, f, indent=2)
