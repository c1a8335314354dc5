"""``cim backup`` / ``cim restore``: a restored city is the backed-up city, to the byte."""

from __future__ import annotations

import tarfile

from sqlalchemy import text

from cim.history import delete_object, update_object
from tests.conftest import snapshot
from tests.test_cli import cim
from tests.test_import_formats import buildings_4547, write


def test_backup_then_restore_brings_back_the_city_and_its_files(engine, tmp_path):
    root = tmp_path / "files"
    (root / "dems").mkdir(parents=True)
    (root / "dems" / "terrain.tif").write_bytes(b"not really a COG")
    env = {"CIM_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "CIM_STORAGE_ROOT": str(root)}
    path = write(buildings_4547(), tmp_path / "b.gpkg", "GPKG")
    assert cim("import", str(path), "--layer", "buildings", "--id-field", "bid",
               "--source", "t", env=env).returncode == 0
    before = snapshot(engine)

    made = cim("backup", str(tmp_path / "city.tar"), env=env)
    assert made.returncode == 0, made.stderr
    with engine.begin() as conn:  # the city changes after the backup...
        update_object(conn, "buildings", "t:B0", {"height": 99.0})
        delete_object(conn, "buildings", "t:B1")
    (root / "dems" / "terrain.tif").write_bytes(b"changed")
    assert snapshot(engine) != before

    restored = cim("restore", str(tmp_path / "city.tar"), "--yes", env=env)
    assert restored.returncode == 0, restored.stderr
    after = snapshot(engine)
    assert after == before  # ...and comes back exactly as it was
    assert (root / "dems" / "terrain.tif").read_bytes() == b"not really a COG"
    with engine.connect() as conn:  # the schema is current and tile caches start over
        assert conn.scalar(text("SELECT count(*) FROM public.alembic_version")) == 1
        assert conn.scalar(text("SELECT count(*) FROM cim.change_feed")) == 1


def test_a_bad_backup_file_changes_nothing(engine, tmp_path):
    env = {"CIM_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "CIM_STORAGE_ROOT": str(tmp_path / "files")}
    path = write(buildings_4547(), tmp_path / "b.gpkg", "GPKG")
    cim("import", str(path), "--layer", "buildings", "--id-field", "bid", "--source", "t",
        env=env)
    before = snapshot(engine)
    (tmp_path / "junk.tar").write_bytes(b"junk")
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as archive:
        outside = tmp_path / "x.txt"
        outside.write_text("x")
        archive.add(outside, "../../x.txt")
    broken = tmp_path / "broken.tar"  # a real manifest, a dump that is not one
    cim("backup", str(broken), env=env)
    with tarfile.open(broken) as archive:
        manifest = archive.extractfile("manifest.json").read()
    (tmp_path / "m.json").write_bytes(manifest)
    (tmp_path / "d.dump").write_bytes(b"PGDMP garbage")
    with tarfile.open(broken, "w") as archive:
        archive.add(tmp_path / "m.json", "manifest.json")
        archive.add(tmp_path / "d.dump", "cim.dump")
    for bad, message in ((tmp_path / "missing.tar", "no backup file"),
                         (tmp_path / "junk.tar", "not a readable backup"),
                         (evil, "unsafe entry"), (broken, "pg_restore")):
        result = cim("restore", str(bad), "--yes", env=env)
        assert result.returncode == 5 and message in result.stderr, result.stderr
        assert snapshot(engine) == before


def test_backup_and_restore_have_help():
    for command in ("backup", "restore"):
        result = cim(command, "--help")
        assert result.returncode == 0 and "Usage" in result.stdout
