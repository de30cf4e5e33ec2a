#!/usr/bin/env bash
# services-bench.sh (make bench-services): does a second service cost the
# agent throughput? One agent serves two services (services: alpha on 7511,
# beta on 7512), each a Redis master (7501, 7502) watched by one Sentinel
# (26501, quorum 1, both masters). Interleaved rounds of, per pipeline and
# test (SET, GET, -c 50):
#   (a) one redis-benchmark against alpha alone (-c 50 -n N)
#   (b) two at once, alpha and beta (-c 25 -n N/2 each), throughputs summed
# and the same against the two Redis directly, as a reference for what the
# machine gives with two servers instead of one. Reported per round and as
# medians: (b)/(a). The issue's bar: agent (b)/(a) >= 0.9.
# (b) is also given as "n/longest": N over the longer of the two runs, which
# does not count the tail where one process runs alone.
#
# Layout as make bench (LAYOUT=srv0-cli1): the two Redis, the Sentinel and the
# agent on CPU0 (the agent started under taskset, so GOMAXPROCS is 1),
# redis-benchmark on CPU1. LAYOUT=none: no pinning.
# Env: ROUNDS [3] N_P1 [100000] N_P16 [400000] (requests of each (a) and of each
#      (b) in total) LAYOUT [srv0-cli1] MULTIPLEX [true] (proxy.multiplex)
#      REDHAVEN_BIN [dist/redhaven] OUT_DIR [e2e/bench/results/services-<date>]
# Ports 7501 7502 7511 7512 7521 7522 7590 26501 must be free. ~4 min by default.
. "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-3}
N_P1=${N_P1:-100000}
N_P16=${N_P16:-400000}
LAYOUT=${LAYOUT:-srv0-cli1}
MULTIPLEX=${MULTIPLEX:-true}
STAMP=$(date +%Y%m%d-%H%M%S)
OUT_DIR=${OUT_DIR:-$BENCH_DIR/results/services-$STAMP}
RUN=$RUN_ROOT/services-$STAMP
BIN=${REDHAVEN_BIN:-$BENCH_DIR/../../dist/redhaven}
mkdir -p "$RUN" "$OUT_DIR/raw"
trap 'stop_all' EXIT
trap 'exit 130' INT TERM
for t in redis-server redis-sentinel redis-benchmark redis-cli taskset; do command -v $t >/dev/null || die "$t missing: apt-get install redis-server redis-sentinel redis-tools util-linux"; done
[ -x "$BIN" ] || die "$BIN missing: run make build"
case $ROUNDS in [1-9]|[1-9][0-9]) ;; *) die "ROUNDS must be 1..99, got '$ROUNDS'" ;; esac
case $MULTIPLEX in true|false) ;; *) die "MULTIPLEX must be true or false" ;; esac
for p in 7501 7502 7511 7512 7521 7522 7590 26501; do port_free $p || die "port $p busy"; done
case $LAYOUT in
  none) PIN_SRV=(); PIN_CLI=() ;;
  srv0-cli1) PIN_SRV=(taskset -c 0); PIN_CLI=(taskset -c 1) ;;
  *) die "unknown LAYOUT $LAYOUT" ;;
esac

for port in 7501 7502; do
  start_redis "$BENCH_DIR/conf/redis-7001.conf" $port "$RUN/redis-$port.log" --port $port --dir "$RUN"
  [ ${#PIN_SRV[@]} -gt 0 ] && { taskset -apc 0 "$LAST_PID" >/dev/null || die "taskset $LAST_PID"; }
done
cat >"$RUN/sentinel.conf" <<CFG
port 26501
bind 127.0.0.1
daemonize no
logfile ""
dir $RUN
sentinel monitor alpha 127.0.0.1 7501 1
sentinel monitor beta 127.0.0.1 7502 1
CFG
start_bg "$RUN/sentinel.log" "${PIN_SRV[@]}" redis-sentinel "$RUN/sentinel.conf"
wait_port 26501 10 || die "sentinel did not start (see $RUN/sentinel.log)"

# The agent: two services on the shared Sentinel, defaults otherwise. The
# scripts' own REDHAVEN_* variables are kept out of its environment.
cat >"$RUN/agent.yaml" <<CFG
node_name: bench
data_dir: $RUN/data
redis:
  sentinels: ["127.0.0.1:26501"]
  check_interval: 1s
proxy:
  multiplex: $MULTIPLEX
services:
  - name: alpha
    listen: "127.0.0.1:7511"
  - name: beta
    listen: "127.0.0.1:7512"
cluster:
  bind: "127.0.0.1:7521"
  raft_bind: "127.0.0.1:7522"
  bootstrap_expect: 1
http:
  listen: "127.0.0.1:7590"
  admin_socket: "$RUN/agent.sock"
log:
  level: warn
CFG
start_bg "$RUN/agent.log" "${PIN_SRV[@]}" env $(env | sed -n 's/^\(REDHAVEN_[A-Z_]*\)=.*/-u \1/p') "$BIN" agent -c "$RUN/agent.yaml"
AGENT_PID=$LAST_PID
for port in 7511 7512; do
  wait_port $port 20 || die "agent does not listen on $port (see $RUN/agent.log)"
  for i in $(seq 1 150); do [ "$(rcli -p $port SET bench:ready 1 2>/dev/null)" = OK ] && break; sleep 0.1; done
  [ "$(rcli -p $port SET bench:ready $port)" = OK ] || die "SET via the agent on $port failed (see $RUN/agent.log)"
done
# Each listener reaches its own master.
[ "$(rcli -p 7501 GET bench:ready)" = 7511 ] && [ "$(rcli -p 7502 GET bench:ready)" = 7512 ] \
  || die "services not routed to their own masters"
{
  echo "redis:    $(redis-server --version)"
  echo "redhaven: $("$BIN" version | head -1); threads=$(ls /proc/$AGENT_PID/task | wc -l); proxy.multiplex=$MULTIPLEX"
  echo "cpus:     $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
  echo "layout:   $LAYOUT; rounds $ROUNDS; c=50; n: P1 $N_P1, P16 $N_P16"
  echo "load:     $(cut -d' ' -f1-3 /proc/loadavg) (start)"
} | tee "$OUT_DIR/versions.txt" >&2

RAW=$OUT_DIR/raw.csv
echo "round,target,phase,pipeline,test,proc,n,rps" >"$RAW"
# bench ROUND TARGET PHASE P TEST NAME=PORT:CLIENTS:N...: one redis-benchmark
# per NAME, all started together, waited for together; a row each in raw.csv.
bench() {
  local r=$1 tgt=$2 ph=$3 P=$4 t=$5; shift 5
  local spec name port c n f pids=() names=()
  for spec in "$@"; do
    name=${spec%%=*}; spec=${spec#*=}; port=${spec%%:*}; spec=${spec#*:}; c=${spec%%:*}; n=${spec#*:}
    f=$OUT_DIR/raw/r$r-$tgt-$ph-P$P-$t-$name
    timeout 120 "${PIN_CLI[@]}" redis-benchmark -h 127.0.0.1 -p "$port" -t "$t" -n "$n" -c "$c" -P "$P" --csv >"$f.csv" 2>"$f.err" &
    pids+=($!); names+=("$name:$n:$f")
  done
  local i rc rps
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}"; rc=$?
    IFS=: read -r name n f <<<"${names[$i]}"
    rps=$(tr -d '"' <"$f.csv" | awk -F, -v t="$t" 'toupper($1)==toupper(t) {print $2}')
    [ $rc -eq 0 ] && [ -n "$rps" ] || die "redis-benchmark $tgt $ph P$P $t $name: rc=$rc ($(head -c 200 "$f.err"))"
    echo "$r,$tgt,$ph,$P,$t,$name,$n,$rps" >>"$RAW"
  done
}
# round R: (a) then (b) in odd rounds, (b) then (a) in even ones, so that a
# drift of the machine's speed does not always favour the same phase.
round() {
  local r=$1 P n tgt a b ph phases
  for P in 1 16; do
    n=$N_P1; [ $P = 16 ] && n=$N_P16
    for tgt in direct agent; do
      a=7501; b=7502; [ $tgt = agent ] && { a=7511; b=7512; }
      phases="a b"; [ $((r % 2)) = 0 ] && phases="b a"
      for t in SET GET; do
        for ph in $phases; do
          case $ph in
            a) bench "$r" $tgt a $P $t alpha=$a:50:$n ;;
            b) bench "$r" $tgt b $P $t alpha=$a:25:$((n/2)) beta=$b:25:$((n/2)) ;;
          esac
        done
      done
    done
  done
}
T0=$(date +%s)
for r in $(seq 1 "$ROUNDS"); do
  log "round $r/$ROUNDS"
  round "$r"
  kill -0 "$AGENT_PID" 2>/dev/null || die "agent exited (see $RUN/agent.log)"
done
echo "load:     $(cut -d' ' -f1-3 /proc/loadavg) (end); rounds took $(( $(date +%s) - T0 )) s" | tee -a "$OUT_DIR/versions.txt" >&2

# Per round: (a) rps, (b) = sum of both processes' rps, and n/longest = the
# total requests over the longer process's time (n_i/rps_i); then medians.
awk -F, -v rounds="$ROUNDS" '
  function med(s,   a, n, i, j, x) { n=split(s, a, " "); if (n==0) return 0
    for (i=2; i<=n; i++) { x=a[i]+0; for (j=i-1; j>=1 && a[j]+0>x; j--) a[j+1]=a[j]; a[j+1]=x }
    return (n%2) ? a[(n+1)/2] : (a[n/2]+a[n/2+1])/2 }
  function lo(s,   a, n, i, m) { n=split(s, a, " "); m=a[1]; for (i=2; i<=n; i++) if (a[i]+0<m+0) m=a[i]; return m }
  function hi(s,   a, n, i, m) { n=split(s, a, " "); m=a[1]; for (i=2; i<=n; i++) if (a[i]+0>m+0) m=a[i]; return m }
  NR>1 { k=$1"|"$2"|"$4"|"$5
    if ($3=="a") A[k]=$8
    else { S[k]+=$8; N[k]+=$7; d=$7/$8; if (d>L[k]) L[k]=d } }
  END {
    print "Per round ((b) = two services at once, summed; n/longest: all requests over the longer run):"
    print ""
    print "| round | P | test | target | (a) one, rps | (b) two, rps | (b)/(a) | n/longest/(a) |"
    print "| ---: | ---: | --- | --- | ---: | ---: | ---: | ---: |"
    for (r=1; r<=rounds; r++) for (pi=1; pi<=2; pi++) for (ti=1; ti<=2; ti++) for (gi=1; gi<=2; gi++) {
      P=(pi==1)?1:16; t=(ti==1)?"SET":"GET"; g=(gi==1)?"direct":"agent"; k=r"|"g"|"P"|"t
      if (!(k in A) || !(k in S)) continue
      x=S[k]/A[k]; y=N[k]/L[k]/A[k]
      R[g"|"P"|"t]=R[g"|"P"|"t]" "x; Y[g"|"P"|"t]=Y[g"|"P"|"t]" "y
      RA[g"|"P"|"t]=RA[g"|"P"|"t]" "A[k]; RB[g"|"P"|"t]=RB[g"|"P"|"t]" "S[k]
      printf "| %d | %d | %s | %s | %.0f | %.0f | %.3f | %.3f |\n", r, P, t, g, A[k], S[k], x, y
    }
    print ""
    print "Medians over " rounds " rounds (the bar: agent (b)/(a) >= 0.9; direct = what the machine gives with two Redis instead of one):"
    print ""
    print "| P | test | agent (a) rps | agent (b) rps | agent (b)/(a) | min-max | n/longest | direct (b)/(a) | min-max |"
    print "| ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | --- |"
    for (pi=1; pi<=2; pi++) for (ti=1; ti<=2; ti++) {
      P=(pi==1)?1:16; t=(ti==1)?"SET":"GET"; g="agent|"P"|"t; d="direct|"P"|"t
      if (!(g in R)) continue
      printf "| %d | %s | %.0f | %.0f | %.3f | %.3f-%.3f | %.3f | %.3f | %.3f-%.3f |\n", P, t, med(RA[g]), med(RB[g]), med(R[g]), lo(R[g]), hi(R[g]), med(Y[g]), med(R[d]), lo(R[d]), hi(R[d])
    }
  }' "$RAW" | tee "$OUT_DIR/report.md"
log "results in $OUT_DIR"
