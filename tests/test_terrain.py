"""Terrain tiles from a registered DEM: Terrain-RGB decoded back to the DEM's heights,
hillshade lit from the north-west, TileJSON, 204/404, caching and the `dems` classification."""

from __future__ import annotations

import io

import morecantile
import numpy as np
import pytest
import rasterio
from fastapi.testclient import TestClient
from PIL import Image
from pyproj import Transformer
from rasterio.transform import from_origin
from scipy.interpolate import RegularGridInterpolator

from cim.access import Role, create_key
from cim.app import create_app
from cim.ingest.dem import import_dem
from layers.catalog import Catalog, load_catalog
from layers.model import Classification, LayerDefinition
from tiles.terrain import dems_within, hillshade, sample_heights

X0, Y0, CELL, NX, NY = 538_000.0, 3_375_000.0, 4.0, 120, 100  # 480 m × 400 m, EPSG:4547
HILL_X, HILL_Y = X0 + 240.0, Y0 - 200.0
TMS = morecantile.tms.get("WebMercatorQuad")
TO_CITY = Transformer.from_crs(4326, 4547, always_xy=True)
TO_LONLAT = Transformer.from_crs(4547, 4326, always_xy=True)


def _heights(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A plane rising 2 % to the east with a 25 m round hill in the middle."""
    r = np.hypot(x - HILL_X, y - HILL_Y)
    return 20.37 + 0.02 * (x - X0) + 25.0 * np.exp(-(r / 80.0) ** 2)


@pytest.fixture
def dem(engine, settings, tmp_path):
    cols, rows = np.meshgrid(np.arange(NX), np.arange(NY))
    z = _heights(X0 + (cols + 0.5) * CELL, Y0 - (rows + 0.5) * CELL).astype(np.float32)
    z[:10, :10] = -9999.0  # a corner without data
    path = tmp_path / "terrain.tif"
    with rasterio.open(path, "w", driver="GTiff", width=NX, height=NY, count=1,
                       dtype="float32", crs="EPSG:4547", nodata=-9999.0,
                       transform=from_origin(X0, Y0, CELL, CELL)) as dst:
        dst.write(z, 1)
    import_dem(engine, path, settings.storage.root, name="terrain", source="t")
    return z


@pytest.fixture
def client(dem, settings):
    with TestClient(create_app(settings)) as client:
        yield client


def _tile_at(x: float, y: float, z: int) -> morecantile.Tile:
    lon, lat = TO_LONLAT.transform(x, y)
    return TMS.tile(lon, lat, z)


def _pixel_centres(tile: morecantile.Tile) -> tuple[np.ndarray, np.ndarray]:
    """City-grid coordinates of the 256 × 256 pixel centres of a tile."""
    b = TMS.xy_bounds(tile)
    step = (b.right - b.left) / 256
    mx = b.left + (np.arange(256) + 0.5) * step
    my = b.top - (np.arange(256) + 0.5) * step
    gx, gy = np.meshgrid(mx, my)
    lon, lat = Transformer.from_crs(3857, 4326, always_xy=True).transform(gx, gy)
    return TO_CITY.transform(lon, lat)


def _rgba(response) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGBA")).astype(np.int64)


def _decoded(pixels: np.ndarray) -> np.ndarray:
    """Heights (m) of Terrain-RGB pixels, as deck.gl's and MapLibre's decoders read them."""
    return (pixels[..., 0] * 6553.6 + pixels[..., 1] * 25.6 + pixels[..., 2] * 0.1) - 10000


def test_terrain_rgb_decodes_to_the_dem_heights(client, dem):
    tile = _tile_at(HILL_X, HILL_Y, 18)
    response = client.get(f"/terrain/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    pixels = _rgba(response)
    height = _decoded(pixels)
    x, y = _pixel_centres(tile)
    inside = (x > X0 + CELL) & (x < X0 + (NX - 1) * CELL) & (y < Y0 - CELL) & \
        (y > Y0 - (NY - 1) * CELL)
    assert inside.all() and (pixels[..., 3] == 255).all()
    # The DEM's own cells, bilinearly interpolated at each pixel's centre.
    grid = RegularGridInterpolator((Y0 - (np.arange(NY) + 0.5) * CELL,
                                    X0 + (np.arange(NX) + 0.5) * CELL), dem.astype(float))
    expected = grid(np.column_stack([y.ravel(), x.ravel()])).reshape(256, 256)
    error = np.abs(height - expected)
    assert error.max() < 0.05 + 0.1  # the encoding's 0.1 m steps plus resampling
    assert height.max() - height.min() > 5  # a real slice of the hill, not a flat tile


def test_tiles_off_the_dem_are_204_and_edges_have_no_cliff(client, dem):
    far = _tile_at(X0 + 50_000, Y0 + 50_000, 16)
    assert client.get(f"/terrain/WebMercatorQuad/16/{far.x}/{far.y}.png").status_code == 204
    assert client.get(f"/hillshade/WebMercatorQuad/16/{far.x}/{far.y}.png").status_code == 204
    corner = _tile_at(X0 + 2, Y0 - 2, 17)  # the DEM's corner without data, and beyond
    pixels = _rgba(client.get(f"/terrain/WebMercatorQuad/17/{corner.x}/{corner.y}.png"))
    # Opaque (a browser zeroes transparent pixels: −10,000 m), off the DEM at the lowest
    # height around rather than at some height far below the ground.
    assert (pixels[..., 3] == 255).all()
    height = _decoded(pixels)
    assert height.min() >= dem[dem > -9999].min() - 0.1
    shade = _rgba(client.get(f"/hillshade/WebMercatorQuad/17/{corner.x}/{corner.y}.png"))
    alpha = shade[..., 3]  # the hillshade overlay stays transparent off the DEM
    assert (alpha == 0).any() and (alpha == 255).any() and set(np.unique(alpha)) <= {0, 255}


@pytest.mark.parametrize(("path", "status"), [
    ("/terrain/WebMercatorQuad/2/4/0.png", 404),  # outside the matrix
    ("/terrain/WebMercatorQuad/2/0/9.png", 404),
    ("/terrain/CGCS2000Quad/2/0/0.png", 404),
    ("/hillshade/Nowhere/2/0/0.png", 404),
    ("/terrain/WebMercatorQuad/25/0/0.png", 400),
    ("/terrain/WebMercatorQuad/2/-1/0.png", 400),
])
def test_bad_tiles(client, path, status):
    response = client.get(path)
    assert response.status_code == status
    assert response.json()["code"] in ("NotFound", "InvalidParameterValue")


def test_etag_and_cache_control(client):
    tile = _tile_at(HILL_X, HILL_Y, 17)
    for kind in ("terrain", "hillshade"):
        url = f"/{kind}/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
        first = client.get(url)
        assert first.status_code == 200 and "max-age" in first.headers["cache-control"]
        again = client.get(url, headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304


def _shade_around(client, x: float, y: float) -> float:
    """The mean hillshade within 15 m of a point of the city grid (zoom 17)."""
    tile = _tile_at(x, y, 17)
    response = client.get(f"/hillshade/WebMercatorQuad/17/{tile.x}/{tile.y}.png")
    image = Image.open(io.BytesIO(response.content))
    assert image.mode == "LA"  # grey with alpha
    px, py = _pixel_centres(tile)
    near = np.hypot(px - x, py - y) < 15
    assert near.sum() > 50
    return float(np.asarray(image)[..., 0][near].mean())


def test_hillshade_lights_the_north_west_flank(client):
    lit = _shade_around(client, HILL_X - 60, HILL_Y + 60)
    shaded = _shade_around(client, HILL_X + 60, HILL_Y - 60)
    flat = round(255 * np.sin(np.radians(45)))
    # The flanks slope ~12° there: lit as ground tilted 12° towards or away from the sun.
    assert lit == pytest.approx(255 * np.sin(np.radians(57)), abs=8)
    assert shaded == pytest.approx(255 * np.sin(np.radians(33)), abs=8)
    assert shaded < flat < lit


def test_hillshade_of_flat_and_tilted_ground():
    flat = hillshade(np.full((5, 5), 12.0), 1.0)
    assert (flat == round(255 * np.sin(np.radians(45)))).all()
    rows, cols = np.mgrid[0:5, 0:5].astype(float)
    facing_north_west = hillshade((cols + rows) / np.sqrt(2), 1.0)  # 45° down to the NW
    assert (facing_north_west == 255).all()  # a 45° slope facing the sun


def test_tilejson(client):
    for kind in ("terrain", "hillshade"):
        body = client.get(f"/{kind}/WebMercatorQuad/tilejson.json").json()
        assert body["tilejson"] == "3.0.0"
        assert body["tiles"][0].endswith(f"/{kind}/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png")
        west, south, east, north = body["bounds"]
        lon, lat = TO_LONLAT.transform(HILL_X, HILL_Y)
        assert west < lon < east and south < lat < north
        assert body["maxzoom"] == 16  # ~2.3 m pixels at 30.5° N: the first finer than 4 m
    assert client.get("/terrain/WebMercatorQuad/tilejson.json").json()["encoding"] == "mapbox"


def test_sample_heights(engine, settings, dem):
    with engine.connect() as conn:
        dems = dems_within(conn, settings.storage.root)
    x = np.array([HILL_X + 2, X0 + 401.0, X0 + 2.0, X0 - 500.0])
    y = np.array([HILL_Y - 2, Y0 - 301.0, Y0 - 2.0, Y0])
    lon, lat = TO_LONLAT.transform(x, y)
    got = sample_heights(dems, lon, lat)
    assert got[:2] == pytest.approx(_heights(x[:2], y[:2]), abs=0.5)  # the nearest cell
    assert np.isnan(got[2:]).all()  # no data, and off the DEM


def test_the_dems_layer_classification_applies(dem, settings, monkeypatch):
    internal = LayerDefinition(
        id="dems", title="Terrain models", group="Terrain", classification="internal",
        source={"relation": "dems"}, properties=[], style={"kind": "line", "colour": "#888888"})
    monkeypatch.setattr("cim.app.load_catalog", lambda: Catalog([*load_catalog(), internal]))
    tile = _tile_at(HILL_X, HILL_Y, 17)
    url = f"/terrain/WebMercatorQuad/17/{tile.x}/{tile.y}.png"
    with TestClient(create_app(settings)) as client:
        assert client.get(url).status_code == 404
        assert client.get("/hillshade/WebMercatorQuad/tilejson.json").status_code == 404
        with client.app.state.engine.begin() as conn:
            key = create_key(conn, "surveyor", Role.viewer, Classification.internal)
        seen = client.get(url, headers={"X-API-Key": key})
        assert seen.status_code == 200 and seen.headers["cache-control"].startswith("private")


def test_low_zooms_hold_the_dem_in_a_few_pixels(client):
    for z in (0, 5, 10):
        tile = _tile_at(HILL_X, HILL_Y, z)
        for kind in ("terrain", "hillshade"):
            response = client.get(f"/{kind}/WebMercatorQuad/{z}/{tile.x}/{tile.y}.png")
            assert response.status_code in (200, 204), (kind, z)
    tile = _tile_at(HILL_X, HILL_Y, 10)
    pixels = _rgba(client.get(f"/terrain/WebMercatorQuad/10/{tile.x}/{tile.y}.png"))
    height = _decoded(pixels)
    # A 480 m DEM is a few 150 m pixels; the rest carries its lowest height.
    assert 0 < (height > height.min() + 0.05).sum() < 100
