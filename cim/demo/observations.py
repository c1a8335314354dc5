"""A week of hourly sensor readings, ending at a fixed date so that output is reproducible.

The week has two drizzly days of the plum-rain season and a summer storm on its sixth day:
lakes rise and recede slowly, underpasses flood within the hour and drain after, traffic
follows its daily rhythm and thins in the storm, bridge strain follows heat and traffic.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import geopandas as gpd
import numpy as np
import pandas as pd

END = datetime(2026, 7, 1, tzinfo=timezone(timedelta(hours=8)))
HOURS = 7 * 24
STORM_START = 5 * 24 + 14  # hour of the week the storm breaks (the 29th, 14:00)
STORM = np.array([4.0, 15.0, 45.0, 28.0, 12.0, 6.0, 3.0, 1.0])  # mm/h, hour by hour
LAKE_RISE = 0.006  # m of lake level per mm of rain on its catchment
LAKE_MEMORY = 48.0  # h for a lake to shed most of a rise
PONDING_THRESHOLD = 15.0  # mm/h an underpass's drains cope with
# Share of the peak hour's traffic in each hour of a weekday.
WEEKDAY = np.array(
    [
        0.10,
        0.06,
        0.04,
        0.04,
        0.06,
        0.15,
        0.40,
        0.85,
        1.00,
        0.80,
        0.65,
        0.65,
        0.60,
        0.60,
        0.65,
        0.70,
        0.80,
        0.95,
        1.00,
        0.80,
        0.60,
        0.45,
        0.30,
        0.18,
    ]
)


def observation_times() -> list[str]:
    start = END - timedelta(hours=HOURS)
    return [(start + timedelta(hours=h)).isoformat() for h in range(HOURS)]


def generate_observations(
    sensors: gpd.GeoDataFrame,
    water: gpd.GeoDataFrame,
    roads: gpd.GeoDataFrame,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Rows of sensor_id, observed_at, value, quality (0 good, 1 suspect)."""
    n = len(sensors)
    kind, unit = sensors["kind"].to_numpy(), sensors["unit"].to_numpy()
    rain = _rain(n, rng)
    values = np.zeros((n, HOURS))
    gauge = kind == "rain_gauge"
    values[gauge] = rain[gauge]

    lake = (kind == "water_level") & (unit == "m a.s.l.")
    normal = sensors["target_id"].map(water.set_index("source_id")["normal_level"])
    values[lake] = _lake_level(rain[lake], normal.to_numpy(float)[lake], rng)
    ponding = (kind == "water_level") & (unit == "m")
    values[ponding] = _ponding(rain[ponding])

    weekday = _day_factor()
    traffic = kind == "traffic_counter"
    capacity = sensors["target_id"].map(roads.set_index("source_id")["capacity_vph"])
    # Counters count both directions; the peak hour runs at about 70 % of capacity.
    peak = 0.7 * capacity.to_numpy(float)[traffic]
    storm_slowdown = np.where(rain[traffic] > 10, 0.75, 1.0)
    expected = peak[:, None] * _profile() * weekday * storm_slowdown
    values[traffic] = rng.poisson(expected)

    bridge = kind == "bridge_monitor"
    hour = np.arange(HOURS) % 24
    thermal = 15 * np.sin(2 * np.pi * (hour - 9) / 24)
    base = rng.uniform(40, 80, (bridge.sum(), 1))
    values[bridge] = np.round(
        base + thermal + 25 * _profile() * weekday + rng.normal(0, 2, (bridge.sum(), HOURS)), 1
    )

    # Rare suspect readings: spikes of a few times the sensor's own spread.
    quality = (rng.random((n, HOURS)) < 0.005).astype(int)
    spike = (3 * values.std(axis=1, keepdims=True) + 0.1) * rng.uniform(1.0, 2.0, (n, HOURS))
    values = np.where(quality == 1, values + spike, values)
    maintenance = (sensors["status"] == "maintenance").to_numpy()
    window = (np.arange(HOURS) >= 60) & (np.arange(HOURS) < 66)
    quality[np.ix_(maintenance, window)] = 1

    # Offline sensors stopped reporting at some point in the week.
    last = np.where(sensors["status"] == "offline", rng.integers(24, HOURS - 24, n), HOURS)
    reported = np.arange(HOURS)[None, :] < last[:, None]
    sensor_idx, hour_idx = np.nonzero(reported)
    times = np.asarray(observation_times(), dtype=object)
    return pd.DataFrame(
        {
            "sensor_id": sensors["source_id"].to_numpy()[sensor_idx],
            "observed_at": times[hour_idx],
            "value": np.round(values[sensor_idx, hour_idx], 3),
            "quality": quality[sensor_idx, hour_idx],
        }
    )


def _rain(n: int, rng: np.random.Generator) -> np.ndarray:
    """mm/h at each of ``n`` places: drizzle on days 1-2, then the storm, a little shifted
    and scaled from place to place."""
    rain = np.zeros((n, HOURS))
    drizzle = np.arange(20, 44)
    rain[:, drizzle] = np.where(
        rng.random((n, drizzle.size)) < 0.4, rng.gamma(1.5, 1.0, (n, drizzle.size)), 0.0
    )
    shift = rng.integers(-1, 2, n)
    scale = rng.uniform(0.7, 1.3, n)
    for i in range(n):
        start = STORM_START + shift[i]
        rain[i, start : start + STORM.size] = STORM * scale[i]
    return np.round(rain, 1)


def _lake_level(rain: np.ndarray, normal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    level = np.zeros_like(rain)
    decay = np.exp(-1 / LAKE_MEMORY)
    for h in range(HOURS):
        level[:, h] = (level[:, h - 1] * decay if h else 0) + LAKE_RISE * rain[:, h]
    noise = rng.normal(0, 0.005, rain.shape)
    return np.round(normal[:, None] + level + noise, 3)


def _ponding(rain: np.ndarray) -> np.ndarray:
    """Water depth at an underpass's low point: fills when rain beats its drains."""
    depth = np.zeros_like(rain)
    for h in range(HOURS):
        before = depth[:, h - 1] if h else 0
        depth[:, h] = np.maximum(0.5 * before + 0.012 * (rain[:, h] - PONDING_THRESHOLD), 0)
    return np.round(depth, 2)


def _profile() -> np.ndarray:
    return WEEKDAY[np.arange(HOURS) % 24]


def _day_factor() -> np.ndarray:
    """Weekends carry less traffic than weekdays."""
    start = END - timedelta(hours=HOURS)
    days = [(start + timedelta(hours=h)).weekday() for h in range(HOURS)]
    return np.where(np.asarray(days) >= 5, 0.7, 1.0)
