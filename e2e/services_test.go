//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/probe"
)

// A second Redis set in the same containers: one more redis-server per
// node on betaRedisPort, watched by the same Sentinels as betaName and
// served by the agents on betaProxyPort of the same VIP.
const (
	betaName      = "beta"
	betaRedisPort = 6389
	betaProxyPort = 6390
)

// svc is one service of the two-service cluster.
type svc struct {
	name             string
	redisPort, proxy int
}

var twoServices = []svc{{masterName, 6379, 6380}, {betaName, betaRedisPort, betaProxyPort}}

// TestTwoServices: the agents run two services (services:, one VIP, two
// proxy ports) over two Redis sets watched by the same three Sentinels.
// Writers (persistent and reconnecting, as in TestFailover) run through
// the VIP on both ports while `redhaven failover mymaster` moves the first
// service's master and then a kill -9 of beta's master redis-server makes
// Sentinel fail beta over. The other service's writers must see no error,
// and every node must route each service's new master. Figures: a line per
// service as TestFailover's over the whole run (fault = the planned
// failover), and a line per fault with each service's longest time between
// two acks (persistent/reconnecting) and errors in that phase.
func TestTwoServices(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	began := time.Now()
	c := newCluster(t, ctx)
	t.Logf("cluster of one service healthy after %v", time.Since(began).Round(time.Millisecond))
	c.addBeta(ctx, "n3") // beta's master apart from mymaster's (n1)
	c.useTwoServices(ctx)
	before := c.waitTwoHealthy(ctx, 120*time.Second)
	t.Logf("two services healthy after %v: masters %v", time.Since(began).Round(time.Millisecond), before)

	alphaW := c.startWritersTo(ctx, "ta", c.vip+":6380")
	betaW := c.startWritersTo(ctx, "tb", fmt.Sprintf("%s:%d", c.vip, betaProxyPort))
	all := append(append([]writerRun{}, alphaW...), betaW...)
	c.waitFlowing(ctx, all, 200, 30*time.Second, "writers flowing through the VIP on both ports")

	// 1. Planned failover of mymaster.
	faultA := time.Now().UnixNano()
	if out, err := c.exec(ctx, "n1", "redhaven", "failover", masterName); err != nil {
		t.Fatalf("redhaven failover %s: %v\n%s", masterName, err, out)
	} else {
		t.Logf("redhaven failover %s: %s", masterName, strings.TrimSpace(out))
	}
	c.waitFlowing(ctx, all, 400, 60*time.Second, "traffic flows after the planned failover of "+masterName)
	afterA := c.waitRoutes(ctx, 60*time.Second, before, masterName)

	// 2. kill -9 of beta's master redis-server.
	host, _, _ := strings.Cut(afterA[betaName], ":")
	victim := c.nodeOf(host)
	faultB := time.Now().UnixNano()
	if out, err := c.exec(ctx, victim, "/e2e/node.sh", "signal", "redis-beta", "KILL"); err != nil || out != "" {
		t.Fatalf("kill -9 of beta's redis in %s: %v %q", victim, err, out)
	}
	c.waitFlowing(ctx, all, 400, 60*time.Second, "traffic flows after kill -9 of beta's master in "+victim)
	after := c.waitRoutes(ctx, 60*time.Second, afterA, betaName)
	c.waitFlowing(ctx, all, 200, 30*time.Second, "traffic flows with both new masters routed")
	t.Logf("masters: before %v, after the planned failover %v, after the kill %v", before, afterA, after)

	recs := c.stopWriters(ctx, all)
	w := probe.Window{Fault: faultA, Phase2: faultB}
	figs := map[string]probe.Figures{}
	for _, s := range twoServices {
		ws := alphaW
		if s.name == betaName {
			ws = betaW
		}
		for _, wr := range ws {
			f := probe.Analyze(recs[wr.prefix], w, c.presentAt(ctx, wr, after[s.name]))
			figs[wr.prefix] = f
			if f.Errors > 0 {
				t.Logf("writer %s: errors %s, e.g. %q", wr.prefix, classes(f), probe.ErrorSamples(recs[wr.prefix], 4))
			}
			if f.Acked < 200 {
				t.Errorf("writer %s: only %d acknowledged writes", wr.prefix, f.Acked)
			}
		}
		c.report(ctx, "two-services "+s.name, figs[ws[0].prefix], figs[ws[1].prefix], 0, faultA, nil)
	}
	for _, p := range []string{"tap", "tar"} { // a planned failover loses nothing
		if n := len(figs[p].Lost); n > 0 {
			t.Errorf("writer %s: %d acknowledged writes missing on %s's final master, first %v", p, n, masterName, figs[p].Lost[:min(10, n)])
		}
	}

	// Per phase: [fault-1s, next fault) and [faultB-1s, end).
	end := time.Now().UnixNano()
	phase := func(scn string, from, to int64, own, other string) (map[string]float64, map[string]int, int) {
		gaps, errs := map[string]float64{}, map[string]int{}
		losses := c.quorumLosses(ctx, from-int64(time.Second), to)
		for _, p := range []string{"tap", "tar", "tbp", "tbr"} {
			gaps[p], errs[p] = phaseFigures(recs[p], from-int64(time.Second), to)
		}
		line := fmt.Sprintf("figures two-services/%-24s %s: gap_ms=%.0f/%.0f errors=%d/%d; other service %s: gap_ms=%.0f/%.0f errors=%d/%d; raft_quorum_losses=%d",
			scn, own, gaps[pre(own)+"p"], gaps[pre(own)+"r"], errs[pre(own)+"p"], errs[pre(own)+"r"],
			other, gaps[pre(other)+"p"], gaps[pre(other)+"r"], errs[pre(other)+"p"], errs[pre(other)+"r"],
			losses)
		c.logFigures(line)
		return gaps, errs, losses
	}
	gA, eA, qA := phase("planned-failover-"+masterName, faultA, faultB, masterName, betaName)
	gB, eB, qB := phase("kill9-"+betaName+"-master", faultB, end, betaName, masterName)

	// The other service: no error, no long pause.
	for _, p := range []string{"tbp", "tbr"} {
		if eA[p] != 0 || gA[p] > 5000 {
			t.Errorf("writer %s (%s) during %s's planned failover: %d errors, longest gap %.0f ms; want 0 and under 5 s (the agents lost the Raft quorum %d times meanwhile)", p, betaName, masterName, eA[p], gA[p], qA)
		}
	}
	for _, p := range []string{"tap", "tar"} {
		if eB[p] != 0 || gB[p] > 5000 {
			t.Errorf("writer %s (%s) during the kill -9 of %s's master: %d errors, longest gap %.0f ms; want 0 and under 5 s (the agents lost the Raft quorum %d times meanwhile)", p, masterName, betaName, eB[p], gB[p], qB)
		}
	}
	// The service at fault: a planned failover without errors, both within bounds.
	if eA["tap"]+eA["tar"] != 0 || gA["tap"] > 10000 {
		t.Errorf("%s's planned failover: %d + %d errors, longest gap %.0f ms; want 0 and under 10 s", masterName, eA["tap"], eA["tar"], gA["tap"])
	}
	if gB["tbp"] > 20000 {
		t.Errorf("%s after kill -9 of its master: longest gap %.0f ms, want under 20 s", betaName, gB["tbp"])
	}
	if figs["tbp"].MaxErrorsPerConn > 1 {
		t.Errorf("writer tbp: %d errors on one connection, want at most 1", figs["tbp"].MaxErrorsPerConn)
	}
	t.Logf("TestTwoServices took %v", time.Since(began).Round(time.Millisecond))
}

// pre is the writers' prefix of a service.
func pre(service string) string {
	if service == betaName {
		return "tb"
	}
	return "ta"
}

// phaseFigures: the longest time between two acks done in [from, to) (the
// first counted from the last ack before from) and the errors of writes
// sent in it.
func phaseFigures(recs []probe.Record, from, to int64) (gapMs float64, errs int) {
	var prev int64
	for _, r := range recs {
		if r.Send >= from && r.Send < to && !r.OK {
			errs++
		}
		if !r.OK {
			continue
		}
		if r.Done >= from && r.Done < to && prev != 0 {
			gapMs = max(gapMs, float64(r.Done-prev)/1e6)
		}
		prev = r.Done
	}
	return gapMs, errs
}

// quorumLosses counts the agents' "lost contact with the raft quorum"
// lines logged in [from, to): an agent out of contact holds every
// service's commands, so these explain errors of a service not at fault.
func (c *cluster) quorumLosses(ctx context.Context, from, to int64) int {
	c.t.Helper()
	n := 0
	for _, node := range c.up() {
		out, _ := c.exec(ctx, node, "grep", "-h", "lost contact with the raft quorum", "/var/log/e2e-agent.log")
		for _, line := range strings.Split(out, "\n") {
			ts, ok := strings.CutPrefix(strings.Fields(line + " x")[0], "time=")
			at, err := time.Parse(time.RFC3339Nano, ts)
			if ok && err == nil && at.UnixNano() >= from && at.UnixNano() < to {
				n++
			}
		}
	}
	return n
}

// addBeta starts the second redis-server in every node (master in node
// master, the others its replicas) and has every Sentinel monitor it as
// betaName.
func (c *cluster) addBeta(ctx context.Context, master string) {
	c.t.Helper()
	for _, n := range append([]string{master}, without(c.nodes, master)...) {
		conf := strings.Join([]string{
			"bind 0.0.0.0", fmt.Sprintf("port %d", betaRedisPort), "protected-mode no", "daemonize yes",
			"pidfile /run/e2e-redis-beta.pid", "logfile /var/log/e2e-redis-beta.log", "dir /var/lib/e2e-redis-beta",
			`save ""`, "appendonly no",
		}, "\n") + "\n"
		if n != master {
			conf += fmt.Sprintf("replicaof %s %d\n", c.ip[master], betaRedisPort)
		}
		if err := c.env.WriteFile(ctx, n, "/etc/e2e/redis-beta.conf", []byte(conf), 0o644); err != nil {
			c.t.Fatal(err)
		}
		if out, err := c.exec(ctx, n, "sh", "-c", "mkdir -p /var/lib/e2e-redis-beta && redis-server /etc/e2e/redis-beta.conf"); err != nil {
			c.t.Fatalf("start beta's redis in %s: %v\n%s", n, err, out)
		}
	}
	c.poll(ctx, 30*time.Second, "beta's replicas linked to "+master, func() bool {
		for _, n := range without(c.nodes, master) {
			if !strings.Contains(c.redis(ctx, n, betaRedisPort, "INFO", "replication"), "master_link_status:up") {
				return false
			}
		}
		return true
	})
	for _, n := range c.nodes {
		for _, cmd := range [][]string{
			{"SENTINEL", "MONITOR", betaName, c.ip[master], fmt.Sprint(betaRedisPort), "2"},
			{"SENTINEL", "SET", betaName, "down-after-milliseconds", "1000"},
			{"SENTINEL", "SET", betaName, "failover-timeout", "6000"},
		} {
			if out := c.redis(ctx, n, 26379, cmd...); out != "OK" {
				c.t.Fatalf("%v on %s's Sentinel: %q", cmd, n, out)
			}
		}
	}
	c.poll(ctx, 60*time.Second, "Sentinels see each other and beta's replicas", func() bool {
		return c.sentinelsSettledOf(ctx, betaName, c.ip[master])
	})
}

func without(nodes []string, n string) []string {
	var out []string
	for _, m := range nodes {
		if m != n {
			out = append(out, m)
		}
	}
	return out
}

// useTwoServices rewrites every agent's config with the services: list
// (mymaster on :6380, beta on :6390) and restarts the agents.
func (c *cluster) useTwoServices(ctx context.Context) {
	c.t.Helper()
	for _, n := range c.nodes {
		c.stopAgent(ctx, n)
	}
	for _, n := range c.nodes {
		y := c.agentYAML(n, c.ip["n1"])
		for _, r := range [][2]string{
			{"  master_name: " + masterName + "\n", ""},
			{"proxy:\n  listen: \":6380\"\n", fmt.Sprintf("services:\n  - name: %s\n    listen: \":6380\"\n  - name: %s\n    listen: \":%d\"\n",
				masterName, betaName, betaProxyPort)},
		} {
			if !strings.Contains(y, r[0]) {
				c.t.Fatalf("agent config lacks %q:\n%s", r[0], y)
			}
			y = strings.Replace(y, r[0], r[1], 1)
		}
		if err := c.env.WriteFile(ctx, n, "/etc/redhaven/redhaven.yaml", []byte(y), 0o640); err != nil {
			c.t.Fatal(err)
		}
	}
	for _, n := range c.nodes {
		c.startAgent(ctx, n)
	}
}

// serviceRoutes parses `redhaven status` of an agent with several
// services: service -> routed master address, and whether it routes it.
func serviceRoutes(out string) (routes map[string]string, routing map[string]bool, vipHolder string) {
	routes, routing = map[string]string{}, map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "service "); ok {
			name, v, ok := strings.Cut(rest, ":")
			if !ok {
				continue
			}
			v = strings.TrimSpace(v)
			if f := strings.Fields(v); len(f) > 0 {
				routes[name] = f[0]
			}
			routing[name] = strings.HasSuffix(v, "routing yes")
		}
		if _, v, ok := strings.Cut(line, "held by "); ok && strings.HasPrefix(line, "vip:") {
			vipHolder = strings.TrimSpace(v)
		}
	}
	return routes, routing, vipHolder
}

// twoCheck is one look at the two-service cluster: each service's master
// (host:port, per Sentinel's majority) and what is wrong.
func (c *cluster) twoCheck(ctx context.Context) (masters map[string]string, problems []string) {
	masters = map[string]string{}
	up := c.up()
	for _, s := range twoServices {
		mip := c.sentinelMasterOf(ctx, s.name)
		if mip == "" {
			problems = append(problems, "no Sentinel majority on a master of "+s.name)
			continue
		}
		masters[s.name] = fmt.Sprintf("%s:%d", mip, s.redisPort)
		if !strings.HasPrefix(c.redis(ctx, mip, s.redisPort, "ROLE"), "master") {
			problems = append(problems, fmt.Sprintf("%s's master %s is not ROLE master", s.name, masters[s.name]))
		}
	}
	leases := map[string]bool{}
	for _, n := range up {
		out, _ := c.exec(ctx, n, "redhaven", "status")
		routes, routing, holder := serviceRoutes(out)
		leases[holder] = true
		for _, s := range twoServices {
			if routes[s.name] != masters[s.name] || !routing[s.name] {
				problems = append(problems, fmt.Sprintf("%s routes %s to %q (routing %v), Sentinel says %q",
					n, s.name, routes[s.name], routing[s.name], masters[s.name]))
			}
		}
	}
	hs, err := c.vipHolders(ctx)
	if err != nil {
		problems = append(problems, err.Error())
	}
	if len(hs) != 1 || len(leases) != 1 || !leases[hs[0]] {
		problems = append(problems, fmt.Sprintf("VIP holders %v, lease holders reported %v", hs, leases))
	}
	if len(problems) == 0 {
		for _, s := range twoServices {
			out, err := c.exec(ctx, clientName, "timeout", "10", "redis-cli", "-h", c.vip, "-p", fmt.Sprint(s.proxy), "SET", "e2e:health", "1")
			if err != nil || out != "OK" {
				problems = append(problems, fmt.Sprintf("SET through the VIP's port %d: %q %v", s.proxy, out, err))
			}
		}
	}
	return masters, problems
}

// waitTwoHealthy waits until twoCheck finds no problem twice in a row and
// returns the masters.
func (c *cluster) waitTwoHealthy(ctx context.Context, d time.Duration) map[string]string {
	c.t.Helper()
	var masters map[string]string
	var problems []string
	good := 0
	if !c.tryPoll(ctx, d, func() bool {
		masters, problems = c.twoCheck(ctx)
		if len(problems) == 0 {
			good++
		} else {
			good = 0
		}
		return good >= 2
	}) {
		c.t.Fatalf("two services not healthy within %v: %v", d, problems)
	}
	return masters
}

// waitRoutes waits until the cluster is healthy with moved's master other
// than in before and every other service's master unchanged.
func (c *cluster) waitRoutes(ctx context.Context, d time.Duration, before map[string]string, moved string) map[string]string {
	c.t.Helper()
	var masters map[string]string
	var problems []string
	if !c.tryPoll(ctx, d, func() bool {
		masters, problems = c.twoCheck(ctx)
		for _, s := range twoServices {
			if changed := masters[s.name] != before[s.name]; changed != (s.name == moved) {
				problems = append(problems, fmt.Sprintf("%s's master %s (before %s)", s.name, masters[s.name], before[s.name]))
			}
		}
		return len(problems) == 0
	}) {
		c.t.Fatalf("every node routing %s's new master within %v: %v", moved, d, problems)
	}
	return masters
}
