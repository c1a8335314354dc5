"""The layer catalog: definitions validate, match the database, and grade visibility."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import Point
from sqlalchemy import text

from cim.ingest.observations import import_observations
from cim.ingest.pipeline import ImportOptions, import_file
from layers.catalog import Catalog, CatalogError, load_catalog, missing_in_database
from layers.model import Classification
from tests.test_import_formats import X0, Y0, write

THEMES = {"buildings", "water_bodies", "waterways", "drainage_pipes", "drainage_nodes",
          "roads", "bridges", "underpasses", "sensors", "admin_units"}


def test_catalog_covers_the_themes_and_matches_the_database(migrated_engine):
    catalog = load_catalog()
    assert {layer.id for layer in catalog} >= THEMES
    with migrated_engine.connect() as conn:
        assert missing_in_database(conn, catalog) == []


def test_visibility_is_graded():
    catalog = load_catalog()
    public = {layer.id for layer in catalog.visible_to(Classification.public)}
    internal = {layer.id for layer in catalog.visible_to(Classification.internal)}
    everything = {layer.id for layer in catalog.visible_to(Classification.restricted)}
    assert "drainage_pipes" not in public and "drainage_pipes" in internal
    assert "assets" not in internal and everything == {layer.id for layer in catalog}
    assert public < internal < everything


MINIMAL = """
id = "{id}"
title = "T"
group = "G"
[source]
relation = "{relation}"
[[properties]]
name = "name"
title = "Name"
[style]
kind = "fill"
colour = "{colour}"
"""


def catalog_of(tmp_path: Path, *docs: str) -> Catalog:
    for i, doc in enumerate(docs):
        (tmp_path / f"{i:02d}.toml").write_text(doc)
    return load_catalog(tmp_path)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (MINIMAL.format(id="a", relation="buildings", colour="red"), "colour"),
        (MINIMAL.format(id="a", relation="buildings; drop table x", colour="#ffffff"),
         "relation"),
        (MINIMAL.format(id="A b", relation="buildings", colour="#ffffff"), "id"),
        (MINIMAL.format(id="a", relation="buildings", colour="#ffffff") + "zoom = 3\n",
         "Extra inputs are not permitted"),
        (MINIMAL.format(id="a", relation="buildings", colour="#ffffff").replace(
            'kind = "fill"', 'kind = "fill"\nby = "height"\nramp = [{value = 1, colour = '
            '"#000000"}]'), "not an exposed property"),
        (MINIMAL.format(id="a", relation="buildings", colour="#ffffff").replace(
            'group = "G"', 'group = "G"\nmin_zoom = 15\nmax_zoom = 10'), "above max_zoom"),
        ("id = [", "00.toml"),
    ],
    ids=["colour", "injected-relation", "bad-id", "unknown-key", "style-property",
         "zoom-range", "broken-toml"],
)
def test_bad_definitions_are_refused(tmp_path, doc, message):
    with pytest.raises(CatalogError, match=message):
        catalog_of(tmp_path, doc)


def test_duplicate_ids_are_refused(tmp_path):
    doc = MINIMAL.format(id="a", relation="buildings", colour="#ffffff")
    with pytest.raises(CatalogError, match="defined twice: a"):
        catalog_of(tmp_path, doc, doc)


def test_definitions_that_miss_the_database_are_reported(migrated_engine, tmp_path):
    catalog = catalog_of(
        tmp_path,
        MINIMAL.format(id="a", relation="castles", colour="#ffffff"),
        MINIMAL.format(id="b", relation="roads", colour="#ffffff").replace(
            'name = "name"', 'name = "moat_depth"'),
    )
    with migrated_engine.connect() as conn:
        assert missing_in_database(conn, catalog) == [
            "a: no table or view cim.castles",
            "b: cim.roads has no column 'moat_depth'",
        ]


def test_sensors_carry_their_latest_reading(engine, tmp_path):
    sensors = gpd.GeoDataFrame({"id": ["g1", "g2"], "kind": ["rain_gauge", "rain_gauge"]},
                               geometry=[Point(X0, Y0), Point(X0 + 50, Y0)], crs=4547)
    import_file(engine, write(sensors, tmp_path / "s.gpkg", "GPKG"),
                ImportOptions(layer="sensors", source="net"), city_crs=4547)
    csv = tmp_path / "obs.csv"
    csv.write_text("sensor_id,observed_at,value\n"
                   "g1,2026-07-01T01:00:00+08:00,2.5\n"
                   "g1,2026-07-01T00:00:00+08:00,1.0\n")
    import_observations(engine, csv, source="net")
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT id, latest_value, latest_at IS NOT NULL FROM cim.sensors_latest ORDER BY id"
        )).all()
    assert [tuple(r) for r in rows] == [("net:g1", 2.5, True), ("net:g2", None, False)]
