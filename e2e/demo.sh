#!/usr/bin/env bash
# demo.sh (make demo): a whole Redis HA setup on loopback, in the foreground.
#   Two services (Sentinel master names), each its own 3 redis-server (1
#   master, 2 replicas): mymaster on 6390-6392, cache on 6490-6492; 3
#   redis-sentinel monitoring both; and 3 redhaven agents joined through one
#   seed address (one cluster key: gossip encrypted, Raft on mutual TLS),
#   each with a proxy port per service (mymaster 6380-6382, cache
#   6480-6482), a stats page and an admin socket (the CLI's way in).
# Ctrl-C stops everything this script started (by PID) and removes its files.
# Env: DEMO_DIR [mktemp -d]  REDHAVEN_BIN [dist/redhaven]
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${REDHAVEN_BIN:-$HERE/../dist/redhaven}
SERVICES=(mymaster cache)
REDIS_PORTS=(6390 6391 6392)       # mymaster
CACHE_REDIS_PORTS=(6490 6491 6492) # cache
SENTINEL_PORTS=(26390 26391 26392) # both
PROXY_PORT=6380                    # mymaster, agent 1 (agent i: +i-1)
CACHE_PROXY_PORT=6480              # cache, agent 1
HTTP_PORT=8404
PIDS=()

say() { printf '\033[1m%s\033[0m\n' "$*" 2>/dev/null; } # quiet once tee is gone
die() { echo "demo: $*" >&2; exit 1; }
# Every process is started with setsid, outside the terminal's process
# group: Ctrl-C reaches only this script, which then stops them once, in
# order (a second signal would make an agent stop without its orderly
# shutdown): agents first (SIGTERM, up to 15 s, then SIGKILL), then
# Sentinels and Redis.
stop_pids() {
  local p i
  for p in "$@"; do kill "$p" 2>/dev/null; done
  for i in $(seq 1 150); do
    for p in "$@"; do kill -0 "$p" 2>/dev/null && break; p=; done
    [ -z "$p" ] && return 0
    sleep 0.1
  done
  for p in "$@"; do kill -KILL "$p" 2>/dev/null && echo "demo: $p needed SIGKILL" >&2; done
}
cleanup() {
  trap - EXIT INT TERM
  trap '' PIPE # under `make demo | tee`, Ctrl-C ends tee too: keep cleaning up
  say "stopping everything the demo started..."
  stop_pids "${RH_PIDS[@]:-}"
  stop_pids "${PIDS[@]:-}"
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null; done
  for i in 1 2 3; do
    [ -f "$D/redhaven-$i.log" ] && say "agent demo$i: $(tail -1 "$D/redhaven-$i.log" | grep -o 'msg="[^"]*"')"
  done
  [ -n "${DEMO_TMP:-}" ] && rm -rf "$DEMO_TMP"
  say "done."
}

# Debian packages this needs.
missing=()
for b in redis-server:redis-server redis-sentinel:redis-sentinel redis-cli:redis-tools; do
  command -v "${b%%:*}" >/dev/null || missing+=("${b##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing ${missing[*]} (apt-get)..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null || die "apt-get install failed"
  else
    die "missing programs; run: sudo apt-get install ${missing[*]}"
  fi
fi
[ -x "$BIN" ] || die "$BIN not built: run make build"
for p in "${REDIS_PORTS[@]}" "${CACHE_REDIS_PORTS[@]}" "${SENTINEL_PORTS[@]}" $PROXY_PORT $((PROXY_PORT+1)) $((PROXY_PORT+2)) $CACHE_PROXY_PORT $((CACHE_PROXY_PORT+1)) $((CACHE_PROXY_PORT+2)) $HTTP_PORT $((HTTP_PORT+1)) $((HTTP_PORT+2)) 7947 7948 7949 7950 7951 7952; do
  (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && die "port $p is already in use on 127.0.0.1"
done

if [ -n "${DEMO_DIR:-}" ]; then D=$DEMO_DIR; mkdir -p "$D"; else DEMO_TMP=$(mktemp -d /tmp/redhaven-demo.XXXXXX); D=$DEMO_TMP; fi
RH_PIDS=()
trap cleanup EXIT
# Ctrl-C is how the demo is meant to end: a success, so make prints no
# "Error 130".
trap 'exit 0' INT TERM

wait_port() { local i; for i in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# start_redis MASTER_PORT REPLICA_PORT...: one service's Redis set.
start_redis() {
  local m=$1 p args
  for p in "$@"; do
    args=(--port $p --bind 127.0.0.1 --save "" --appendonly no --dir "$D" --dbfilename "dump-$p.rdb" --logfile "$D/redis-$p.log")
    [ $p != $m ] && args+=(--replicaof 127.0.0.1 $m)
    setsid redis-server "${args[@]}" & PIDS+=($!)
    wait_port $p || die "redis $p did not start (see $D/redis-$p.log)"
  done
}
say "starting redis for mymaster on ${REDIS_PORTS[*]} (master ${REDIS_PORTS[0]})"
start_redis "${REDIS_PORTS[@]}"
say "starting redis for cache on ${CACHE_REDIS_PORTS[*]} (master ${CACHE_REDIS_PORTS[0]})"
start_redis "${CACHE_REDIS_PORTS[@]}"
say "starting sentinels on ${SENTINEL_PORTS[*]}, each monitoring mymaster and cache (down-after 1000 ms)"
for p in "${SENTINEL_PORTS[@]}"; do
  cat >"$D/sentinel-$p.conf" <<CFG
port $p
bind 127.0.0.1
logfile $D/sentinel-$p.log
dir $D
sentinel monitor mymaster 127.0.0.1 ${REDIS_PORTS[0]} 2
sentinel down-after-milliseconds mymaster 1000
sentinel failover-timeout mymaster 6000
sentinel monitor cache 127.0.0.1 ${CACHE_REDIS_PORTS[0]} 2
sentinel down-after-milliseconds cache 1000
sentinel failover-timeout cache 6000
CFG
  setsid redis-sentinel "$D/sentinel-$p.conf" & PIDS+=($!)
  wait_port $p || die "sentinel $p did not start (see $D/sentinel-$p.log)"
done

KEY=$("$BIN" keygen)  # the cluster key: a cluster of more than one node refuses to start without one
for i in 1 2 3; do
  cat >"$D/redhaven-$i.yaml" <<CFG
node_name: demo$i
data_dir: $D/data-$i
redis:
  sentinels: [127.0.0.1:${SENTINEL_PORTS[0]}, 127.0.0.1:${SENTINEL_PORTS[1]}, 127.0.0.1:${SENTINEL_PORTS[2]}]
  check_interval: 250ms
services:
  - name: mymaster
    listen: "127.0.0.1:$((PROXY_PORT + i - 1))"
  - name: cache
    listen: "127.0.0.1:$((CACHE_PROXY_PORT + i - 1))"
cluster:
  bind: "127.0.0.1:$((7945 + 2 * i))"
  raft_bind: "127.0.0.1:$((7946 + 2 * i))"
  join: ["127.0.0.1:7947"]
  bootstrap_expect: 3
  encrypt: "$KEY"
http:
  listen: "127.0.0.1:$((HTTP_PORT + i - 1))"
  admin_socket: "$D/admin-$i.sock"
CFG
  setsid "$BIN" agent -c "$D/redhaven-$i.yaml" >"$D/redhaven-$i.log" 2>&1 & RH_PIDS+=($!)
done
say "started 3 redhaven agents (mymaster on 127.0.0.1:$PROXY_PORT-$((PROXY_PORT + 2)), cache on 127.0.0.1:$CACHE_PROXY_PORT-$((CACHE_PROXY_PORT + 2)), stats pages :$HTTP_PORT-$((HTTP_PORT + 2)))"
for i in 0 1 2; do
  for p in $((PROXY_PORT + i)) $((CACHE_PROXY_PORT + i)); do
    wait_port $p || die "agent $((i + 1)) did not start: $(tail -5 "$D/redhaven-$((i + 1)).log")"
  done
done
for p in $PROXY_PORT $CACHE_PROXY_PORT; do
  for i in $(seq 1 150); do [ "$(redis-cli -p $p SET demo:hello world 2>/dev/null)" = OK ] && break; sleep 0.1; done
done

cat <<TXT

$(say "redhaven demo is running.")
  two services:      mymaster: redis-cli -p $PROXY_PORT   (agents 2, 3: $((PROXY_PORT + 1)), $((PROXY_PORT + 2)); redis ${REDIS_PORTS[*]})
                     cache:    redis-cli -p $CACHE_PROXY_PORT   (agents 2, 3: $((CACHE_PROXY_PORT + 1)), $((CACHE_PROXY_PORT + 2)); redis ${CACHE_REDIS_PORTS[*]})
  try:               redis-cli -p $PROXY_PORT SET greeting hello ; redis-cli -p $CACHE_PROXY_PORT GET greeting   (another Redis: nil)
  who is master:     redis-cli -p ${SENTINEL_PORTS[0]} SENTINEL get-master-addr-by-name cache   (or mymaster)
  keep writing:      while sleep 0.1; do redis-cli -p $PROXY_PORT INCR counter; redis-cli -p $CACHE_PROXY_PORT INCR counter; done
  fail over (kill):  kill -9 \$(redis-cli -p \$(redis-cli -p ${SENTINEL_PORTS[0]} SENTINEL get-master-addr-by-name cache | tail -1) INFO server | awk -F: '/^process_id/{print \$2}' | tr -d '\\r')
  planned failover:  $BIN failover cache --socket $D/admin-1.sock   (or mymaster; any agent forwards it to the leader; mymaster is not touched)
  cluster:           $BIN members --socket $D/admin-1.sock ; $BIN status --socket $D/admin-1.sock
  stats pages:       http://127.0.0.1:$HTTP_PORT/  http://127.0.0.1:$((HTTP_PORT + 1))/  http://127.0.0.1:$((HTTP_PORT + 2))/
  kill the leader:   kill -9 <pid of a redhaven agent: ${RH_PIDS[*]}>
  agent logs:        tail -f $D/redhaven-*.log
Any of the three agents' ports of a service reaches that service's master. Press Ctrl-C to stop everything.
TXT
wait "${RH_PIDS[@]}"
say "the redhaven agents exited; see $D/redhaven-*.log"
DEMO_TMP= # keep the logs
