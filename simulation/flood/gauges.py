"""Recorded rain: the platform's rain-gauge readings over a time window, spread over a grid.

Gauges are the current sensors of kind ``rain_gauge`` near the area (within
``GAUGE_MARGIN_DEG``) with good readings (quality 0) in the window, in mm/h. Each reading
holds until the gauge's next one, as the rows of a hyetograph CSV do; the last holds until
the window ends, and before a gauge's first reading it rains nothing there. Each cell then
takes an inverse-distance or Thiessen share of the gauges
(:func:`simulation.flood.rain.gauge_weights`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import numpy as np
from affine import Affine
from pyproj import Transformer
from sqlalchemy import Connection, text

from simulation.flood.domain import Bbox
from simulation.flood.errors import FloodInputError
from simulation.flood.rain import Hyetograph, SpatialRain, gauge_weights

RAIN_KIND = "rain_gauge"
GAUGE_MARGIN_DEG = 0.1
"""About 10 km: gauges this far beyond the area still inform its edges."""
INTENSITY_UNITS = ("mm/h", None)


def gauge_readings(conn: Connection, bbox: Bbox, start: datetime, end: datetime
                   ) -> list[tuple[str, float, float, np.ndarray, np.ndarray]]:
    """(gauge id, lon, lat, seconds from ``start``, mm/h) of each gauge with readings."""
    w, s, e, n = bbox.as_tuple()
    m = GAUGE_MARGIN_DEG
    rows = conn.execute(text("""
        SELECT s.id, ST_X(s.geom), ST_Y(s.geom), s.unit,
               array_agg(extract(epoch FROM o.observed_at - :start) ORDER BY o.observed_at),
               array_agg(o.value ORDER BY o.observed_at)
        FROM cim.sensors s
        JOIN cim.observations o ON o.sensor_id = s.id
        WHERE s.valid_to IS NULL AND s.kind = :kind
          AND s.geom && ST_MakeEnvelope(:w, :s, :e, :n, 4326)
          AND o.observed_at >= :start AND o.observed_at < :end AND o.quality = 0
        GROUP BY s.id, s.geom, s.unit ORDER BY s.id"""),
        {"kind": RAIN_KIND, "w": w - m, "s": s - m, "e": e + m, "n": n + m,
         "start": start, "end": end}).all()
    found = []
    for gauge, lon, lat, unit, seconds, values in rows:
        if unit not in INTENSITY_UNITS:
            raise FloodInputError(f"rain gauge {gauge} reads in {unit!r}: only mm/h is taken")
        found.append((gauge, lon, lat, np.array(seconds, float), np.array(values, float)))
    return found


def recorded_rain(conn: Connection, bbox: Bbox, start: datetime, end: datetime,
                  transform: Affine, shape: tuple[int, int], crs: int,
                  method: Literal["idw", "thiessen"] = "idw", power: float = 2.0
                  ) -> tuple[SpatialRain, list[str]]:
    """The window's rain over the grid, and notes on what was used."""
    if end <= start:
        raise FloodInputError("the rain window must end after it starts")
    duration = (end - start).total_seconds()
    gauges = gauge_readings(conn, bbox, start, end)
    if not gauges:
        raise FloodInputError(f"no rain gauge near the area has good readings between "
                              f"{start.isoformat()} and {end.isoformat()}")
    sources = []
    for _, _, _, seconds, values in gauges:
        if np.any(values < 0) or not np.all(np.isfinite(values)):
            raise FloodInputError("rain gauge readings must be finite and not negative")
        ends = np.append(seconds[1:], duration)
        sources.append(Hyetograph(seconds, ends, values))
    to_city = Transformer.from_crs(4326, crs, always_xy=True)
    gx, gy = to_city.transform([g[1] for g in gauges], [g[2] for g in gauges])
    ny, nx = shape
    x, y = np.meshgrid(transform.c + (np.arange(nx) + 0.5) * transform.a,
                       transform.f + (np.arange(ny) + 0.5) * transform.e)
    weights = gauge_weights(x, y, np.asarray(gx), np.asarray(gy), method, power)
    rain = SpatialRain(tuple(sources), weights.reshape(len(gauges), ny, nx))
    totals = ", ".join(f"{g[0]} {s.total_mm:.1f} mm" for g, s in zip(gauges, sources,
                                                                       strict=True))
    notes = [f"recorded rain {start.isoformat()} to {end.isoformat()} from {len(gauges)} gauges "
             f"({method}): {totals}; {rain.total_mm:.1f} mm over the area on average"]
    return rain, notes
