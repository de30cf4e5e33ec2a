#!/usr/bin/env bash
# failover-bench.sh (make bench-failover): kill -9 the Redis master under a
# writer sending SET k:N N every 5 ms through the proxy, for HAProxy (the
# classic check, inter 250ms fall 1 rise 1) and for redhaven, side by side;
# then restart the old master (it boots as an empty master) and count the
# acknowledged writes that landed on it (split brain).
# Sentinel: down-after-milliseconds 1000 (profile "fast" of failover-anchor.sh).
# Env: REPS [3] failovers per proxy; SPLIT_REPS [1]; PROXIES ["haproxy redhaven"];
#      OUT_DIR [e2e/bench/results/failover-<date>]
. "$(dirname "$0")/lib.sh"
export REPS=${REPS:-3} SPLIT_REPS=${SPLIT_REPS:-1}
PROXIES=${PROXIES:-"haproxy redhaven"}
STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${OUT_DIR:-$BENCH_DIR/results/failover-$STAMP}
BIN=${REDHAVEN_BIN:-$BENCH_DIR/../../dist/redhaven}
[ -x "$BIN" ] || die "$BIN missing: run make build"
for t in redis-server redis-sentinel redis-cli haproxy go; do command -v $t >/dev/null || die "$t missing"; done
for p in $PROXIES; do
  log "=== $p"
  case $p in
    haproxy) OUT_DIR=$OUT/haproxy "$BENCH_DIR/failover-anchor.sh" failover:fast split:fast >/dev/null ;;
    redhaven) OUT_DIR=$OUT/redhaven PROXY_CMD=$BENCH_DIR/proxies/redhaven.sh PROXY_STATS_URL= REDHAVEN_BIN=$BIN \
                "$BENCH_DIR/failover-anchor.sh" failover:fast split:fast >/dev/null ;;
    *) die "unknown proxy $p" ;;
  esac
done
{
  echo "== kill -9 of the master, writer every 5 ms (down-after 1000 ms); per-run lines: unavail_ms/lost/errors =="
  for p in $PROXIES; do echo "-- $p"; sed -n '/^scenario/,/^$/p' "$OUT/$p/summary.txt"; done
  echo "== restarted old master (split brain): acked writes routed to it, and lost =="
  for p in $PROXIES; do echo "-- $p"; sed -n '/^  scenario/,$p' "$OUT/$p/summary.txt"; done
} | tee "$OUT/report.txt"
log "results in $OUT"
