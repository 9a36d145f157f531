#!/usr/bin/env bash
# Install the services the integration tests start themselves: PostgreSQL + the PostGIS package
# matching its major version, Mosquitto, and Chromium for the browser tests. Uses apt-get when run as root; otherwise says what is missing.
set -euo pipefail

pg_major() {
  local d
  for d in /usr/lib/postgresql/*/bin/initdb; do
    [ -x "$d" ] && basename "$(dirname "$(dirname "$d")")"
  done | sort -n | tail -n 1
}

missing=()
major="$(pg_major || true)"
if [ -z "$major" ]; then
  missing+=(postgresql)
elif [ ! -f "/usr/share/postgresql/$major/extension/postgis.control" ]; then
  missing+=("postgresql-$major-postgis-3")
fi
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v mosquitto_pub >/dev/null || missing+=(mosquitto-clients)  # the demo test pastes the printed command
# the browser tests drive Debian's Chromium through Playwright (its bundled browsers are not downloaded)
command -v chromium >/dev/null || missing+=(chromium)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "make test needs: ${missing[*]} (install them with apt-get as root, e.g. sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing test services: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
major="$(pg_major)"
if [ ! -f "/usr/share/postgresql/$major/extension/postgis.control" ]; then
  apt-get install -y -qq "postgresql-$major-postgis-3" >/dev/null
fi
