#!/usr/bin/env bash
# bench/compare.sh - run redhubd and redis-server next to each other on
# loopback and print a Markdown table comparing them.
#
# Both servers stay up for the whole run. Each redis-benchmark run is for one
# command (SET or GET) so that the CPU figure can be charged to one command.
# Inside a round the servers take turns on every (case, command) pair
# (redis, redhub, redis, redhub, ...; even rounds start with redhub), so slow
# drift on the machine (thermal, noisy neighbours) affects both sides alike.
# Every figure is the median over the rounds.
#
# CPU per request = CPU time (utime+stime, plus cutime+cstime of reaped
# children) that the server and all its descendants used during the run,
# divided by the request count. It is read from /proc before and after every run. On a
# busy or shared machine it moves far less than req/s does.
#
# Run with --help for the options.
set -euo pipefail
export LC_ALL=C # '.' as the decimal point for printf and awk

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd)

REDHUBD="$REPO_ROOT/build/master/redhubd"
ROUNDS=3
ROUNDS_GIVEN=0
REQUESTS=""          # if set, the request count for every case
QUICK=0
WORKERS=""
REDHUBD_ARGS=""
KEYSPACE=1000000     # redis-benchmark -r: the same random key space for both servers
BENCH_TIMEOUT=120    # seconds allowed for each redis-benchmark run
READY_TIMEOUT=10     # seconds allowed for a server to answer PING
STOP_TIMEOUT=5       # seconds between SIGTERM and SIGKILL at shutdown

# label|clients|pipeline|default requests
CASES=(
  "c512 P1024|512|1024|2000000"
  "c50 P16|50|16|1000000"
  "c50 P1|50|1|200000"
)
CMDS=(SET GET)
SERVERS=(redis redhub)

usage() {
  cat <<EOF
Usage: bench/compare.sh [--redhubd PATH] [--rounds N] [--requests N] [--quick]
                        [--workers N] [--redhubd-args "ARGS"]

Benchmarks redhubd and redis-server side by side on 127.0.0.1 with
redis-benchmark (SET and GET; -c 512 -P 1024, -c 50 -P 16, -c 50 -P 1) and
prints a Markdown table of medians to stdout. Progress goes to stderr.

  --redhubd PATH        redhubd binary (default: build/master/redhubd under
                        the repository root)
  --rounds N            rounds, each running every case on both servers
                        (default: 3)
  --requests N          request count for every case (default: 2000000 for
                        P1024, 1000000 for P16, 200000 for P1)
  --quick               divide request counts by 10 and run 1 round (an
                        explicit --rounds still applies)
  --workers N           pass --workers N to redhubd
  --redhubd-args ARGS   more redhubd arguments, split on whitespace
  -h, --help            show this help
EOF
}

die() {
  printf 'compare.sh: error: %s\n' "$*" >&2
  exit 1
}

log() {
  printf '[compare] %s\n' "$*" >&2
}

is_uint() {
  [[ $1 =~ ^[0-9]+$ ]] && (($1 > 0))
}

# ---------------------------------------------------------------- arguments
while (($#)); do
  opt=$1
  val=""
  case $opt in
    --*=*)
      val=${opt#*=}
      opt=${opt%%=*}
      ;;
    --redhubd | --rounds | --requests | --workers | --redhubd-args)
      (($# >= 2)) || die "$opt needs a value"
      val=$2
      shift
      ;;
  esac
  case $opt in
    --redhubd) REDHUBD=$val ;;
    --rounds)
      is_uint "$val" || die "--rounds needs a positive integer, got '$val'"
      ROUNDS=$val
      ROUNDS_GIVEN=1
      ;;
    --requests)
      is_uint "$val" || die "--requests needs a positive integer, got '$val'"
      REQUESTS=$val
      ;;
    --workers)
      is_uint "$val" || die "--workers needs a positive integer, got '$val'"
      WORKERS=$val
      ;;
    --redhubd-args) REDHUBD_ARGS=$val ;;
    --quick) QUICK=1 ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage >&2
      die "unknown argument '$1'"
      ;;
  esac
  shift
done

if ((QUICK)) && ((!ROUNDS_GIVEN)); then
  ROUNDS=1
fi

REDHUB_EXTRA=()
if [[ -n $WORKERS ]]; then
  REDHUB_EXTRA+=(--workers "$WORKERS")
fi
if [[ -n $REDHUBD_ARGS ]]; then
  read -r -a extra_words <<<"$REDHUBD_ARGS"
  REDHUB_EXTRA+=("${extra_words[@]}")
fi

for tool in redis-server redis-benchmark redis-cli timeout getconf; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found in PATH"
done
[[ -x $REDHUBD ]] || die "redhubd not found or not executable: $REDHUBD (build it, or pass --redhubd PATH)"
CLK_TCK=$(getconf CLK_TCK)
is_uint "$CLK_TCK" || die "getconf CLK_TCK gave '$CLK_TCK'"

# Request count for one case: --requests if given, else the case default;
# --quick divides by 10.
case_requests() {
  local n=${REQUESTS:-$1}
  if ((QUICK)); then
    n=$((n / 10))
    ((n > 0)) || n=1
  fi
  printf '%s\n' "$n"
}

# ------------------------------------------------------ temp files, cleanup
WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/redhub-compare.XXXXXX")
declare -A SRV_PID=() SRV_PORT=() SRV_LOG=()

# Print the given PID and the PIDs of all its descendants, one a line,
# parent before child. Descendants are found through the ppid field
# (field 4) of /proc/*/stat.
proc_tree() {
  local root=$1 f line rest pid ppid p c
  local -A kids=()
  for f in /proc/[0-9]*/stat; do
    read -r line 2>/dev/null <"$f" || continue # the process may be gone
    pid=${line%% *}
    rest=${line##*) } # comm may hold spaces or ')'; cut at the last ')'
    rest=${rest#* }   # drop the state field; ppid comes next
    ppid=${rest%% *}
    kids[$ppid]+=" $pid"
  done
  [[ -e /proc/$root ]] || return 0
  local -a queue=("$root")
  while ((${#queue[@]})); do
    p=${queue[0]}
    queue=("${queue[@]:1}")
    printf '%s\n' "$p"
    for c in ${kids[$p]:-}; do
      queue+=("$c")
    done
  done
}

# CPU clock ticks used so far by a server process and all its descendants:
# the sum of utime, stime, cutime and cstime (fields 14-17 of
# /proc/PID/stat). For a process these fields already cover all of its
# threads.
#   - cutime/cstime hold the time of children that have exited and been
#     waited for. A redhubd worker that exits and is reaped by its master
#     during a run therefore keeps its ticks in the total.
#   - A descendant that exits and is NOT reaped inside the tree (for example
#     reparented to init) loses its ticks, so the figure can come out low.
#     That is accepted: the figures are for steady-state servers, whose
#     workers do not come and go during a run.
tree_ticks() {
  local total=0 pid line rest
  local -a f
  while read -r pid; do
    read -r line 2>/dev/null <"/proc/$pid/stat" || continue
    rest=${line##*) }
    read -r -a f <<<"$rest"
    # f[0] is field 3 (state), so field N is f[N-3].
    total=$((total + f[11] + f[12] + f[13] + f[14]))
  done < <(proc_tree "$1")
  printf '%s\n' "$total"
}

stop_server() {
  local name=$1 pid p i
  pid=${SRV_PID[$name]:-}
  [[ -n $pid ]] || return 0
  unset 'SRV_PID[$name]'
  local -a tree=()
  mapfile -t tree < <(proc_tree "$pid")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 20; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null || true
  { wait "$pid"; } 2>/dev/null || true
  # Workers the server left behind: end them by PID. They were seen as its
  # descendants a moment ago.
  for p in "${tree[@]:1}"; do
    kill -TERM "$p" 2>/dev/null || true
  done
  for p in "${tree[@]:1}"; do
    for ((i = 0; i < 20; i++)); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.05
    done
    kill -KILL "$p" 2>/dev/null || true
  done
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local name
  for name in "${SERVERS[@]}"; do
    stop_server "$name"
  done
  rm -rf -- "$WORK_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --------------------------------------------------------------- servers

# Print a TCP port on 127.0.0.1 that is free right now. Another process can
# take it before the server binds it; start_server then retries on a new one.
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
    return
  fi
  local port i
  for ((i = 0; i < 100; i++)); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      printf '%s\n' "$port"
      return
    fi
  done
  die "could not find a free port"
}

log_tail() {
  local file=$1
  if [[ -s $file ]]; then
    printf -- '--- last lines of %s ---\n' "$file" >&2
    tail -n 20 -- "$file" >&2
    printf -- '---\n' >&2
  fi
}

# Wait until the server answers PING. Returns 1 if the process died (for
# example because it lost the race for its port); dies on timeout.
wait_ready() {
  local name=$1 start=$SECONDS reply
  local pid=${SRV_PID[$name]} port=${SRV_PORT[$name]}
  while ((SECONDS - start < READY_TIMEOUT)); do
    kill -0 "$pid" 2>/dev/null || return 1
    reply=$(timeout 2 redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null || true)
    [[ $reply == PONG ]] && return 0
    sleep 0.05
  done
  log_tail "${SRV_LOG[$name]}"
  die "$name (pid $pid, port $port) did not answer PING within ${READY_TIMEOUT}s"
}

# The servers run in their own session (setsid), so a Ctrl-C at the terminal
# stops the script and redis-benchmark but not the servers; cleanup() then
# stops them by PID. The script is not a process group leader's job-control
# shell, so setsid execs in place and $! is the server's own PID.
start_server() {
  local name=$1 attempt port log
  for attempt in 1 2 3; do
    port=$(free_port)
    log="$WORK_DIR/$name.$attempt.log"
    case $name in
      redis)
        setsid redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
          --daemonize no --protected-mode no >"$log" 2>&1 &
        ;;
      redhub)
        setsid "$REDHUBD" --bind 127.0.0.1 --port "$port" \
          ${REDHUB_EXTRA[@]+"${REDHUB_EXTRA[@]}"} >"$log" 2>&1 &
        ;;
      *) die "unknown server $name" ;;
    esac
    SRV_PID[$name]=$!
    SRV_PORT[$name]=$port
    SRV_LOG[$name]=$log
    if wait_ready "$name"; then
      log "$name ready: pid ${SRV_PID[$name]}, port $port"
      return 0
    fi
    stop_server "$name"
    log_tail "$log"
    # Only a lost race for the port is worth another try.
    if ! grep -qi 'in use' "$log"; then
      die "$name exited during start-up (port $port); see its log above"
    fi
    log "$name lost port $port to another process (attempt $attempt); retrying"
  done
  die "$name could not bind a port in 3 attempts"
}

# ------------------------------------------------------------- benchmark

# Parse redis-benchmark -q --csv output. Columns are found by name from the
# header line ("test","rps","avg_latency_ms","min_latency_ms",
# "p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms" in
# 7.0); without a header, the 7.0 positions are assumed. Prints
# "rps p50 p99" for the row of the given test, nothing if there is none.
parse_csv() {
  awk -F, -v want="$1" '
    { gsub(/"/, ""); gsub(/\r/, "") }
    $1 == "test" { for (i = 1; i <= NF; i++) col[$i] = i; next }
    $1 == want && !done {
      r = ("rps" in col) ? col["rps"] : 2
      a = ("p50_latency_ms" in col) ? col["p50_latency_ms"] : 5
      b = ("p99_latency_ms" in col) ? col["p99_latency_ms"] : 7
      print $r, $a, $b
      done = 1
    }' "$2"
}

declare -A RES=() # "case|cmd|server|metric" -> space-separated samples
MIN_TICKS=50      # fewer CPU ticks than this in a run make its CPU figure coarse
LOW_TICKS=0

# One redis-benchmark run against one server. Records req/s, p50, p99 and
# CPU µs per request. A failed run is reported and left out of the medians;
# a server that died ends the script.
run_one() {
  local ci=$1 cmd=$2 name=$3 label clients pipeline _def n
  IFS='|' read -r label clients pipeline _def <<<"${CASES[$ci]}"
  n=$(case_requests "$_def")
  local pid=${SRV_PID[$name]} port=${SRV_PORT[$name]}
  local out="$WORK_DIR/bench.out" err="$WORK_DIR/bench.err"
  local before after rc=0 fields rps p50 p99 cpu

  before=$(tree_ticks "$pid")
  # --foreground keeps redis-benchmark in our process group so that Ctrl-C
  # reaches it.
  timeout --foreground "$BENCH_TIMEOUT" redis-benchmark -h 127.0.0.1 -p "$port" \
    -c "$clients" -P "$pipeline" -n "$n" -r "$KEYSPACE" \
    -t "${cmd,,}" -q --csv >"$out" 2>"$err" || rc=$?
  after=$(tree_ticks "$pid")
  # Ctrl-C or SIGTERM: redis-benchmark died of it and timeout reports
  # 128+signal. Bash does not run its own INT trap when the child merely
  # exits with that status, so stop here.
  if ((rc == 130 || rc == 143)); then
    log "interrupted"
    exit "$rc"
  fi

  if ! kill -0 "$pid" 2>/dev/null; then
    log_tail "$err"
    log_tail "${SRV_LOG[$name]}"
    die "$name (pid $pid) died during $label $cmd"
  fi
  if ((rc != 0)); then
    if ((rc == 124)); then
      log "WARNING: $label $cmd on $name timed out after ${BENCH_TIMEOUT}s; run left out"
    else
      log "WARNING: redis-benchmark failed (exit $rc) for $label $cmd on $name; run left out"
    fi
    log_tail "$err"
    return 0
  fi
  fields=$(parse_csv "$cmd" "$out")
  if [[ -z $fields ]]; then
    log "WARNING: no $cmd row in redis-benchmark output for $label on $name; run left out"
    log_tail "$out"
    log_tail "$err"
    return 0
  fi
  read -r rps p50 p99 <<<"$fields"
  cpu=$(awk -v d=$((after - before)) -v hz="$CLK_TCK" -v n="$n" \
    'BEGIN { printf "%.4f", d * 1e6 / hz / n }')

  if ((after - before < MIN_TICKS)); then
    LOW_TICKS=1
  fi
  local key="$ci|$cmd|$name"
  RES[$key|rps]+=" $rps"
  RES[$key|p50]+=" $p50"
  RES[$key|p99]+=" $p99"
  RES[$key|cpu]+=" $cpu"
  log "$(printf '%-11s %-3s %-6s %12.0f req/s %8.3f us CPU/req  p50 %s p99 %s ms' \
    "$label" "$cmd" "$name" "$rps" "$cpu" "$p50" "$p99")"
}

# Median of the samples stored under a key; empty if there are none.
median() {
  local samples=${RES[$1]:-}
  [[ -n ${samples// /} ]] || return 0
  # shellcheck disable=SC2086 # word splitting of the sample list is wanted
  printf '%s\n' $samples | sort -g | awk '
    { v[NR] = $1 }
    END {
      if (NR % 2) print v[(NR + 1) / 2]
      else print (v[NR / 2] + v[NR / 2 + 1]) / 2
    }'
}

# ------------------------------------------------------------------ main
start_server redis
start_server redhub

counts=""
for ci in "${!CASES[@]}"; do
  IFS='|' read -r label _ _ def <<<"${CASES[$ci]}"
  counts+="${counts:+, }$label: $(case_requests "$def")"
done
log "rounds: $ROUNDS; requests per run: $counts"

for ((round = 1; round <= ROUNDS; round++)); do
  # Odd rounds run redis first in every pair, even rounds redhub, so that
  # neither server always runs right after the other has loaded the machine.
  order=("${SERVERS[@]}")
  if ((round % 2 == 0)); then
    order=("${SERVERS[1]}" "${SERVERS[0]}")
  fi
  log "round $round/$ROUNDS"
  for ci in "${!CASES[@]}"; do
    for cmd in "${CMDS[@]}"; do
      for name in "${order[@]}"; do
        run_one "$ci" "$cmd" "$name"
      done
    done
  done
done

# ----------------------------------------------------------------- report
cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
if [[ -z $cpu_model ]] && command -v lscpu >/dev/null 2>&1; then
  cpu_model=$(lscpu | awk -F': *' '/^Model name/ { print $2; exit }')
fi
redis_version=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*malloc=\([^ ]*\).*/\1 (\2)/p')
git_rev=$(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo unknown)
redhub_cmd="${REDHUBD#"$REPO_ROOT"/}${REDHUB_EXTRA[*]:+ ${REDHUB_EXTRA[*]}}"
if ((ROUNDS == 1)); then
  rounds_text="1 round"
else
  rounds_text="medians of $ROUNDS rounds"
fi

fmt_num() { # fmt_num DECIMALS VALUE TEXT-IF-MISSING
  if [[ -n $2 ]]; then
    printf '%.*f' "$1" "$2"
  else
    printf '%s' "$3"
  fi
}

ncpu=$(nproc)
kernel=$(uname -r)
now=$(date -u '+%Y-%m-%d %H:%M UTC')
echo "Machine: ${cpu_model:-unknown CPU}, nproc ${ncpu}, Linux ${kernel}, redis-server ${redis_version:-unknown}, ${now}"
echo
echo "redhubd: \`$redhub_cmd\` at $git_rev; redis-benchmark on 127.0.0.1, -r $KEYSPACE, $rounds_text; requests per run: $counts."
echo
echo "| case | cmd | redis req/s | redhub req/s | ratio | redis µs CPU/req | redhub µs CPU/req | redis p50/p99 ms | redhub p50/p99 ms |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
for ci in "${!CASES[@]}"; do
  IFS='|' read -r label _ pipeline_of_case _ <<<"${CASES[$ci]}"
  for cmd in "${CMDS[@]}"; do
    r_rps=$(median "$ci|$cmd|redis|rps")
    h_rps=$(median "$ci|$cmd|redhub|rps")
    ratio="–"
    if [[ -n $r_rps && -n $h_rps ]]; then
      ratio=$(awk -v a="$h_rps" -v b="$r_rps" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "–" }')
    fi
    # Latency is only shown without pipelining; with -P it is per batch.
    r_lat="–"
    h_lat="–"
    if [[ $pipeline_of_case == 1 ]]; then
      r_p50=$(median "$ci|$cmd|redis|p50")
      r_p99=$(median "$ci|$cmd|redis|p99")
      h_p50=$(median "$ci|$cmd|redhub|p50")
      h_p99=$(median "$ci|$cmd|redhub|p99")
      if [[ -n $r_p50 ]]; then
        r_lat=$(printf '%.3f / %.3f' "$r_p50" "$r_p99")
      fi
      if [[ -n $h_p50 ]]; then
        h_lat=$(printf '%.3f / %.3f' "$h_p50" "$h_p99")
      fi
    fi
    r_cpu=$(median "$ci|$cmd|redis|cpu")
    h_cpu=$(median "$ci|$cmd|redhub|cpu")
    r_rps=$(fmt_num 0 "$r_rps" FAIL)
    h_rps=$(fmt_num 0 "$h_rps" FAIL)
    r_cpu=$(fmt_num 3 "$r_cpu" –)
    h_cpu=$(fmt_num 3 "$h_cpu" –)
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
      "$label" "$cmd" "$r_rps" "$h_rps" "$ratio" "$r_cpu" "$h_cpu" "$r_lat" "$h_lat"
  done
done
if ((LOW_TICKS)); then
  echo
  echo "Note: some runs used fewer than $MIN_TICKS CPU clock ticks (1 tick = $((1000 / CLK_TCK)) ms), so their µs CPU/req figures are coarse; use more requests."
fi
