#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv: the collector, the CPU
# worker stack (torch pinned to the CPU wheel) and the test tools. Idempotent and quiet.
#   --services   also make sure the servers the test suite starts itself are installed
#                (PostgreSQL server binaries, Prometheus + promtool, Pushgateway,
#                Alertmanager + amtool; Debian packages, installed when missing), and
#                valgrind with a C compiler (measurement mode instructions and its tests),
#                and Chromium (headless, for the HTML report's browser test)
set -euo pipefail
cd "$(dirname "$0")/.."

# apt_install WHAT PKG...: install Debian packages as root (quietly; the log on failure),
# or say what to install and fail when that is not possible here.
apt_install() {
  local what=$1
  shift
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "$what missing: install the Debian packages $*" >&2
    exit 1
  fi
  echo "installing $what (Debian packages $*)" >&2
  local apt_log
  if ! apt_log=$({ apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"; } 2>&1)
  then
    echo "$apt_log" >&2
    exit 1
  fi
}

if [ "${1:-}" = "--services" ]; then
  have_pg() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; }
  if ! have_pg; then
    apt_install "the PostgreSQL server" postgresql
  fi

  have_prom() {
    command -v prometheus && command -v promtool &&
      { command -v prometheus-pushgateway || command -v pushgateway; } &&
      { command -v prometheus-alertmanager || command -v alertmanager; } && command -v amtool
  } >/dev/null
  if ! have_prom; then
    prom_pkgs=(prometheus prometheus-pushgateway prometheus-alertmanager)
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      # The tests start their own servers: keep the packages' postinst from starting the
      # system daemons (policy-rc.d exit 101 = "not allowed"), restoring any existing policy.
      policy=/usr/sbin/policy-rc.d
      if [ -e "$policy" ]; then mv "$policy" "$policy.collector-bootstrap"; fi
      restore_policy() {
        rm -f "$policy"
        if [ -e "$policy.collector-bootstrap" ]; then mv "$policy.collector-bootstrap" "$policy"; fi
      }
      trap restore_policy EXIT
      printf '#!/bin/sh\nexit 101\n' >"$policy"
      chmod 755 "$policy"
      apt_install "Prometheus, Pushgateway and Alertmanager" "${prom_pkgs[@]}"
      restore_policy
      trap - EXIT
    else
      echo "Prometheus/Pushgateway/Alertmanager binaries are missing: install the Debian" \
        "packages ${prom_pkgs[*]} (prometheus, promtool, prometheus-pushgateway," \
        "prometheus-alertmanager, amtool)" >&2
      exit 1
    fi
  fi

  # Measurement mode instructions: valgrind (its callgrind tool and headers) and a C compiler
  # for the client-request library (gcc links against libc6-dev's start files).
  have_valgrind() {
    command -v valgrind && [ -f /usr/include/valgrind/callgrind.h ] &&
      { command -v cc || command -v gcc; } && [ -f /usr/include/stdio.h ]
  } >/dev/null
  if ! have_valgrind; then
    apt_install "valgrind and a C compiler" valgrind gcc libc6-dev
  fi

  # The HTML report's test opens the report in a real browser: headless Chromium.
  if ! command -v chromium >/dev/null; then
    apt_install "Chromium (the HTML report's browser test)" chromium
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
