"""Fuzzing the import files with hypothesis: generated GeoJSON, CSV observations,
GeoPackage, CityJSON and zip inputs (broken geometry, odd CRSs, huge coordinates, NaN, wrong
types, truncated files, zip bombs, path-traversal names) go through the real pipeline. Each is
imported, or refused with an ingest error that says why (a report for rejected features),
within a time limit (never a hang), and a refused import leaves every table as it was."""

from __future__ import annotations

import io
import json
import math
import signal
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import geopandas as gpd
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from shapely.geometry import Point, box

from cim.ingest.errors import ImportRejected, IngestError
from cim.ingest.observations import import_observations
from cim.ingest.pipeline import ImportOptions, import_file
from cim.ingest.report import ImportReport
from tests.conftest import snapshot
from tests.test_import_formats import X0, Y0, buildings_4547, write, zipped_shapefile

FUZZ = settings(max_examples=40, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
TIME_LIMIT_S = 20
"""Longer than any honest import of these few features takes, even on a loaded machine."""
LON, LAT = 114.40, 30.50


def mostly(good: st.SearchStrategy, bad: st.SearchStrategy) -> st.SearchStrategy:
    """``good`` three times in four: broken pieces inside otherwise readable files reach
    further into the pipeline than files broken everywhere at once."""
    return st.integers(0, 3).flatmap(lambda i: bad if i == 0 else good)


class Hang(Exception):
    """An import that outlived its time limit."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise Hang(f"the import ran past {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def city(engine, tmp_path_factory):
    """Buildings and one sensor already stored, so 'unchanged' is a real claim."""
    folder = tmp_path_factory.mktemp("seed")
    import_file(engine, write(buildings_4547(), folder / "seed.gpkg", "GPKG"),
                ImportOptions(layer="buildings", id_field="bid", source="t"), city_crs=4547)
    sensor = gpd.GeoDataFrame({"sid": ["S1"], "kind": ["water_level"]},
                              geometry=[Point(X0, Y0)], crs="EPSG:4547")
    import_file(engine, write(sensor, folder / "sensor.gpkg", "GPKG"),
                ImportOptions(layer="sensors", id_field="sid", source="t"), city_crs=4547)
    return engine


def outcome(engine, run: Callable[[], ImportReport]) -> None:
    """The import either completes, or raises an ingest error and changes nothing."""
    before = snapshot(engine)
    try:
        with time_limit(TIME_LIMIT_S):
            report = run()
    except ImportRejected as exc:
        event("rejected features")
        assert exc.report.rejected and all(r.reason for r in exc.report.rejected)
        assert snapshot(engine) == before
    except IngestError as exc:
        event(type(exc).__name__)
        assert str(exc)
        assert snapshot(engine) == before
    else:
        event("imported")
        assert report.status == "completed"


def imported(engine, path: Path, layer: str = "buildings", **options) -> None:
    outcome(engine, lambda: import_file(engine, path, ImportOptions(
        layer=layer, source="f", **options), city_crs=4547))


# Numbers as files carry them: NaN and infinities (JSON's non-standard literals), huge, tiny.
NUMBER = st.one_of(st.floats(-200, 200), st.floats(allow_nan=True, allow_infinity=True),
                   st.integers(-10**20, 10**20), st.sampled_from([1e308, -1e308, 5e-324]))
WRONG = st.one_of(st.none(), st.booleans(), st.text(max_size=6), st.just([]), st.just({}))
POSITION = st.one_of(
    st.tuples(st.floats(LON, LON + 0.01), st.floats(LAT, LAT + 0.01)).map(list),
    st.lists(st.one_of(NUMBER, WRONG), min_size=0, max_size=4))
RING = st.one_of(
    st.builds(lambda x, y, s: [[x, y], [x + s, y], [x + s, y + s], [x, y + s], [x, y]],
              st.floats(LON, LON + 0.01), st.floats(LAT, LAT + 0.01),
              st.sampled_from([1e-4, 0.0, -1e-4, 1e9])),
    st.builds(lambda x, y: [[x, y], [x + 1e-4, y + 1e-4], [x + 1e-4, y], [x, y + 1e-4],
                            [x, y]],  # a bow tie: self-intersecting
              st.floats(LON, LON + 0.01), st.floats(LAT, LAT + 0.01)),
    st.lists(POSITION, max_size=6))
GEOMETRY = st.one_of(
    st.none(), WRONG,
    st.fixed_dictionaries({"type": st.just("Polygon"), "coordinates": st.lists(RING, max_size=2)}),
    st.fixed_dictionaries({"type": st.sampled_from(["MultiPolygon", "Point", "LineString",
                                                    "GeometryCollection", "Bogus"]),
                           "coordinates": st.one_of(POSITION, st.lists(RING, max_size=2),
                                                    st.lists(st.lists(RING, max_size=2),
                                                             max_size=2))}))
PROPERTIES = st.dictionaries(
    st.sampled_from(["id", "height", "floors", "use", "min_height", "name", "bogus", ""]),
    st.one_of(NUMBER, WRONG, st.text(max_size=12)), max_size=5)
CRS_NAMES = st.sampled_from([
    "urn:ogc:def:crs:OGC:1.3:CRS84", "urn:ogc:def:crs:EPSG::4326", "EPSG:4547", "EPSG:3857",
    "urn:ogc:def:crs:EPSG::4978", "urn:ogc:def:crs:EPSG::99999", "EPSG:5773", "nonsense", ""])


def feature_collection(features: list, crs: str | None) -> dict:
    doc: dict = {"type": "FeatureCollection", "features": features}
    if crs is not None:
        doc["crs"] = {"type": "name", "properties": {"name": crs}}
    return doc


SQUARE = st.builds(lambda x, y: {"type": "Polygon", "coordinates": [
    [[x, y], [x + 1e-4, y], [x + 1e-4, y + 1e-4], [x, y + 1e-4], [x, y]]]},
    st.floats(LON, LON + 0.01), st.floats(LAT, LAT + 0.01))
FEATURES = st.lists(mostly(
    st.fixed_dictionaries({"type": st.just("Feature"), "geometry": mostly(SQUARE, GEOMETRY),
                           "properties": mostly(PROPERTIES, WRONG)},
                          optional={"id": st.one_of(st.integers(), st.text(max_size=4))}),
    WRONG), min_size=0, max_size=6)


# Found by this test: ids and floors past 2**53 (or infinite) crashed the integer casts.
@example(features=[{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[
    [LON, LAT], [LON + 1e-4, LAT], [LON, LAT + 1e-4], [LON, LAT]]]}, "properties": {
    "id": 1e20, "floors": float("inf"), "height": 12.0}}], crs=None, cut=None,
    options={"id_field": "id"})
@FUZZ
@given(features=FEATURES, crs=mostly(st.none(), CRS_NAMES),
       cut=mostly(st.none(), st.floats(0, 1)),
       options=st.sampled_from([{}, {"skip_invalid": True}, {"id_field": "id"},
                                {"crs": "EPSG:4326"}]))
def test_geojson_files_import_or_are_refused(city, tmp_path, features, crs, cut, options):
    text = json.dumps(feature_collection(features, crs))  # NaN and Infinity written as such
    if cut is not None:
        text = text[:int(len(text) * cut)]  # a truncated download
    path = tmp_path / "f.geojson"
    path.write_text(text)
    imported(city, path, **options)


CELL = st.one_of(st.text(max_size=8), NUMBER.map(str),
                 st.sampled_from(["S1", "2026-07-01T08:00:00+08:00", "2026-13-45T99:00Z",
                                  "nan", "inf", "-0", "1e999", '"', "\x00", ""]))


# Found by this test: a NUL quoted in the rejection report made storing the report fail.
@example(header="sensor_id,observed_at,value", raw=None, skip=True,
         rows=[["\x00", "2026-07-01T08:00:00+08:00", "1"]])
@FUZZ
@given(header=st.one_of(st.just("sensor_id,observed_at,value,quality"),
                        st.just("sensor_id,observed_at,value"),
                        st.lists(st.sampled_from(["sensor_id", "observed_at", "value", "x",
                                                  ""]), max_size=5).map(",".join)),
       rows=st.lists(st.lists(CELL, min_size=0, max_size=5), max_size=6),
       raw=mostly(st.none(), st.binary(max_size=60)),
       skip=st.booleans())
def test_observation_csv_files_import_or_are_refused(city, tmp_path, header, rows, raw, skip):
    path = tmp_path / "obs.csv"
    if raw is not None:
        path.write_bytes(raw)
    else:
        lines = [",".join(json.dumps(c) if "," in c or "\n" in c else c for c in row)
                 for row in rows]
        path.write_text("\n".join([header, *lines]) + "\n")
    outcome(city, lambda: import_observations(city, path, source="t", skip_invalid=skip))


# CRSs a GeoPackage may declare: geographic, projected, the city's, geocentric, vertical-less.
GPKG_CRS = st.sampled_from(["EPSG:4326", "EPSG:4547", "EPSG:3857", "EPSG:4490", "EPSG:32650",
                            "EPSG:4978", "ESRI:54009", None])


@FUZZ
@given(crs=GPKG_CRS,
       coords=st.lists(st.tuples(NUMBER, NUMBER, st.floats(0, 1e7)), min_size=1, max_size=4),
       heights=st.lists(st.one_of(NUMBER, st.none()), min_size=4, max_size=4),
       damage=mostly(st.none(), st.tuples(st.floats(0, 1), st.binary(min_size=1,
                                                                     max_size=64))),
       truncate=mostly(st.none(), st.floats(0, 1)))
@pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::UserWarning")
def test_geopackages_import_or_are_refused(city, tmp_path, crs, coords, heights, damage,
                                           truncate):
    n = len(coords)
    shapes = []
    for x, y, side in coords:
        try:
            shapes.append(box(x, y, x + side, y + side))
        except (ValueError, OverflowError):
            shapes.append(None)
    gdf = gpd.GeoDataFrame({"bid": [f"G{i}" for i in range(n)], "height": heights[:n]},
                           geometry=shapes, crs=crs)
    path = tmp_path / "g.gpkg"
    gdf.to_file(path, driver="GPKG")
    data = bytearray(path.read_bytes())
    if damage is not None:  # bytes overwritten somewhere inside the SQLite file
        at = int(len(data) * damage[0])
        data[at:at + len(damage[1])] = damage[1]
    if truncate is not None:
        data = data[:int(len(data) * truncate)]
    path.write_bytes(bytes(data))
    imported(city, path, id_field="bid")


# A cube the parser can read, so mutations start near something valid.
CUBE_VERTICES = [[0, 0, 0], [1000, 0, 0], [1000, 1000, 0], [0, 1000, 0],
                 [0, 0, 5000], [1000, 0, 5000], [1000, 1000, 5000], [0, 1000, 5000]]
CUBE = {"type": "Building", "geometry": [{"type": "Solid", "lod": "1", "boundaries": [[
    [[0, 3, 2, 1]], [[4, 5, 6, 7]], [[0, 1, 5, 4]], [[1, 2, 6, 5]], [[2, 3, 7, 6]],
    [[3, 0, 4, 7]]]]}]}
VERTEX = st.lists(st.one_of(st.integers(-10**6, 10**6), NUMBER, WRONG), min_size=0, max_size=4)
INDEX = st.one_of(st.integers(-3, 12), WRONG)
SURFACE = st.lists(st.lists(INDEX, max_size=5), max_size=2)
CITY_GEOMETRY = st.fixed_dictionaries(
    {"type": st.sampled_from(["MultiSurface", "Solid", "MultiSolid", "CompositeSurface",
                              "GeometryInstance", "Bogus"]),
     "lod": st.one_of(st.sampled_from(["1", "2.2", 2, "x"]), WRONG),
     "boundaries": st.one_of(st.lists(SURFACE, max_size=3),
                             st.lists(st.lists(SURFACE, max_size=2), max_size=2), WRONG)},
    optional={"semantics": st.one_of(WRONG, st.fixed_dictionaries(
        {"surfaces": st.lists(st.dictionaries(st.just("type"), st.text(max_size=10)),
                              max_size=2),
         "values": st.one_of(WRONG, st.lists(st.one_of(st.integers(-1, 3), st.none(), WRONG),
                                             max_size=3))}))})
CITY_OBJECT = st.fixed_dictionaries(
    {"type": st.sampled_from(["Building", "BuildingPart", "Road", "Bogus"]),
     "geometry": mostly(st.just(CUBE["geometry"]),
                        st.one_of(st.lists(mostly(CITY_GEOMETRY, WRONG), max_size=2), WRONG))},
    optional={"attributes": mostly(PROPERTIES, WRONG),
              "parents": mostly(st.lists(st.text(max_size=3), max_size=1), WRONG),
              "children": mostly(st.lists(st.text(max_size=3), max_size=1), WRONG)})


# Found by this test: attributes, parents or metadata of the wrong JSON type crashed it.
@example(objects={"a": {**CUBE, "attributes": True}}, vertices=CUBE_VERTICES, transform=None,
         reference=None, version="2.0", cube=False, cut=None)
@example(objects={"a": {**CUBE, "parents": True}}, vertices=CUBE_VERTICES, transform=None,
         reference=True, version="2.0", cube=True, cut=None)
@FUZZ
@given(objects=st.dictionaries(st.text(min_size=1, max_size=5), mostly(
           CITY_OBJECT, WRONG), max_size=3),
       vertices=mostly(st.just(CUBE_VERTICES), st.one_of(st.lists(VERTEX, max_size=10), WRONG)),
       transform=mostly(st.just({"scale": [0.001, 0.001, 0.001], "translate": [X0, Y0, 20.0]}),
                        st.one_of(st.none(), WRONG, st.fixed_dictionaries(
                            {"scale": st.lists(NUMBER, max_size=4),
                             "translate": st.lists(NUMBER, max_size=4)}))),
       reference=mostly(st.none(), st.one_of(WRONG, st.sampled_from([
           "https://www.opengis.net/def/crs/EPSG/0/4547", "urn:ogc:def:crs:EPSG::7415",
           "https://www.opengis.net/def/crs/EPSG/0/99999", "EPSG:4326", "garbage"]))),
       version=mostly(st.sampled_from(["2.0", "1.1"]), st.one_of(st.just("9.9"), WRONG)),
       cube=st.booleans(), cut=mostly(st.none(), st.floats(0, 1)))
def test_cityjson_files_import_or_are_refused(city, tmp_path, objects, vertices, transform,
                                              reference, version, cube, cut):
    doc: dict = {"type": "CityJSON", "version": version, "vertices": vertices,
                 "CityObjects": {**objects, **({"cube": CUBE} if cube else {})}}
    if transform is not None:
        doc["transform"] = transform
    if reference is not None:
        doc["metadata"] = reference if isinstance(reference, list | bool) else {
            "referenceSystem": reference}
    text = json.dumps(doc)
    if cut is not None:
        text = text[:int(len(text) * cut)]
    path = tmp_path / "c.city.json"
    path.write_text(text)
    imported(city, path, crs=None if reference else "EPSG:4547")


NAMES = st.sampled_from([
    "b.shp", "../b.shp", "../../etc/b.shp", "/abs/b.shp", "C:\\b.shp", "a/../../b.shp",
    "dir/b.shp", "b.dbf", "b.shx", "b.prj", "inner.zip", "\u00e9t\u00e9.shp", "b.SHP"])


def honest_shapefile(folder: Path) -> dict[str, bytes]:
    archive = zipped_shapefile(buildings_4547(), folder)
    with zipfile.ZipFile(archive) as z:
        return {name: z.read(name) for name in z.namelist()}


@FUZZ
@given(members=st.lists(st.tuples(NAMES, st.one_of(
           st.binary(max_size=200), st.sampled_from(["shp", "dbf", "shx", "prj"]),
           st.integers(2, 60).map(lambda mb: mb * 1_000_000))), max_size=4),
       honest=st.booleans(), stored=st.booleans(),
       truncate=mostly(st.none(), st.floats(0, 1)))
@pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::UserWarning")
def test_zip_archives_import_or_are_refused(city, tmp_path_factory, members, honest, stored,
                                           truncate):
    folder = tmp_path_factory.mktemp("zip")
    parts = honest_shapefile(folder) if honest else {}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
                         ) as z:
        for name, data in parts.items():
            z.writestr(name, data)
        for name, content in members:
            if isinstance(content, int):  # zeros: a zip bomb once deflated
                event("zeros")
                content = bytes(content if not stored else min(content, 2_000_000))
            elif isinstance(content, str):  # a real part of the Shapefile under a new name
                content = parts.get(f"buildings.{content}", b"")
            z.writestr(name, content)
    data = buffer.getvalue()
    if truncate is not None:
        data = data[:math.floor(len(data) * truncate)]
    path = folder / "f.zip"
    path.write_bytes(data)
    imported(city, path, id_field="bid", maps=["floors=building_l"])
