"""Rain for the flood solver: design storms from a city's intensity formula, hyetographs, and
rain that varies over the grid.

A hyetograph is piecewise constant: block ``k`` rains ``intensity_mm_h[k]`` from
``starts_s[k]`` to ``ends_s[k]``. The solver asks it for the depth fallen between two times,
which is exact for any time step, so no rain is lost or invented between blocks. Rain that
varies in space (:class:`SpatialRain`) is a few hyetographs (gauges) and each cell's share of
each: inverse-distance or Thiessen weights (:func:`gauge_weights`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from simulation.flood.errors import FloodInputError

# 1 L/(s·ha) = 1e-3 m³/s over 1e4 m² = 1e-7 m/s = 0.36 mm/h.
MM_H_PER_L_S_HA = 0.36
MM_H_PER_MM_MIN = 60.0


class StormFormula(BaseModel):
    """A rainstorm intensity formula q = A (1 + C lg P) / (t + b)^n (GB 50014 form).

    ``a`` is the whole numerator constant (167 A1 when the formula is quoted in L/(s·ha));
    ``t`` is the duration in minutes and ``P`` the return period in years. The result is the
    mean intensity over the storm's first ``t`` minutes, in ``unit``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    a: float = Field(gt=0)
    c: float = Field(ge=0)
    b: float = Field(ge=0, description="minutes")
    n: float = Field(gt=0, lt=1.5)
    unit: Literal["L/(s·ha)", "mm/min"] = "L/(s·ha)"
    note: str = ""

    def mean_intensity_mm_h(self, minutes: float | np.ndarray, return_period: float
                            ) -> float | np.ndarray:
        """Mean intensity over a storm of ``minutes`` at a return period in years."""
        q = self.a * (1 + self.c * math.log10(return_period)) / (
            np.asarray(minutes) + self.b) ** self.n
        return q * (MM_H_PER_L_S_HA if self.unit == "L/(s·ha)" else MM_H_PER_MM_MIN)

    def depth_mm(self, minutes: float | np.ndarray, return_period: float) -> float | np.ndarray:
        """Depth of the storm's most intense ``minutes``: H(t) = ī(t) t."""
        return self.mean_intensity_mm_h(minutes, return_period) * np.asarray(minutes) / 60.0


WUHAN = StormFormula(
    name="Wuhan", a=983.0, c=0.65, b=4.0, n=0.56,
    note="as commonly quoted in design manuals; check against the city's official formula "
         "before operational use",
)


@dataclass(frozen=True)
class Hyetograph:
    """Piecewise-constant rain intensity: block k rains intensity_mm_h[k] over its interval."""

    starts_s: np.ndarray
    ends_s: np.ndarray
    intensity_mm_h: np.ndarray

    def __post_init__(self) -> None:
        if len(self.starts_s) == 0:
            raise FloodInputError("a hyetograph needs at least one block")
        if np.any(self.ends_s <= self.starts_s) or np.any(self.starts_s[1:] < self.ends_s[:-1]):
            raise FloodInputError("hyetograph blocks must be ordered and not overlap")
        if not np.all(np.isfinite(self.intensity_mm_h)) or np.any(self.intensity_mm_h < 0):
            raise FloodInputError("rain intensities must be finite and not negative")

    @classmethod
    def constant(cls, intensity_mm_h: float, duration_s: float) -> Hyetograph:
        return cls(np.array([0.0]), np.array([float(duration_s)]),
                   np.array([float(intensity_mm_h)]))

    @property
    def duration_s(self) -> float:
        return float(self.ends_s[-1])

    @property
    def total_mm(self) -> float:
        return float(np.sum(self.intensity_mm_h * (self.ends_s - self.starts_s)) / 3600.0)

    @property
    def peak_mm_h(self) -> float:
        return float(self.intensity_mm_h.max())

    def cumulative_m(self, t: float) -> float:
        """Depth fallen from time 0 to ``t`` (seconds), in metres."""
        inside = np.clip(t, self.starts_s, self.ends_s) - self.starts_s
        return float(np.sum(self.intensity_mm_h * inside)) / 3.6e6

    def depth_between(self, t0: float, t1: float) -> float:
        """Depth fallen between two times, in metres (exact for a piecewise-constant rate)."""
        return self.cumulative_m(t1) - self.cumulative_m(t0)

    def to_csv(self, path: Path) -> None:
        """Write the CSV form ``read_hyetograph_csv`` reads (a closing zero row ends it)."""
        with path.open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["time_min", "intensity_mm_h"])
            for start, value in zip(self.starts_s, self.intensity_mm_h, strict=True):
                out.writerow([f"{start / 60:g}", f"{value:.6g}"])
            out.writerow([f"{self.duration_s / 60:g}", "0"])


def chicago_hyetograph(
    return_period: float,
    duration_min: float,
    step_min: float = 5.0,
    peak: float = 0.4,
    formula: StormFormula = WUHAN,
) -> Hyetograph:
    """The Chicago design storm (Keifer & Chu 1957) of a return period and duration.

    Any window of length τ around the peak at ``peak`` × T holds the formula's depth H(τ),
    ``peak`` of it before the peak. So the mass curve is M(t) = r H(T) − r H((t_p − t)/r)
    before the peak and r H(T) + (1 − r) H((t − t_p)/(1 − r)) after it, and block depths are
    its differences: the blocks sum to H(T) exactly.
    """
    if not 1 <= return_period <= 100:
        raise FloodInputError(f"return period {return_period:g} years is outside 1-100 years")
    if not 60 <= duration_min <= 24 * 60:
        raise FloodInputError(f"storm duration {duration_min:g} min is outside 1-24 h")
    if not 0 < step_min <= duration_min:
        raise FloodInputError(f"time step {step_min:g} min must be positive and at most "
                              "the duration")
    if not 0 <= peak <= 1:
        raise FloodInputError(f"peak position {peak:g} must lie between 0 and 1")
    edges = np.append(np.arange(0.0, duration_min, step_min), duration_min)
    t_peak = peak * duration_min
    total = formula.depth_mm(duration_min, return_period)
    mass = np.empty_like(edges)
    # With the peak at the very start every edge lies after it (r = 0 has no rising limb).
    before = (edges <= t_peak) if peak > 0 else np.zeros(edges.shape, dtype=bool)
    if before.any():
        mass[before] = peak * (total - formula.depth_mm((t_peak - edges[before]) / peak,
                                                        return_period))
    after = ~before
    if after.any():
        mass[after] = peak * total + (1 - peak) * formula.depth_mm(
            (edges[after] - t_peak) / (1 - peak), return_period)
    blocks_mm = np.diff(mass)
    widths_min = np.diff(edges)
    return Hyetograph(edges[:-1] * 60.0, edges[1:] * 60.0, blocks_mm / widths_min * 60.0)


def read_hyetograph_csv(path: Path) -> Hyetograph:
    """Read ``time_min,intensity_mm_h`` rows by the rules of :func:`hyetograph_from_rows`."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise FloodInputError(f"cannot read hyetograph {path}: {exc.strerror}") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise FloodInputError(f"hyetograph {path} is not a readable CSV file") from exc
    columns = {"time_min", "intensity_mm_h"}
    if not rows or not columns <= set(rows[0]):
        raise FloodInputError(f"hyetograph {path} needs a header with the columns time_min "
                              "and intensity_mm_h, and at least two rows")
    times, values = [], []
    for line, row in enumerate(rows, start=2):
        try:
            times.append(float(row["time_min"]))
            values.append(float(row["intensity_mm_h"]))
        except (TypeError, ValueError):
            raise FloodInputError(f"hyetograph {path} line {line}: time_min and "
                                  "intensity_mm_h must be numbers") from None
    return hyetograph_from_rows(times, values, f"hyetograph {path}")


def hyetograph_from_rows(times_min: Sequence[float], intensity_mm_h: Sequence[float],
                         what: str = "the hyetograph") -> Hyetograph:
    """Rows of (time in minutes, intensity in mm/h): each intensity holds until the next row's
    time. The last block lasts as long as the one before it (regular steps need no closing
    row); a closing row with intensity 0 ends the storm anywhere else."""
    t, v = np.asarray(times_min, float), np.asarray(intensity_mm_h, float)
    if len(t) < 2:
        raise FloodInputError(f"{what} needs at least two rows (a block's end is the next "
                              "row's time)")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(v))):
        raise FloodInputError(f"{what}: times and intensities must be finite")
    if t[0] < 0 or np.any(np.diff(t) <= 0):
        raise FloodInputError(f"{what}: times must start at 0 or later and increase strictly")
    if np.any(v < 0):
        raise FloodInputError(f"{what}: intensities must not be negative")
    ends = np.append(t[1:], t[-1] + (t[-1] - t[-2]))
    keep = ~((np.arange(len(t)) == len(t) - 1) & (v == 0))  # a closing zero row adds nothing
    return Hyetograph(t[keep] * 60.0, ends[keep] * 60.0, v[keep])


@dataclass(frozen=True)
class SpatialRain:
    """Rain that varies over the grid: cell (i, j) gets ``weights[k, i, j]`` of the depth of
    source ``k`` (a gauge's hyetograph). Shares summing to 1 per cell interpolate the gauges."""

    sources: tuple[Hyetograph, ...]
    weights: np.ndarray  # (sources, ny, nx)

    def __post_init__(self) -> None:
        if self.weights.ndim != 3 or self.weights.shape[0] != len(self.sources) \
                or not self.sources:
            raise FloodInputError("spatial rain needs one (ny, nx) weight grid per source")
        if not np.all(np.isfinite(self.weights)) or np.any(self.weights < 0):
            raise FloodInputError("rain weights must be finite and not negative")

    def depths_between(self, t0: float, t1: float) -> np.ndarray:
        """Each source's depth (m) fallen between two times (s)."""
        return np.array([s.depth_between(t0, t1) for s in self.sources])

    @property
    def duration_s(self) -> float:
        return max(s.duration_s for s in self.sources)

    @property
    def total_mm(self) -> float:
        """The depth fallen on the grid as a whole (the mean over its cells)."""
        share = self.weights.reshape(len(self.sources), -1).mean(axis=1)
        return float(sum(w * s.total_mm for w, s in zip(share, self.sources, strict=True)))

    @property
    def peak_mm_h(self) -> float:
        return max(s.peak_mm_h for s in self.sources)


def gauge_weights(x: np.ndarray, y: np.ndarray, gauge_x: np.ndarray, gauge_y: np.ndarray,
                  method: Literal["idw", "thiessen"] = "idw", power: float = 2.0
                  ) -> np.ndarray:
    """Each point's share of each gauge (gauges × points), summing to 1 per point.

    ``thiessen``: all of the nearest gauge (its Thiessen polygon, by a k-d tree);
    ``idw``: inverse distance to the ``power``, all of a gauge the point sits on.
    """
    from scipy.spatial import cKDTree

    points = np.column_stack([np.ravel(x), np.ravel(y)])
    gauges = np.column_stack([gauge_x, gauge_y])
    if not len(gauges):
        raise FloodInputError("rain interpolation needs at least one gauge")
    weights = np.zeros((len(gauges), len(points)))
    if method == "thiessen" or len(gauges) == 1:
        _, nearest = cKDTree(gauges).query(points)
        weights[nearest, np.arange(len(points))] = 1.0
        return weights
    if method != "idw":
        raise FloodInputError(f"rain interpolation must be idw or thiessen, not {method!r}")
    if not power > 0:
        raise FloodInputError("the inverse-distance power must be positive")
    for k, (gx, gy) in enumerate(gauges):
        weights[k] = np.hypot(points[:, 0] - gx, points[:, 1] - gy)
    on_gauge = weights < 1e-9
    with np.errstate(divide="ignore"):
        weights = np.where(on_gauge.any(axis=0), on_gauge.astype(float), weights ** -power)
    return weights / weights.sum(axis=0)
