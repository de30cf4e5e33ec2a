#!/usr/bin/env bash
# auth-flood.sh (make bench-flood, part of make bench): does a flood of wrong
# basic-auth passwords on the HTTP port slow the proxy down? One agent with
# an http.auth user (bcrypt at the default cost) in front of redis; PING
# latency through the proxy with no flood, with 16 and 1,000 wrong passwords
# a second from one address and 1,000 a second from 100 addresses (a new
# wrong password each time), the same with one wrong password repeated
# (what the agent's cache of refused credentials answers), and the
# control: the same 100-address flood sent to a sink on the probe's core
# instead of the agent (what the flood costs the measuring side), in
# interleaved rounds of the same run (see auth-flood/main.go), with the CPU
# time the agent, the flood and each core used per window and the bcrypt
# comparisons the agent ran per phase. Target: p99
# within 1.2x of no flood.
#
# Layout as proxy-bench.sh: redis and the agent on CPU0 (the agent started
# under taskset, so Go's GOMAXPROCS is 1), the probe and the flood on CPU1.
# Env: ROUNDS [3] DURATION [8s] WARMUP [2s] FLOODS [0,16,1000,1000x100,1000x100@same,1000x100@sink]
#      (RATE[xADDRS][@same][@sink][@cpuN]: @same repeats one wrong password,
#      @cpuN runs that flood on CPU N)
#      PING_RATE [2000] LAYOUT [srv0-cli1|none] REDHAVEN_BIN [dist/redhaven]
#      NICE [unset]: run redis, the agent, the probe and the flood at this
#      niceness (e.g. -15) on a machine that other work keeps busy
#      OUT_DIR [e2e/bench/results/flood-<date>]
# Ports 7001 (redis) and 7500, 7510, 7511, 7590 (redhaven) must be free.
. "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8s}
WARMUP=${WARMUP:-2s}
FLOODS=${FLOODS:-0,16,1000,1000x100,1000x100@same,1000x100@sink}
PING_RATE=${PING_RATE:-2000}
LAYOUT=${LAYOUT:-srv0-cli1}
STAMP=$(date +%Y%m%d-%H%M%S)
OUT_DIR=${OUT_DIR:-$BENCH_DIR/results/flood-$STAMP}
RUN=$RUN_ROOT/flood-$STAMP
BIN=${REDHAVEN_BIN:-$BENCH_DIR/../../dist/redhaven}
TOOL=$BENCH_DIR/bin/auth-flood
mkdir -p "$RUN" "$OUT_DIR"
trap 'stop_all' EXIT
trap 'exit 130' INT TERM
for t in redis-server redis-cli taskset go; do command -v $t >/dev/null || die "$t missing: apt-get install redis-server redis-tools util-linux"; done
[ -x "$BIN" ] || die "$BIN missing: run make build"
for p in 7001 7500 7510 7511 7590; do port_free $p || die "port $p busy"; done
if [ ! -x "$TOOL" ] || [ "$BENCH_DIR/auth-flood/main.go" -nt "$TOOL" ]; then
  log "building $TOOL"
  (cd "$BENCH_DIR" && go build -o bin/auth-flood ./auth-flood) || die "go build auth-flood failed"
fi
case $LAYOUT in
  none) AGENT_PIN=(); CLI_PIN=() ;;
  srv0-cli1) AGENT_PIN=(taskset -c 0); CLI_PIN=(taskset -c 1) ;;
  *) die "unknown LAYOUT $LAYOUT" ;;
esac
NICE=${NICE:-}
[ -n "$NICE" ] && { AGENT_PIN=(nice -n "$NICE" "${AGENT_PIN[@]}"); CLI_PIN=(nice -n "$NICE" "${CLI_PIN[@]}"); }

# A real user with a real bcrypt hash (redhaven passwd); the flood never
# sends its password. The bench logs in from 127.0.0.3 only, an address no
# flood uses: an address a user logged in from is not refused at accept
# for 5 minutes, which would change the one-address floods from 127.0.0.1.
PW=$(head -c 18 /dev/urandom | base64)
HASH=$(printf '%s\n' "$PW" | "$BIN" passwd) || die "redhaven passwd failed"
start_redis "$BENCH_DIR/conf/redis-7001.conf" 7001 "$RUN/redis-7001.log" --dir "$RUN"; REDIS_PID=$LAST_PID
start_agent redhaven 7500 7510 7511 7590 "" "  auth:
    - {name: admin, role: admin, password_hash: '$HASH'}"; RH_PID=$LAST_PID
wait_port 7500 10 || die "redhaven did not start (see $RUN/redhaven.log)"
for i in $(seq 1 100); do [ "$(rcli -p 7500 SET bench:ready 1 2>/dev/null)" = OK ] && break; sleep 0.1; done
[ "$(rcli -p 7500 PING)" = PONG ] || die "PING via redhaven failed (see $RUN/redhaven.log)"
[ "$LAYOUT" = srv0-cli1 ] && { taskset -apc 0 "$REDIS_PID" >/dev/null || die "taskset 0 $REDIS_PID"; }
[ -n "$NICE" ] && { renice -n "$NICE" -p "$REDIS_PID" >/dev/null || die "renice $REDIS_PID"; }
curl -sf --interface 127.0.0.3 -u "admin:$PW" http://127.0.0.1:7590/api/v1/stats >/dev/null || die "the right password is refused (see $RUN/redhaven.log)"
{
  echo "redhaven: $("$BIN" version); GOMAXPROCS=$(curl -s --interface 127.0.0.3 -u "admin:$PW" http://127.0.0.1:7590/metrics | awk '$1=="go_sched_gomaxprocs_threads"{print $2}')"
  echo "cpus:     $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
  echo "layout:   $LAYOUT${NICE:+, nice $NICE}; rounds $ROUNDS x $DURATION per phase after $WARMUP of flood; PING $PING_RATE/s over 4 connections"
  echo "load:     $(uptime | sed 's/.*load average/load average/') (start)"
  echo
  echo "== proxy PING latency under wrong-password floods on the HTTP port (target: p99 within 1.2x of no flood) =="
  AUTH_FLOOD_PASSWORD=$PW "${CLI_PIN[@]}" "$TOOL" -redis 127.0.0.1:7500 -http 127.0.0.1:7590 -user admin -floods "$FLOODS" \
    -rounds "$ROUNDS" -duration "$DURATION" -warmup "$WARMUP" -ping-rate "$PING_RATE" -agent-pid "$RH_PID" 2>>"$OUT_DIR/progress.log" \
    || die "auth-flood failed (see $OUT_DIR/progress.log)"
  echo "load:     $(uptime | sed 's/.*load average/load average/') (end)"
} | tee "$OUT_DIR/report.txt"
log "results in $OUT_DIR"
