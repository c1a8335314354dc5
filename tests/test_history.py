"""History: nothing is overwritten, and the city can be read as it was at any time."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from shapely.geometry import box
from sqlalchemy import select, text

from cim.history import (
    HistoryError,
    ObjectExists,
    ObjectNotFound,
    StaleVersion,
    as_of,
    create_object,
    delete_object,
    read_object,
    update_object,
    versions,
)
from cim.ingest.pipeline import ImportOptions, import_file
from cim.schema.models import Building
from tests.test_import_formats import buildings_4547, write


@pytest.fixture
def city(engine, tmp_path):
    import_file(engine, write(buildings_4547(), tmp_path / "seed.gpkg", "GPKG"),
                ImportOptions(layer="buildings", id_field="bid", source="t"), city_crs=4547)
    return engine


def moment() -> datetime:
    """A time strictly between two transactions."""
    time.sleep(0.01)
    now = datetime.now(UTC)
    time.sleep(0.01)
    return now


def test_update_closes_the_old_version_and_as_of_reads_it(city):
    before = moment()
    with city.begin() as conn:
        update_object(conn, "buildings", "t:B0", {"height": 99.0, "status": "demolished"})
    after = moment()
    with city.connect() as conn:
        history = versions(conn, "buildings", "t:B0")
        assert [v["height"] for v in history] == [10.0, 99.0]
        assert history[0]["valid_to"] == history[1]["valid_from"]
        assert history[1]["valid_to"] is None
        assert read_object(conn, "buildings", "t:B0", before)["height"] == 10.0
        assert read_object(conn, "buildings", "t:B0", after)["height"] == 99.0
        assert read_object(conn, "buildings", "t:B0")["status"] == "demolished"


def test_geometry_edit(city):
    with city.begin() as conn:
        update_object(conn, "buildings", "t:B1", {"geom": box(114.4, 30.5, 114.401, 30.501)})
        area = conn.scalar(text("SELECT ST_Area(geom) FROM cim.buildings "
                                "WHERE id = 't:B1' AND valid_to IS NULL"))
    assert area == pytest.approx(1e-6)


def test_delete_terminates_and_as_of_still_sees_it(city):
    before = moment()
    with city.begin() as conn:
        delete_object(conn, "buildings", "t:B2")
    with city.connect() as conn:
        assert read_object(conn, "buildings", "t:B2") is None
        assert read_object(conn, "buildings", "t:B2", before)["height"] == 12.0
        now_ids = conn.execute(as_of(select(Building.id), Building, None)).scalars().all()
        then_ids = conn.execute(as_of(select(Building.id), Building, before)).scalars().all()
    assert "t:B2" not in now_ids and "t:B2" in then_ids
    assert len(then_ids) == 5 and len(now_ids) == 4
    with city.begin() as conn, pytest.raises(ObjectNotFound):
        delete_object(conn, "buildings", "t:B2")


def test_reimport_writes_new_versions_not_duplicates(city, tmp_path):
    gdf = buildings_4547()
    gdf.loc[0, "HEIGHT"] = 50.0
    gdf = gdf.drop(index=4)
    report = import_file(city, write(gdf, tmp_path / "v2.gpkg", "GPKG"),
                         ImportOptions(layer="buildings", id_field="bid", source="t",
                                       replace=True), city_crs=4547)
    assert (report.inserted, report.updated, report.unchanged, report.deleted) == (0, 1, 3, 1)
    with city.connect() as conn:
        counts = conn.execute(text(
            "SELECT count(*), count(*) FILTER (WHERE valid_to IS NULL), count(DISTINCT id) "
            "FROM cim.buildings")).one()
        imports = conn.execute(text("SELECT count(*), max(report->>'updated') "
                                    "FROM cim.imports")).one()
    assert tuple(counts) == (6, 4, 5)
    assert tuple(imports) == (2, "1")


def test_without_replace_missing_objects_stay(city, tmp_path):
    gdf = buildings_4547().drop(index=[3, 4])
    report = import_file(city, write(gdf, tmp_path / "part.gpkg", "GPKG"),
                         ImportOptions(layer="buildings", id_field="bid", source="t"),
                         city_crs=4547)
    assert report.deleted == 0 and report.unchanged == 3


def test_invalid_edits_change_nothing(city):
    from tests.conftest import snapshot

    before = snapshot(city)
    for layer, oid, changes, error in [
        ("buildings", "t:B0", {"colour": "red"}, HistoryError),
        ("buildings", "t:B0", {"id": "x"}, HistoryError),
        ("buildings", "t:nope", {"height": 1.0}, ObjectNotFound),
        ("castles", "t:B0", {"height": 1.0}, HistoryError),
    ]:
        with city.begin() as conn, pytest.raises(error):
            update_object(conn, layer, oid, changes)
    assert snapshot(city) == before


def test_a_failed_transaction_keeps_the_old_version(city):
    with pytest.raises(RuntimeError), city.begin() as conn:
        update_object(conn, "buildings", "t:B3", {"height": 1.0})
        raise RuntimeError("editor crashed")
    with city.connect() as conn:
        assert [v["height"] for v in versions(conn, "buildings", "t:B3")] == [13.0]


def test_one_current_version_is_enforced_by_the_database(city):
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), city.begin() as conn:
        conn.execute(text(
            "INSERT INTO cim.buildings (id, source, cim_level, height, geom) "
            "SELECT id, source, cim_level, height, geom FROM cim.buildings "
            "WHERE id = 't:B0'"))


def _waits_on_a_lock(conn) -> bool:
    """The server's own word that the ``behind`` session waits on a lock."""
    # A transaction reads the activity once unless told to look again.
    conn.execute(text("SELECT pg_stat_clear_snapshot()"))
    return bool(conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE "
                                 "application_name = 'behind' AND wait_event_type = 'Lock'")))


class _Behind:
    """A write run on its own connection in a thread, started while another transaction
    holds the rows it needs: it waits on that transaction, then ends one way or another."""

    def __init__(self, engine, holder, write) -> None:
        """``holder`` is the connection holding the rows; the activity is read on it."""
        self.outcome: object = None

        def run() -> None:
            with engine.begin() as conn:
                conn.execute(text("SET application_name = 'behind'"))
                try:
                    self.outcome = write(conn)
                except HistoryError as exc:
                    self.outcome = exc

        self.thread = threading.Thread(target=run)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not _waits_on_a_lock(holder):
            assert self.thread.is_alive(), "the second write did not wait for the first"
            assert time.monotonic() < deadline, "the second write never waited on a lock"
            time.sleep(0.02)

    def result(self) -> object:
        self.thread.join(timeout=30)
        return self.outcome


def test_two_creates_of_one_id_make_one_object_and_a_conflict(city):
    square = {"geom": box(114.40, 30.50, 114.4002, 30.5002), "height": 5.0}
    with city.connect() as first:
        with first.begin():
            create_object(first, "buildings", "t", "RACE", square)
            second = _Behind(city, first, lambda conn: create_object(conn, "buildings", "t", "RACE",
                                                              square))
        assert isinstance(second.result(), ObjectExists)
    with city.connect() as conn:
        assert len(versions(conn, "buildings", "t:RACE")) == 1


def test_an_edit_waiting_on_another_applies_to_its_result(city):
    with city.connect() as first:
        with first.begin():
            update_object(first, "buildings", "t:B0", {"height": 1.0})
            second = _Behind(city, first, lambda conn: update_object(conn, "buildings", "t:B0",
                                                              {"status": "demolished"}))
        assert isinstance(second.result(), int)
    with city.connect() as conn:
        history = versions(conn, "buildings", "t:B0")
    assert [(v["height"], v["status"]) for v in history][1:] == [
        (1.0, history[0]["status"]), (1.0, "demolished")]  # neither edit lost


def test_an_edit_expecting_a_version_another_replaced_is_refused(city):
    with city.connect() as conn:
        (vid,) = [v["vid"] for v in versions(conn, "buildings", "t:B1")]
    with city.connect() as first:
        with first.begin():
            update_object(first, "buildings", "t:B1", {"height": 1.0}, expected={vid})
            second = _Behind(city, first, lambda conn: update_object(
                conn, "buildings", "t:B1", {"height": 2.0}, expected={vid}))
        assert isinstance(second.result(), StaleVersion)
    with city.connect() as conn:
        assert [v["height"] for v in versions(conn, "buildings", "t:B1")] == [11.0, 1.0]
