#!/usr/bin/env bash
# proxy-bench.sh (make bench): redis-benchmark -t set,get -c 50 at pipeline 1
# and 16 against a direct redis, redhaven (1:1: proxy.multiplex: false set
# explicitly, one backend connection per client), redhaven-mux
# (proxy.multiplex: true: stateless clients share pipelined backend
# connections) and HAProxy 2.6 (mode tcp, the classic role:master check), interleaved rounds, medians and same-round ratios; then
# CPU per request of each. Extra sections (ROUNDS_EXTRA rounds each): pipeline 1
# with 500 clients, and 1 KiB values (-d 1024) at P1 and P16 with 50 clients.
#
# Layout (from the baseline study in ../shared/bench/RESULTS.md): redis + the
# proxy pinned to CPU0, redis-benchmark to CPU1 (LAYOUT=srv0-cli1), so every
# proxy gets the same budget: one core shared with redis. LAYOUT=none: no pinning.
# Env: ROUNDS [5] REQUESTS [200000] PIPELINES ["1 16"] LAYOUT [srv0-cli1]
#      ROUNDS_EXTRA [3]  rounds of each extra section; 0 skips them
#      REQUESTS_EXTRA [$REQUESTS]  redis-benchmark -n of the extra sections
#      CPU_REQUESTS [200000]  -n of each CPU-per-request run
#      RH_GOMAXPROCS []  GOMAXPROCS for the two redhaven agents only (empty: Go's
#                        default, which is 1 under LAYOUT=srv0-cli1, see below)
#      MUX_CONNS [1]     proxy.multiplex_conns of redhaven-mux
#      REDHAVEN_BIN [dist/redhaven]  OUT_DIR [e2e/bench/results/bench-<date>]
# Ports 7001 (redis), 7100 + 7190 (haproxy), 7300 + 7310/7311/7390 (redhaven),
# 7400 + 7410/7411/7490 (redhaven-mux) must be free.
. "$(dirname "$0")/lib.sh"
export ROUNDS=${ROUNDS:-5}
export REQUESTS=${REQUESTS:-200000}
PIPELINES=${PIPELINES:-"1 16"}
ROUNDS_EXTRA=${ROUNDS_EXTRA:-3}
REQUESTS_EXTRA=${REQUESTS_EXTRA:-$REQUESTS}
CPU_REQUESTS=${CPU_REQUESTS:-200000}
RH_GOMAXPROCS=${RH_GOMAXPROCS:-}
MUX_CONNS=${MUX_CONNS:-1}
LAYOUT=${LAYOUT:-srv0-cli1}
STAMP=$(date +%Y%m%d-%H%M%S)
export OUT_DIR=${OUT_DIR:-$BENCH_DIR/results/bench-$STAMP}
RUN=$RUN_ROOT/bench-$STAMP
BIN=${REDHAVEN_BIN:-$BENCH_DIR/../../dist/redhaven}
mkdir -p "$RUN" "$OUT_DIR"
trap 'stop_all' EXIT
trap 'exit 130' INT TERM
for t in redis-server redis-benchmark redis-cli haproxy taskset curl; do command -v $t >/dev/null || die "$t missing: apt-get install redis-server redis-tools haproxy util-linux curl"; done
[ -x "$BIN" ] || die "$BIN missing: run make build"
case $RH_GOMAXPROCS in ''|[1-9]|[1-9][0-9]) ;; *) die "RH_GOMAXPROCS must be empty or a number 1..99, got '$RH_GOMAXPROCS'" ;; esac
for p in 7001 7100 7190 7300 7310 7311 7390 7400 7410 7411 7490; do port_free $p || die "port $p busy"; done

# CPU placement. redis and HAProxy are pinned after start as before (HAProxy
# sizes nbthread from the affinity it sees at start: 2 threads sharing CPU0,
# as in the earlier figures). The redhaven agents are STARTED under
# `taskset -c 0` instead: Go sizes GOMAXPROCS from the affinity mask at start,
# so the runtime matches the one-core budget from its first instruction (Go
# >= 1.25 would also lower GOMAXPROCS ~1 s after a later taskset, since go.mod
# says go 1.26, but starting pinned does not depend on that and makes the
# setting explicit). RH_GOMAXPROCS=2 reproduces "2 Ps on one core";
# versions.txt records the value each agent reports in /metrics.
case $LAYOUT in
  none) AGENT_PIN=(); BC= ;;
  srv0-cli1) AGENT_PIN=(taskset -c 0); BC=1 ;;
  *) die "unknown LAYOUT $LAYOUT" ;;
esac
gomaxprocs() { curl -s "http://127.0.0.1:$1/metrics" | awk '$1=="go_sched_gomaxprocs_threads"{print $2}'; }

start_redis "$BENCH_DIR/conf/redis-7001.conf" 7001 "$RUN/redis-7001.log" --dir "$RUN"; REDIS_PID=$LAST_PID
start_bg "$RUN/haproxy.log" haproxy -db -f "$BENCH_DIR/conf/haproxy-part1.cfg"; HAPROXY_PID=$LAST_PID
start_agent redhaven 7300 7310 7311 7390 "  multiplex: false"; RH_PID=$LAST_PID
start_agent redhaven-mux 7400 7410 7411 7490 "  multiplex: true
  multiplex_conns: $MUX_CONNS"; MUX_PID=$LAST_PID
wait_port 7100 10 || die "haproxy did not start"
wait_port 7300 10 || die "redhaven did not start (see $RUN/redhaven.log)"
wait_port 7400 10 || die "redhaven-mux did not start (see $RUN/redhaven-mux.log)"
for i in $(seq 1 100); do
  curl -s 'http://127.0.0.1:7190/stats;csv' | grep -q '^redis,r7001,UP' && break; sleep 0.1
done
for port in 7300 7400; do
  for i in $(seq 1 100); do [ "$(rcli -p $port SET bench:ready 1 2>/dev/null)" = OK ] && break; sleep 0.1; done
done
[ "$(rcli -p 7100 PING)" = PONG ] || die "PING via haproxy failed"
[ "$(rcli -p 7300 SET bench:ready 1)" = OK ] || die "SET via redhaven failed (see $RUN/redhaven.log)"
[ "$(rcli -p 7400 SET bench:ready 1)" = OK ] || die "SET via redhaven-mux failed (see $RUN/redhaven-mux.log)"

case $LAYOUT in
  srv0-cli1) for p in $REDIS_PID $HAPROXY_PID; do taskset -apc 0 "$p" >/dev/null || die "taskset 0 $p"; done ;;
esac
sleep 0.5
{
  echo "redis:    $(redis-server --version)"
  echo "haproxy:  $(haproxy -v | head -1); threads=$(ls /proc/$HAPROXY_PID/task | wc -l)"
  echo "redhaven: $("$BIN" version); threads=$(ls /proc/$RH_PID/task | wc -l); GOMAXPROCS=$(gomaxprocs 7390) (RH_GOMAXPROCS=${RH_GOMAXPROCS:-unset})"
  echo "rh-mux:   multiplex=true multiplex_conns=$MUX_CONNS; threads=$(ls /proc/$MUX_PID/task | wc -l); GOMAXPROCS=$(gomaxprocs 7490)"
  echo "cpus:     $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
  echo "layout:   $LAYOUT, rounds $ROUNDS, n=$REQUESTS, c=50; extras: rounds $ROUNDS_EXTRA, n=$REQUESTS_EXTRA"
} | tee "$OUT_DIR/versions.txt"

TARGETS="direct=127.0.0.1:7001 haproxy=127.0.0.1:7100 redhaven=127.0.0.1:7300 redhaven-mux=127.0.0.1:7400"
# overhead LABEL [env...]: one interleaved series into OUT_DIR (raw.csv, summary-LABEL.txt)
overhead() {
  local label=$1; shift
  env "$@" LABEL="$label" BENCH_CPUS="$BC" "$BENCH_DIR/proxy-overhead.sh" $TARGETS 2>>"$OUT_DIR/progress.log" >/dev/null \
    || die "proxy-overhead.sh $label failed (see $OUT_DIR/progress.log)"
}
cpu_table() { # cpu_table P REQUESTS [env...]
  local P=$1 n=$2; shift 2
  env "$@" BENCH_CPUS="$BC" "$BENCH_DIR/cpu-per-request.sh" $REDIS_PID "$P" "$n" \
    direct=7001:- haproxy=7100:$HAPROXY_PID redhaven=7300:$RH_PID redhaven-mux=7400:$MUX_PID
}

overhead "$LAYOUT" ROUNDS="$ROUNDS" REQUESTS="$REQUESTS" PIPELINES="$PIPELINES" CLIENTS=50 DATA_SIZE=
if [ "$ROUNDS_EXTRA" -gt 0 ]; then
  overhead c500 ROUNDS="$ROUNDS_EXTRA" REQUESTS="$REQUESTS_EXTRA" PIPELINES=1 CLIENTS=500 DATA_SIZE=
  overhead d1024 ROUNDS="$ROUNDS_EXTRA" REQUESTS="$REQUESTS_EXTRA" PIPELINES="1 16" CLIENTS=50 DATA_SIZE=1024
fi
{
  echo
  echo "== throughput and latency (c=50, median over $ROUNDS interleaved rounds; ratio columns vs direct) =="
  cat "$OUT_DIR/summary-$LAYOUT.txt"
  echo
  echo "== redhaven and redhaven-mux vs HAProxy (c=50; medians of same-round ratios) =="
  vs_haproxy "$LAYOUT" "$PIPELINES"
  if [ "$ROUNDS_EXTRA" -gt 0 ]; then
    echo
    echo "== extra: 500 clients, P1 (median over $ROUNDS_EXTRA rounds) =="
    cat "$OUT_DIR/summary-c500.txt"
    echo
    vs_haproxy c500 1
    echo
    echo "== extra: 1 KiB values (-d 1024), c=50 (median over $ROUNDS_EXTRA rounds) =="
    cat "$OUT_DIR/summary-d1024.txt"
    echo
    vs_haproxy d1024 "1 16"
  fi
  echo
  echo "== CPU per request (us; one run each, n=$CPU_REQUESTS; rd_conns, new_conns: redis connections during the run, and those the run opened) =="
  for P in $PIPELINES; do cpu_table "$P" "$CPU_REQUESTS" CLIENTS=50 DATA_SIZE=; done
  if [ "$ROUNDS_EXTRA" -gt 0 ]; then
    cpu_table 1 "$CPU_REQUESTS" CLIENTS=500 DATA_SIZE= | tail -n +2
    for P in $PIPELINES; do cpu_table "$P" "$CPU_REQUESTS" CLIENTS=50 DATA_SIZE=1024 | tail -n +2; done
  fi
} | tee "$OUT_DIR/report.txt"
log "results in $OUT_DIR"
