#!/usr/bin/env bash
# Installs the Debian packages plexus builds, tests and benchmarks with, if any is missing.
# Run as root it installs them (apt-get update first); otherwise it prints what to install.
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config make
  libgtest-dev libgmock-dev libbenchmark-dev
  clang-16
  libabsl-dev libboost-dev libfmt-dev nlohmann-json3-dev libconcurrentqueue-dev
  liburcu-dev
  # The operator view (plexus::ops) and its tests: HTTP server, Prometheus client types,
  # promtool and a Prometheus server to scrape it, a headless browser to render its page.
  libcpp-httplib-dev prometheus-cpp-dev prometheus chromium
  libcli11-dev libsqlite3-dev
  # The cluster layer (plexus::cluster) and its tests: the NATS C client, a NATS server for the
  # tests and benchmarks to start, and clang's runtimes for the wire decoder's fuzz target
  # (libFuzzer with ASan and UBSan: -fsanitize=fuzzer,address,undefined).
  libnats-dev nats-server libclang-rt-16-dev
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "plexus: missing Debian packages: ${missing[*]}" >&2
  echo "run as root: apt-get update && apt-get install -y ${missing[*]}" >&2
  exit 1
fi

echo "plexus: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
