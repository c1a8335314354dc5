"""A flood scenario's depth rasters as PNG map tiles: blue over the flooded bowl, nothing off
it, only published files."""

from __future__ import annotations

import io

import morecantile
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pyproj import Transformer

from cim.access import Role
from cim.app import create_app
from tests.test_flood_scenarios import (  # noqa: F401 (district, keys: fixtures)
    CX,
    CY,
    NX,
    RUN,
    X0,
    Y0,
    _wait,
    district,
    keys,
)
from tiles.scenario_maps import OPACITY, depth_colours

TMS = morecantile.tms.get("WebMercatorQuad")
TO_LONLAT = Transformer.from_crs(4547, 4326, always_xy=True)


def _tile(x: float, y: float, z: int) -> str:
    tile = TMS.tile(*TO_LONLAT.transform(x, y), z)
    return f"{z}/{tile.x}/{tile.y}"


@pytest.fixture
def flooded(district, settings, keys):  # noqa: F811 (fixtures imported above)
    with TestClient(create_app(settings)) as client:
        created = client.post("/scenarios/flood", json=RUN, headers=keys[Role.analyst])
        assert created.status_code == 201, created.text
        done = _wait(client, created.json()["id"], {"succeeded", "failed"}, timeout=120)
        assert done["status"] == "succeeded", done["error"]
        yield client, done


def _blue(response) -> np.ndarray:
    rgba = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGBA")).astype(int)
    return (rgba[..., 3] > 0) & (rgba[..., 2] > rgba[..., 0] + 30)


def test_the_bowl_is_blue_and_the_land_around_it_is_not(flooded):
    client, scenario = flooded
    base = f"/scenarios/{scenario['id']}/maps"
    over = client.get(f"{base}/max_depth/{_tile(CX, CY, 18)}.png")
    assert over.status_code == 200 and over.headers["content-type"] == "image/png"
    assert _blue(over).sum() > 100
    alpha = np.asarray(Image.open(io.BytesIO(over.content)).convert("RGBA"))[..., 3]
    assert set(np.unique(alpha)) == {0, OPACITY}  # water lets the map show through
    assert "max-age" in over.headers["cache-control"] and over.headers["etag"]
    assert client.get(f"{base}/max_depth.tif/{_tile(CX, CY, 18)}.png").content == over.content
    later = [f for f in scenario["outputs"]["files"] if f.startswith("depth_")][-1]
    assert _blue(client.get(f"{base}/{later.removesuffix('.tif')}/{_tile(CX, CY, 18)}.png"))\
        .sum() > 100
    # Far off the raster, and on its dry upper corner, nothing is drawn.
    assert client.get(f"{base}/max_depth/{_tile(X0 + 5_000, Y0 + 5_000, 18)}.png")\
        .status_code == 204
    corner = client.get(f"{base}/max_depth/{_tile(X0 + NX * 4 - 6, Y0 - 6, 21)}.png")
    assert corner.status_code == 204 or not _blue(corner).any()


def test_only_published_rasters_of_known_scenarios(flooded):
    client, scenario = flooded
    base, tile = f"/scenarios/{scenario['id']}/maps", _tile(CX, CY, 18)
    for name in ("summary", "summary.json", "..%2Fmax_depth", "depth_9s", "max_depth.tif.aux",
                 "max_velocity", "arrival_time"):
        response = client.get(f"{base}/{name}/{tile}.png")
        assert response.status_code == 404, name
    assert client.get(f"/scenarios/999/maps/max_depth/{tile}.png").status_code == 404
    assert client.get(f"{base}/max_depth/3/8/0.png").status_code == 404  # outside the matrix
    assert client.get(f"{base}/max_depth/30/0/0.png").status_code == 400


def test_the_ramp():
    rgb, wet = depth_colours(np.array([0.0, 0.005, 0.01, 0.5, 3.0]))
    assert wet.tolist() == [False, False, True, True, True]
    assert (rgb[2] > rgb[0]).all()  # blue throughout
    assert rgb[:, 4].sum() < rgb[:, 3].sum() < rgb[:, 2].sum()  # darker as it deepens
