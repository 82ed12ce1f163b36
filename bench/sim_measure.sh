#!/usr/bin/env bash
# Measures plexus_sim (the call-workload simulator) for bench/README.md, "Simulator":
#   1. the highest offered rate (calls/s) sustained for 5 s with every consumer on and no call
#      refused at admission;
#   2. publish->callback latency at half that rate;
#   3. memory per call in flight, and the peak with about 100 000 calls in flight.
# Reference debugging and lock-order validation are off (--checks=false): they measure plexus,
# not its debugging aids. Usage: bench/sim_measure.sh [path/to/plexus_sim]
set -euo pipefail
sim=${1:-build/release/apps/plexus_sim}
field() { python3 -c "import json,sys; r=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

best=0
for rate in 2000 4000 6000 8000 10000 12000 14000 16000 18000 20000 24000; do
  report=$("$sim" --rate=$rate --duration=5 --checks=false --report=json 2>/dev/null)
  refused=$(field 'r["shed"]["calls_refused"] + r["shed"]["arrivals_late"]' <<<"$report")
  echo "rate $rate: $(field 'f"{r[\"calls\"][\"per_second\"]:.0f} calls/s, {r[\"events\"][\"per_second\"]:.0f} events/s, refused {r[\"shed\"][\"calls_refused\"]}, stream dropped {r[\"shed\"][\"stream_events_dropped\"]}, p99 {r[\"latency_us\"][\"p99\"]:.0f} us"' <<<"$report")"
  if [ "$refused" -ne 0 ]; then break; fi
  best=$rate
done
echo "sustained: $best calls/s offered, none refused"

half=$((best / 2))
report=$("$sim" --rate=$half --duration=5 --checks=false --report=json 2>/dev/null)
echo "latency at $half calls/s: $(field 'f"p50 {r[\"latency_us\"][\"p50\"]:.1f} us, p99 {r[\"latency_us\"][\"p99\"]:.1f} us, p99.9 {r[\"latency_us\"][\"p999\"]:.1f} us, max {r[\"latency_us\"][\"max\"]:.1f} us; {r[\"events\"][\"per_second\"]:.0f} events/s"' <<<"$report")"

# About 100 000 calls in flight: 10 000 calls/s for 10 s, each talking 10 s on average.
report=$("$sim" --rate=10000 --duration=10 --talk-ms=10000 --max-in-flight=200000 --checks=false \
  --report=json 2>/dev/null)
echo "memory: $(field 'f"peak {r[\"calls\"][\"peak_in_flight\"]} calls in flight, peak RSS {r[\"memory\"][\"peak_rss_kb\"]} KiB (baseline {r[\"memory\"][\"baseline_rss_kb\"]} KiB), {1024*(r[\"memory\"][\"peak_rss_kb\"]-r[\"memory\"][\"baseline_rss_kb\"])/max(r[\"calls\"][\"peak_in_flight\"],1):.0f} bytes per call in flight; refused {r[\"shed\"][\"calls_refused\"]}"' <<<"$report")"
