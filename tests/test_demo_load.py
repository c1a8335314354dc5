"""`cim demo load`: every class of city object filled, provenance right, re-running is a no-op."""

from __future__ import annotations

from sqlalchemy import text

from cim.demo.load import DEMO_SOURCE, load_demo
from cim.schema.models import CITY_CLASSES


def test_demo_load_fills_every_table_and_is_repeatable(engine, settings):
    reports = load_demo(engine, settings, buildings=1500)
    assert all(r.status == "completed" for r in reports)
    with engine.connect() as conn:
        counts = {
            table: conn.scalar(text(f'SELECT count(*) FROM cim."{table}"'))
            for table in [*CITY_CLASSES, "observations"]
        }
        provenance = dict(conn.execute(text(
            "SELECT provenance, count(*) FROM cim.buildings GROUP BY provenance")).all())
        synthetic_sources = conn.execute(text(
            "SELECT DISTINCT source FROM cim.buildings WHERE provenance = 'synthetic'"
        )).scalars().all()
        orphans = conn.scalar(text(
            "SELECT count(*) FROM cim.drainage_pipes p WHERE NOT EXISTS "
            "(SELECT 1 FROM cim.drainage_nodes n WHERE n.id = p.from_node)"))
        readings = conn.scalar(text(
            "SELECT count(*) FROM cim.observations o JOIN cim.sensors s ON s.id = o.sensor_id"))
    assert all(counts.values()), counts
    assert provenance["synthetic"] == 1500 and provenance["real"] > 1500
    assert synthetic_sources == [DEMO_SOURCE]
    assert orphans == 0 and readings == counts["observations"]

    again = load_demo(engine, settings, buildings=1500)
    assert [(r.inserted, r.updated) for r in again] == [(0, 0)] * len(again)
