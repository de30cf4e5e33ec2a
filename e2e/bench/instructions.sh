#!/usr/bin/env bash
# instructions.sh (make bench-instructions): proxy CPU cost counted in
# instructions, not seconds, so that it can be compared on a shared, noisy
# machine. Each proxy runs under valgrind (cachegrind, no cache simulation:
# it counts every instruction the process executes, in all threads) in front
# of one redis; redis-benchmark sends N1 and then, in a fresh run, N2 GETs;
# instructions per request = (Ir(N2) - Ir(N1)) / (N2 - N1), which cancels
# start-up and shut-down. Repeated runs agree within about 2% (timed
# benchmarks here spread by 15-30%). HAProxy (same config as make bench)
# is measured the same way, for the ratio.
#
# Env: BINS ["dist/redhaven"]  redhaven binaries to compare (e.g. an old
#        build and a new one: BINS="/tmp/old/redhaven dist/redhaven")
#      PIPELINES ["1 16"]  N1 [10000]  N2 [40000]  CLIENTS [50]  REPEAT [1]
# Ports 7601 (redis), 7602-7605 (redhaven), 7606 (haproxy) must be free.
# Everything runs on 127.0.0.1; only PIDs started here are stopped.
. "$(dirname "$0")/lib.sh"
BINS=${BINS:-$BENCH_DIR/../../dist/redhaven}
PIPELINES=${PIPELINES:-"1 16"}
N1=${N1:-10000}
N2=${N2:-40000}
CLIENTS=${CLIENTS:-50}
REPEAT=${REPEAT:-1}
RUN=$RUN_ROOT/instructions-$(date +%Y%m%d-%H%M%S)
mkdir -p "$RUN"
trap 'stop_all' EXIT
trap 'exit 130' INT TERM
for t in valgrind redis-server redis-benchmark redis-cli haproxy; do command -v $t >/dev/null || die "$t missing: apt-get install valgrind redis-server redis-tools haproxy"; done
for b in $BINS; do [ -x "$b" ] || die "$b missing: run make build"; done
[ "$N2" -gt "$N1" ] || die "N2 ($N2) must be larger than N1 ($N1)"
for p in 7601 7602 7603 7604 7605 7606; do port_free $p || die "port $p busy"; done

start_redis /dev/null 7601 "$RUN/redis.log" --port 7601 --save '' --appendonly no
rcli -p 7601 set warm 1 >/dev/null

# ir TARGET N P -> prints the instructions the target executed while
# serving N GETs (pipeline P) plus its start-up and shut-down.
ir() {
  local target=$1 n=$2 p=$3 out=$RUN/cg.out port pid i
  rm -f "$out"
  case $target in
    haproxy)
      cat >"$RUN/haproxy.cfg" <<CFG
global
    maxconn 4000
defaults
    mode tcp
    timeout connect 3s
    timeout client 60s
    timeout server 60s
listen redis
    bind 127.0.0.1:7606
    option tcp-check
    tcp-check send PING\r\n
    tcp-check expect string +PONG
    tcp-check send info\ replication\r\n
    tcp-check expect string role:master
    tcp-check send QUIT\r\n
    tcp-check expect string +OK
    server r7601 127.0.0.1:7601 check inter 1s
CFG
      port=7606
      start_bg "$RUN/haproxy.log" valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file="$out" haproxy -db -f "$RUN/haproxy.cfg"
      ;;
    *:*)
      local bin=${target%%:*} mux=${target##*:}
      cat >"$RUN/agent.yaml" <<CFG
node_name: bench
data_dir: $RUN/data-$(date +%s%N)
redis:
  nodes: ["127.0.0.1:7601"]
  check_interval: 1s
proxy:
  listen: "127.0.0.1:7602"
  multiplex: $mux
cluster:
  bind: "127.0.0.1:7603"
  raft_bind: "127.0.0.1:7604"
  bootstrap_expect: 1
http:
  listen: "127.0.0.1:7605"
log:
  level: warn
CFG
      port=7602
      # GOMAXPROCS 1 as in make bench (one core for redis and the proxy).
      start_bg "$RUN/agent.log" env $(env | sed -n 's/^\(REDHAVEN_[A-Z_]*\)=.*/-u \1/p') GOMAXPROCS=1 \
        valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file="$out" "$bin" agent -c "$RUN/agent.yaml"
      ;;
  esac
  pid=$LAST_PID
  for i in $(seq 1 600); do
    [ "$(rcli -p $port get warm 2>/dev/null)" = 1 ] && break
    kill -0 "$pid" 2>/dev/null || die "$target exited at start (see $RUN/*.log)"
    sleep 0.2
  done
  timeout 600 redis-benchmark -p $port -c "$CLIENTS" -P "$p" -n "$n" -t get -q >"$RUN/bench.txt" 2>&1 || die "redis-benchmark against $target failed: $(tail -2 "$RUN/bench.txt")"
  stop_pid "$pid" TERM
  wait "$pid" 2>/dev/null
  awk '/^summary:/{print $2}' "$out"
}

targets=(haproxy)
for b in $BINS; do targets+=("$b:false" "$b:true"); done
name() {
  case $1 in
    haproxy) echo haproxy ;;
    *:false) echo "$(basename "$(dirname "$(realpath "${1%%:*}")")")/$(basename "${1%%:*}") 1:1" ;;
    *:true) echo "$(basename "$(dirname "$(realpath "${1%%:*}")")")/$(basename "${1%%:*}") mux" ;;
  esac
}
printf '%-36s %3s %6s %10s %8s\n' target P rep ir_per_req vs_haproxy
for r in $(seq 1 "$REPEAT"); do
  for p in $PIPELINES; do
    hp=
    for t in "${targets[@]}"; do
      a=$(ir "$t" "$N1" "$p") b=$(ir "$t" "$N2" "$p")
      per=$(awk -v a="$a" -v b="$b" -v n=$((N2 - N1)) 'BEGIN{printf "%.0f", (b-a)/n}')
      [ "$t" = haproxy ] && hp=$per
      printf '%-36s %3s %6s %10s %8s\n' "$(name "$t")" "$p" "$r" "$per" "$(awk -v x="$per" -v h="$hp" 'BEGIN{printf "%.2f", x/h}')"
    done
  done
done
rm -rf "$RUN"
