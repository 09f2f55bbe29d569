#!/usr/bin/env bash
# Installs the Debian 12 packages RedHub needs to build, run and test, then
# the node client libraries of the app client tests (tests/apps/node) from
# their lockfile.
# Idempotent: packages already present are skipped, and nothing runs apt when
# everything is there; npm runs only when tests/apps/node/node_modules is
# missing or older than package.json or package-lock.json. Works as root or
# through sudo (apt only: npm runs as the caller, who owns the checkout).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
node_clients="$here/../tests/apps/node"

packages=(
  # build
  build-essential cmake ninja-build pkg-config clang-format
  libboost-dev libev-dev libcli11-dev prometheus-cpp-dev libssl-dev
  # tests and benchmarks (openssl makes test certificates; curl fetches over
  # HTTPS; strace records every execve of the container entrypoint)
  libgtest-dev libgmock-dev libbenchmark-dev libhiredis-dev
  redis-tools redis-server python3-redis procps openssl curl strace shellcheck
  # metrics: promtool checks /metrics and deploy/*.yml; the Redis exporter for comparison
  prometheus prometheus-redis-exporter
  # deploy/: twemproxy for the scale-out recipe; systemd-analyze checks the units
  nutcracker systemd
  # fuzzing (libFuzzer ships with clang's runtime)
  clang libclang-rt-14-dev
  # Lua scripting (EVAL): Redis's Lua 5.1 with its cjson and bit libraries
  liblua5.1-0-dev lua-cjson-dev lua-bitop-dev
  # app client tests (tests/apps): node and npm for ioredis, node-redis and
  # rate-limiter-flexible (installed below by npm ci); python3-limits
  nodejs npm python3-limits
)

missing=()
for p in "${packages[@]}"; do
  # A nodejs from elsewhere (NodeSource's) ships npm itself and conflicts
  # with Debian's npm package.
  if [ "$p" = npm ] && command -v npm >/dev/null 2>&1; then
    continue
  fi
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

install_packages() {
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
}

# The node test clients, exactly as package-lock.json pins them. npm ci
# removes node_modules and installs from the lockfile; it writes
# node_modules/.package-lock.json at the end, which marks a complete install.
install_node_clients() {
  local marker="$node_clients/node_modules/.package-lock.json"
  if [ -f "$marker" ] && [ ! "$node_clients/package-lock.json" -nt "$marker" ] &&
    [ ! "$node_clients/package.json" -nt "$marker" ]; then
    echo "install-deps: node test clients present (tests/apps/node/node_modules)"
    return
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "install-deps: npm not found after installing packages" >&2
    exit 1
  fi
  echo "install-deps: npm ci in tests/apps/node"
  # No install scripts: the clients are plain JavaScript.
  if ! (cd "$node_clients" && npm ci --ignore-scripts --no-audit --no-fund); then
    echo "install-deps: npm ci in tests/apps/node FAILED (is the npm registry reachable?);" \
      "the app client tests need tests/apps/node/node_modules" >&2
    exit 1
  fi
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
else
  install_packages
fi
install_node_clients
