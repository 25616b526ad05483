#!/usr/bin/env bash
# Set up (once) and run the connector in the foreground until Ctrl-C / SIGTERM.
# Configuration: environment variables, then ./.env. When the configured broker is this
# machine and nothing listens there, a private mosquitto is started on 127.0.0.1 for the
# connector's lifetime.
set -euo pipefail
source "$(dirname "$0")/scripts/setup.sh"
cd "$REPO"
ensure_venv "$REPO/source/requirements.txt"

setting() {  # setting NAME DEFAULT: environment first, then .env, then the default
  NAME="$1" DEFAULT="$2" "$VENV/bin/python" -c '
import os
from dotenv import dotenv_values
name = os.environ["NAME"]
print(os.environ.get(name) or dotenv_values(".env").get(name) or os.environ["DEFAULT"])'
}

host="$(setting MQTT_BROKER_HOST localhost)"
port="$(setting MQTT_BROKER_PORT 1883)"
broker_pid=""
if [[ "$host" =~ ^(localhost|127\.0\.0\.1|::1)$ ]] && ! "$VENV/bin/python" -c "
import socket, sys
try:
    socket.create_connection(('$host', $port), timeout=1).close()
except OSError:
    sys.exit(1)" 2>/dev/null; then
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
trap 'kill -TERM "$connector_pid" 2>/dev/null || true' INT TERM
status=0
wait "$connector_pid" || status=$?
# A signal interrupts the first wait; the second collects the connector's own exit status.
if kill -0 "$connector_pid" 2>/dev/null; then wait "$connector_pid" || status=$?; fi
if [ -n "$broker_pid" ]; then kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
exit "$status"
