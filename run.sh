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
trap stop INT TERM HUP  # HUP: the terminal closed; the detached broker would outlive it
if [[ "$host" =~ ^(localhost|127\.0\.0\.1|::1)$ ]] && ! listening "$host" "$port"; then
  ensure_mosquitto
  mkdir -p .local-broker
  # `user`: started as root, mosquitto would switch to the user `mosquitto`, which cannot
  # write its persistence file here; it runs as whoever runs this script instead.
  # set_tcp_nodelay: see deploy/mosquitto.conf (command latency).
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nuser %s\nset_tcp_nodelay true\n' \
    "$port" "$REPO/.local-broker" "$(id -un)" > .local-broker/mosquitto.conf
  # In a session of its own: Ctrl-C reaches the whole foreground process group, and a
  # broker stopped together with the connector would lose its last values and
  # `connected = false`. It is stopped below, once the connector has exited. (os.setsid,
  # then exec, so that $! is the broker; setsid(1) forks when it is a group leader.)
  "$VENV/bin/python" -c 'import os, sys; os.setsid(); os.execvp(sys.argv[1], sys.argv[1:])' \
    "$(mosquitto_path)" -c .local-broker/mosquitto.conf 2> .local-broker/mosquitto.log &
  broker_pid=$!
  echo "started a local mosquitto on 127.0.0.1:$port (log: .local-broker/mosquitto.log)" >&2
fi

"$VENV/bin/python" -m connector &
connector_pid=$!
# A trapped signal interrupts wait (each Ctrl-C does): wait again until the connector has
# really exited (its last values and `connected = false` are published by then), then
# collect its own exit status (bash keeps it), and only then stop the broker.
while kill -0 "$connector_pid" 2>/dev/null; do wait "$connector_pid" || true; done
status=0
wait "$connector_pid" || status=$?
if [ -n "$broker_pid" ]; then
  kill "$broker_pid" 2>/dev/null || true
  while kill -0 "$broker_pid" 2>/dev/null; do wait "$broker_pid" 2>/dev/null || true; done  # it saves its data
fi
exit "$status"
