#!/usr/bin/env bash
# proxy-bench.sh (make bench): redis-benchmark -t set,get -c 50 at pipeline 1
# and 16 against a direct redis, redhaven and HAProxy 2.6 (mode tcp, the
# classic role:master check), interleaved rounds, medians and same-round
# ratios; then CPU per request of each.
#
# Layout (from the baseline study in ../shared/bench/RESULTS.md): redis + the
# proxy pinned to CPU0, redis-benchmark to CPU1 (LAYOUT=srv0-cli1), so every
# proxy gets the same budget: one core shared with redis. LAYOUT=none: no pinning.
# Env: ROUNDS [5] REQUESTS [200000] PIPELINES ["1 16"] LAYOUT [srv0-cli1]
#      REDHAVEN_BIN [dist/redhaven]  OUT_DIR [e2e/bench/results/bench-<date>]
# Ports 7001 (redis), 7100 + 7190 (haproxy), 7300 (redhaven) must be free.
. "$(dirname "$0")/lib.sh"
export ROUNDS=${ROUNDS:-5}
LAYOUT=${LAYOUT:-srv0-cli1}
STAMP=$(date +%Y%m%d-%H%M%S)
export OUT_DIR=${OUT_DIR:-$BENCH_DIR/results/bench-$STAMP}
RUN=$RUN_ROOT/bench-$STAMP
BIN=${REDHAVEN_BIN:-$BENCH_DIR/../../dist/redhaven}
mkdir -p "$RUN" "$OUT_DIR"
trap 'stop_all' EXIT
trap 'exit 130' INT TERM
for t in redis-server redis-benchmark haproxy taskset; do command -v $t >/dev/null || die "$t missing: apt-get install redis-server redis-tools haproxy util-linux"; done
[ -x "$BIN" ] || die "$BIN missing: run make build"
for p in 7001 7100 7190 7300 7310 7311 7390; do port_free $p || die "port $p busy"; done

start_redis "$BENCH_DIR/conf/redis-7001.conf" 7001 "$RUN/redis-7001.log" --dir "$RUN"; REDIS_PID=$LAST_PID
start_bg "$RUN/haproxy.log" haproxy -db -f "$BENCH_DIR/conf/haproxy-part1.cfg"; HAPROXY_PID=$LAST_PID
cat >"$RUN/redhaven.yaml" <<CFG
node_name: bench
data_dir: $RUN/data
redis:
  nodes: ["127.0.0.1:7001"]
  check_interval: 1s
proxy:
  listen: "127.0.0.1:7300"
cluster:
  bind: "127.0.0.1:7310"
  raft_bind: "127.0.0.1:7311"
  bootstrap_expect: 1
http:
  listen: "127.0.0.1:7390"
log:
  level: warn
CFG
start_bg "$RUN/redhaven.log" "$BIN" agent -c "$RUN/redhaven.yaml"; RH_PID=$LAST_PID
wait_port 7100 10 || die "haproxy did not start"
wait_port 7300 10 || die "redhaven did not start (see $RUN/redhaven.log)"
for i in $(seq 1 100); do
  curl -s 'http://127.0.0.1:7190/stats;csv' | grep -q '^redis,r7001,UP' && break; sleep 0.1
done
for i in $(seq 1 100); do [ "$(rcli -p 7300 SET bench:ready 1 2>/dev/null)" = OK ] && break; sleep 0.1; done
[ "$(rcli -p 7100 PING)" = PONG ] || die "PING via haproxy failed"
[ "$(rcli -p 7300 SET bench:ready 1)" = OK ] || die "SET via redhaven failed (see $RUN/redhaven.log)"
{
  echo "redis:    $(redis-server --version)"
  echo "haproxy:  $(haproxy -v | head -1); threads=$(ls /proc/$HAPROXY_PID/task | wc -l)"
  echo "redhaven: $("$BIN" version); threads=$(ls /proc/$RH_PID/task | wc -l)"
  echo "cpus:     $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
  echo "layout:   $LAYOUT, rounds $ROUNDS, n=${REQUESTS:-200000}, c=50"
} | tee "$OUT_DIR/versions.txt"

pin() { local cpus=$1 p; shift; for p in "$@"; do taskset -apc "$cpus" "$p" >/dev/null || die "taskset $cpus $p"; done; }
case $LAYOUT in
  none) BC= ;;
  srv0-cli1) pin 0 $REDIS_PID $HAPROXY_PID $RH_PID; BC=1 ;;
  *) die "unknown LAYOUT $LAYOUT" ;;
esac
TARGETS="direct=127.0.0.1:7001 haproxy=127.0.0.1:7100 redhaven=127.0.0.1:7300"
LABEL=$LAYOUT BENCH_CPUS=$BC "$BENCH_DIR/proxy-overhead.sh" $TARGETS 2>"$OUT_DIR/progress.log" >/dev/null \
  || die "proxy-overhead.sh failed (see $OUT_DIR/progress.log)"
S=$OUT_DIR/summary-$LAYOUT.txt
{
  echo
  echo "== throughput and latency (median over $ROUNDS interleaved rounds; ratio columns vs direct) =="
  cat "$S"
  echo
  echo "== redhaven vs HAProxy (same-round ratios to direct, divided) =="
  awk 'NR>1 {rr[$2"|"$3"|"$4]=$7; p50[$2"|"$3"|"$4]=$10; p99[$2"|"$3"|"$4]=$11; k[$3"|"$4]=1}
       END { printf "%-3s %-4s %14s %14s %12s %12s\n", "P", "test", "redhaven/direct", "redhaven/haproxy", "p50 rh/hap", "p99 rh/hap";
             for (x in k) { split(x, a, "|"); r="redhaven|"x; h="haproxy|"x;
               printf "%-3s %-4s %14.3f %14.3f %12.2f %12.2f\n", a[1], a[2], rr[r], (rr[h]>0?rr[r]/rr[h]:0), (p50[h]>0?p50[r]/p50[h]:0), (p99[h]>0?p99[r]/p99[h]:0) } }' "$S" | sort -n
  echo
  echo "== CPU per request (us; one run each, P1 and P16, n=200000) =="
  for P in 1 16; do
    "$BENCH_DIR/cpu-per-request.sh" $REDIS_PID $P 200000 direct=7001:- haproxy=7100:$HAPROXY_PID redhaven=7300:$RH_PID
  done
} | tee "$OUT_DIR/report.txt"
log "results in $OUT_DIR"
