# Shared by run.sh and test.sh (sourced, not run): a virtualenv with the pinned packages,
# and mosquitto (for the tests also haproxy, redis-server and chromium) from the OS
# packages where it is missing. Each step is skipped when its result is already there;
# each failure ends with one line saying what is missing.

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"

die() { echo "error: $*" >&2; exit 1; }

find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11; do
    [ -n "$candidate" ] || continue
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  die "Python 3.11 or newer is needed; install it or set PYTHON=/path/to/python3.11"
}

apt_install() {  # apt_install PACKAGE WHAT-FOR
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing $1 from the OS packages ($2)" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null \
      || die "apt-get install $1 failed; install $1 ($2) and run this again"
  else
    die "$1 is missing ($2); install it (e.g. 'sudo apt-get install $1' or 'brew install $1') and run this again"
  fi
}

ensure_venv() {  # ensure_venv REQUIREMENTS-FILE
  local python stamp wanted
  if [ ! -x "$VENV/bin/python" ]; then
    python="$(find_python)"
    "$python" -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv "Python virtual environments"
    "$python" -m venv "$VENV" || die "could not create the virtualenv $VENV"
  fi
  stamp="$VENV/.installed-$(basename "$1")"
  wanted="$(cat "$1" "$REPO/source/requirements.txt" "$REPO/source/setup.py" | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "installing Python packages into $VENV" >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$1" -e "$REPO/source" \
      || die "pip could not install the packages of $1 (is the package index reachable?)"
    echo "$wanted" > "$stamp"
  fi
}

mosquitto_path() {
  command -v mosquitto 2>/dev/null || { for p in /usr/sbin/mosquitto /usr/local/sbin/mosquitto /opt/homebrew/sbin/mosquitto; do
    [ -x "$p" ] && echo "$p" && return 0; done; return 1; }
}

ensure_mosquitto() {
  mosquitto_path >/dev/null || apt_install mosquitto "the MQTT broker"
  mosquitto_path >/dev/null || die "mosquitto is still not found after installing it"
}

# The tests of several instances run a real load balancer and a real shared state store.
haproxy_path() {
  command -v haproxy 2>/dev/null || { for p in /usr/sbin/haproxy /usr/local/sbin/haproxy /opt/homebrew/sbin/haproxy; do
    [ -x "$p" ] && echo "$p" && return 0; done; return 1; }
}

ensure_haproxy() {
  haproxy_path >/dev/null || apt_install haproxy "the load balancer in front of several connector instances"
  haproxy_path >/dev/null || die "haproxy is still not found after installing it"
}

redis_path() {
  command -v redis-server 2>/dev/null || { for p in /usr/bin/redis-server /usr/local/bin/redis-server /opt/homebrew/bin/redis-server; do
    [ -x "$p" ] && echo "$p" && return 0; done; return 1; }
}

ensure_redis() {
  redis_path >/dev/null || apt_install redis-server "the state store shared by several connector instances"
  redis_path >/dev/null || die "redis-server is still not found after installing it"
}

chromium_path() {
  command -v chromium 2>/dev/null || command -v chromium-browser 2>/dev/null
}

ensure_chromium() {  # the status page is tested in a real headless browser
  chromium_path >/dev/null || apt_install chromium "the headless browser that tests the status page"
  chromium_path >/dev/null || die "chromium is still not found after installing it"
}
