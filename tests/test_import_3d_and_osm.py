"""CityJSON (LOD1/LOD2) and OSM (XML and PBF) through the whole pipeline into PostGIS."""

from __future__ import annotations

import osmium
import pytest
from sqlalchemy import text

from cim.ingest.pipeline import ImportOptions, import_file
from tests.conftest import FIXTURES


def test_cityjson_lod2_buildings_keep_their_3d_geometry(engine):
    report = import_file(engine, FIXTURES / "wuhan_4547.city.json",
                         ImportOptions(layer="buildings", source="cj"), city_crs=4547)
    assert report.inserted >= 1 and report.input_crs == "EPSG:4547"
    report = import_file(engine, FIXTURES / "two_buildings.city.json",
                         ImportOptions(layer="buildings", source="nl"), city_crs=4547)
    assert any("Road" in w for w in report.warnings)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT id, parent_id, cim_level, ST_NDims(geom_3d), ST_ZMax(geom_3d) - "
            "ST_ZMin(geom_3d) - height, ST_Within(geom, ST_Buffer(ST_Envelope(geom_3d), 1e-9)) "
            "FROM cim.buildings WHERE source = 'nl' ORDER BY id")).all()
    assert len(rows) == 3
    assert {r.cim_level for r in rows} == {3}
    assert all(r[3] == 3 and abs(r[4]) < 1e-6 and r[5] for r in rows)
    parts = [r for r in rows if r.parent_id is not None]
    assert len(parts) == 1 and parts[0].parent_id.startswith("nl:")
    assert parts[0].parent_id in {r.id for r in rows}


@pytest.fixture(scope="module")
def pbf(tmp_path_factory):
    path = tmp_path_factory.mktemp("osm") / "sample.osm.pbf"
    with osmium.SimpleWriter(str(path)) as writer:
        for obj in osmium.FileProcessor(str(FIXTURES / "wuhan_sample.osm")):
            writer.add(obj)
    return path


@pytest.mark.parametrize("source", ["xml", "pbf"])
def test_osm_layers(engine, pbf, source):
    path = FIXTURES / "wuhan_sample.osm" if source == "xml" else pbf
    counts = {}
    for layer in ("buildings", "roads", "water_bodies", "waterways"):
        report = import_file(engine, path, ImportOptions(layer=layer, source="osm"),
                             city_crs=4547)
        assert not report.rejected, report.rejected
        counts[layer] = report.inserted
    assert all(counts.values()), counts
    with engine.connect() as conn:
        ids = conn.execute(text("SELECT id FROM cim.buildings")).scalars().all()
        classes = conn.execute(text("SELECT DISTINCT road_class FROM cim.roads")).scalars().all()
        holes = conn.scalar(text("SELECT max(ST_NumInteriorRings(ST_GeometryN(geom, 1))) "
                                 "FROM cim.buildings"))
    assert all(i.startswith("osm:way/") or i.startswith("osm:relation/") for i in ids)
    assert "other" not in classes
    assert holes >= 1
