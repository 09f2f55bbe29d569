#!/usr/bin/env bash
# bench/compare_txn.sh - MULTI/EXEC transactions and EVALSHA on redhubd and
# redis-server side by side on loopback, printed as a Markdown table.
#
# redis-benchmark sends one command per request and cannot send a
# transaction, so the load comes from bench/txn_bench (built as the
# txn_bench target), which checks every reply:
#   multi10  MULTI, 10 x SET key:<r> <3-byte value>, EXEC; -c 50, 16
#            transactions pipelined per connection. Every reply byte is
#            compared (+OK, 10 x +QUEUED, *10, 10 x +OK).
#   evalsha  EVALSHA of "return redis.call('INCR', KEYS[1])" (SCRIPT LOAD
#            first) with one key ekey:<r>; -c 50 -P 16. No reply may be an
#            error. A server that answers SCRIPT LOAD with an error (or with
#            a wrong SHA) shows "unsupported" in this row.
#
# As in compare.sh: both servers (and --baseline, a second redhubd binary)
# stay up for the whole run on free loopback ports; inside a round they take
# turns on every case (the order reverses in even rounds); server CPU is
# utime+stime+cutime+cstime of the server and all its descendants, read from
# /proc before and after every run; every figure is the median over the
# rounds. After every run one key the run wrote must read back right.
# Any wrong reply ends the script with exit status 1.
#
# Run with --help for the options.
set -euo pipefail
export LC_ALL=C # '.' as the decimal point for printf and awk

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd)

REDHUBD="$REPO_ROOT/build/master/redhubd"
TXN_BENCH="$REPO_ROOT/build/bench/txn_bench"
BASELINE=""
ROUNDS=3
ROUNDS_GIVEN=0
TRANSACTIONS="" # if set, the unit count of every case
QUICK=0
WORKERS=2
REDHUBD_ARGS=""
CASES_SEL=""
CLIENTS=50
PIPELINE=16
KEYSPACE=1000000
SETS_PER_TX=10
DATASIZE=3
BENCH_TIMEOUT=120 # seconds allowed for each txn_bench run
CHECK_TIMEOUT=20  # seconds allowed for each redis-cli call
READY_TIMEOUT=10  # seconds allowed for a server to answer PING
STOP_TIMEOUT=5    # seconds between SIGTERM and SIGKILL at shutdown
SCRIPT_BODY="return redis.call('INCR', KEYS[1])"

# name|default unit count|unit name
CASES=(
  "multi10|200000|tx"
  "evalsha|1000000|req"
)
SERVERS=(redis redhub)

usage() {
  cat <<EOF
Usage: bench/compare_txn.sh [--redhubd PATH] [--baseline PATH] [--rounds N]
                            [--transactions N] [--quick] [--workers N]
                            [--redhubd-args "ARGS"] [--cases LIST]
                            [--clients N] [--pipeline N] [--keyspace N]
                            [--txn-bench PATH]

Benchmarks MULTI/EXEC (MULTI + $SETS_PER_TX SETs + EXEC) and EVALSHA of a small
script on redhubd and redis-server side by side on 127.0.0.1 with
bench/txn_bench, which checks every reply, and prints a Markdown table of
medians to stdout. Progress goes to stderr. A wrong reply stops the script
with exit status 1.

  --redhubd PATH        redhubd binary (default: build/master/redhubd)
  --baseline PATH       also run this redhubd binary (same flags, same rounds,
                        taking turns with the others) and add its columns
  --rounds N            rounds, each running every case on every server
                        (default: 3)
  --transactions N      units per run for every case: transactions for
                        multi10, EVALSHA calls for evalsha (default: 200000
                        and 1000000)
  --quick               divide the counts by 10 and run 1 round (an explicit
                        --rounds still applies)
  --workers N           redhubd --workers N (default: 2)
  --redhubd-args ARGS   more redhubd arguments, split on whitespace
  --cases LIST          comma-separated, from multi10, evalsha (default: both)
  --clients N           connections (default: 50)
  --pipeline N          units pipelined per connection (default: 16)
  --keyspace N          random keys key:000000000000 .. key:<N-1>
                        (default: 1000000)
  --txn-bench PATH      the load client (default: build/bench/txn_bench)
  -h, --help            show this help
EOF
}

die() {
  printf 'compare_txn.sh: error: %s\n' "$*" >&2
  exit 1
}

log() {
  printf '[compare_txn] %s\n' "$*" >&2
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
    --redhubd | --baseline | --rounds | --transactions | --workers | --redhubd-args | --cases | \
      --clients | --pipeline | --keyspace | --txn-bench)
      (($# >= 2)) || die "$opt needs a value"
      val=$2
      shift
      ;;
  esac
  case $opt in
    --redhubd) REDHUBD=$val ;;
    --baseline) BASELINE=$val ;;
    --txn-bench) TXN_BENCH=$val ;;
    --rounds)
      is_uint "$val" || die "--rounds needs a positive integer, got '$val'"
      ROUNDS=$val
      ROUNDS_GIVEN=1
      ;;
    --transactions)
      is_uint "$val" || die "--transactions needs a positive integer, got '$val'"
      TRANSACTIONS=$val
      ;;
    --workers)
      is_uint "$val" || die "--workers needs a positive integer, got '$val'"
      WORKERS=$val
      ;;
    --clients)
      is_uint "$val" || die "--clients needs a positive integer, got '$val'"
      CLIENTS=$val
      ;;
    --pipeline)
      is_uint "$val" || die "--pipeline needs a positive integer, got '$val'"
      PIPELINE=$val
      ;;
    --keyspace)
      is_uint "$val" || die "--keyspace needs a positive integer, got '$val'"
      ((${#val} <= 12)) || die "--keyspace is too large: '$val'"
      KEYSPACE=$((10#$val))
      ;;
    --redhubd-args) REDHUBD_ARGS=$val ;;
    --cases) CASES_SEL=$val ;;
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

if [[ -n $CASES_SEL ]]; then
  declare -A chosen=()
  IFS=',' read -r -a items <<<"$CASES_SEL"
  ((${#items[@]})) || die "--cases needs at least one of: multi10, evalsha"
  for item in "${items[@]}"; do
    item=${item//[[:space:]]/}
    case ${item,,} in
      multi10 | evalsha) chosen[${item,,}]=1 ;;
      *) die "--cases: unknown case '$item' (known: multi10, evalsha)" ;;
    esac
  done
  picked=()
  for c in "${CASES[@]}"; do
    [[ -n ${chosen[${c%%|*}]:-} ]] && picked+=("$c")
  done
  CASES=("${picked[@]}")
fi

REDHUB_EXTRA=(--workers "$WORKERS")
if [[ -n $REDHUBD_ARGS ]]; then
  read -r -a extra_words <<<"$REDHUBD_ARGS"
  REDHUB_EXTRA+=("${extra_words[@]}")
fi

for tool in redis-server redis-cli timeout getconf sha1sum; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found in PATH"
done
[[ -x $REDHUBD ]] || die "redhubd not found or not executable: $REDHUBD (build it, or pass --redhubd PATH)"
[[ -x $TXN_BENCH ]] ||
  die "txn_bench not found or not executable: $TXN_BENCH (cmake --build build --target txn_bench, or pass --txn-bench PATH)"
if [[ -n $BASELINE ]]; then
  [[ -x $BASELINE ]] || die "--baseline: not found or not executable: $BASELINE"
  SERVERS+=(base)
fi
CLK_TCK=$(getconf CLK_TCK)
is_uint "$CLK_TCK" || die "getconf CLK_TCK gave '$CLK_TCK'"
SCRIPT_SHA=$(printf '%s' "$SCRIPT_BODY" | sha1sum | awk '{ print $1 }')

# Unit count of a case: --transactions if given, else the case default;
# --quick divides by 10.
case_units() {
  local n=${TRANSACTIONS:-$1}
  if ((QUICK)); then
    n=$((n / 10))
    ((n > 0)) || n=1
  fi
  printf '%s\n' "$n"
}

# ------------------------------------------------------ temp files, cleanup
WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/redhub-compare-txn.XXXXXX")
declare -A SRV_PID=() SRV_PORT=() SRV_LOG=() SRV_SHM=()

# The PID and the PIDs of all its descendants, one a line, parent first
# (through the ppid field of /proc/*/stat).
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

# CPU clock ticks used so far by a server and its descendants: utime, stime,
# cutime and cstime (fields 14-17 of /proc/PID/stat; see compare.sh).
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
  local name=$1 pid p i shm
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
  # redhubd removes its segments at stop; after a SIGKILL they may remain.
  shm=${SRV_SHM[$name]:-}
  if [[ -n $shm ]]; then
    rm -f -- "/dev/shm/${shm#/}" "/dev/shm/${shm#/}-stats"
  fi
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

cli() {
  local port=$1
  shift
  timeout "$CHECK_TIMEOUT" redis-cli -h 127.0.0.1 -p "$port" "$@"
}

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

# Servers run in their own session (setsid) so that Ctrl-C reaches the
# script and the client, not them; cleanup() stops them by PID. redhubd gets
# its own shared-memory name and --admin-port 0, so that two redhubds (and
# other instances on the machine) do not contend for the admin port 9121.
start_server() {
  local name=$1 attempt port log binary shm
  for attempt in 1 2 3; do
    port=$(free_port)
    log="$WORK_DIR/$name.$attempt.log"
    case $name in
      redis)
        setsid redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
          --daemonize no --protected-mode no >"$log" 2>&1 &
        ;;
      redhub | base)
        binary=$REDHUBD
        [[ $name == base ]] && binary=$BASELINE
        shm="/redhub-txn-$$-$name"
        SRV_SHM[$name]=$shm
        setsid "$binary" --bind 127.0.0.1 --port "$port" --admin-port 0 --shm-name "$shm" \
          "${REDHUB_EXTRA[@]}" >"$log" 2>&1 &
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
    if ! grep -qi 'in use' "$log"; then
      die "$name exited during start-up (port $port); see its log above"
    fi
    log "$name lost port $port to another process (attempt $attempt); retrying"
  done
  die "$name could not bind a port in 3 attempts"
}

check_fail() {
  local name=$1
  shift
  log_tail "${SRV_LOG[$name]}"
  die "$name (pid ${SRV_PID[$name]:-?}, port ${SRV_PORT[$name]:-?}): $*"
}

# FLUSHALL and DBSIZE 0.
flush_server() {
  local name=$1 port=${SRV_PORT[$1]} out
  out=$(cli "$port" FLUSHALL 2>&1) || true
  [[ $out == OK ]] || check_fail "$name" "FLUSHALL replied '$out'"
  out=$(cli "$port" DBSIZE 2>&1) || true
  [[ $out == 0 ]] || check_fail "$name" "DBSIZE after FLUSHALL replied '$out', expected 0"
}

# SCRIPT LOAD: the server supports the evalsha case if it answers with the
# script's SHA1. An error reply marks it unsupported; any other reply is a
# failure.
declare -A EVAL_OK=()
load_script() {
  local name=$1 port=${SRV_PORT[$1]} out rc=0
  out=$(cli "$port" SCRIPT LOAD "$SCRIPT_BODY" 2>&1) || rc=$?
  if [[ $out == "$SCRIPT_SHA" ]]; then
    EVAL_OK[$name]=1
    log "$name: SCRIPT LOAD gave $out"
  elif ((rc == 0)) && [[ $out =~ ^[A-Z][A-Z]+\  ]]; then # an error reply: "ERR ...", "NOPERM ..."
    EVAL_OK[$name]=0
    log "$name: SCRIPT LOAD answered an error ('$out'): evalsha unsupported"
  else
    check_fail "$name" "SCRIPT LOAD replied '$out' (exit $rc), expected $SCRIPT_SHA or an error"
  fi
}

# ------------------------------------------------------------- benchmark
declare -A RES=() # "case|server|metric" -> space-separated samples
MIN_TICKS=50
LOW_TICKS=0

# The value of a "field: value" line of txn_bench's output.
field() {
  awk -F': ' -v k="$1" '$1 == k { print $2; exit }' "$2"
}

# After a run: one key the run wrote (txn_bench's "sample key") must read
# back as the SET value (multi10) or as a positive integer (evalsha).
check_sample_key() {
  local name=$1 case=$2 out=$3 port=${SRV_PORT[$1]} key got
  key=$(field "sample key" "$out")
  [[ -n $key ]] || die "internal: txn_bench printed no sample key"
  got=$(cli "$port" GET "$key" 2>&1) || true
  if [[ $case == multi10 ]]; then
    [[ $got == "$(printf "%${DATASIZE}s" '' | tr ' ' x)" ]] ||
      check_fail "$name" "after $case: GET $key replied '$got', expected the SET value"
  else
    [[ $got =~ ^[1-9][0-9]*$ ]] ||
      check_fail "$name" "after $case: GET $key replied '$got', expected a positive integer"
  fi
}

run_one() {
  local ci=$1 name=$2 case def unit n
  IFS='|' read -r case def unit <<<"${CASES[$ci]}"
  n=$(case_units "$def")
  local key="$ci|$name"
  if [[ $case == evalsha && ${EVAL_OK[$name]:-0} != 1 ]]; then
    RES[$key|unsupported]=1
    return 0
  fi
  local pid=${SRV_PID[$name]} port=${SRV_PORT[$name]}
  local out="$WORK_DIR/bench.out" err="$WORK_DIR/bench.err"
  local -a args=(--host 127.0.0.1 --port "$port" --clients "$CLIENTS" --pipeline "$PIPELINE"
    --transactions "$n" --keyspace "$KEYSPACE" --timeout "$BENCH_TIMEOUT" --seed "$ROUND")
  if [[ $case == multi10 ]]; then
    args+=(--sets-per-tx "$SETS_PER_TX" --datasize "$DATASIZE")
  else
    args+=(--evalsha "$SCRIPT_SHA" --keys 1 --key-prefix ekey:)
  fi
  local before after rc=0 rate cmds units cpu_unit cpu_cmd

  before=$(tree_ticks "$pid")
  timeout --foreground $((BENCH_TIMEOUT + 10)) "$TXN_BENCH" "${args[@]}" >"$out" 2>"$err" || rc=$?
  after=$(tree_ticks "$pid")
  if ((rc == 130 || rc == 143)); then
    log "interrupted"
    exit "$rc"
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    log_tail "$err"
    log_tail "${SRV_LOG[$name]}"
    die "$name (pid $pid) died during $case"
  fi
  if ((rc != 0)); then
    log_tail "$err"
    check_fail "$name" "txn_bench failed in $case (exit $rc): $(tail -n 1 -- "$err")"
  fi
  check_sample_key "$name" "$case" "$out"
  if [[ $case == multi10 ]]; then
    units=$(field transactions "$out")
    rate=$(field transactions/s "$out")
  else
    units=$(field requests "$out")
    rate=$(field requests/s "$out")
  fi
  cmds=$(field commands "$out")
  [[ $units == "$n" && -n $rate && -n $cmds ]] ||
    die "internal: unexpected txn_bench output: $(tr '\n' ' ' <"$out")"
  cpu_unit=$(awk -v d=$((after - before)) -v hz="$CLK_TCK" -v n="$units" \
    'BEGIN { printf "%.4f", d * 1e6 / hz / n }')
  cpu_cmd=$(awk -v d=$((after - before)) -v hz="$CLK_TCK" -v n="$cmds" \
    'BEGIN { printf "%.4f", d * 1e6 / hz / n }')
  ((after - before < MIN_TICKS)) && LOW_TICKS=1
  RES[$key|rate]+=" $rate"
  RES[$key|cpu]+=" $cpu_unit"
  RES[$key|cpucmd]+=" $cpu_cmd"
  log "$(printf '%-8s %-6s %10.0f %s/s %8.3f us CPU/%s %7.3f us CPU/cmd (%d ticks)' \
    "$case" "$name" "$rate" "$unit" "$cpu_unit" "$unit" "$cpu_cmd" $((after - before)))"
}

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
for name in "${SERVERS[@]}"; do
  start_server "$name"
done
for name in "${SERVERS[@]}"; do
  flush_server "$name"
  load_script "$name"
done

counts=""
for c in "${CASES[@]}"; do
  IFS='|' read -r case def unit <<<"$c"
  counts+="${counts:+, }$case: $(case_units "$def") $unit"
done
log "rounds: $ROUNDS; -c $CLIENTS -P $PIPELINE; keys below $KEYSPACE; per run: $counts"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
  order=("${SERVERS[@]}")
  if ((ROUND % 2 == 0)); then
    order=()
    for ((i = ${#SERVERS[@]} - 1; i >= 0; i--)); do
      order+=("${SERVERS[$i]}")
    done
  fi
  log "round $ROUND/$ROUNDS"
  for ci in "${!CASES[@]}"; do
    for name in "${order[@]}"; do
      run_one "$ci" "$name"
    done
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ----------------------------------------------------------------- report
cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
redis_version=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*malloc=\([^ ]*\).*/\1 (\2)/p')
git_rev=$(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo unknown)
redhub_cmd="${REDHUBD#"$REPO_ROOT"/} ${REDHUB_EXTRA[*]}"
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
num() { # num DECIMALS VALUE: the figure, "unsupported", or FAIL if missing
  case $2 in
    unsupported) printf 'unsupported' ;;
    *) fmt_num "$1" "$2" FAIL ;;
  esac
}
ratio() { # ratio A B: A/B as "1.23x", or "–"
  awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b > 0) printf "%.2fx", a / b; else print "–" }'
}

echo "Machine: ${cpu_model:-unknown CPU}, nproc $(nproc), Linux $(uname -r), redis-server ${redis_version:-unknown}, $(date -u '+%Y-%m-%d %H:%M UTC'), load average $load_before before and $load_after after"
echo
echo "redhubd: \`$redhub_cmd\` at $git_rev; bench/txn_bench on 127.0.0.1, -c $CLIENTS -P $PIPELINE, keys below $KEYSPACE, $rounds_text; every reply checked; per run: $counts."
echo "multi10 = MULTI, $SETS_PER_TX x SET ($DATASIZE-byte values), EXEC (a unit is a transaction, $((SETS_PER_TX + 2)) commands); evalsha = EVALSHA of \`$SCRIPT_BODY\`, 1 key (a unit is a request, 1 command)."
echo
base_head=""
base_rule=""
if [[ -n $BASELINE ]]; then
  echo "base: \`${BASELINE#"$REPO_ROOT"/}\` with the same flags, in the same rounds."
  echo
  base_head=" base tx/s | redhub/base | base µs CPU/tx | redhub/base CPU |"
  base_rule="---:|---:|---:|---:|"
fi
echo "| case | redis tx/s | redhub tx/s | ratio | redis µs CPU/tx | redhub µs CPU/tx | CPU ratio | redis µs CPU/cmd | redhub µs CPU/cmd |$base_head"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|$base_rule"
for ci in "${!CASES[@]}"; do
  IFS='|' read -r case _ unit <<<"${CASES[$ci]}"
  declare -A R=() C=() K=()
  for name in "${SERVERS[@]}"; do
    if [[ -n ${RES[$ci|$name|unsupported]:-} ]]; then
      R[$name]=unsupported
      C[$name]=unsupported
      K[$name]=unsupported
    else
      R[$name]=$(median "$ci|$name|rate")
      C[$name]=$(median "$ci|$name|cpu")
      K[$name]=$(median "$ci|$name|cpucmd")
    fi
  done
  rr=$(ratio "${R[redhub]/unsupported/}" "${R[redis]/unsupported/}")
  cr=$(ratio "${C[redhub]/unsupported/}" "${C[redis]/unsupported/}")
  label="$case"
  [[ $unit == req ]] && label+=" (per request)"
  row="| $label | $(num 0 "${R[redis]}") | $(num 0 "${R[redhub]}") | $rr | $(num 3 "${C[redis]}") | $(num 3 "${C[redhub]}") | $cr | $(num 3 "${K[redis]}") | $(num 3 "${K[redhub]}") |"
  if [[ -n $BASELINE ]]; then
    row+=" $(num 0 "${R[base]}") | $(ratio "${R[redhub]/unsupported/}" "${R[base]/unsupported/}") | $(num 3 "${C[base]}") | $(ratio "${C[redhub]/unsupported/}" "${C[base]/unsupported/}") |"
  fi
  echo "$row"
  unset R C K
done
echo
echo "ratio = redhub tx/s ÷ redis tx/s (above 1.00x: redhub faster); CPU ratio = redhub µs CPU ÷ redis µs CPU (below 1.00x: redhub cheaper). For evalsha the tx/s columns are requests/s."
if ((LOW_TICKS)); then
  echo
  echo "Note: some runs used fewer than $MIN_TICKS CPU clock ticks (1 tick = $((1000 / CLK_TCK)) ms), so their µs CPU figures are coarse; use more transactions."
fi
