#!/usr/bin/env bash
# Installs whatever is missing, and nothing else: the Python virtual environment and
# packages, the viewer's npm packages and build, and (with --browser) Debian chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV="$ROOT/.venv"
PY=${PYTHON:-python3}

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment in .venv"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.twin-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  log "installing Python packages (pyproject.toml)"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e ".[test,ray]"  # ray: tests/test_whatif_ray.py
  touch "$stamp"
fi

if [ ! -d web/node_modules ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
  log "installing the viewer's npm packages"
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ ! -f web/dist/index.html ] || [ -n "$(find web/src web/index.html web/vite.config.js -newer web/dist/index.html 2>/dev/null | head -1)" ]; then
  log "building the viewer (web/dist)"
  (cd web && npm run --silent build >/dev/null)
fi

# the test suite's independent OPC-UA stack (node-opcua)
if [ ! -d tests/interop/node_modules ] || [ tests/interop/package-lock.json -nt tests/interop/node_modules/.package-lock.json ]; then
  log "installing node-opcua for the interoperability tests"
  (cd tests/interop && npm ci --no-audit --no-fund --loglevel=error)
fi

if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null 2>&1; then
  log "installing Debian chromium for the browser tests"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

# the MQTT tests start their own Debian mosquitto broker (tests/test_mqtt.py)
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  log "installing Debian mosquitto for the MQTT tests"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mosquitto >/dev/null
fi
