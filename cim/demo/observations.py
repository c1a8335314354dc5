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
START = END - timedelta(hours=HOURS)
DRIZZLE = slice(20, 44)  # hours of the week with light rain now and then
STORM_START = 5 * 24 + 14  # hour of the week the storm breaks (the 29th, 14:00)
STORM = np.array([4.0, 15.0, 45.0, 28.0, 12.0, 6.0, 3.0, 1.0])  # mm/h, hour by hour
LAKE_RISE = 0.006  # m of lake level per mm of rain on its catchment
LAKE_MEMORY = 48.0  # h for a lake to shed most of a rise
PONDING_THRESHOLD = 15.0  # mm/h an underpass's drains cope with
SUSPECT_SHARE = 0.005
# Share of the peak hour's traffic in each hour of a weekday.
# fmt: off
WEEKDAY = np.array([0.10, 0.06, 0.04, 0.04, 0.06, 0.15, 0.40, 0.85, 1.00, 0.80, 0.65, 0.65,
                    0.60, 0.60, 0.65, 0.70, 0.80, 0.95, 1.00, 0.80, 0.60, 0.45, 0.30, 0.18])
# fmt: on


def generate_observations(
    sensors: gpd.GeoDataFrame,
    water: gpd.GeoDataFrame,
    roads: gpd.GeoDataFrame,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Rows of sensor_id, observed_at (ISO 8601, +08:00), value, quality (0 good, 1 suspect)."""
    values = _readings(sensors, water, roads, rng)
    n = len(sensors)

    # Rare suspect readings spike by a few times the sensor's own spread; a sensor under
    # maintenance reads suspect for a few hours.
    quality = (rng.random((n, HOURS)) < SUSPECT_SHARE).astype(int)
    spike = (3 * values.std(axis=1, keepdims=True) + 0.1) * rng.uniform(1.0, 2.0, (n, HOURS))
    values = np.where(quality == 1, values + spike, values)
    maintenance = (sensors["status"] == "maintenance").to_numpy()
    quality[np.ix_(maintenance, np.arange(60, 66))] = 1

    # Offline sensors stopped reporting at some point in the week.
    last = np.where(sensors["status"] == "offline", rng.integers(24, HOURS - 24, n), HOURS)
    sensor, hour = np.nonzero(np.arange(HOURS)[None, :] < last[:, None])
    times = np.array([(START + timedelta(hours=h)).isoformat() for h in range(HOURS)])
    return pd.DataFrame(
        {
            "sensor_id": sensors["source_id"].to_numpy()[sensor],
            "observed_at": times[hour],
            "value": np.round(values[sensor, hour], 3),
            "quality": quality[sensor, hour],
        }
    )


def _readings(
    sensors: gpd.GeoDataFrame,
    water: gpd.GeoDataFrame,
    roads: gpd.GeoDataFrame,
    rng: np.random.Generator,
) -> np.ndarray:
    """Each sensor's true hourly values (sensors x hours)."""
    kind, unit = sensors["kind"].to_numpy(), sensors["unit"].to_numpy()
    target = sensors["target_id"]
    rain = _rain(len(sensors), rng)  # what falls where each sensor is
    values = np.zeros((len(sensors), HOURS))

    gauge = kind == "rain_gauge"
    values[gauge] = rain[gauge]

    lake = (kind == "water_level") & (unit == "m a.s.l.")
    normal = target.map(water.set_index("source_id")["normal_level"]).to_numpy(float)
    values[lake] = _lake_level(rain[lake], normal[lake], rng)

    ponding = (kind == "water_level") & (unit == "m")
    values[ponding] = _ponding(rain[ponding])

    busy = _traffic_profile()
    counter = kind == "traffic_counter"
    capacity = target.map(roads.set_index("source_id")["capacity_vph"]).to_numpy(float)
    # Counters count both directions; the peak hour runs at about 70 % of capacity.
    expected = 0.7 * capacity[counter, None] * busy * np.where(rain[counter] > 10, 0.75, 1.0)
    values[counter] = rng.poisson(expected)

    bridge = kind == "bridge_monitor"
    thermal = 15 * np.sin(2 * np.pi * (np.arange(HOURS) % 24 - 9) / 24)  # warmest mid-afternoon
    base = rng.uniform(40, 80, (bridge.sum(), 1))
    noise = rng.normal(0, 2, (bridge.sum(), HOURS))
    values[bridge] = np.round(base + thermal + 25 * busy + noise, 1)
    return values


def _rain(n: int, rng: np.random.Generator) -> np.ndarray:
    """mm/h at each of ``n`` places: drizzle on days 1-2, then the storm, a little shifted
    and scaled from place to place."""
    rain = np.zeros((n, HOURS))
    size = (n, DRIZZLE.stop - DRIZZLE.start)
    rain[:, DRIZZLE] = np.where(rng.random(size) < 0.4, rng.gamma(1.5, 1.0, size), 0.0)
    start = STORM_START + rng.integers(-1, 2, n)
    scale = rng.uniform(0.7, 1.3, n)
    rain[np.arange(n)[:, None], start[:, None] + np.arange(STORM.size)] = STORM * scale[:, None]
    return np.round(rain, 1)


def _lake_level(rain: np.ndarray, normal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rain raises a lake at once; the rise drains away over days."""
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


def _traffic_profile() -> np.ndarray:
    """Share of the peak hour's traffic, hour by hour through the week (weekends quieter)."""
    weekend = np.array([(START + timedelta(hours=h)).weekday() >= 5 for h in range(HOURS)])
    return WEEKDAY[np.arange(HOURS) % 24] * np.where(weekend, 0.7, 1.0)
