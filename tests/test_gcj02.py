import numpy as np
import pytest
import shapely
from pyproj import Geod

from cim.ingest.gcj02 import gcj02_to_wgs84, gcj02_to_wgs84_geometries, in_china, wgs84_to_gcj02

WUHAN = (114.3055, 30.5928)
PARIS = (2.35, 48.85)
GEOD = Geod(ellps="WGS84")


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    return GEOD.inv(a[0], a[1], b[0], b[1])[2]


def test_forward_matches_the_published_example():
    # The example that accompanies the public formula: Beijing, WGS84 → GCJ-02.
    lon, lat = wgs84_to_gcj02(116.404, 39.915)
    assert float(lon) == pytest.approx(116.41024449916938, abs=1e-11)
    assert float(lat) == pytest.approx(39.91640428150164, abs=1e-11)


def test_offset_in_wuhan_is_a_few_hundred_metres():
    gcj = tuple(map(float, wgs84_to_gcj02(*WUHAN)))
    # About 0.0054° east (~520 m) and 0.0024° south (~265 m) here.
    assert gcj[0] - WUHAN[0] == pytest.approx(0.00544, abs=5e-5)
    assert gcj[1] - WUHAN[1] == pytest.approx(-0.00241, abs=5e-5)
    assert 550 < metres(WUHAN, gcj) < 620


def test_inverse_round_trip_in_wuhan_is_sub_millimetre():
    gcj = wgs84_to_gcj02(*WUHAN)
    back = tuple(map(float, gcj02_to_wgs84(*gcj)))
    assert metres(WUHAN, back) < 1e-3


def test_inverse_converges_all_over_china():
    lon, lat = np.meshgrid(np.linspace(74, 135, 40), np.linspace(18, 53, 30))
    wgs_lon, wgs_lat = gcj02_to_wgs84(lon, lat)
    fwd_lon, fwd_lat = wgs84_to_gcj02(wgs_lon, wgs_lat)
    assert wgs_lon.shape == lon.shape
    # 1e-9° is about 0.1 mm.
    assert np.abs(fwd_lon - lon).max() < 1e-9
    assert np.abs(fwd_lat - lat).max() < 1e-9


def test_points_outside_china_are_unchanged():
    assert not in_china(*PARIS)
    assert in_china(*WUHAN)
    for convert in (wgs84_to_gcj02, gcj02_to_wgs84):
        lon, lat = convert(*PARIS)
        assert (float(lon), float(lat)) == PARIS


def test_arrays_convert_element_by_element():
    lon = np.array([[WUHAN[0], PARIS[0]], [121.47, 104.07]])
    lat = np.array([[WUHAN[1], PARIS[1]], [31.23, 30.67]])
    out_lon, out_lat = wgs84_to_gcj02(lon, lat)
    assert out_lon.shape == (2, 2)
    for i, j in np.ndindex(lon.shape):
        one_lon, one_lat = wgs84_to_gcj02(lon[i, j], lat[i, j])
        assert out_lon[i, j] == float(one_lon)
        assert out_lat[i, j] == float(one_lat)
    assert out_lon[0, 1] == PARIS[0]  # Paris, in the same array, untouched


def test_geometries_move_to_wgs84_and_keep_z():
    gcj = tuple(map(float, wgs84_to_gcj02(*WUHAN)))
    geoms = np.array(
        [
            shapely.Point(gcj[0], gcj[1], 25.0),
            shapely.LineString([gcj, (gcj[0] + 0.001, gcj[1])]),
            None,
        ],
        dtype=object,
    )
    point, line, missing = gcj02_to_wgs84_geometries(geoms)
    assert point.has_z and point.z == 25.0
    assert metres(WUHAN, (point.x, point.y)) < 1e-3
    assert not line.has_z
    assert metres(WUHAN, line.coords[0]) < 1e-3
    # The second vertex is moved by its own offset, not by the first vertex's.
    expected = tuple(map(float, gcj02_to_wgs84(gcj[0] + 0.001, gcj[1])))
    assert line.coords[1] == pytest.approx(expected, abs=1e-12)
    assert missing is None
