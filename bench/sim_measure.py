#!/usr/bin/env python3
"""Measures plexus_sim, the call-workload simulator, for bench/README.md ("Simulator").

1. The highest offered rate (calls/s) that runs 5 s with every consumer on and no call
   refused at admission (a stepped search).
2. Publish->callback latency at half that rate.
3. Memory per call in flight, and the peak, with about 100 000 calls in flight.

Reference debugging and lock-order validation are off (--checks=false): the figures are
plexus's, not its debugging aids'. Usage: bench/sim_measure.py [path/to/plexus_sim]
"""
import json
import subprocess
import sys

SIM = sys.argv[1] if len(sys.argv) > 1 else "build/release/apps/plexus_sim"


def run(*flags):
    out = subprocess.run([SIM, "--checks=false", "--report=json", *flags],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True, text=True)
    return json.loads(out.stdout)


def describe(r):
    lat = r["latency_us"]
    return (f'{r["calls"]["per_second"]:.0f} calls/s, {r["events"]["per_second"]:.0f} events/s '
            f'published ({r["events"]["on_calls_topic"] / max(r["seconds"], 1e-9):.0f}/s on the '
            f'calls topic), refused {r["shed"]["calls_refused"]}, not offered in time '
            f'{r["shed"]["arrivals_late"]}, stream dropped '
            f'{r["shed"]["stream_events_dropped"]}, p50 {lat["p50"]:.1f} us, p99 {lat["p99"]:.1f} us, '
            f'p99.9 {lat["p999"]:.1f} us')


best = 0
for rate in [2000, 4000, 6000, 8000, 10000, 12000, 14000, 16000, 18000, 20000, 24000]:
    r = run(f"--rate={rate}", "--duration=5")
    print(f"offered {rate}/s: {describe(r)}", flush=True)
    if r["shed"]["calls_refused"] + r["shed"]["arrivals_late"] != 0:
        break
    best = rate
print(f"sustained: {best} calls/s offered, none refused")

half = best // 2
if half > 0:
    print(f"at half, {half}/s: {describe(run(f'--rate={half}', '--duration=5'))}")

# About 100 000 calls in flight: 13 500 calls/s for 10 s, the three quarters that are
# answered talking 10-30 s.
r = run("--rate=13500", "--duration=10", "--talk-ms=20000", "--max-in-flight=200000",
        "--queue-limit=1000000")
m = r["memory"]
peak = max(r["calls"]["peak_in_flight"], 1)
print(f'memory: peak {r["calls"]["peak_in_flight"]} calls in flight, peak RSS {m["peak_rss_kb"]} KiB '
      f'(baseline {m["baseline_rss_kb"]} KiB): '
      f'{1024 * (m["peak_rss_kb"] - m["baseline_rss_kb"]) / peak:.0f} bytes per call in flight; '
      f'refused {r["shed"]["calls_refused"]}')
