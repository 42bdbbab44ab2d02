#!/usr/bin/env bash
# Sets up what is missing, then runs the sample factory demo at http://127.0.0.1:8000
# (simulated PLC over OPC-UA, connector, Warp simulation, server, viewer). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/twin demo "$@"
