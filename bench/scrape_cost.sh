#!/usr/bin/env bash
# bench/scrape_cost.sh - what scraping /metrics costs the workers.
#
# Starts redhubd (2 workers, admin process on a free port) on free loopback
# ports and runs the same redis-benchmark load with and without a scraper
# fetching /metrics 100 times a second, alternating, for --rounds rounds.
# Prints, per run: requests/s, the workers' CPU microseconds per request
# (utime+stime of the worker processes only, from /proc, before and after),
# the admin process's CPU, and the scrapes done. The admin process does the
# scraping work; the workers should not notice it.
#
#   bench/scrape_cost.sh [--redhubd PATH] [--rounds N] [--requests N]
set -euo pipefail
export LC_ALL=C

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REDHUBD="$SCRIPT_DIR/../build/master/redhubd"
ROUNDS=3
REQUESTS=4000000
while [ $# -gt 0 ]; do
  case "$1" in
    --redhubd) REDHUBD=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --requests) REQUESTS=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

PY=/usr/bin/python3
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
ADMIN=$(free_port)
SHM="/redhub-scrape-bench-$$"
LOG=$(mktemp)
"$REDHUBD" --bind 127.0.0.1 --port "$PORT" --workers 2 --maxmemory 256mb --shm-name "$SHM" \
  --admin-port "$ADMIN" 2>"$LOG" &
MASTER=$!
SCRAPER=""
cleanup() {
  [ -n "$SCRAPER" ] && kill "$SCRAPER" 2>/dev/null || true
  kill -TERM "$MASTER" 2>/dev/null || true
  wait "$MASTER" 2>/dev/null || true
  rm -f "$LOG"
}
trap cleanup EXIT

for _ in $(seq 100); do
  if redis-cli -p "$PORT" ping >/dev/null 2>&1 && \
     "$PY" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$ADMIN/readyz', timeout=1)" 2>/dev/null; then
    break
  fi
  sleep 0.1
done

# CPU ticks (utime+stime) of the master's children whose title matches $1.
cpu_ticks() {
  local total=0 pid
  for pid in $(pgrep -P "$MASTER" -f "redhubd: $1" || true); do
    total=$((total + $(awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$pid/stat")))
  done
  echo "$total"
}
HZ=$(getconf CLK_TCK)

run() {  # $1 = with|without
  local scrapes_file
  scrapes_file=$(mktemp)
  if [ "$1" = with ]; then
    "$PY" - "$ADMIN" "$scrapes_file" <<'EOF' &
import sys, time, http.client
port, out = int(sys.argv[1]), sys.argv[2]
n, start = 0, time.monotonic()
try:
    while True:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        c.request("GET", "/metrics"); c.getresponse().read(); c.close()
        n += 1
        open(out, "w").write(str(n))
        delay = start + n / 100.0 - time.monotonic()   # 100 scrapes a second
        if delay > 0: time.sleep(delay)
except KeyboardInterrupt:
    pass
EOF
    SCRAPER=$!
  fi
  local w0 a0 w1 a1 rps
  w0=$(cpu_ticks worker); a0=$(cpu_ticks admin)
  rps=$(redis-benchmark -h 127.0.0.1 -p "$PORT" -c 50 -P 16 -n "$REQUESTS" -r 100000 -t set -q \
        | tr '\r' '\n' | awk '/requests per second/ {print $2}' | tail -1)
  w1=$(cpu_ticks worker); a1=$(cpu_ticks admin)
  if [ -n "$SCRAPER" ]; then kill "$SCRAPER"; wait "$SCRAPER" 2>/dev/null || true; SCRAPER=""; fi
  local scrapes
  scrapes=$(cat "$scrapes_file" 2>/dev/null || echo 0); rm -f "$scrapes_file"
  awk -v mode="$1" -v rps="$rps" -v w="$((w1 - w0))" -v a="$((a1 - a0))" -v hz="$HZ" \
      -v n="$REQUESTS" -v s="${scrapes:-0}" \
      'BEGIN { printf "| %s | %.0f | %.3f | %.2f | %d |\n", mode, rps, w / hz * 1e6 / n, a / hz, s }'
}

echo "redhubd: $REDHUBD, 2 workers; redis-benchmark -c 50 -P 16 -n $REQUESTS -t set; $(nproc) CPUs"
echo
echo "| scraping | SET req/s | workers µs CPU/req | admin CPU s | scrapes |"
echo "|---|---:|---:|---:|---:|"
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then run without; run with; else run with; run without; fi
done
