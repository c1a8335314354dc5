#!/usr/bin/env bash
# Install what the platform needs on this machine: PostgreSQL + PostGIS (Debian packages,
# when missing and we are root), GDAL's command-line tools (the tests and benchmarks read
# the APIs with them; `--with-gdal`), and a virtual environment with the Python dependencies.
# Usage: scripts/bootstrap.sh [--with-gdal]
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[bootstrap] %s\033[0m\n' "$*" >&2; exit 1; }

with_gdal=0
[ "${1:-}" = "--with-gdal" ] && with_gdal=1

pg_version() { ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1; }

apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    die "missing system packages: $*. Install them (Debian/Ubuntu: sudo apt-get install $*), or set CIM_DATABASE_URL to an existing PostGIS."
  fi
  say "installing $* (apt-get)"
  if [ ! -f /tmp/.cim-apt-updated ]; then apt-get update -qq && touch /tmp/.cim-apt-updated; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if [ -z "${CIM_DATABASE_URL:-}" ]; then
  [ -n "$(pg_version)" ] || apt_install postgresql
  ver=$(pg_version)
  [ -f "/usr/share/postgresql/$ver/extension/postgis.control" ] || apt_install "postgresql-$ver-postgis-3"
  say "PostgreSQL $ver with PostGIS: ok"
fi
if [ "$with_gdal" = 1 ] && ! command -v ogr2ogr >/dev/null; then apt_install gdal-bin; fi

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "Python 3.11 or newer is needed ($python is $("$python" --version 2>&1))"
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$python" -m venv .venv
fi
stamp=.venv/.cim-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  say "installing Python dependencies into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]"
  touch "$stamp"
fi
say "ready"
