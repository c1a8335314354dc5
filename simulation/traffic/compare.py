"""Two traffic scenarios side by side: per link, the volume, v/c, speed and delay of A beside B
and the change (B − A); the totals of each (vehicle-hours, vehicle-km, unserved trips); the
roads closed in one only.

Each scenario is taken as its own "after" state. A link of A is the same link of B when both
have the same road and the same directed geometry (a link's number and its junctions' numbers
are a run's own, and shift when the roads were edited between the runs); a link found in one
only (a road added, or edited since) is counted apart. A closed link carries no traffic: its
volume counts as 0 in the change, its speed and delay as unknown.

``GET /scenarios/{a}/compare/{b}`` (:mod:`simulation.api`, through ``COMPARER``, the traffic
kind's compare hook) answers the summary with the largest changes and links
``.../links.geojson``, every link's figures, made on request by PostgreSQL;
``cim traffic compare A B [--out links.geojson]`` prints and writes the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import Connection, text

from simulation import jobs
from simulation.errors import ScenarioConflict
from simulation.jobs import JobContext

LINKS_FILE = "links.geojson"
LARGEST = 20  # links listed in the summary, by the size of their volume change
_FIGURES = ("trips", "unserved_trips", "vehicle_hours", "vehicle_km")

# Every link of either scenario, matched by road and directed geometry; B − A changes.
_JOINED = """
    WITH a AS (SELECT * FROM cim.traffic_links WHERE scenario_id = :a),
         b AS (SELECT * FROM cim.traffic_links WHERE scenario_id = :b),
         j AS (
        SELECT coalesce(a.road_id, b.road_id) AS road_id,
               coalesce(a.road_class, b.road_class) AS road_class,
               a.link AS link_a, b.link AS link_b, a.status AS status_a, b.status AS status_b,
               a.volume_after AS volume_a, b.volume_after AS volume_b,
               a.voc_after AS voc_a, b.voc_after AS voc_b,
               a.speed_after_kmh AS speed_a_kmh, b.speed_after_kmh AS speed_b_kmh,
               a.delay_after_s AS delay_a_s, b.delay_after_s AS delay_b_s,
               coalesce(a.geom, b.geom) AS geom
        FROM a FULL JOIN b
          ON a.road_id = b.road_id AND ST_AsBinary(a.geom) = ST_AsBinary(b.geom))
    SELECT *, coalesce(volume_b, 0) - coalesce(volume_a, 0) AS volume_change,
           coalesce(voc_b, 0) - coalesce(voc_a, 0) AS voc_change,
           speed_b_kmh - speed_a_kmh AS speed_change_kmh,
           delay_b_s - delay_a_s AS delay_change_s
    FROM j"""
_LINK_COLUMNS = ("road_id", "road_class", "link_a", "link_b", "status_a", "status_b",
                 "volume_a", "volume_b", "volume_change", "voc_a", "voc_b", "voc_change",
                 "speed_a_kmh", "speed_b_kmh", "speed_change_kmh", "delay_a_s", "delay_b_s",
                 "delay_change_s")


class Totals(BaseModel):
    """A scenario's totals in the analysed hour (unserved trips are not in the others)."""

    trips: float
    unserved_trips: float
    vehicle_hours: float
    vehicle_km: float


class LinkChange(BaseModel):
    """One directed road link in A and in B (None where it is absent or closed)."""

    road_id: str
    road_class: str | None
    link_a: int | None
    link_b: int | None
    status_a: str | None
    status_b: str | None
    volume_a: float | None
    volume_b: float | None
    volume_change: float
    voc_a: float | None
    voc_b: float | None
    voc_change: float
    speed_a_kmh: float | None
    speed_b_kmh: float | None
    speed_change_kmh: float | None
    delay_a_s: float | None
    delay_b_s: float | None
    delay_change_s: float | None


class RoadClosed(BaseModel):
    """A road closed in one scenario only: its directed links closed there, and the volume
    they carry in the other, vehicles per hour (summed over the links)."""

    road_id: str
    road_class: str | None
    links: int
    volume_in_other: float


class TrafficComparison(BaseModel):
    kind: Literal["traffic"] = "traffic"
    a: int
    b: int
    totals_a: Totals
    totals_b: Totals
    totals_change: Totals
    links_compared: int
    links_in_a_only: int
    links_in_b_only: int
    closed_in_a_only: list[RoadClosed]
    closed_in_b_only: list[RoadClosed]
    largest_changes: list[LinkChange]
    links: list[dict[str, str]] = []


def _published(conn: Connection, scenario_id: int) -> jobs.ScenarioRecord:
    record = jobs.get(conn, scenario_id)
    if record.kind != "traffic" or record.status != "succeeded":
        raise ScenarioConflict(f"scenario {scenario_id} is a {record.status} {record.kind} "
                               "scenario: only succeeded traffic scenarios compare here")
    return record


def _totals(record: jobs.ScenarioRecord) -> Totals:
    after = record.outputs.get("after", {})
    return Totals(**{name: float(after.get(name, 0.0)) for name in _FIGURES})


def _closed(conn: Connection, a: int, b: int, closed: str, other: str) -> list[RoadClosed]:
    rows = conn.execute(text(f"""
        SELECT road_id, min(road_class), count(*), coalesce(sum(volume_{other}), 0)
        FROM ({_JOINED}) c
        WHERE status_{closed} = 'closed' AND status_{other} IS DISTINCT FROM 'closed'
        GROUP BY road_id ORDER BY 4 DESC, 1"""), {"a": a, "b": b}).all()
    return [RoadClosed(road_id=r[0], road_class=r[1], links=r[2], volume_in_other=r[3])
            for r in rows]


def compare(conn: Connection, ctx: JobContext, a: int, b: int) -> TrafficComparison:
    """Compare two succeeded traffic scenarios (B against A)."""
    record_a, record_b = _published(conn, a), _published(conn, b)
    params = {"a": a, "b": b}
    both, only_a, only_b = conn.execute(text(f"""
        SELECT count(*) FILTER (WHERE link_a IS NOT NULL AND link_b IS NOT NULL),
               count(*) FILTER (WHERE link_b IS NULL), count(*) FILTER (WHERE link_a IS NULL)
        FROM ({_JOINED}) c"""), params).one()
    largest = conn.execute(text(f"""
        SELECT {", ".join(_LINK_COLUMNS)} FROM ({_JOINED}) c
        WHERE volume_change <> 0
        ORDER BY abs(volume_change) DESC, link_a NULLS LAST, link_b LIMIT :n"""),
        {**params, "n": LARGEST}).all()
    totals_a, totals_b = _totals(record_a), _totals(record_b)
    change = Totals(**{name: getattr(totals_b, name) - getattr(totals_a, name)
                       for name in _FIGURES})
    return TrafficComparison(
        a=a, b=b, totals_a=totals_a, totals_b=totals_b, totals_change=change,
        links_compared=both, links_in_a_only=only_a, links_in_b_only=only_b,
        closed_in_a_only=_closed(conn, a, b, "a", "b"),
        closed_in_b_only=_closed(conn, a, b, "b", "a"),
        largest_changes=[LinkChange(**row._mapping) for row in largest])


def write_links(conn: Connection, ctx: JobContext, a: int, b: int, out: Path) -> None:
    """Every link of either scenario with its figures in A and B, as a GeoJSON
    FeatureCollection (longitude, latitude) at ``out``; PostgreSQL writes each feature."""
    _published(conn, a)
    _published(conn, b)
    properties = ", ".join(f"'{name}', {name}" for name in _LINK_COLUMNS)
    rows = conn.execution_options(stream_results=True, yield_per=5000).execute(text(f"""
        SELECT json_build_object('type', 'Feature', 'geometry', ST_AsGeoJSON(geom)::json,
                                 'properties', json_build_object({properties}))::text
        FROM ({_JOINED}) c ORDER BY link_a NULLS LAST, link_b"""), {"a": a, "b": b})
    with out.open("w", encoding="utf-8") as handle:
        handle.write(f'{{"type": "FeatureCollection", "a": {a}, "b": {b}, "features": [')
        for number, (feature,) in enumerate(rows):
            handle.write(("," if number else "") + "\n" + feature)
        handle.write("\n]}\n")


COMPARER = jobs.Comparer(run=compare, model=TrafficComparison,
                         files={LINKS_FILE: write_links})
