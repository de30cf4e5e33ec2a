//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"github.com/redhaven/redhaven/e2e/probe"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A cluster is three node containers (redis-server, redis-sentinel and
// the redhaven agent from the .deb in each) and a client container that
// runs the writer, on a network of the test's own with fixed addresses:
// n1 = .11, n2 = .12, n3 = .13, client = .50, VIP = .250.
type cluster struct {
	t       *testing.T
	env     *Env
	image   string
	nodes   []string          // n1, n2, n3
	ip      map[string]string // node (and "client") -> address
	vip     string            // VIP address, no prefix
	vipCIDR string
	art     string // folder for CSVs and logs of this run
	summary string // figures file
	key     string // cluster key (cluster.encrypt) of this run

	// supervised: the agents run under `writer supervise` (restart on
	// failure, main PID followed across hand-overs), as under systemd.
	supervised bool
	// vipLog is the sampler log vipHistory reads ("": the agents' VIP,
	// /var/log/e2e-vip.log); the classic stack's scenarios set theirs.
	vipLog string

	mu   sync.Mutex
	down map[string]bool // containers stopped by a scenario (docker kill)
}

const (
	masterName = "mymaster"
	clientName = "client"
)

// nodeScript starts and stops the daemons inside a node container. Every
// process is stopped by the PID it wrote, never by name.
const nodeScript = `#!/bin/sh
# e2e node control: start-redis [redis args] | start-sentinel | start-agent | start-agent-supervised | stop-agent |
# vip-sampler VIP | kill-redis | signal redis|sentinel|agent SIG
set -u
agent_pid=/run/e2e-agent.pid
case "$1" in
start-redis)
	shift
	mkdir -p /var/lib/e2e-redis
	exec redis-server /etc/e2e/redis.conf "$@"
	;;
start-sentinel)
	exec redis-sentinel /etc/e2e/sentinel.conf
	;;
start-agent)
	# run by docker exec -d: the agent in the foreground of this shell
	mkdir -p /var/lib/redhaven
	echo $$ >"$agent_pid"
	exec redhaven agent -c /etc/redhaven/redhaven.yaml >>/var/log/e2e-agent.log 2>&1
	;;
start-agent-supervised)
	# like systemd runs the packaged unit: restarted on failure, the main
	# PID followed across hand-over restarts (writer supervise)
	mkdir -p /var/lib/redhaven
	echo $$ >/run/e2e-supervisor.pid
	exec writer supervise -pidfile "$agent_pid" -log /var/log/e2e-agent.log -- redhaven agent -c /etc/redhaven/redhaven.yaml
	;;
supervise)
	# supervise NAME CMD...: CMD under writer supervise (restart on
	# failure); its main PID in /run/e2e-NAME.pid, output in /var/log/e2e-NAME.log
	name=$2
	shift 2
	echo $$ >"/run/e2e-sup-$name.pid"
	exec writer supervise -pidfile "/run/e2e-$name.pid" -log "/var/log/e2e-$name.log" \
		-events "/var/log/e2e-sup-$name.log" -notify "/run/e2e-notify-$name.sock" -- "$@"
	;;
stop-service)
	# stop-service NAME: SIGTERM to its supervisor, which passes it on
	f=/run/e2e-sup-$2.pid
	[ -f "$f" ] || exit 0
	pid=$(cat "$f")
	rm -f "$f"
	kill -TERM "$pid" 2>/dev/null || exit 0
	i=0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
	if kill -0 "$pid" 2>/dev/null; then echo "supervisor of $2 ($pid) still running after 20s"; exit 3; fi
	;;
stop-agent)
	if [ -f /run/e2e-supervisor.pid ]; then
		# supervised: the supervisor passes SIGTERM on and restarts nothing
		pid=$(cat /run/e2e-supervisor.pid)
		rm -f /run/e2e-supervisor.pid
		kill -TERM "$pid" 2>/dev/null || exit 0
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
		if kill -0 "$pid" 2>/dev/null; then echo "supervisor $pid still running after 20s"; exit 3; fi
		exit 0
	fi
	[ -f "$agent_pid" ] || exit 0
	pid=$(cat "$agent_pid")
	kill -TERM "$pid" 2>/dev/null || exit 0
	i=0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done
	if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; echo "agent $pid needed SIGKILL"; exit 3; fi
	rm -f "$agent_pid"
	;;
vip-sampler)
	# every 50 ms: does eth0 carry the VIP ($2)? Log changes "unix-ns 0|1"
	# to $3 (default /var/log/e2e-vip.log).
	log=${3:-/var/log/e2e-vip.log}
	echo $$ >"/run/$(basename "$log").sampler.pid"
	# A third field is the time just before the previous check: a node that
	# stops holding was surely holding until then (vipFigures counts two
	# holders only where both surely held).
	last=x
	prev=0
	i=0
	while [ $i -lt 40000 ]; do
		pre=$(date +%s%N)
		if ip -o -4 addr show dev eth0 2>/dev/null | grep -q " $2/"; then s=1; else s=0; fi
		if [ "$s" != "$last" ]; then echo "$(date +%s%N) $s $prev" >>"$log"; last=$s; fi
		prev=$pre
		sleep 0.05
		i=$((i+1))
	done
	;;
signal)
	# signal redis|sentinel|agent SIG: by the daemon's PID file
	case "$2" in
	redis) f=/run/e2e-redis.pid ;;
	sentinel) f=/run/e2e-sentinel.pid ;;
	agent) f=$agent_pid ;;
	*) f=/run/e2e-$2.pid ;; # a supervised service, or keepalived's VRRP child (ka-vrrp)
	esac
	[ -f "$f" ] || { echo "no $f"; exit 0; }
	kill -"$3" "$(cat "$f")" 2>/dev/null || echo "$2 not running"
	;;
kill-redis)
	pid=$(cat /run/e2e-redis.pid)
	date +%s%N
	kill -KILL "$pid"
	;;
*)
	echo "unknown command $1" >&2; exit 2
	;;
esac
`

// newCluster builds everything and waits until the cluster is healthy.
func newCluster(t *testing.T, ctx context.Context) *cluster {
	t.Helper()
	return buildCluster(t, ctx, false)
}

// buildCluster is newCluster, with the agents supervised or not.
func buildCluster(t *testing.T, ctx context.Context, supervised bool) *cluster {
	t.Helper()
	RequireDocker(t)
	image, _ := nodeImage(t, ctx)
	writer := buildWriter(t, ctx)

	art := os.Getenv("REDHAVEN_ARTIFACTS")
	if art == "" {
		art = t.TempDir()
	} else {
		art = filepath.Join(art, "e2e-"+time.Now().UTC().Format("20060102-150405"))
		if err := os.MkdirAll(art, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	env := NewEnvSubnet(t)
	c := &cluster{
		t: t, env: env, image: image, nodes: []string{"n1", "n2", "n3"},
		ip: map[string]string{}, art: art, summary: filepath.Join(art, "figures.txt"),
		down: map[string]bool{}, supervised: supervised,
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	c.key = base64.StdEncoding.EncodeToString(key)
	c.vip = env.IP(250)
	c.vipCIDR = c.vip + "/" + strconv.Itoa(env.Subnet.Bits())
	for i, n := range c.nodes {
		c.ip[n] = env.IP(11 + i)
	}
	c.ip[clientName] = env.IP(50)
	t.Logf("network %s %s; nodes %v; VIP %s; artifacts %s", env.Network, env.Subnet, c.ip, c.vipCIDR, art)
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("REDHAVEN_ARTIFACTS") != "" {
			c.dumpLogs(t.Failed())
		}
	})

	for _, n := range c.nodes {
		env.Start(n, image, []string{"--ip", c.ip[n], "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW"})
	}
	env.Start(clientName, image, []string{"--ip", c.ip[clientName]})
	if err := env.CopyTo(ctx, clientName, writer, "/usr/local/bin/writer"); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes {
		c.writeConfigs(ctx, n, c.ip["n1"])
		if supervised {
			if err := env.CopyTo(ctx, n, writer, "/usr/local/bin/writer"); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Redis: n1 the master, then the replicas.
	for _, n := range c.nodes {
		if out, err := env.Exec(ctx, n, "/e2e/node.sh", "start-redis"); err != nil {
			t.Fatalf("start redis in %s: %v\n%s", n, err, out)
		}
	}
	c.poll(ctx, 30*time.Second, "replicas linked to n1", func() bool {
		for _, n := range c.nodes[1:] {
			if !strings.Contains(c.redis(ctx, n, 6379, "INFO", "replication"), "master_link_status:up") {
				return false
			}
		}
		return true
	})
	for _, n := range c.nodes {
		if out, err := env.Exec(ctx, n, "/e2e/node.sh", "start-sentinel"); err != nil {
			t.Fatalf("start sentinel in %s: %v\n%s", n, err, out)
		}
	}
	c.poll(ctx, 30*time.Second, "sentinels see each other and both replicas", func() bool {
		return c.sentinelsSettled(ctx, c.ip["n1"])
	})
	for _, n := range c.nodes {
		c.startSampler(ctx, n)
		c.startAgent(ctx, n)
	}
	c.waitHealthy(ctx, 90*time.Second)
	return c
}

// buildWriter builds ./e2e/writer as a static binary.
func buildWriter(t *testing.T, ctx context.Context) string {
	t.Helper()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "writer")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./e2e/writer")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build ./e2e/writer: %v\n%s", err, out)
	}
	return bin
}

// writeConfigs writes redis.conf, sentinel.conf, the agent's config file
// and node.sh into node n; master is the address Sentinel monitors first.
func (c *cluster) writeConfigs(ctx context.Context, n, master string) {
	c.t.Helper()
	redisConf := strings.Join([]string{
		"bind 0.0.0.0", "port 6379", "protected-mode no", "daemonize yes",
		"pidfile /run/e2e-redis.pid", "logfile /var/log/e2e-redis.log", "dir /var/lib/e2e-redis",
		`save ""`, "appendonly no",
	}, "\n") + "\n"
	if c.ip[n] != master {
		redisConf += "replicaof " + master + " 6379\n"
	}
	sentinelConf := strings.Join([]string{
		"port 26379", "bind 0.0.0.0", "protected-mode no", "daemonize yes",
		"pidfile /run/e2e-sentinel.pid", "logfile /var/log/e2e-sentinel.log", "dir /tmp",
		fmt.Sprintf("sentinel monitor %s %s 6379 2", masterName, master),
		fmt.Sprintf("sentinel down-after-milliseconds %s 1000", masterName),
		fmt.Sprintf("sentinel failover-timeout %s 6000", masterName),
	}, "\n") + "\n"
	files := []struct {
		path string
		data string
		mode os.FileMode
	}{
		{"/e2e/node.sh", nodeScript, 0o755},
		{"/etc/e2e/redis.conf", redisConf, 0o644},
		{"/etc/e2e/sentinel.conf", sentinelConf, 0o644},
		{"/etc/redhaven/redhaven.yaml", c.agentYAML(n, c.ip["n1"]), 0o640},
	}
	for _, f := range files {
		if _, err := c.env.Exec(ctx, n, "mkdir", "-p", filepath.Dir(f.path)); err != nil {
			c.t.Fatal(err)
		}
		if err := c.env.WriteFile(ctx, n, f.path, []byte(f.data), f.mode); err != nil {
			c.t.Fatal(err)
		}
	}
}

// agentYAML is node n's config file, joining through seed.
func (c *cluster) agentYAML(n, seed string) string {
	var sentinels []string
	for _, m := range c.nodes {
		sentinels = append(sentinels, `"`+c.ip[m]+`:26379"`)
	}
	return fmt.Sprintf(`# written by the e2e test
node_name: %s
data_dir: /var/lib/redhaven
redis:
  master_name: %s
  sentinels: [%s]
  check_interval: 100ms
proxy:
  listen: ":6380"
cluster:
  bind: ":7946"
  advertise: %q
  raft_bind: ":7947"
  join: ["%s:7946"]
  bootstrap_expect: 3
  encrypt: %q
vip:
  mode: netlink
  address: %q
  interface: eth0
http:
  listen: ":8404"
log:
  level: debug
`, n, masterName, strings.Join(sentinels, ", "), c.ip[n], seed, c.key, c.vipCIDR)
}

func (c *cluster) startAgent(ctx context.Context, n string) {
	c.t.Helper()
	start := "start-agent"
	if c.supervised {
		start = "start-agent-supervised"
	}
	if err := c.env.ExecDetached(ctx, n, "/e2e/node.sh", start); err != nil {
		c.t.Fatalf("start agent in %s: %v", n, err)
	}
}

// startSampler starts the VIP sampler of node n (node.sh vip-sampler).
func (c *cluster) startSampler(ctx context.Context, n string) {
	c.t.Helper()
	if err := c.env.ExecDetached(ctx, n, "/e2e/node.sh", "vip-sampler", c.vip, c.vipLogPath()); err != nil {
		c.t.Fatalf("start VIP sampler in %s: %v", n, err)
	}
}

func (c *cluster) vipLogPath() string {
	if c.vipLog != "" {
		return c.vipLog
	}
	return "/var/log/e2e-vip.log"
}

// vipChange is a node's VIP state from at on (when the sampler saw the
// change). lastSeen, for a change to not held, is when the node was last
// seen holding (0: unknown); the change happened between the two.
type vipChange struct {
	at       int64
	node     string
	held     bool
	lastSeen int64
}

// vipHistory reads every node's sampler log, adds a "released" at each
// time in cut (a container killed: its namespace and addresses are gone),
// and returns all changes in time order.
func (c *cluster) vipHistory(ctx context.Context, cut map[string]int64) []vipChange {
	c.t.Helper()
	var all []vipChange
	for _, n := range c.nodes {
		out, err := c.exec(ctx, n, "cat", c.vipLogPath())
		if err != nil {
			c.t.Errorf("VIP sampler log of %s: %v", n, err)
			continue
		}
		for _, line := range strings.Split(out, "\n") {
			var at, lastSeen int64
			var held int
			if k, _ := fmt.Sscan(line, &at, &held, &lastSeen); k >= 2 {
				all = append(all, vipChange{at: at, node: n, held: held == 1, lastSeen: lastSeen})
			}
		}
		if at, ok := cut[n]; ok {
			all = append(all, vipChange{at: at, node: n, held: false})
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].at < all[j].at })
	return all
}

// vipFigures replays the history over [from, to]: the total time two or
// more nodes surely held the VIP (a release counts from when its node was
// last seen holding: the samplers of different containers see changes up
// to a sampling round apart, which alone made 32 ms of "two holders" for a
// release that removes the address before it commits), and the longest
// time no node held it as the samplers saw it.
func vipFigures(hist []vipChange, from, to int64) (doubleMs, gapMs float64) {
	sure := make([]vipChange, 0, len(hist))
	lastAt := map[string]int64{}
	for _, ch := range hist {
		if !ch.held && ch.lastSeen > 0 {
			ch.at = max(ch.lastSeen, lastAt[ch.node])
		}
		lastAt[ch.node] = ch.at
		sure = append(sure, ch)
	}
	sort.SliceStable(sure, func(i, j int) bool { return sure[i].at < sure[j].at })
	doubleMs, _ = replayVIP(sure, from, to)
	_, gapMs = replayVIP(hist, from, to)
	return doubleMs, gapMs
}

// replayVIP is vipFigures on one history, taken as exact.
func replayVIP(hist []vipChange, from, to int64) (doubleMs, gapMs float64) {
	held := map[string]bool{}
	count := func() int {
		n := 0
		for _, h := range held {
			if h {
				n++
			}
		}
		return n
	}
	events := append(slices.Clone(hist), vipChange{at: to})
	var double, gap, runStart int64 // runStart: start of the current no-holder run, 0 = none
	prev := int64(0)
	for _, ch := range events {
		if lo, hi := max(prev, from), min(ch.at, to); hi > lo {
			switch n := count(); {
			case n == 0:
				if runStart == 0 {
					runStart = lo
				}
				gap = max(gap, hi-runStart)
			case n >= 2:
				double += hi - lo
				runStart = 0
			default:
				runStart = 0
			}
		}
		if ch.node != "" {
			held[ch.node] = ch.held
		}
		prev = ch.at
	}
	return float64(double) / 1e6, float64(gap) / 1e6
}

func (c *cluster) stopAgent(ctx context.Context, n string) {
	c.t.Helper()
	if out, err := c.env.Exec(ctx, n, "/e2e/node.sh", "stop-agent"); err != nil {
		c.t.Errorf("stop agent in %s: %v\n%s", n, err, out)
	}
}

// exec runs a command in a container, bounded by 30 s.
func (c *cluster) exec(ctx context.Context, n string, cmd ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return c.env.Exec(ctx, n, cmd...)
}

// redis runs redis-cli against host:port from the client container and
// returns its output ("" on error).
func (c *cluster) redis(ctx context.Context, n string, port int, args ...string) string {
	host := n
	if ip, ok := c.ip[n]; ok {
		host = ip
	}
	out, err := c.exec(ctx, clientName, append([]string{"timeout", "5", "redis-cli", "-h", host, "-p", strconv.Itoa(port)}, args...)...)
	if err != nil {
		return ""
	}
	return out
}

// poll calls cond every 200 ms until it holds, failing the test after d.
func (c *cluster) poll(ctx context.Context, d time.Duration, what string, cond func() bool) {
	c.t.Helper()
	if !c.tryPoll(ctx, d, cond) {
		c.t.Fatalf("timed out after %v waiting for: %s", d, what)
	}
}

func (c *cluster) tryPoll(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for i := 0; i < 100000; i++ {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(200 * time.Millisecond) // polling with a deadline
	}
	return false
}

func (c *cluster) up() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var up []string
	for _, n := range c.nodes {
		if !c.down[n] {
			up = append(up, n)
		}
	}
	return up
}

func (c *cluster) nodeOf(ip string) string {
	for _, n := range c.nodes {
		if c.ip[n] == ip {
			return n
		}
	}
	return ""
}

// sentinelMaster is the master address that a majority of the reachable
// Sentinels report ("" when no majority).
func (c *cluster) sentinelMaster(ctx context.Context) string {
	return c.sentinelMasterOf(ctx, masterName)
}

// sentinelMasterOf is sentinelMaster for the master Sentinel calls name.
func (c *cluster) sentinelMasterOf(ctx context.Context, name string) string {
	votes := map[string]int{}
	for _, n := range c.up() {
		out := c.redis(ctx, n, 26379, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
		if f := strings.Fields(out); len(f) == 2 {
			votes[f[0]]++
		}
	}
	for ip, v := range votes {
		if v >= 2 {
			return ip
		}
	}
	return ""
}

// kv parses redis-cli's line-per-element output of a flat field/value reply.
func kv(out string) map[string]string {
	m := map[string]string{}
	lines := strings.Split(out, "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		m[strings.TrimSpace(lines[i])] = strings.TrimSpace(lines[i+1])
	}
	return m
}

// sentinelsSettled: every running Sentinel names master, sees the other
// Sentinels, and knows the replicas of all running nodes as healthy.
func (c *cluster) sentinelsSettled(ctx context.Context, master string) bool {
	return c.sentinelsSettledOf(ctx, masterName, master)
}

// sentinelsSettledOf is sentinelsSettled for the master Sentinel calls name.
func (c *cluster) sentinelsSettledOf(ctx context.Context, name, master string) bool {
	up := c.up()
	for _, n := range up {
		m := kv(c.redis(ctx, n, 26379, "SENTINEL", "MASTER", name))
		if m["ip"] != master || m["flags"] != "master" ||
			m["num-other-sentinels"] != strconv.Itoa(len(c.nodes)-1) {
			return false
		}
		healthy := 0
		reps := c.redis(ctx, n, 26379, "SENTINEL", "REPLICAS", name)
		for _, block := range splitReplicas(reps) {
			r := kv(block)
			if r["flags"] == "slave" && r["master-link-status"] == "ok" && !c.isDown(c.nodeOf(r["ip"])) {
				healthy++
			}
		}
		if healthy != len(up)-1 {
			return false
		}
	}
	return true
}

func (c *cluster) isDown(n string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.down[n]
}

// splitReplicas splits SENTINEL REPLICAS output into one block per replica
// (each block starts with the line "name").
func splitReplicas(out string) []string {
	var blocks []string
	var cur []string
	lines := strings.Split(out, "\n")
	for i := 0; i < len(lines); i++ {
		if lines[i] == "name" && len(cur) > 0 {
			blocks = append(blocks, strings.Join(cur, "\n"))
			cur = nil
		}
		cur = append(cur, lines[i])
	}
	if len(cur) > 0 {
		blocks = append(blocks, strings.Join(cur, "\n"))
	}
	return blocks
}

// agentStatus is what `redhaven status` on a node prints.
type agentStatus struct {
	leader, master string
	ready          bool
	vipHolder      string
}

func (c *cluster) status(ctx context.Context, n string) (agentStatus, error) {
	out, err := c.exec(ctx, n, "redhaven", "status")
	if out == "" {
		return agentStatus{}, err
	}
	return parseStatus(out), nil
}

// parseStatus reads what `redhaven status` prints.
func parseStatus(out string) agentStatus {
	var s agentStatus
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "leader":
			s.leader = v
			if strings.HasPrefix(v, "none") { // "none: no Raft leader (...)"
				s.leader = "(none)"
			}
		case "master":
			s.master, _, _ = strings.Cut(v, " ")
		case "routing":
			s.ready = strings.HasPrefix(v, "yes")
		case "vip":
			if i := strings.Index(v, "held by "); i >= 0 {
				s.vipHolder = strings.TrimSpace(v[i+len("held by "):])
			}
		}
	}
	return s
}

// vipHolders lists the running nodes whose eth0 carries the VIP.
func (c *cluster) vipHolders(ctx context.Context) ([]string, error) {
	up := c.up()
	held := make([]bool, len(up))
	errs := make([]error, len(up))
	var wg sync.WaitGroup
	for i, n := range up {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := c.exec(ctx, n, "ip", "-o", "-4", "addr", "show")
			if err != nil {
				errs[i] = err
				return
			}
			held[i] = strings.Contains(out, " "+c.vipCIDR+" ")
		}()
	}
	wg.Wait()
	var hs []string
	for i, n := range up {
		if errs[i] != nil {
			return nil, errs[i]
		}
		if held[i] {
			hs = append(hs, n)
		}
	}
	return hs, nil
}

// health is one look at the whole cluster.
type health struct {
	master   string // node name of Sentinel's master
	leader   string
	holders  []string
	problems []string
}

func (c *cluster) check(ctx context.Context) health {
	var h health
	up := c.up()
	mip := c.sentinelMaster(ctx)
	h.master = c.nodeOf(mip)
	if h.master == "" {
		h.problems = append(h.problems, "no Sentinel majority on a master")
		return h
	}
	if !c.sentinelsSettled(ctx, mip) {
		h.problems = append(h.problems, "sentinels not settled")
	}
	if !strings.HasPrefix(c.redis(ctx, h.master, 6379, "ROLE"), "master") {
		h.problems = append(h.problems, h.master+" is not ROLE master")
	}
	for _, n := range up {
		if n == h.master {
			continue
		}
		info := c.redis(ctx, n, 6379, "INFO", "replication")
		if !strings.Contains(info, "master_host:"+mip) || !strings.Contains(info, "master_link_status:up") {
			h.problems = append(h.problems, n+" not a linked replica of "+h.master)
		}
	}
	leaders := map[string]bool{}
	leaseHolders := map[string]bool{} // the VIP lease holder each agent reports
	for _, n := range up {
		s, err := c.status(ctx, n)
		if err != nil && s.leader == "" {
			h.problems = append(h.problems, fmt.Sprintf("%s status: %v", n, err))
			continue
		}
		leaders[s.leader] = true
		leaseHolders[s.vipHolder] = true
		if !s.ready {
			h.problems = append(h.problems, n+" not routing")
		}
		if s.master != mip+":6379" {
			h.problems = append(h.problems, fmt.Sprintf("%s routes to %q, Sentinel says %s", n, s.master, mip))
		}
	}
	if len(leaders) != 1 || leaders["(none)"] || leaders[""] {
		h.problems = append(h.problems, fmt.Sprintf("leaders seen: %v", leaders))
	}
	for l := range leaders {
		h.leader = l
	}
	hs, err := c.vipHolders(ctx)
	if err != nil {
		h.problems = append(h.problems, err.Error())
	}
	h.holders = hs
	// The VIP follows the committed lease, which need not be the Raft
	// leader's (a hand-over moves leadership, not the VIP).
	if len(hs) != 1 || len(leaseHolders) != 1 || !leaseHolders[hs[0]] {
		h.problems = append(h.problems, fmt.Sprintf("VIP holders %v, lease holders reported %v, leader %s", hs, leaseHolders, h.leader))
	}
	if len(h.problems) == 0 {
		out, err := c.exec(ctx, clientName, "timeout", "10", "redis-cli", "-h", c.vip, "-p", "6380", "SET", "e2e:health", "1")
		if err != nil || out != "OK" {
			h.problems = append(h.problems, fmt.Sprintf("SET through the VIP: %q %v", out, err))
		}
	}
	return h
}

// waitHealthy waits until check finds no problem twice in a row.
func (c *cluster) waitHealthy(ctx context.Context, d time.Duration) health {
	c.t.Helper()
	var h health
	good := 0
	ok := c.tryPoll(ctx, d, func() bool {
		h = c.check(ctx)
		if len(h.problems) == 0 {
			good++
		} else {
			good = 0
		}
		return good >= 2
	})
	if !ok {
		c.t.Fatalf("cluster not healthy within %v: %v", d, h.problems)
	}
	return h
}

// dumpLogs copies every node's logs into the artifacts folder and, with
// tails, logs the agents' last non-debug lines.
func (c *cluster) dumpLogs(tails bool) { c.dumpLogsTo(c.art, tails) }

// dumpLogsTo copies every node's agent, Redis, Sentinel, VIP sampler (and classic stack)
// logs into dir; tails: also print the end of each agent log.
func (c *cluster) dumpLogsTo(dir string, tails bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, n := range c.nodes {
		for _, f := range []string{"e2e-agent.log", "e2e-redis.log", "e2e-sentinel.log", "e2e-vip.log", "e2e-vip2.log", "e2e-haproxy.log", "e2e-keepalived.log"} {
			dst := filepath.Join(dir, n+"-"+f)
			if err := c.env.CopyFrom(ctx, n, "/var/log/"+f, dst); err != nil {
				continue
			}
			if tails && f == "e2e-agent.log" {
				b, _ := os.ReadFile(dst)
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				var keep []string
				for _, l := range lines {
					if !strings.Contains(l, "level=DEBUG") {
						keep = append(keep, l)
					}
				}
				c.t.Logf("%s agent log (last non-debug lines; all in %s):\n%s", n, dst, strings.Join(keep[max(0, len(keep)-25):], "\n"))
			}
		}
	}
}

// ---- writers ----

// writerRun is one writer process in the client container.
type writerRun struct {
	prefix string
	out    string // CSV path in the client container
}

// startWriters starts the persistent writer (prefix <scn>p) and the one
// that reconnects every 100 ms (prefix <scn>r).
func (c *cluster) startWriters(ctx context.Context, scn string) []writerRun {
	c.t.Helper()
	return c.startWritersTo(ctx, scn, c.vip+":6380")
}

// startWritersTo is startWriters against addr.
func (c *cluster) startWritersTo(ctx context.Context, scn, addr string) []writerRun {
	c.t.Helper()
	var ws []writerRun
	for _, kind := range []struct{ suffix, reconnect string }{{"p", "0"}, {"r", "100ms"}} {
		w := writerRun{prefix: scn + kind.suffix, out: "/tmp/" + scn + kind.suffix + ".csv"}
		script := fmt.Sprintf("echo $$ > %s.pid; exec writer write -addr %s -prefix %s -out %s -reconnect-every %s -max 5m 2>%s.err",
			w.out, addr, w.prefix, w.out, kind.reconnect, w.out)
		if err := c.env.ExecDetached(ctx, clientName, "sh", "-c", script); err != nil {
			c.t.Fatalf("start writer %s: %v", w.prefix, err)
		}
		ws = append(ws, w)
	}
	return ws
}

// progress reads a writer's progress file: writes, acks, errors, last ack.
func (c *cluster) progress(ctx context.Context, w writerRun) (seq, acks, errs, lastAck int64) {
	out, err := c.exec(ctx, clientName, "cat", w.out+".progress")
	if err != nil {
		return
	}
	fmt.Sscan(out, &seq, &acks, &errs, &lastAck)
	return
}

// waitFlowing waits until every writer has acked n more writes than at
// the call, the last one no older than 300 ms.
func (c *cluster) waitFlowing(ctx context.Context, ws []writerRun, n int64, d time.Duration, what string) {
	c.t.Helper()
	base := make([]int64, len(ws))
	for i, w := range ws {
		_, base[i], _, _ = c.progress(ctx, w)
	}
	c.poll(ctx, d, what, func() bool {
		for i, w := range ws {
			_, acks, _, last := c.progress(ctx, w)
			if acks < base[i]+n || time.Since(time.Unix(0, last)) > 300*time.Millisecond {
				return false
			}
		}
		return true
	})
}

// stopWriters stops the writers (SIGTERM by PID), copies their CSVs out
// and parses them.
func (c *cluster) stopWriters(ctx context.Context, ws []writerRun) map[string][]probe.Record {
	c.t.Helper()
	for _, w := range ws {
		if out, err := c.exec(ctx, clientName, "sh", "-c", "kill -TERM $(cat "+w.out+".pid)"); err != nil {
			c.t.Errorf("stop writer %s: %v %s", w.prefix, err, out)
		}
	}
	res := map[string][]probe.Record{}
	for _, w := range ws {
		c.poll(ctx, 20*time.Second, "writer "+w.prefix+" wrote "+w.out, func() bool {
			_, err := c.exec(ctx, clientName, "test", "-f", w.out)
			return err == nil
		})
		dst := filepath.Join(c.art, filepath.Base(w.out))
		if err := c.env.CopyFrom(ctx, clientName, w.out, dst); err != nil {
			c.t.Fatal(err)
		}
		recs, err := probe.ReadLog(dst)
		if err != nil {
			c.t.Fatal(err)
		}
		res[w.prefix] = recs
	}
	return res
}

// present asks the final master which of a writer's keys it holds.
func (c *cluster) present(ctx context.Context, w writerRun, masterNode string) map[int64]bool {
	c.t.Helper()
	return c.presentAt(ctx, w, c.ip[masterNode]+":6379")
}

// presentAt is present for the master at addr (host:port).
func (c *cluster) presentAt(ctx context.Context, w writerRun, addr string) map[int64]bool {
	c.t.Helper()
	pres := w.out + ".present"
	if out, err := c.exec(ctx, clientName, "writer", "verify", "-addr", addr,
		"-prefix", w.prefix, "-in", w.out, "-out", pres); err != nil {
		c.t.Fatalf("verify %s on %s: %v\n%s", w.prefix, addr, err, out)
	}
	out, err := c.exec(ctx, clientName, "cat", pres)
	if err != nil {
		c.t.Fatal(err)
	}
	m := map[int64]bool{}
	for _, f := range strings.Fields(out) {
		s, _ := strconv.ParseInt(f, 10, 64)
		m[s] = true
	}
	return m
}

// report prints a scenario's figures line (and appends it to the summary).
// It also reads the VIP samplers over [from, now] (cut: containers killed
// at those times) and fails the test if two nodes held the VIP at once.
func (c *cluster) report(ctx context.Context, scn string, p, r probe.Figures, oldMasterKeys int, from int64, cut map[string]int64) {
	c.t.Helper()
	hist := c.vipHistory(ctx, cut)
	doubleMs, gapMs := vipFigures(hist, from, time.Now().UnixNano())
	line := fmt.Sprintf("figures %-25s unavail_ms=%.0f/%.0f first_ack_ms=%.0f errors=%d/%d (%s | %s) acked=%d/%d lost=%d/%d old_master_writes=%d vip_gap_ms=%.0f vip_double_ms=%.0f",
		scn, p.MaxStallMs, r.MaxStallMs, p.FirstAckMs(), p.Errors, r.Errors, classes(p), classes(r),
		p.Acked, r.Acked, len(p.Lost), len(r.Lost), oldMasterKeys, gapMs, doubleMs)
	if doubleMs > 0 {
		var b strings.Builder
		for _, ch := range hist {
			if ch.at >= from-int64(time.Second) {
				fmt.Fprintf(&b, "  %+8.0f ms %s held=%v\n", float64(ch.at-from)/1e6, ch.node, ch.held)
			}
		}
		c.t.Errorf("two nodes held the VIP at once for %.0f ms in total; VIP history:\n%s", doubleMs, b.String())
	}
	c.logFigures(line)
}

// logFigures logs a figures line and appends it to the summary file.
func (c *cluster) logFigures(line string) {
	c.t.Helper()
	c.t.Log(line)
	f, err := os.OpenFile(c.summary, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err == nil {
		fmt.Fprintln(f, line)
		f.Close()
	}
}

// classes renders a writer's error classes for a figures line.
func classes(f probe.Figures) string {
	if s := probe.ClassString(f.Classes, ","); s != "" {
		return s
	}
	return "-"
}
