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
# redis-benchmark does not look at the replies it gets, so before the rounds
# every server must pass a reply check with real clients (redis-cli --pipe,
# redis-cli reading commands from stdin, and a raw byte-exact pipelined
# exchange larger than 256 KB), and after every run one benchmark key must
# read back as the benchmark's value. Any wrong reply ends the script with
# exit status 1, so no figure is printed for a server that answers wrongly.
#
# CPU per request = CPU time (utime+stime, plus cutime+cstime of reaped
# children) that the server and all its descendants used during the run,
# divided by the request count. It is read from /proc before and after every run. On a
# busy or shared machine it moves far less than req/s does.
#
# --baseline PATH adds a third server, another redhubd binary (the commit
# before a change, say), run with the same flags in the same rounds and
# turns, so that a regression shows against the same drift.
#
# --tls adds a TLS twin of every case: both servers also listen on a TLS
# port (a certificate made by the openssl CLI for the run, no client
# certificates), redis-benchmark --tls runs against it, and a second table
# gives each server's CPU per request over TLS next to plaintext.
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
KEYSPACE=1000000     # redis-benchmark -r: the same random key space for both servers; 0 = no -r
CASES_SEL=""         # --cases: comma-separated P<n> names
CASES_GIVEN=0
CMDS_SEL=""          # --cmds: comma-separated commands
CMDS_GIVEN=0
CHECK_TIMEOUT=20     # seconds allowed for each client call of the reply checks
BENCH_DATASIZE=3     # redis-benchmark -d default: the size of every SET value
BENCH_TIMEOUT=120    # seconds allowed for each redis-benchmark run
READY_TIMEOUT=10     # seconds allowed for a server to answer PING
STOP_TIMEOUT=5       # seconds between SIGTERM and SIGKILL at shutdown
TLS=0                # --tls: every case also over TLS
BASELINE=""          # --baseline PATH: a second redhubd, in the same rounds

# label|clients|pipeline|default requests|tls (1: over the TLS port)
CASES=(
  "c512 P1024|512|1024|10000000|0"
  "c50 P16|50|16|1000000|0"
  "c50 P1|50|1|200000|0"
)
CMDS=(SET GET)
SERVERS=(redis redhub)

usage() {
  cat <<EOF
Usage: bench/compare.sh [--redhubd PATH] [--rounds N] [--requests N] [--quick]
                        [--workers N] [--redhubd-args "ARGS"] [--keyspace N]
                        [--cases LIST] [--cmds LIST] [--tls]
                        [--baseline PATH]

Benchmarks redhubd and redis-server side by side on 127.0.0.1 with
redis-benchmark (SET and GET; -c 512 -P 1024, -c 50 -P 16, -c 50 -P 1) and
prints a Markdown table of medians to stdout. Progress goes to stderr.
Before the rounds both servers must pass a reply check (redis-benchmark does
not check replies); after every run one benchmark key is read back. A wrong
reply stops the script with exit status 1.

  --redhubd PATH        redhubd binary (default: build/master/redhubd under
                        the repository root)
  --rounds N            rounds, each running every case on both servers
                        (default: 3)
  --requests N          request count for every case (default: 10000000 for
                        P1024, 1000000 for P16, 200000 for P1)
  --quick               divide request counts by 10 and run 1 round (an
                        explicit --rounds still applies)
  --workers N           pass --workers N to redhubd
  --redhubd-args ARGS   more redhubd arguments, split on whitespace
  --keyspace N          redis-benchmark -r N: random keys key:000000000000 to
                        key:<N-1> (default: 1000000). 0 = no -r: every
                        request uses the one key "key:__rand_int__"
  --cases LIST          comma-separated cases by pipeline depth, from P1024,
                        P16, P1 (default: all), e.g. --cases P1024,P16
  --cmds LIST           comma-separated commands, from SET, GET (default:
                        both). SET always runs before GET. With GET and no
                        SET, the keys are loaded with one untimed SET run
                        before the rounds
  --tls                 also run every case over TLS (redis-benchmark --tls
                        against redis-server --tls-port and redhubd
                        --tls-port, certificates made with the openssl CLI)
                        and print the TLS cost per request next to plaintext
  --baseline PATH       also run this redhubd binary (same flags, same
                        rounds, taking turns with the others) and add its
                        columns and redhub/base ratios to the table
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
    --redhubd | --rounds | --requests | --workers | --redhubd-args | --keyspace | --cases | --cmds | --baseline)
      (($# >= 2)) || die "$opt needs a value"
      val=$2
      shift
      ;;
  esac
  case $opt in
    --redhubd) REDHUBD=$val ;;
    --baseline) BASELINE=$val ;;
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
    --keyspace)
      [[ $val =~ ^[0-9]+$ ]] ||
        die "--keyspace needs a non-negative integer (0 = one key, no -r), got '$val'"
      ((${#val} <= 10)) || die "--keyspace is too large: '$val'"
      KEYSPACE=$((10#$val))
      ;;
    --cases)
      CASES_SEL=$val
      CASES_GIVEN=1
      ;;
    --cmds)
      CMDS_SEL=$val
      CMDS_GIVEN=1
      ;;
    --quick) QUICK=1 ;;
    --tls) TLS=1 ;;
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

# Keep the cases named in --cases (by their "P<n>" part), in table order.
select_cases() {
  local list=$1 item want ci p known="" found
  local -a items=() picked=()
  local -A chosen=()
  for ci in "${!CASES[@]}"; do
    IFS='|' read -r _ _ p _ <<<"${CASES[$ci]}"
    known+="${known:+, }P$p"
  done
  IFS=',' read -r -a items <<<"$list"
  ((${#items[@]})) || die "--cases needs at least one of: $known"
  for item in "${items[@]}"; do
    item=${item//[[:space:]]/}
    [[ -n $item ]] || die "--cases: empty name in '$list' (known: $known)"
    want=${item^^}
    found=0
    for ci in "${!CASES[@]}"; do
      IFS='|' read -r _ _ p _ <<<"${CASES[$ci]}"
      if [[ $want == "P$p" ]]; then
        chosen[$ci]=1
        found=1
      fi
    done
    ((found)) || die "--cases: unknown case '$item' (known: $known)"
  done
  for ci in "${!CASES[@]}"; do
    if [[ -n ${chosen[$ci]:-} ]]; then
      picked+=("${CASES[$ci]}")
    fi
  done
  CASES=("${picked[@]}")
}

# Keep the commands named in --cmds, in the order of CMDS (SET before GET).
select_cmds() {
  local list=$1 item want cmd found
  local -a items=() picked=()
  local -A chosen=()
  IFS=',' read -r -a items <<<"$list"
  ((${#items[@]})) || die "--cmds needs at least one of: ${CMDS[*]}"
  for item in "${items[@]}"; do
    item=${item//[[:space:]]/}
    [[ -n $item ]] || die "--cmds: empty name in '$list' (known: ${CMDS[*]})"
    want=${item^^}
    found=0
    for cmd in "${CMDS[@]}"; do
      if [[ $want == "$cmd" ]]; then
        chosen[$cmd]=1
        found=1
      fi
    done
    ((found)) || die "--cmds: unknown command '$item' (known: ${CMDS[*]})"
  done
  for cmd in "${CMDS[@]}"; do
    if [[ -n ${chosen[$cmd]:-} ]]; then
      picked+=("$cmd")
    fi
  done
  CMDS=("${picked[@]}")
}

if ((CASES_GIVEN)); then
  select_cases "$CASES_SEL"
fi
if ((CMDS_GIVEN)); then
  select_cmds "$CMDS_SEL"
fi
# Each selected case, then its TLS twin right after it.
if ((TLS)); then
  tls_cases=()
  for c in "${CASES[@]}"; do
    IFS='|' read -r label clients pipeline def _ <<<"$c"
    tls_cases+=("$c" "$label TLS|$clients|$pipeline|$def|1")
  done
  CASES=("${tls_cases[@]}")
fi

# redis-benchmark key options: -r N, or none for the one key key:__rand_int__.
KEY_ARGS=()
if ((KEYSPACE > 0)); then
  KEY_ARGS=(-r "$KEYSPACE")
  keys_text="-r $KEYSPACE"
else
  keys_text="one key (no -r)"
fi

REDHUB_EXTRA=()
if [[ -n $WORKERS ]]; then
  REDHUB_EXTRA+=(--workers "$WORKERS")
fi
if [[ -n $REDHUBD_ARGS ]]; then
  read -r -a extra_words <<<"$REDHUBD_ARGS"
  REDHUB_EXTRA+=("${extra_words[@]}")
fi

tools=(redis-server redis-benchmark redis-cli timeout getconf)
((TLS)) && tools+=(openssl)
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found in PATH"
done
[[ -x $REDHUBD ]] || die "redhubd not found or not executable: $REDHUBD (build it, or pass --redhubd PATH)"
if [[ -n $BASELINE ]]; then
  [[ -x $BASELINE ]] || die "--baseline: not found or not executable: $BASELINE"
  SERVERS+=(base)
fi
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
declare -A SRV_PID=() SRV_PORT=() SRV_LOG=() SRV_TLS_PORT=()

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

# --tls: the TLS port answers PING too (after the plaintext one did).
wait_tls_ready() {
  local name=$1 start=$SECONDS reply
  ((TLS)) && [[ $name != base ]] || return 0
  while ((SECONDS - start < READY_TIMEOUT)); do
    kill -0 "${SRV_PID[$name]}" 2>/dev/null || return 1
    reply=$(timeout 2 redis-cli -h 127.0.0.1 -p "${SRV_TLS_PORT[$name]}" --tls \
      --cacert "$TLS_DIR/ca.crt" ping 2>/dev/null || true)
    [[ $reply == PONG ]] && return 0
    sleep 0.05
  done
  log_tail "${SRV_LOG[$name]}"
  die "$name did not answer PING on its TLS port ${SRV_TLS_PORT[$name]} within ${READY_TIMEOUT}s"
}

# --tls: a CA and a server certificate for 127.0.0.1 (EC P-256), the same
# for both servers; clients are not asked for certificates.
TLS_DIR="$WORK_DIR/tls"
make_tls_certs() {
  mkdir -p -- "$TLS_DIR"
  (
    cd -- "$TLS_DIR"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
    openssl req -x509 -new -key ca.key -out ca.crt -days 2 -subj /CN=compare-ca
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server.key
    openssl req -new -key server.key -out server.csr -subj /CN=127.0.0.1
    printf 'subjectAltName=IP:127.0.0.1\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt \
      -days 2 -extfile server.ext
  ) >"$WORK_DIR/openssl.log" 2>&1 || {
    log_tail "$WORK_DIR/openssl.log"
    die "openssl could not make the TLS certificates"
  }
}

# The servers run in their own session (setsid), so a Ctrl-C at the terminal
# stops the script and redis-benchmark but not the servers; cleanup() then
# stops them by PID. The script is not a process group leader's job-control
# shell, so setsid execs in place and $! is the server's own PID.
start_server() {
  local name=$1 attempt port log tls_port=""
  local -a tls_args=()
  for attempt in 1 2 3; do
    port=$(free_port)
    # The baseline may predate TLS: it runs the plaintext cases only.
    if ((TLS)) && [[ $name != base ]]; then
      tls_port=$(free_port)
      tls_args=(--tls-port "$tls_port" --tls-cert-file "$TLS_DIR/server.crt"
        --tls-key-file "$TLS_DIR/server.key" --tls-auth-clients no)
    fi
    log="$WORK_DIR/$name.$attempt.log"
    case $name in
      redis)
        setsid redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
          --daemonize no --protected-mode no ${tls_args[@]+"${tls_args[@]}"} >"$log" 2>&1 &
        ;;
      redhub | base)
        local binary=$REDHUBD
        [[ $name == base ]] && binary=$BASELINE
        setsid "$binary" --bind 127.0.0.1 --port "$port" ${tls_args[@]+"${tls_args[@]}"} \
          ${REDHUB_EXTRA[@]+"${REDHUB_EXTRA[@]}"} >"$log" 2>&1 &
        ;;
      *) die "unknown server $name" ;;
    esac
    SRV_PID[$name]=$!
    SRV_PORT[$name]=$port
    SRV_TLS_PORT[$name]=$tls_port
    SRV_LOG[$name]=$log
    if wait_ready "$name" && wait_tls_ready "$name"; then
      log "$name ready: pid ${SRV_PID[$name]}, port $port${tls_port:+, TLS port $tls_port}"
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

# ---------------------------------------------------------- reply checks
# redis-benchmark counts replies but never looks at them, so a server that
# answers wrongly could still post a fine figure. These checks use real
# clients and compare every reply exactly; any wrong reply ends the script.
# Their keys start with "cmpcheck:"; FLUSHALL removes them before the rounds.

CHECK_A_KEYS=2000 # check a: distinct keys written in one redis-cli --pipe batch
CHECK_B_KEYS=300  # check b: SETs (then GETs) in one batch of more than 256 KB
CHECK_B_SIZE=1024 # check b: bytes per value

# The value of every SET that redis-benchmark sends: newer versions (7.0
# here) make it with genBenchmarkRandomData() in redis-benchmark.c (an LCG
# seeded with 1234, one character '0' + 6 bits per byte); older ones send
# all 'x'.
# The first check that reads a benchmark key settles which one this
# redis-benchmark uses; from then on only that value is accepted.
bench_random_data() {
  local n=$1 state=1234 i out="" ch
  for ((i = 0; i < n; i++)); do
    state=$(((state * 1103515245 + 12345) & 0xFFFFFFFF))
    printf -v ch '%03o' $((48 + ((state >> 16) & 63)))
    printf -v ch %b "\\0$ch"
    out+=$ch
  done
  printf '%s' "$out"
}
BENCH_VALUE_NEW=$(bench_random_data "$BENCH_DATASIZE")
BENCH_VALUE_OLD=$(printf "%${BENCH_DATASIZE}s" '' | tr ' ' x)
BENCH_VALUE="" # set by the first successful bench_value_ok

bench_value_ok() {
  local got=$1
  if [[ -n $BENCH_VALUE ]]; then
    [[ $got == "$BENCH_VALUE" ]]
    return
  fi
  if [[ $got == "$BENCH_VALUE_NEW" || $got == "$BENCH_VALUE_OLD" ]]; then
    BENCH_VALUE=$got
    return 0
  fi
  return 1
}

bench_value_text() {
  if [[ -n $BENCH_VALUE ]]; then
    printf "'%s'" "$BENCH_VALUE"
  else
    printf "'%s' (or '%s' from an older redis-benchmark)" "$BENCH_VALUE_NEW" "$BENCH_VALUE_OLD"
  fi
}

# redis-cli against one server port, limited to CHECK_TIMEOUT seconds, so
# that a server that hangs fails the check instead of hanging the script.
cli() {
  local port=$1
  shift
  timeout "$CHECK_TIMEOUT" redis-cli -h 127.0.0.1 -p "$port" "$@"
}

exit_text() { # exit_text RC: how a client call ended
  case $1 in
    0) printf 'exit 0' ;;
    124) printf 'timed out after %ss' "$CHECK_TIMEOUT" ;;
    3) printf 'could not connect' ;;
    *) printf 'exit %s' "$1" ;;
  esac
}

check_fail() {
  local name=$1
  shift
  log_tail "${SRV_LOG[$name]}"
  die "reply check failed on $name (pid ${SRV_PID[$name]}, port ${SRV_PORT[$name]}): $*"
}

# first_diff WANT GOT: how many lines differ and the first of them, with
# values cut to 60 bytes and CRs dropped.
first_diff() {
  awk '
    function cut(s) {
      gsub(/\r/, "", s)
      return length(s) > 60 ? substr(s, 1, 60) "..." : s
    }
    NR == FNR { want[FNR] = $0; nw = FNR; next }
    { got[FNR] = $0; ng = FNR }
    END {
      n = nw > ng ? nw : ng
      bad = 0
      for (i = 1; i <= n; i++) {
        if ((i in want) && (i in got) && want[i] == got[i]) continue
        if (!bad++) first = i
      }
      if (!bad) { printf "no line differs"; exit }
      printf "%d of %d lines wrong, first at line %d: expected [%s], got [%s]", bad, nw, first,
        (first in want) ? cut(want[first]) : "<nothing>",
        (first in got) ? cut(got[first]) : "<nothing>"
    }' "$1" "$2"
}

expect_dbsize() { # expect_dbsize NAME COUNT WHEN
  local out rc=0
  out=$(cli "${SRV_PORT[$1]}" DBSIZE 2>&1) || rc=$?
  if ((rc != 0)) || [[ $out != "$2" ]]; then
    check_fail "$1" "DBSIZE $3 replied '$out' ($(exit_text "$rc")), expected $2"
  fi
}

flush_server() { # flush_server NAME WHEN
  local out rc=0
  out=$(cli "${SRV_PORT[$1]}" FLUSHALL 2>&1) || rc=$?
  if ((rc != 0)) || [[ $out != OK ]]; then
    check_fail "$1" "FLUSHALL $2 replied '$out' ($(exit_text "$rc")), expected OK"
  fi
  expect_dbsize "$1" 0 "after FLUSHALL $2"
}

# Printable values without '"' and '\' so that redis-cli --no-raw prints them
# unchanged between double quotes.
CHECK_POOL='ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 !#$%&()*+,-./:;<=>?@[]^_{|}~'

# Check a files in DIR: a.resp (N SETs of distinct keys and values, RESP),
# a.get (N inline GETs) and a.want (the GET replies as redis-cli --no-raw
# prints them).
gen_check_a() {
  awk -v dir="$1" -v n="$CHECK_A_KEYS" -v pool="$CHECK_POOL" '
    BEGIN {
      np = length(pool)
      pool = pool pool
      for (i = 1; i <= n; i++) {
        k = "cmpcheck:a:" i
        v = "val" i "-" substr(pool, (i * 31) % np + 1, 1 + (i * 7) % 61)
        printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, length(v), v > (dir "/a.resp")
        printf "GET %s\n", k > (dir "/a.get")
        printf "\"%s\"\n", v > (dir "/a.want")
      }
    }'
}

# Check b files in DIR: b.req (N SETs of SIZE-byte distinct values, then N
# GETs of them, then PING and QUIT, RESP, one batch), b.want (the exact reply
# bytes), b.get and b.getwant (inline GETs and their --no-raw replies).
gen_check_b() {
  awk -v dir="$1" -v n="$CHECK_B_KEYS" -v size="$CHECK_B_SIZE" -v pool="$CHECK_POOL" '
    BEGIN {
      np = length(pool)
      req = dir "/b.req"
      want = dir "/b.want"
      for (i = 1; i <= n; i++) {
        key[i] = "cmpcheck:b:" i
        v = "big" i ":"
        o = (i * 17) % np
        while (length(v) < size) v = v substr(pool, o + 1) substr(pool, 1, o)
        val[i] = substr(v, 1, size)
      }
      for (i = 1; i <= n; i++) {
        printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(key[i]), key[i], size, val[i] > req
        printf "+OK\r\n" > want
      }
      for (i = 1; i <= n; i++) {
        printf "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", length(key[i]), key[i] > req
        printf "$%d\r\n%s\r\n", size, val[i] > want
        printf "GET %s\n", key[i] > (dir "/b.get")
        printf "\"%s\"\n", val[i] > (dir "/b.getwant")
      }
      printf "*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nQUIT\r\n" > req
      printf "+PONG\r\n+OK\r\n" > want
    }'
}

# raw_exchange PORT REQUEST-FILE OUT-FILE: send the whole file on one TCP
# connection while reading the replies into OUT-FILE until the server closes
# the connection (the file ends with QUIT) or CHECK_TIMEOUT seconds pass.
# cat writes out what it reads at once, so OUT-FILE holds every byte that
# came, also after a time-out. redis-cli --pipe only counts replies, so this
# is the byte-exact check of the replies to one large pipelined batch.
# Returns 3 if it cannot connect.
raw_exchange() {
  local port=$1 req=$2 out=$3 fd="" wpid rc=0 wrc=0
  : >"$out"
  exec {fd}<>"/dev/tcp/127.0.0.1/$port" || true
  [[ -n $fd ]] || return 3
  timeout "$CHECK_TIMEOUT" cat -- "$req" >&"$fd" &
  wpid=$!
  timeout "$CHECK_TIMEOUT" cat <&"$fd" >"$out" || rc=$?
  wait "$wpid" || wrc=$?
  exec {fd}>&-
  ((rc == 0)) || return "$rc"
  return "$wrc"
}

# The checks run once per server before the rounds.
check_server() {
  local name=$1 port=${SRV_PORT[$1]} dir="$WORK_DIR/check-$1" out rc size nbytes diff_at
  mkdir -p -- "$dir"
  flush_server "$name" "before the checks"

  # a. CHECK_A_KEYS distinct keys written in one pipelined batch, read back
  #    one GET at a time, every value compared.
  gen_check_a "$dir"
  rc=0
  cli "$port" --pipe <"$dir/a.resp" >"$dir/a.pipe" 2>&1 || rc=$?
  out=$(tail -n 1 -- "$dir/a.pipe")
  if ((rc != 0)) || [[ $out != "errors: 0, replies: $CHECK_A_KEYS" ]]; then
    check_fail "$name" "redis-cli --pipe with $CHECK_A_KEYS SETs ($(exit_text "$rc")) ended with" \
      "'$out', expected 'errors: 0, replies: $CHECK_A_KEYS'"
  fi
  rc=0
  cli "$port" --no-raw <"$dir/a.get" >"$dir/a.got" 2>&1 || rc=$?
  if ((rc != 0)) || ! cmp -s -- "$dir/a.want" "$dir/a.got"; then
    check_fail "$name" "GET of the $CHECK_A_KEYS keys written by redis-cli --pipe ($(exit_text "$rc")):" \
      "$(first_diff "$dir/a.want" "$dir/a.got")"
  fi
  expect_dbsize "$name" "$CHECK_A_KEYS" "after $CHECK_A_KEYS SETs of distinct keys"

  # b. One batch of more than 256 KB (SETs of 1 KB values, GETs of them,
  #    PING, QUIT), written in one go so that commands straddle socket reads;
  #    the reply bytes must be exactly the expected ones, nothing more.
  gen_check_b "$dir"
  size=$(wc -c <"$dir/b.req")
  nbytes=$(wc -c <"$dir/b.want")
  ((size > 262144)) || die "internal: check batch is only $size bytes"
  rc=0
  raw_exchange "$port" "$dir/b.req" "$dir/b.got" || rc=$?
  if ((rc != 0)) || ! cmp -s -- "$dir/b.want" "$dir/b.got"; then
    out="got $(wc -c <"$dir/b.got") reply bytes, expected $nbytes"
    if ((rc == 124)); then
      out+=" (the server did not close the connection after QUIT)"
    fi
    if ! cmp -s -- "$dir/b.want" "$dir/b.got"; then
      diff_at=$(cmp -- "$dir/b.want" "$dir/b.got" 2>&1 | head -n 1 || true)
      out+="; ${diff_at//"$dir/"/}"
      out+="; $(first_diff "$dir/b.want" "$dir/b.got")"
    fi
    check_fail "$name" "one pipelined batch of $size bytes ($CHECK_B_KEYS SETs of $CHECK_B_SIZE-byte" \
      "values, $CHECK_B_KEYS GETs, PING, QUIT; $(exit_text "$rc")): $out"
  fi
  #    The same values read back by another client.
  rc=0
  cli "$port" --no-raw <"$dir/b.get" >"$dir/b.got2" 2>&1 || rc=$?
  if ((rc != 0)) || ! cmp -s -- "$dir/b.getwant" "$dir/b.got2"; then
    check_fail "$name" "GET of the $CHECK_B_KEYS keys of the large batch ($(exit_text "$rc")):" \
      "$(first_diff "$dir/b.getwant" "$dir/b.got2")"
  fi
  expect_dbsize "$name" $((CHECK_A_KEYS + CHECK_B_KEYS)) "after both check batches"
  log "$name: replies to $CHECK_A_KEYS pipelined SETs and a $size-byte batch are right"
}

# c. After a benchmark run: one key that redis-benchmark wrote must hold the
#    benchmark's value, and the key count must fit the key space.
check_bench_key() {
  local name=$1 what=$2 port=${SRV_PORT[$1]} key out rc=0
  local -a lines=()
  if ((KEYSPACE == 0)); then
    key="key:__rand_int__"
  else
    key=$(cli "$port" RANDOMKEY 2>&1) || rc=$?
    if ((rc != 0)) || ! [[ $key =~ ^key:[0-9]{12}$ ]] || ((10#${key#key:} >= KEYSPACE)); then
      check_fail "$name" "after $what: RANDOMKEY replied '$key' ($(exit_text "$rc")), expected a" \
        "benchmark key (key: and 12 digits, below $KEYSPACE)"
    fi
  fi
  out=$(printf 'GET %s\nDBSIZE\n' "$key" | cli "$port" 2>&1) || rc=$?
  mapfile -t lines <<<"$out"
  if ((rc != 0)) || ! bench_value_ok "${lines[0]:-}"; then
    check_fail "$name" "after $what: GET $key replied '${lines[0]:-}' ($(exit_text "$rc")), expected" \
      "$(bench_value_text)"
  fi
  if ((KEYSPACE == 0)); then
    if [[ ${lines[1]:-} != 1 ]]; then
      check_fail "$name" "after $what: DBSIZE replied '${lines[1]:-}', expected 1 (without -r" \
        "redis-benchmark writes only $key)"
    fi
  elif ! [[ ${lines[1]:-} =~ ^[0-9]+$ ]] || ((lines[1] < 1 || lines[1] > KEYSPACE)); then
    check_fail "$name" "after $what: DBSIZE replied '${lines[1]:-}', expected 1 to $KEYSPACE"
  fi
}

# With GET but no SET, fill the key space once (untimed) so that the GETs
# read values as they do after a SET run.
PRELOAD=0
preload_keys() {
  local name=$1 port=${SRV_PORT[$1]} rc=0
  local -a args=(-c 1 -n 1)
  if ((KEYSPACE > 0)); then
    args=(-c 50 -P 64 -n $((2 * KEYSPACE)) -r "$KEYSPACE")
  fi
  log "$name: loading keys with redis-benchmark -t set ${args[*]}"
  timeout --foreground "$BENCH_TIMEOUT" redis-benchmark -h 127.0.0.1 -p "$port" "${args[@]}" \
    -t set -q >"$WORK_DIR/preload.out" 2>&1 || rc=$?
  if ((rc != 0)); then
    log_tail "$WORK_DIR/preload.out"
    die "loading the keys into $name failed ($(exit_text "$rc"))"
  fi
  check_bench_key "$name" "loading the keys"
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
  local ci=$1 cmd=$2 name=$3 label clients pipeline _def tls n
  IFS='|' read -r label clients pipeline _def tls <<<"${CASES[$ci]}"
  n=$(case_requests "$_def")
  local pid=${SRV_PID[$name]} port=${SRV_PORT[$name]}
  local -a tls_args=()
  [[ $tls == 1 && $name == base ]] && return 0
  if ((tls)); then
    port=${SRV_TLS_PORT[$name]}
    tls_args=(--tls --cacert "$TLS_DIR/ca.crt")
  fi
  local out="$WORK_DIR/bench.out" err="$WORK_DIR/bench.err"
  local before after rc=0 fields rps p50 p99 cpu

  before=$(tree_ticks "$pid")
  # --foreground keeps redis-benchmark in our process group so that Ctrl-C
  # reaches it.
  timeout --foreground "$BENCH_TIMEOUT" redis-benchmark -h 127.0.0.1 -p "$port" \
    -c "$clients" -P "$pipeline" -n "$n" ${KEY_ARGS[@]+"${KEY_ARGS[@]}"} \
    ${tls_args[@]+"${tls_args[@]}"} -t "${cmd,,}" -q --csv >"$out" 2>"$err" || rc=$?
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
  check_bench_key "$name" "$label $cmd run"
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
((TLS)) && make_tls_certs
for name in "${SERVERS[@]}"; do
  start_server "$name"
done

for name in "${SERVERS[@]}"; do
  check_server "$name"
done
log "replies verified on redis and redhub"
for name in "${SERVERS[@]}"; do
  flush_server "$name" "after the checks"
done

have_set=0
have_get=0
for cmd in "${CMDS[@]}"; do
  case $cmd in
    SET) have_set=1 ;;
    GET) have_get=1 ;;
  esac
done
if ((have_get && !have_set)); then
  PRELOAD=1
  for name in "${SERVERS[@]}"; do
    preload_keys "$name"
  done
fi

counts=""
for ci in "${!CASES[@]}"; do
  IFS='|' read -r label _ _ def _ <<<"${CASES[$ci]}"
  counts+="${counts:+, }$label: $(case_requests "$def")"
done
log "rounds: $ROUNDS; keys: $keys_text; commands: ${CMDS[*]}; requests per run: $counts"

for ((round = 1; round <= ROUNDS; round++)); do
  # Odd rounds run redis first in every pair, even rounds redhub, so that
  # neither server always runs right after the other has loaded the machine.
  order=("${SERVERS[@]}")
  if ((round % 2 == 0)); then
    # Reversed: each server runs right after a different one.
    order=()
    for ((i = ${#SERVERS[@]} - 1; i >= 0; i--)); do
      order+=("${SERVERS[$i]}")
    done
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
preload_text=""
if ((PRELOAD)); then
  if ((KEYSPACE > 0)); then
    preload_text=", keys loaded by one untimed SET run"
  else
    preload_text=", the key set once untimed"
  fi
fi
tls_text=""
if ((TLS)); then
  tls_text="; \"TLS\" cases: redis-benchmark --tls to each server's --tls-port ($(openssl version | awk '{ print $1, $2 }'), EC P-256 certificate, no client certificates)"
fi
echo "redhubd: \`$redhub_cmd\` at $git_rev; redis-benchmark on 127.0.0.1, $keys_text$preload_text, $rounds_text; replies verified; requests per run: $counts$tls_text."
echo
base_head=""
base_rule=""
if [[ -n $BASELINE ]]; then
  echo "base: \`${BASELINE#"$REPO_ROOT"/}\` with the same flags, in the same rounds; redhub/base < 1.00x in req/s (or > 1.00x in CPU) is a regression."
  echo
  base_head=" base req/s | redhub/base | base µs CPU/req | redhub/base CPU |"
  base_rule="---:|---:|---:|---:|"
fi
echo "| case | cmd | redis req/s | redhub req/s | ratio | redis µs CPU/req | redhub µs CPU/req | redis p50/p99 ms | redhub p50/p99 ms |$base_head"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|$base_rule"
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
    base_cols=""
    IFS='|' read -r _ _ _ _ case_tls <<<"${CASES[$ci]}"
    if [[ -n $BASELINE && $case_tls == 1 ]]; then
      base_cols=" – | – | – | – |" # the baseline runs plaintext only
    elif [[ -n $BASELINE ]]; then
      b_rps=$(median "$ci|$cmd|base|rps")
      b_cpu=$(median "$ci|$cmd|base|cpu")
      h_rps_raw=$(median "$ci|$cmd|redhub|rps")
      h_cpu_raw=$(median "$ci|$cmd|redhub|cpu")
      rr=$(awk -v a="$h_rps_raw" -v b="$b_rps" 'BEGIN { if (a != "" && b > 0) printf "%.2fx", a / b; else print "–" }')
      cr=$(awk -v a="$h_cpu_raw" -v b="$b_cpu" 'BEGIN { if (a != "" && b > 0) printf "%.2fx", a / b; else print "–" }')
      base_cols=" $(fmt_num 0 "$b_rps" FAIL) | $rr | $(fmt_num 3 "$b_cpu" –) | $cr |"
    fi
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |%s\n' \
      "$label" "$cmd" "$r_rps" "$h_rps" "$ratio" "$r_cpu" "$h_cpu" "$r_lat" "$h_lat" "$base_cols"
  done
done
# --tls: what TLS costs each server per request, case by case.
if ((TLS)); then
  echo
  echo "TLS cost: µs of server CPU per request, plaintext -> TLS (difference)."
  echo
  echo "| case | cmd | redis plain | redis TLS | redis +TLS | redhub plain | redhub TLS | redhub +TLS |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|"
  for ci in "${!CASES[@]}"; do
    IFS='|' read -r label _ _ _ tls <<<"${CASES[$ci]}"
    ((tls)) && continue
    tci=$((ci + 1)) # its TLS twin comes right after it
    for cmd in "${CMDS[@]}"; do
      row="| $label | $cmd"
      for name in redis redhub; do
        plain=$(median "$ci|$cmd|$name|cpu")
        over=$(median "$tci|$cmd|$name|cpu")
        diff="–"
        if [[ -n $plain && -n $over ]]; then
          diff=$(awk -v a="$over" -v b="$plain" 'BEGIN { printf "%+.3f", a - b }')
        fi
        row+=" | $(fmt_num 3 "$plain" –) | $(fmt_num 3 "$over" –) | $diff"
      done
      echo "$row |"
    done
  done
fi
if ((LOW_TICKS)); then
  echo
  echo "Note: some runs used fewer than $MIN_TICKS CPU clock ticks (1 tick = $((1000 / CLK_TCK)) ms), so their µs CPU/req figures are coarse; use more requests."
fi
