"""Design storms and hyetographs: the intensity formula, the Chicago method, CSV input."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from simulation.flood.errors import FloodInputError
from simulation.flood.rain import (
    WUHAN,
    Hyetograph,
    StormFormula,
    chicago_hyetograph,
    read_hyetograph_csv,
)


def test_wuhan_formula_known_values():
    # q = 983 (1 + 0.65 lg 50) / (120 + 4)^0.56 L/(s·ha); × 0.36 = mm/h.
    q = 983 * (1 + 0.65 * np.log10(50)) / 124 ** 0.56
    assert WUHAN.mean_intensity_mm_h(120, 50) == pytest.approx(0.36 * q, rel=1e-12)
    assert WUHAN.depth_mm(120, 50) == pytest.approx(100.16, abs=0.01)


@pytest.mark.parametrize(("period", "hours", "peak"),
                         [(1, 1, 0.4), (50, 2, 0.4), (100, 24, 0.3), (10, 3, 0.0), (5, 1, 1.0)])
def test_chicago_blocks_sum_to_the_formula_depth(period, hours, peak):
    storm = chicago_hyetograph(period, hours * 60, step_min=5, peak=peak)
    assert storm.total_mm == pytest.approx(WUHAN.depth_mm(hours * 60, period), rel=1e-12)
    assert storm.duration_s == hours * 3600
    assert np.all(storm.intensity_mm_h >= 0)


def test_chicago_peak_and_position():
    storm = chicago_hyetograph(50, 120, step_min=5, peak=0.4)
    assert storm.total_mm == pytest.approx(100.2, abs=0.1)
    assert storm.peak_mm_h == pytest.approx(211, rel=0.01)  # the facts sheet's figure
    peak_block = int(np.argmax(storm.intensity_mm_h))
    assert storm.starts_s[peak_block] <= 0.4 * 7200 <= storm.ends_s[peak_block]


def test_any_city_formula_in_mm_per_minute():
    city = StormFormula(name="test", a=10.0, c=0.8, b=10.0, n=0.7, unit="mm/min")
    expected = 60 * 10.0 * (1 + 0.8 * np.log10(20)) / (60 + 10.0) ** 0.7
    assert city.mean_intensity_mm_h(60, 20) == pytest.approx(expected)
    assert chicago_hyetograph(20, 60, formula=city).total_mm == pytest.approx(expected)
    with pytest.raises(ValueError, match="greater than 0"):
        StormFormula(name="bad", a=-1, c=0.5, b=1, n=0.5)


@pytest.mark.parametrize(("args", "message"), [
    ((0.5, 120), "return period"), ((200, 120), "return period"), ((50, 30), "1-24 h"),
    ((50, 1500), "1-24 h"), ((50, 120, 0), "time step"), ((50, 120, 5, 1.5), "peak"),
])
def test_chicago_refuses_out_of_range(args, message):
    with pytest.raises(FloodInputError, match=message):
        chicago_hyetograph(*args)


def test_depth_between_is_exact_across_blocks():
    storm = Hyetograph(np.array([0.0, 600.0]), np.array([600.0, 1200.0]), np.array([36.0, 72.0]))
    # 36 mm/h = 1e-5 m/s: 300 s in block 1 and 300 s in block 2.
    assert storm.depth_between(300, 900) == pytest.approx(300 * 1e-5 + 300 * 2e-5, rel=1e-12)
    assert storm.depth_between(1200, 5000) == 0.0
    steps = np.linspace(0, 1200, 38)
    assert sum(storm.depth_between(a, b) for a, b in pairwise(steps)) == pytest.approx(
        storm.total_mm / 1000, rel=1e-12)


def test_csv_round_trip(tmp_path):
    storm = chicago_hyetograph(50, 120)
    storm.to_csv(tmp_path / "s.csv")
    back = read_hyetograph_csv(tmp_path / "s.csv")
    assert back.total_mm == pytest.approx(storm.total_mm, rel=1e-5)
    assert back.duration_s == storm.duration_s


def test_csv_regular_steps_need_no_closing_row(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("time_min,intensity_mm_h\n0,10\n10,60\n20,30\n")
    storm = read_hyetograph_csv(path)
    assert storm.duration_s == 1800
    assert storm.total_mm == pytest.approx((10 + 60 + 30) / 6)


@pytest.mark.parametrize(("text", "message"), [
    ("minutes,mm\n0,1\n5,2\n", "time_min and intensity_mm_h"),
    ("time_min,intensity_mm_h\n0,1\n5,abc\n", "line 3"),
    ("time_min,intensity_mm_h\n0,1\n", "at least two rows"),
    ("time_min,intensity_mm_h\n0,1\n10,2\n5,3\n", "increase strictly"),
    ("time_min,intensity_mm_h\n0,1\n5,-2\n", "negative"),
    ("time_min,intensity_mm_h\n0,1\n5,nan\n", "finite"),
    ("", "time_min and intensity_mm_h"),
])
def test_bad_csv_is_refused_clearly(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(FloodInputError, match=message):
        read_hyetograph_csv(path)


def test_missing_csv(tmp_path):
    with pytest.raises(FloodInputError, match="cannot read"):
        read_hyetograph_csv(Path(tmp_path / "nope.csv"))
