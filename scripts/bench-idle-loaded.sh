#!/usr/bin/env bash
# Runs a benchmark filter twice: once on an otherwise idle machine, once beside a busy loop
# pinned to one core (killed at the end, and bounded in time should this script be killed).
# Wake-up latency and scheduler rows differ most between the two: a sleeping worker may be
# woken on the busy core, or find its sibling core taken.
#
# Usage: scripts/bench-idle-loaded.sh [FILTER] [extra benchmark flags...]
#   BENCH=path/to/plexus_bench   (default build/release/bench/plexus_bench)
#   BUSY_CORE=n                  the core the busy loop is pinned to (default: the last one)
#   REPETITIONS=n                (default 5; medians are reported)
set -euo pipefail

filter="${1:-PacedLatency}"
shift || true
bench="${BENCH:-build/release/bench/plexus_bench}"
repetitions="${REPETITIONS:-5}"
busy_core="${BUSY_CORE:-$(($(nproc) - 1))}"

if [[ ! -x "$bench" ]]; then
  echo "no benchmark binary at $bench (build it: cmake --build --preset release --target plexus_bench)" >&2
  exit 1
fi

run() {
  "$bench" --benchmark_filter="$filter" --benchmark_repetitions="$repetitions" \
    --benchmark_report_aggregates_only=true "$@"
}

# Where the hypervisor put the vCPUs decides what a hand-off between two threads costs: on one
# physical core (or one L3) a cache line moves in a few nanoseconds, across the chip in tens.
# Every row that hands data from one thread to another moves with it, by up to 4x between runs
# of one binary, so each column is preceded and followed by the bare queue's hand-off time.
probe() {
  local ns
  ns=$("$bench" --benchmark_filter='BM_MoodycamelQueue_Handoff' --benchmark_min_time=0.2 \
    --benchmark_format=csv 2>/dev/null | awk -F, '/Handoff/ {print $3}')
  echo "--- placement probe ($1): BM_MoodycamelQueue_Handoff ${ns:-?} ns per item" \
    "(idle, under ~8: the vCPUs share caches; ~20 or more: they sit apart)"
}

echo "=== idle: $filter ==="
probe "before"
run "$@"
probe "after"

echo "=== loaded (one busy loop pinned to core $busy_core): $filter ==="
# The loop ends by itself after an hour at most, should the trap not run.
taskset -c "$busy_core" timeout 3600 bash -c 'while :; do :; done' &
busy_pid=$!
trap 'kill "$busy_pid" 2>/dev/null || true; wait "$busy_pid" 2>/dev/null || true' EXIT
probe "before, loaded"
run "$@"
probe "after, loaded"
