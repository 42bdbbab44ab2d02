#!/usr/bin/env bash
# GPU check: the CUDA-parametrised tests, then each benchmark with a device option on cuda:0, each bounded by
# `timeout` (all in under 8 minutes). Each benchmark's last line (one JSON object) goes to
# $OUT/gpu-results.jsonl when OUT is set, else bench/gpu-results.jsonl; a summary table ends the run.
# Without a GPU it says so, skips the CUDA rows and exits 0.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
RESULTS=${OUT:-bench}/gpu-results.jsonl
mkdir -p "$(dirname "$RESULTS")"
: > "$RESULTS"
SUMMARY=()

CUDA=yes
if ! "$PYTHON" -c 'import sys, warp as wp; wp.config.quiet = True; sys.exit(0 if wp.is_cuda_available() else 1)' \
        >/dev/null 2>&1; then
    CUDA=
    echo "gpu-check: no CUDA device here; CUDA tests and GPU benchmarks skipped"
fi

DEADLINE=$(( $(date +%s) + 470 ))  # the whole run stays under 8 minutes: a check gets at most what is left
run() {  # run NAME SECONDS COMMAND...: bounded by timeout; a benchmark's last JSON line is kept
    local name=$1 limit=$(( $2 < DEADLINE - $(date +%s) ? $2 : DEADLINE - $(date +%s) )) started status log
    shift 2
    if [ -z "$CUDA" ] || [ "$limit" -lt 1 ]; then  # no device, or no time left: say so rather than time out
        SUMMARY+=("$(printf '%-14s %-8s %s' "$name" skipped -)")
        return
    fi
    log=$(mktemp)
    started=$(date +%s)
    timeout "$limit" "$@" 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    [ "$name" != tests-cuda ] && grep '^{' "$log" | tail -n 1 >> "$RESULTS"
    rm -f "$log"
    SUMMARY+=("$(printf '%-14s %-8s %s' "$name" "$([ "$status" = 0 ] && echo ok || echo "rc=$status")" \
        "$(( $(date +%s) - started ))")")
}

run tests-cuda 180 "$PYTHON" -m pytest tests -q -p no:cacheprovider -k cuda \
    --ignore=tests/test_e2e_browser.py --ignore=tests/test_replay_browser.py \
    --ignore=tests/test_viewer_reconnect.py --ignore=tests/test_whatif_browser.py
run check_motion 75 "$PYTHON" bench/check_motion.py --device cuda:0
run line_sim 75 "$PYTHON" bench/line_sim.py --device cuda:0
run kinematics 120 env TWIN_DEVICE=cuda:0 "$PYTHON" bench/kinematics.py
run physics 120 "$PYTHON" bench/physics.py --device cuda:0 --steps 240 --repeats 1 --max-seconds 4

echo
printf '%-14s %-8s %s\n' check status seconds
printf '%s\n' "${SUMMARY[@]}"
echo "results: $RESULTS"
