"""The embedded PostgreSQL + PostGIS cluster: created, started and stopped by the CLI.

It uses the system's PostgreSQL server binaries (Debian keeps them under
``/usr/lib/postgresql/<ver>/bin``) and listens on loopback only, with trust auth.
PostgreSQL refuses to run as root, so when we are root the server programs run as the
``postgres`` OS user, which then owns the data directory.
"""

from __future__ import annotations

import fcntl
import logging
import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cim.db.errors import ClusterError, PostgisMissingError

log = logging.getLogger(__name__)

SERVER_USER = "postgres"
CONF_FILE = "cim.conf"
# Tuned for this workload (bulk loads, many small spatial queries) on a small machine.
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "jit": "off",
    "max_parallel_workers_per_gather": "0",
    "shared_buffers": "'256MB'",
    "work_mem": "'32MB'",
    "maintenance_work_mem": "'512MB'",
    "max_wal_size": "'4GB'",
    "checkpoint_timeout": "'15min'",
    "max_connections": "100",
    # What a streaming replica (Cluster.make_replica) needs; initdb's pg_hba.conf already
    # lets loopback connect for replication.
    "wal_level": "replica",
    "max_wal_senders": "10",
    "hot_standby": "on",
}


@dataclass(frozen=True)
class ClusterStatus:
    data_dir: Path
    initialised: bool
    running: bool
    port: int | None
    version: str | None

    @property
    def url(self) -> str | None:
        if not self.running or self.port is None:
            return None
        return f"postgresql+psycopg://{SERVER_USER}@127.0.0.1:{self.port}"


def find_pg_bin(explicit: Path | None = None) -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``: the newest installed version wins."""
    if explicit is not None:
        if not (explicit / "initdb").is_file():
            raise ClusterError(f"no initdb in {explicit} (setting CIM_DATABASE_PG_BIN)")
        return explicit
    candidates = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").is_file()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1]
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise ClusterError(
        "PostgreSQL server binaries not found. On Debian/Ubuntu, as root: "
        "apt-get install postgresql-15 postgresql-15-postgis-3; "
        "or set CIM_DATABASE_URL to an existing PostGIS database."
    )


def postgis_control_file(pg_bin: Path) -> Path:
    sharedir = subprocess.run(
        [str(pg_bin / "pg_config"), "--sharedir"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if not sharedir:
        version = pg_bin.parent.name
        sharedir = f"/usr/share/postgresql/{version}"
    return Path(sharedir) / "extension" / "postgis.control"


def check_postgis_installed(pg_bin: Path) -> None:
    """Raise with the exact package to install when the PostGIS extension is missing."""
    if not postgis_control_file(pg_bin).is_file():
        version = pg_bin.parent.name
        raise PostgisMissingError(
            f"the PostGIS extension is not installed for PostgreSQL {version} "
            f"(no {postgis_control_file(pg_bin)}). On Debian/Ubuntu, as root: "
            f"apt-get install postgresql-{version}-postgis-3"
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As PostgreSQL binds: connections of a just-stopped server (TIME_WAIT) do not make
        # the port taken, so a restart keeps its port and running clients find it again.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class Cluster:
    """A private PostgreSQL cluster in ``data_dir``."""

    def __init__(self, data_dir: Path, pg_bin: Path | None = None, port: int = 0) -> None:
        self.data_dir = data_dir
        self.pg_bin = find_pg_bin(pg_bin)
        self.wanted_port = port
        self._as_postgres = os.geteuid() == 0

    # -- running server programs ---------------------------------------------------------
    def _run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.pg_bin / program), *args]
        kwargs: dict = {}
        if self._as_postgres:
            kwargs = {"user": SERVER_USER, "group": SERVER_USER, "extra_groups": []}
        log.debug("running %s", " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
        if check and proc.returncode != 0:
            raise ClusterError(f"{program} failed: {(proc.stderr or proc.stdout).strip()}")
        return proc

    def _own(self, path: Path) -> None:
        if self._as_postgres:
            entry = pwd.getpwnam(SERVER_USER)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    # -- state -----------------------------------------------------------------------------
    @property
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def configured_port(self) -> int | None:
        conf = self.data_dir / CONF_FILE
        if not conf.is_file():
            return None
        for line in conf.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "port":
                return int(value.strip())
        return None

    def status(self) -> ClusterStatus:
        running = False
        if self.initialised:
            probe = self._run("pg_ctl", "status", "-D", str(self.data_dir), check=False)
            running = probe.returncode == 0
        version = (self.data_dir / "PG_VERSION").read_text().strip() if self.initialised else None
        return ClusterStatus(self.data_dir, self.initialised, running, self.configured_port(),
                             version)

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def lock_file(self) -> Path:
        return self.data_dir.with_name(f".{self.data_dir.name}.lock")

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One lifecycle change at a time on this data directory, across processes: two
        ``cim db start`` at once would otherwise both run initdb, or both ``pg_ctl start``.
        The lock file sits beside the directory, which initdb needs empty."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with self.lock_file.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            yield

    def _prepare_empty_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if any(self.data_dir.iterdir()):
            raise ClusterError(f"{self.data_dir} exists and is not an empty cluster directory")
        self._own(self.data_dir)
        if self._as_postgres and not _reachable_by(self.data_dir, SERVER_USER):
            raise ClusterError(
                f"the '{SERVER_USER}' OS user cannot reach {self.data_dir}: PostgreSQL refuses "
                "to run as root, so choose a data directory (CIM_DATABASE_DATA_DIR) whose parent "
                "folders it may enter"
            )

    def init(self) -> None:
        """Create the data directory and the cluster (loopback, trust auth)."""
        with self._exclusive():
            self._init()

    def _init(self) -> None:
        check_postgis_installed(self.pg_bin)
        self._prepare_empty_dir()
        self._run(
            "initdb", "-D", str(self.data_dir), "-U", SERVER_USER, "-E", "UTF8",
            "--locale=C", "--auth-local=trust", "--auth-host=trust",
        )
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(f"\ninclude_if_exists = '{CONF_FILE}'\n")
        self._write_conf(self.wanted_port or free_port())
        log.info("initialised cluster in %s", self.data_dir)

    def _write_conf(self, port: int) -> None:
        settings = {**SERVER_SETTINGS, "port": str(port),
                    "unix_socket_directories": f"'{self.data_dir}'"}
        conf = self.data_dir / CONF_FILE
        conf.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        self._own(conf)

    def start(self) -> ClusterStatus:
        """Start the server (initialising it first if needed); a no-op when it runs."""
        with self._exclusive():
            return self._start()

    def _start(self) -> ClusterStatus:
        check_postgis_installed(self.pg_bin)
        if not self.initialised:
            self._init()
        status = self.status()
        if status.running:
            return status
        port = status.port
        if self.wanted_port and port != self.wanted_port:
            port = self.wanted_port
        if port is None or not _port_is_free(port):
            port = free_port()
        if port != status.port:
            self._write_conf(port)
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data_dir),
                  "-l", str(self.log_file))
        log.info("cluster started on 127.0.0.1:%d", port)
        return self.status()

    def make_replica(self, data_dir: Path, port: int = 0) -> Cluster:
        """A streaming replica of this running cluster in ``data_dir``, not yet started.

        ``pg_basebackup -R`` copies the cluster over loopback and writes the standby signal
        and ``primary_conninfo``; the copy then gets its own port and socket folder."""
        state = self.status()
        if not state.running or state.port is None:
            raise ClusterError(f"the cluster in {self.data_dir} must run to be replicated")
        replica = Cluster(data_dir, self.pg_bin, port)
        replica._prepare_empty_dir()
        data_dir.chmod(0o700)  # the server refuses a data directory others may read
        replica._run("pg_basebackup", "-D", str(data_dir), "-h", "127.0.0.1",
                     "-p", str(state.port), "-U", SERVER_USER, "-X", "stream", "-R",
                     "--checkpoint=fast")
        (data_dir / self.log_file.name).unlink(missing_ok=True)  # the primary's log, copied
        replica._write_conf(port or free_port())
        log.info("made a streaming replica of %s in %s", self.data_dir, data_dir)
        return replica

    @property
    def is_replica(self) -> bool:
        return (self.data_dir / "standby.signal").is_file()

    def stop(self) -> None:
        with self._exclusive():
            self._stop()

    def _stop(self) -> None:
        if self.status().running:
            self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir))
            log.info("cluster stopped")

    def destroy(self) -> None:
        """Stop the server and delete its data directory."""
        with self._exclusive():
            self._stop()
            if self.data_dir.exists():
                shutil.rmtree(self.data_dir)
                log.info("deleted %s", self.data_dir)
        self.lock_file.unlink(missing_ok=True)


def _reachable_by(path: Path, user: str) -> bool:
    """Whether ``user`` can traverse every parent of ``path`` (checked through others' bits)."""
    entry = pwd.getpwnam(user)
    for parent in path.resolve().parents:
        st = parent.stat()
        if st.st_uid == entry.pw_uid:
            continue
        if not st.st_mode & 0o001:
            return False
    return True
