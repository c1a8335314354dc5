"""Where the demo district lies: the real data it joins, its extent and its metric CRS."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyogrio
import shapely
from pyproj import Transformer
from shapely.geometry import Polygon

from cim.demo import DATA_DIR

CRS = "EPSG:4547"
"""CGCS2000 / 3-degree Gauss-Kruger CM 114E: everything the generator writes is in it."""

ROAD_NETWORK = "guanggu_road_network_mosstool.gpkg"  # real roads with ground elevations
BUILDING_SAMPLE = "guanggu_osm_tilezen_sample.gpkg"  # real buildings near Optics Valley Square

# The default district: 6.4 km x 4 km around the real road network, reaching further west
# (toward Optics Valley Square) than east. A scaled district keeps these proportions.
DISTRICT_WIDTH = 6400.0
DISTRICT_HEIGHT = 4000.0
WEST_SHARE = 0.72
DEFAULT_AREA_KM2 = DISTRICT_WIDTH * DISTRICT_HEIGHT / 1e6
# Generated buildings keep this far from the real building sample.
SAMPLE_MARGIN = 30.0


def rng_for(seed: int, stage: str) -> np.random.Generator:
    """An independent random stream per stage, so changing one stage leaves the others alone."""
    return np.random.default_rng([seed, zlib.crc32(stage.encode())])


def ids(prefix: str, n: int) -> np.ndarray:
    """``prefix`` + zero-padded running numbers: b000001, b000002, ..."""
    numbers = np.arange(1, n + 1).astype(str)
    if n:
        numbers = np.char.zfill(numbers, max(6, len(str(n))))
    return np.char.add(prefix, numbers).astype(object)


def as_multipolygons(polygons: np.ndarray) -> np.ndarray:
    """Each polygon as a one-part MultiPolygon, the type the polygon layers declare."""
    return shapely.multipolygons(polygons, indices=np.arange(len(polygons)))


@dataclass(frozen=True)
class RealRoads:
    """The real lane-level road network (mosstool), in :data:`CRS`."""

    geometry: np.ndarray  # 2D LineStrings
    highway: np.ndarray
    name: np.ndarray
    lanes: np.ndarray
    lane_width: np.ndarray
    vertices: np.ndarray  # (n, 3): x, y and the real ground elevation z
    vertex_road: np.ndarray  # the road each vertex belongs to

    @property
    def half_width(self) -> np.ndarray:
        """Half the carriageway of each directed road, m."""
        return self.lanes * self.lane_width / 2.0


@dataclass(frozen=True)
class RealData:
    roads: RealRoads
    road_zone: Polygon  # the real roads' convex hull: generated streets end on its roads
    sample_zone: Polygon  # the real building sample's box: no generated plots inside
    sample_roads: np.ndarray  # the sample's streets, on which generated streets end


def load_real_data(data_dir: Path = DATA_DIR / "wuhan") -> RealData:
    """The real data the district is joined to, from ``data/wuhan``, in :data:`CRS`."""
    to_metric = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
    roads = _read_network(data_dir / ROAD_NETWORK, to_metric)
    sample = data_dir / BUILDING_SAMPLE
    bounds = np.array(
        [pyogrio.read_info(sample, layer=layer)["total_bounds"] for layer in ("buildings", "roads")]
    )
    lonlat = (*bounds[:, :2].min(axis=0), *bounds[:, 2:].max(axis=0))
    sample_box = shapely.box(*to_metric.transform_bounds(*lonlat)).buffer(
        SAMPLE_MARGIN, join_style="mitre"
    )
    street_table = pyogrio.read_dataframe(
        sample, layer="roads", columns=["kind"], where="kind IN ('major_road', 'minor_road')"
    )
    sample_roads = shapely.transform(
        street_table.geometry.values, lambda xy: np.column_stack(to_metric.transform(*xy.T))
    )
    return RealData(
        roads=roads,
        road_zone=shapely.convex_hull(shapely.multilinestrings(roads.geometry)),
        sample_zone=sample_box,
        sample_roads=shapely.get_parts(np.asarray(sample_roads)),
    )


def _read_network(path: Path, to_metric: Transformer) -> RealRoads:
    table = pyogrio.read_dataframe(
        path, layer="roads", columns=["highway", "lanes", "lanewidth", "name"]
    )
    geoms = table.geometry.values
    xyz = shapely.get_coordinates(geoms, include_z=True)
    x, y = to_metric.transform(xyz[:, 0], xyz[:, 1])
    counts = shapely.get_num_coordinates(geoms)
    owner = np.repeat(np.arange(len(geoms)), counts)
    lines = shapely.linestrings(np.column_stack([x, y]), indices=owner)
    return RealRoads(
        geometry=lines,
        highway=table["highway"].to_numpy(str),
        name=table["name"].fillna("").to_numpy(str),
        lanes=table["lanes"].to_numpy(float),
        lane_width=table["lanewidth"].to_numpy(float),
        vertices=np.column_stack([x, y, xyz[:, 2]]),
        vertex_road=owner,
    )


@dataclass(frozen=True)
class Extent:
    """The generated district's rectangle in :data:`CRS`, and the point it grows around."""

    x0: float
    y0: float
    x1: float
    y1: float
    anchor: tuple[float, float]

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area_km2(self) -> float:
        return self.width * self.height / 1e6

    @property
    def box(self) -> Polygon:
        return shapely.box(self.x0, self.y0, self.x1, self.y1)

    def ring_distance(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """0 at the anchor, 1 on the edge: a scaled district grows outward in these rings."""
        ax, ay = self.anchor
        dx = np.where(x < ax, (ax - x) / (ax - self.x0), (x - ax) / (self.x1 - ax))
        dy = np.where(y < ay, (ay - y) / (ay - self.y0), (y - ay) / (self.y1 - ay))
        return np.maximum(dx, dy)


def district_extent(real: RealData, scale: float) -> Extent:
    """The default district (``scale`` 1) or one ``scale`` times as wide and as high."""
    x0, y0, x1, y1 = shapely.bounds(shapely.multilinestrings(real.roads.geometry))
    ax, ay = round((x0 + x1) / 2), round((y0 + y1) / 2)
    width, height = DISTRICT_WIDTH * scale, DISTRICT_HEIGHT * scale
    return Extent(
        x0=float(round(ax - WEST_SHARE * width)),
        y0=float(round(ay - height / 2)),
        x1=float(round(ax + (1 - WEST_SHARE) * width)),
        y1=float(round(ay + height / 2)),
        anchor=(float(ax), float(ay)),
    )
