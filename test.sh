#!/usr/bin/env bash
# Set up (once) and run the whole test suite: lint, types, then every test.
# The tests start their own mosquitto on a free port; extra arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/scripts/setup.sh"
cd "$REPO"
ensure_venv "$REPO/source/requirements-dev.txt"
ensure_mosquitto
ensure_haproxy
ensure_redis
ensure_chromium
"$VENV/bin/ruff" check
"$VENV/bin/ruff" format --check
"$VENV/bin/mypy"
exec "$VENV/bin/python" -m pytest "$@"
