#!/usr/bin/env bash
# Install what the platform needs on this machine: PostgreSQL + PostGIS (Debian packages,
# when missing and we are root), GDAL's command-line tools (the tests and benchmarks read
# the APIs with them) and Node with the glTF validator the tests run (`--with-gdal` for both),
# a virtual environment with the Python dependencies, the web viewer's build (Node.js + npm;
# `--with-viewer`) and Chromium with Mesa's software WebGL and a CJK font for the browser tests
# (`--with-browser`).
# Usage: scripts/bootstrap.sh [--with-gdal] [--with-viewer] [--with-browser]
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[bootstrap] %s\033[0m\n' "$*" >&2; exit 1; }

with_gdal=0 with_viewer=0 with_browser=0
for arg in "$@"; do
  case "$arg" in
    --with-gdal) with_gdal=1 ;;
    --with-viewer) with_viewer=1 ;;
    --with-browser) with_browser=1 ;;
    *) die "unknown option $arg (usage: scripts/bootstrap.sh [--with-gdal] [--with-viewer] [--with-browser])" ;;
  esac
done

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
# The browser tests use Debian's Chromium (never a downloaded one) with llvmpipe from Mesa.
if [ "$with_browser" = 1 ] && [ ! -x /usr/bin/chromium ]; then
  apt_install chromium libegl1 libegl-mesa0 libgl1-mesa-dri
fi
# Without a CJK font the Chinese UI in the screenshots is drawn as empty boxes.
if [ "$with_browser" = 1 ] && ! ls /usr/share/fonts/opentype/noto/NotoSansCJK-* >/dev/null 2>&1; then
  apt_install fonts-noto-cjk
fi
# The tests validate every glb of the 3D Tiles with Khronos' glTF validator, an npm package.
if [ "$with_gdal" = 1 ]; then
  command -v npm >/dev/null || apt_install nodejs npm
  if [ ! -d tests/node/node_modules ] || [ tests/node/package-lock.json -nt tests/node/node_modules ]; then
    say "installing the test tools' npm packages (tests/node)"
    npm ci --prefix tests/node --no-audit --no-fund --silent
  fi
fi

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

# The viewer: npm packages from the lockfile, then Vite 8 (Node ^20.19 or >= 22.12) builds
# viewer/dist, again whenever a source or the lockfile is newer than the build.
node_ok() {
  command -v node >/dev/null && command -v npm >/dev/null && node -e '
    const [major, minor] = process.versions.node.split(".").map(Number);
    process.exit(major > 22 || (major === 22 && minor >= 12) || (major === 20 && minor >= 19) ? 0 : 1)'
}
if [ "$with_viewer" = 1 ]; then
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then apt_install nodejs npm; fi
  node_ok || die "the viewer's build (Vite 8) needs Node.js ^20.19 or >= 22.12 with npm" \
    "(found: $(node --version 2>&1)); install a newer Node.js"
  if [ ! -f viewer/node_modules/.package-lock.json ] \
      || [ viewer/package-lock.json -nt viewer/node_modules/.package-lock.json ]; then
    say "installing the viewer's npm packages (npm ci)"
    (cd viewer && npm ci --no-audit --no-fund --loglevel=error)
  fi
  if [ ! -f viewer/dist/index.html ] || [ -n "$(find viewer/src viewer/index.html \
      viewer/vite.config.js viewer/node_modules/.package-lock.json \
      -newer viewer/dist/index.html 2>/dev/null | head -n 1)" ]; then
    say "building the viewer (viewer/dist)"
    (cd viewer && npm run --silent build -- --logLevel warn)
  fi
fi
say "ready"
