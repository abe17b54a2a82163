#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv: the collector, the CPU
# worker stack (torch pinned to the CPU wheel) and the test tools. Idempotent and quiet.
set -euo pipefail
cd "$(dirname "$0")/.."

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
