"""Backups of the whole city: the ``cim`` schema (pg_dump) and the storage root, in one tar.

A backup holds ``manifest.json`` (when, which schema revision, which city), ``cim.dump``
(``pg_dump -Fc -n cim``: every table, view, trigger and sequence of the city model) and
``files/`` (DEMs, scenario rasters: what the database points at). A restore replays the
dump as one psql transaction that first drops the current ``cim`` schema, so a restore that
fails anywhere leaves the city exactly as it was; the storage root is swapped in only after
the database part committed. Tile caches learn of it through a new change-feed epoch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from sqlalchemy import make_url

from cim.db.cluster import find_pg_bin
from cim.db.engine import database_url, make_engine
from cim.schema.migrate import current_revision, head_revision, upgrade
from cim.schema.models import SCHEMA
from cim.settings import Settings

MANIFEST = "manifest.json"
DUMP = "cim.dump"
FILES = "files"
FORMAT = 1


class BackupError(Exception):
    """A backup or restore that cannot be done; nothing was changed."""


@dataclass(frozen=True)
class Manifest:
    format: int
    created_at: str
    revision: str | None
    city: str

    @classmethod
    def read(cls, data: bytes) -> Manifest:
        try:
            return cls(**json.loads(data))
        except (ValueError, TypeError) as exc:
            raise BackupError(f"the backup's {MANIFEST} is unreadable: {exc}") from None


def _libpq(settings: Settings) -> tuple[str, dict[str, str]]:
    """A libpq URL without the password, and an environment carrying it (never in argv)."""
    url = make_url(database_url(settings.database))
    env = {**os.environ}
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run(program: str, args: list[str], settings: Settings, **kwargs) -> None:
    tool = find_pg_bin(settings.database.pg_bin) / program
    url, env = _libpq(settings)
    done = subprocess.run([str(tool), *args, "--dbname", url], env=env, capture_output=True,
                          text=True, check=False, **kwargs)
    if done.returncode != 0:
        raise BackupError(f"{program} failed: {done.stderr.strip()[-500:]}")


def backup(settings: Settings, out: Path) -> Manifest:
    """Write the city to ``out`` (a .tar); returns what it holds."""
    engine = make_engine(settings.database)
    try:
        revision = current_revision(engine)
    finally:
        engine.dispose()
    manifest = Manifest(FORMAT, datetime.now(UTC).isoformat(timespec="seconds"), revision,
                        settings.city.name)
    with tempfile.TemporaryDirectory() as work:
        dump = Path(work) / DUMP
        _run("pg_dump", ["--format=custom", f"--schema={SCHEMA}", "--file", str(dump)],
             settings)
        (Path(work) / MANIFEST).write_text(json.dumps(manifest.__dict__, indent=2))
        partial = out.with_name(out.name + ".partial")
        with tarfile.open(partial, "w") as archive:
            archive.add(Path(work) / MANIFEST, MANIFEST)
            archive.add(dump, DUMP)
            if settings.storage.root.is_dir():
                archive.add(settings.storage.root, FILES)
        partial.replace(out)  # a backup file exists only once it is whole
    return manifest


def _safe_members(archive: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """The members, refusing anything that would land outside the extraction folder."""
    members = archive.getmembers()
    for member in members:
        path = PurePosixPath(member.name)
        if path.is_absolute() or ".." in path.parts or not (member.isfile() or member.isdir()):
            raise BackupError(f"the backup holds an unsafe entry {member.name!r}")
    return members


def restore(settings: Settings, source: Path) -> Manifest:
    """Replace the stored city with the backup's; all or nothing."""
    if not source.is_file():
        raise BackupError(f"no backup file {source}")
    with tempfile.TemporaryDirectory() as work:
        try:
            with tarfile.open(source) as archive:
                archive.extractall(work, members=_safe_members(archive), filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise BackupError(f"{source} is not a readable backup: {exc}") from None
        folder = Path(work)
        if not (folder / MANIFEST).is_file() or not (folder / DUMP).is_file():
            raise BackupError(f"{source} is not a cim backup (no {MANIFEST} or {DUMP})")
        manifest = Manifest.read((folder / MANIFEST).read_bytes())
        if manifest.format != FORMAT:
            raise BackupError(f"backup format {manifest.format} is not {FORMAT}")
        _restore_database(settings, folder / DUMP, manifest)
        _swap_files(settings.storage.root, folder / FILES)
    engine = make_engine(settings.database)
    try:
        upgrade(engine)  # a backup from an older release comes up to this one's schema
    finally:
        engine.dispose()
    return manifest


def _restore_database(settings: Settings, dump: Path, manifest: Manifest) -> None:
    script = Path(dump.parent) / "restore.sql"
    tool = find_pg_bin(settings.database.pg_bin) / "pg_restore"
    converted = subprocess.run([str(tool), "--no-owner", "--file", str(script), str(dump)],
                               capture_output=True, text=True, check=False)
    if converted.returncode != 0:
        raise BackupError(f"pg_restore cannot read the dump: {converted.stderr.strip()[-500:]}")
    revision = manifest.revision or head_revision()
    with script.open("a") as sql:
        # A new epoch: every tile cache built from the replaced city drops itself.
        sql.write(f"\nUPDATE {SCHEMA}.change_feed SET epoch = gen_random_uuid();\n")
        sql.write("CREATE TABLE IF NOT EXISTS public.alembic_version "
                  "(version_num varchar(32) PRIMARY KEY);\n"
                  "DELETE FROM public.alembic_version;\n"
                  f"INSERT INTO public.alembic_version VALUES ('{revision}');\n")
    prologue = script.with_name("prologue.sql")
    prologue.write_text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;\n")
    _run("psql", ["--quiet", "--no-psqlrc", "--single-transaction", "--set", "ON_ERROR_STOP=1",
                  "--file", str(prologue), "--file", str(script)], settings)


def _swap_files(root: Path, restored: Path) -> None:
    """Put the backup's files in place of the storage root's (kept aside until done)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    aside = root.with_name(root.name + ".before-restore")
    shutil.rmtree(aside, ignore_errors=True)
    if root.exists():
        root.rename(aside)
    if restored.is_dir():
        shutil.move(str(restored), root)
    else:
        root.mkdir()
    shutil.rmtree(aside, ignore_errors=True)

