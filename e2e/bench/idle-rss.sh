#!/usr/bin/env bash
# idle-rss.sh (make bench-idle): memory per idle client connection. For HAProxy
# 2.6 (mode tcp), redhaven (1:1, proxy.multiplex: false: one backend
# connection per client) and redhaven-mux (proxy.multiplex: true), one at a
# time: start the proxy, open N client connections (bin/idle-clients), first
# without sending anything, then one SET on each (so the proxy has a live backend path), hold them idle, and
# report the proxy's VmRSS (/proc/PID/status) at each step, bytes per idle
# connection, redis's connected_clients (the backend connections the proxy
# holds; a proxy that dials its backend lazily shows none after connect-only)
# and redis's own VmRSS growth (a fresh redis per proxy). Then the SET again on
# each connection (did the proxy keep them all?), close them, stop the proxy.
#
# Env: N [10000]     client connections; lowered to fit the open-files hard limit
#                    (a 1:1 proxy holds 2 descriptors per client)
#      CMD [set]     command sent on each connection: set or ping
#      SETTLE_S [3]  wait before each RSS reading (redhaven parks a session after 0.5-1 s idle)
#      RH_GOMAXPROCS []  GOMAXPROCS for the redhaven agents only (empty: Go's default)
#      MUX_CONNS [1]  proxy.multiplex_conns of redhaven-mux
#      TARGETS ["haproxy redhaven redhaven-mux"]  which proxies, in this order
#      REDHAVEN_BIN [dist/redhaven]  OUT_DIR [e2e/bench/results/idle-<date>]
# Raised for this run only: ulimit -n (to the hard limit), redis maxclients
# (30000; redis lowers it to the descriptors it can get), HAProxy maxconn and
# timeouts (a generated copy of conf/haproxy-part1.cfg), redhaven
# proxy.max_clients (20000).
# Ports 7001 (redis), 7100 + 7190 (haproxy), 7300 + 7310/7311/7390 (redhaven),
# 7400 + 7410/7411/7490 (redhaven-mux) must be free.
. "$(dirname "$0")/lib.sh"
N=${N:-10000}
CMD=${CMD:-set}
SETTLE_S=${SETTLE_S:-3}
RH_GOMAXPROCS=${RH_GOMAXPROCS:-}
MUX_CONNS=${MUX_CONNS:-1}
TARGETS=${TARGETS:-"haproxy redhaven redhaven-mux"}
STAMP=$(date +%Y%m%d-%H%M%S)
OUT_DIR=${OUT_DIR:-$BENCH_DIR/results/idle-$STAMP}
RUN=$RUN_ROOT/idle-$STAMP
BIN=${REDHAVEN_BIN:-$BENCH_DIR/../../dist/redhaven}
CLIENT=$BENCH_DIR/bin/idle-clients
mkdir -p "$RUN" "$OUT_DIR"
trap 'stop_all' EXIT
trap 'exit 130' INT TERM
for t in redis-server redis-cli haproxy curl go; do command -v $t >/dev/null || die "$t missing: apt-get install redis-server redis-tools haproxy curl (and Go)"; done
[ -x "$BIN" ] || die "$BIN missing: run make build"
case $N in ''|*[!0-9]*) die "N must be a number, got '$N'" ;; esac
case $CMD in set|ping) ;; *) die "CMD must be set or ping, got '$CMD'" ;; esac
for p in 7001 7100 7190 7300 7310 7311 7390 7400 7410 7411 7490; do port_free $p || die "port $p busy"; done

# Open files: every process started from here inherits the raised soft limit.
HARD=$(ulimit -Hn)
if [ "$HARD" != unlimited ]; then
  ulimit -n "$HARD" || die "ulimit -n $HARD failed"
  FIT=$(( (HARD - 256) / 2 ))
  if [ "$N" -gt "$FIT" ]; then
    log "open-files hard limit is $HARD: a 1:1 proxy needs 2 per client; N lowered from $N to $FIT (raise the hard limit for more)"
    N=$FIT
  fi
fi

if [ ! -x "$CLIENT" ] || [ "$BENCH_DIR/idle-clients/main.go" -nt "$CLIENT" ]; then
  log "building $CLIENT"
  (cd "$BENCH_DIR" && go build -o bin/idle-clients ./idle-clients) || die "go build idle-clients failed"
fi

# HAProxy: the bench config with room for N clients and timeouts longer than the
# hold. It refuses to start when 2 x maxconn (+ ~20) exceeds the open-files limit.
HAP_MAXCONN=$((N + 1000))
[ "$HARD" != unlimited ] && [ $HAP_MAXCONN -gt $(( (HARD - 100) / 2 )) ] && HAP_MAXCONN=$(( (HARD - 100) / 2 ))
sed -e "s/^\(    maxconn\) .*/\1 $HAP_MAXCONN/" -e "s/^defaults\$/defaults\n    maxconn $HAP_MAXCONN/" \
    -e "s/^\(    timeout client\) .*/\1 10m/" -e "s/^\(    timeout server\) .*/\1 10m/" \
    "$BENCH_DIR/conf/haproxy-part1.cfg" >"$RUN/haproxy-idle.cfg"
[ "$(grep -c "maxconn $HAP_MAXCONN" "$RUN/haproxy-idle.cfg")" = 2 ] || die "could not set maxconn in $RUN/haproxy-idle.cfg"

AGENT_PIN=()

untrack() { # untrack PID...: drop stopped and reaped PIDs from STARTED_PIDS (PIDs get reused)
  local keep=() p q
  for p in "${STARTED_PIDS[@]:-}"; do for q in "$@"; do [ "$p" = "$q" ] && continue 2; done; keep+=("$p"); done
  STARTED_PIDS=("${keep[@]}")
}
rss_kb() { awk '$1=="VmRSS:"{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
nconns() { rcli -p 7001 INFO clients 2>/dev/null | tr -d '\r' | awk -F: '$1=="connected_clients"{print $2-1}'; } # minus this redis-cli
# wait_line FILE REGEX TIMEOUT_S: wait for a line in FILE
wait_line() {
  local i
  for i in $(seq 1 $(($3 * 10))); do grep -qE "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}

# A fresh redis for each proxy: its allocator keeps the memory of closed
# clients, so a second proxy would otherwise show a smaller redis_dRSS.
redis_up() {
  start_redis "$BENCH_DIR/conf/redis-7001.conf" 7001 "$RUN/redis-7001.log" --dir "$RUN" --maxclients 30000; REDIS_PID=$LAST_PID
  MAXCL=$(rcli -p 7001 CONFIG GET maxclients | tail -1)
  [ "${MAXCL:-0}" -ge $((N + 200)) ] || die "redis maxclients is $MAXCL, below N+200=$((N + 200)) (open-files limit?)"
}
redis_up
{
  echo "redis:    $(redis-server --version); maxclients=$MAXCL"
  echo "haproxy:  $(haproxy -v | head -1); maxconn $HAP_MAXCONN"
  echo "redhaven: $("$BIN" version); GOMAXPROCS=${RH_GOMAXPROCS:-default}; mux conns $MUX_CONNS"
  echo "clients:  N=$N, command $CMD, open-files limit $(ulimit -n)"
} | tee "$OUT_DIR/versions.txt"

ROWS=$OUT_DIR/rows.txt; : >"$ROWS"
first=1
for target in $TARGETS; do
  [ $first = 1 ] || redis_up; first=0
  case $target in
    haproxy)
      start_bg "$RUN/haproxy.log" haproxy -db -f "$RUN/haproxy-idle.cfg"; PX_PID=$LAST_PID; PORT=7100
      wait_port 7100 10 || die "haproxy did not start (see $RUN/haproxy.log)"
      for i in $(seq 1 100); do curl -s 'http://127.0.0.1:7190/stats;csv' | grep -q '^redis,r7001,UP' && break; sleep 0.1; done ;;
    redhaven)
      start_agent redhaven 7300 7310 7311 7390 "  multiplex: false
  max_clients: 20000"; PX_PID=$LAST_PID; PORT=7300 ;;
    redhaven-mux)
      start_agent redhaven-mux 7400 7410 7411 7490 "  max_clients: 20000
  multiplex: true
  multiplex_conns: $MUX_CONNS"; PX_PID=$LAST_PID; PORT=7400 ;;
    *) die "unknown target $target (want haproxy, redhaven, redhaven-mux)" ;;
  esac
  wait_port $PORT 15 || die "$target did not start (see $RUN/$target.log)"
  for i in $(seq 1 100); do [ "$(rcli -p $PORT SET idle:ready 1 2>/dev/null)" = OK ] && break; sleep 0.1; done
  [ "$(rcli -p $PORT SET idle:ready 1)" = OK ] || die "SET via $target failed (see $RUN/$target.log)"
  sleep "$SETTLE_S"
  rss0=$(rss_kb $PX_PID); c0=$(nconns); red0=$(rss_kb $REDIS_PID)
  log "$target: pid $PX_PID rss ${rss0} kB, redis conns $c0; opening $N connections"

  clog=$RUN/clients-$target.log
  start_bg "$clog" "$CLIENT" -addr 127.0.0.1:$PORT -n "$N" -cmd "$CMD" -pause -hold 600s; CL_PID=$LAST_PID
  wait_line "$clog" '^connected ' 180 || die "$target: clients did not connect (see $clog)"
  sleep "$SETTLE_S"
  rss1=$(rss_kb $PX_PID); c1=$(nconns)
  kill -USR1 $CL_PID
  wait_line "$clog" '^ready ' 180 || die "$target: clients got no replies (see $clog)"
  sleep "$SETTLE_S"
  rss2=$(rss_kb $PX_PID); c2=$(nconns); red2=$(rss_kb $REDIS_PID)
  ok=$(awk '/^ready /{for (i=2;i<=NF;i++) if ($i ~ /^ok=/) {sub("ok=","",$i); print $i}}' "$clog")
  kill -TERM $CL_PID
  wait_line "$clog" '^final ' 120 || log "WARN: $target: no final line (see $clog)"
  fin=$(awk '/^final /{for (i=2;i<=NF;i++) if ($i ~ /^ok=/) {sub("ok=","",$i); print $i}}' "$clog")
  stop_pid $CL_PID; wait $CL_PID 2>/dev/null
  grep '^error ' "$clog" | head -3 | sed "s/^/$target: /" >&2
  log "$target: connected rss ${rss1} kB conns $c1; after $CMD rss ${rss2} kB conns $c2; ok $ok, still ok at the end ${fin:-?}"
  printf '%s %s %s %s %s %s %s %s %s %s %s\n' "$target" "$N" "${ok:-0}" "${fin:-0}" "$rss0" "$rss1" "$rss2" "$c0" "$c1" "$c2" $((red2 - red0)) >>"$ROWS"
  stop_pid $PX_PID; wait $PX_PID 2>/dev/null
  stop_pid $REDIS_PID; wait $REDIS_PID 2>/dev/null
  untrack $PX_PID $CL_PID $REDIS_PID
done

{
  echo
  echo "== idle connections: proxy VmRSS and redis connections (N=$N, one $CMD each, held idle) =="
  echo "   connect: after N TCP connects, nothing sent;  +$CMD: after one $CMD on each"
  echo "   B/conn: (VmRSS at that step - VmRSS before) / N;  be_conns: redis connected_clients (proxy's backend connections + its health check)"
  awk 'BEGIN { printf "%-13s %6s %6s %6s %9s %9s %9s %9s %9s %9s %9s %9s %10s\n", "target", "n", "ok", "ok_end", "rss0_MiB", "conn_MiB", "set_MiB", "B/conn", "B/conn", "be_conns", "be_conns", "be_conns", "redis_dRSS";
           printf "%-13s %6s %6s %6s %9s %9s %9s %9s %9s %9s %9s %9s %10s\n", "", "", "", "", "before", "connect", "+cmd", "connect", "+cmd", "before", "connect", "+cmd", "MiB" }
       { printf "%-13s %6d %6d %6d %9.1f %9.1f %9.1f %9.0f %9.0f %9d %9d %9d %10.1f\n", $1, $2, $3, $4, $5/1024, $6/1024, $7/1024, ($6-$5)*1024/$2, ($7-$5)*1024/$2, $8, $9, $10, $11/1024 }' "$ROWS"
} | tee "$OUT_DIR/report.txt"
log "results in $OUT_DIR"
