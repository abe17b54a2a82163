#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv: the collector, the CPU
# worker stack (torch pinned to the CPU wheel) and the test tools. Idempotent and quiet.
#   --services   also make sure the servers the test suite starts itself are installed
#                (PostgreSQL server binaries; Debian packages, installed when missing)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--services" ]; then
  have_pg() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; }
  if ! have_pg; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "installing the PostgreSQL server (Debian package postgresql)" >&2
      apt-get update -q >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >/dev/null
    else
      echo "PostgreSQL server binaries are missing: install the 'postgresql' package" >&2
      exit 1
    fi
  fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${pip[@]}" install \
  -c requirements/constraints.txt \
  -r requirements/worker-cpu.txt \
  -r requirements/dev.txt \
  -e . 2>&1 | { grep -v -e "^WARNING: Location .* is ignored" -e "^\s*$" || true; } >&2
