#!/usr/bin/env bash
# Installs the Debian 12 packages RedHub needs to build, run and test.
# Idempotent: packages already present are skipped, and nothing runs apt when
# everything is there. Works as root or through sudo.
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build pkg-config clang-format
  libboost-dev libev-dev libcli11-dev prometheus-cpp-dev libssl-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev libhiredis-dev
  redis-tools redis-server python3-redis procps openssl
  # metrics: promtool checks /metrics and deploy/*.yml; the Redis exporter for comparison
  prometheus prometheus-redis-exporter
  # deploy/: twemproxy for the scale-out recipe; systemd-analyze checks the units
  nutcracker systemd
  # fuzzing (libFuzzer ships with clang's runtime)
  clang libclang-rt-14-dev
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "install-deps: need root or sudo to install: ${missing[*]}" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# redis-server's package starts a service on 6379 where a service manager runs;
# policy-rc.d keeps it from starting, since tests start their own servers.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
  "${as_root[@]}" chmod +x "$policy"
  created_policy=1
fi
cleanup() { if [ "$created_policy" -eq 1 ]; then "${as_root[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT

"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"

# The test-only servers above register services that would start at the
# next boot: redis-server on 6379, Prometheus on 9090 and the Redis
# exporter on 9121, redhubd's default admin port, and nutcracker on 22121.
# Tests start their own on free ports, so keep the ones installed here from
# starting by themselves.
if command -v systemctl >/dev/null 2>&1; then
  for svc in redis-server prometheus prometheus-node-exporter prometheus-redis-exporter nutcracker; do
    for p in "${missing[@]}"; do
      if [ "$p" = "$svc" ] || { [ "$svc" = prometheus-node-exporter ] && [ "$p" = prometheus ]; }; then
        "${as_root[@]}" systemctl disable "$svc" >/dev/null 2>&1 || true
      fi
    done
  done
fi
