#!/usr/bin/env bash
# Sets up what is missing (chromium included), then runs the linter and the whole test
# suite: unit tests, real OPC-UA servers on loopback, and the browser end-to-end test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --browser
.venv/bin/ruff check .
(cd web && npm run --silent lint)
.venv/bin/mypy  # the packages in pyproject's [tool.mypy] files
exec .venv/bin/python -m pytest "$@"
