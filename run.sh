#!/usr/bin/env bash
# Set up (once) and run the connector in the foreground until Ctrl-C / SIGTERM.
# Configuration: environment variables, then ./.env. When the configured broker is this
# machine and nothing listens there, a private mosquitto is started on 127.0.0.1 for the
# connector's lifetime.
set -euo pipefail
source "$(dirname "$0")/scripts/setup.sh"
cd "$REPO"
ensure_venv "$REPO/source/requirements.txt"

setting() {  # setting NAME DEFAULT: as the connector reads it (environment, else .env; blank = default)
  NAME="$1" DEFAULT="$2" "$VENV/bin/python" -c '
import os
from dotenv import dotenv_values
name = os.environ["NAME"]
value = os.environ[name] if name in os.environ else dotenv_values(".env").get(name)
print((value or "").strip() or os.environ["DEFAULT"])'
}

listening() {  # listening HOST PORT: does anything accept TCP connections there?
  HOST="$1" PORT="$2" "$VENV/bin/python" -c '
import os, socket, sys
try:
    socket.create_connection((os.environ["HOST"], int(os.environ["PORT"])), timeout=1).close()
except (OSError, ValueError):
    sys.exit(1)' 2>/dev/null
}

host="$(setting MQTT_BROKER_HOST localhost)"
port="$(setting MQTT_BROKER_PORT 1883)"
broker_pid=""
connector_pid=""
stop() {
  [ -n "$connector_pid" ] && kill -TERM "$connector_pid" 2>/dev/null
  [ -z "$connector_pid" ] && [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null
  true
}
trap stop INT TERM
if [[ "$host" =~ ^(localhost|127\.0\.0\.1|::1)$ ]] && ! listening "$host" "$port"; then
  ensure_mosquitto
  mkdir -p .local-broker
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\n' \
    "$port" "$REPO/.local-broker" > .local-broker/mosquitto.conf
  "$(mosquitto_path)" -c .local-broker/mosquitto.conf 2> .local-broker/mosquitto.log &
  broker_pid=$!
  echo "started a local mosquitto on 127.0.0.1:$port (log: .local-broker/mosquitto.log)" >&2
fi

"$VENV/bin/python" -m connector &
connector_pid=$!
status=0
wait "$connector_pid" || status=$?
# A trapped signal interrupts wait (status > 128); waiting again collects the connector's
# own exit status (bash keeps it even when the connector has already exited).
if [ "$status" -gt 128 ]; then status=0; wait "$connector_pid" || status=$?; fi
if [ -n "$broker_pid" ]; then kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
exit "$status"
