//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestOperations runs the operations of issue 16's goal table on one
// cluster like TestFailover's, with the agents supervised as systemd runs
// the packaged unit (restart on failure, main PID followed across
// hand-overs: `writer supervise`). Under the same two writers it adds a
// client that keeps 4 raw connections to the VIP and counts those the
// server closes or resets (dropped), and the longest pause between two
// replies on one connection. Each scenario prints TestFailover's figures
// line and an "ops" line: dropped connections, the hold client's errors
// and longest pause, the time from the fault until another node held the
// VIP (vip_move_ms, from the 50 ms samplers), the longest time nobody held
// it and the time two held it.
//
// Asserted always: never two VIP holders, no acknowledged write lost (and
// the scenario's own safety checks). The timing targets of the issue are
// asserted only with REDHAVEN_E2E_TARGETS=1; otherwise they are printed.
//
// Then the same operations on the classic stack of the seeds' recipe in
// the same containers (HAProxy with the role:master check + keepalived,
// classic_test.go), each printing an "ops-classic" line: the comparison,
// nothing asserted.
func TestOperations(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 28*time.Minute)
	defer cancel()
	began := time.Now()
	c := buildCluster(t, ctx, true)
	t.Logf("cluster healthy after %v", time.Since(began).Round(time.Millisecond))
	c.startClassic(ctx)
	t.Logf("classic stack: VIP %s on %s", c.classicCIDR(), c.waitClassic(ctx, 60*time.Second))

	for _, s := range []struct {
		name string
		run  func(t *testing.T, c *cluster, ctx context.Context)
	}{
		{"rolling-handover", opsRollingHandover},
		{"rolling-upgrade", opsRollingUpgrade},
		{"reload", opsReload},
		{"graceful-stop-holder", opsGracefulStop},
		{"sigstop-holder-agent", opsSigstop},
		{"kill9-holder-agent", opsKill9Agent},
		{"docker-kill-holder", opsDockerKill},
	} {
		t.Run(s.name, func(t *testing.T) {
			if ctx.Err() != nil {
				t.Skip("out of time")
			}
			began := time.Now()
			c.t = t
			defer func() { c.t = nil }()
			sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			defer cancel()
			s.run(t, c, sctx)
			t.Logf("%s took %v", s.name, time.Since(began).Round(time.Millisecond))
		})
	}
	// The same operations on the classic stack (classic_test.go), in the
	// same containers.
	for _, s := range classicScenarios {
		t.Run("classic-"+s.name, func(t *testing.T) {
			if ctx.Err() != nil {
				t.Skip("out of time")
			}
			began := time.Now()
			c.t, c.vipLog = t, classicVIPLog
			defer func() { c.t, c.vipLog = nil, "" }()
			sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			defer cancel()
			s.run(t, c, sctx)
			t.Logf("classic %s took %v", s.name, time.Since(began).Round(time.Millisecond))
		})
	}
	c.t = t
}

// opsRun is one scenario's clients: the two writers and the hold client.
type opsRun struct {
	scn  string
	h    health
	ws   []writerRun
	hold string // result file of the hold client in the client container
}

func startOps(t *testing.T, c *cluster, ctx context.Context, scn string) *opsRun {
	t.Helper()
	h, ws := startTraffic(t, c, ctx, scn)
	if len(h.holders) != 1 {
		t.Fatalf("VIP holders %v", h.holders)
	}
	o := &opsRun{scn: scn, h: h, ws: ws}
	c.startHold(ctx, o, c.vip+":6380")
	return o
}

// startHold starts the hold client against addr.
func (c *cluster) startHold(ctx context.Context, o *opsRun, addr string) {
	c.t.Helper()
	o.hold = "/tmp/" + o.scn + "h.txt"
	script := fmt.Sprintf("echo $$ > %s.pid; exec writer hold -addr %s -conns 4 -out %s -max 5m 2>%s.err",
		o.hold, addr, o.hold, o.hold)
	if err := c.env.ExecDetached(ctx, clientName, "sh", "-c", script); err != nil {
		c.t.Fatalf("start hold client: %v", err)
	}
	// Its connections are up before the fault (a fixed 500 ms was not
	// always enough at load 30).
	if !c.waitHold(ctx, o, 1, 30*time.Second) {
		c.t.Fatalf("the hold client's connections did not all answer within 30 s: replies %v", c.holdProgress(ctx, o))
	}
}

// holdProgress is the hold client's replies so far on each connection
// (nil when its progress file cannot be read).
func (c *cluster) holdProgress(ctx context.Context, o *opsRun) []int {
	out, err := c.exec(ctx, clientName, "cat", o.hold+".progress")
	if err != nil {
		return nil
	}
	var rs []int
	for _, f := range strings.Fields(out) {
		var n int
		if _, err := fmt.Sscan(f, &n); err != nil {
			return nil
		}
		rs = append(rs, n)
	}
	return rs
}

// waitHold waits up to d until every connection of the hold client has n
// more replies than at the call; false if not.
func (c *cluster) waitHold(ctx context.Context, o *opsRun, n int, d time.Duration) bool {
	base := c.holdProgress(ctx, o)
	return c.tryPoll(ctx, d, func() bool {
		rs := c.holdProgress(ctx, o)
		if len(rs) == 0 {
			return false
		}
		for i, r := range rs {
			if i < len(base) && r < base[i]+n || i >= len(base) && r < n {
				return false
			}
		}
		return true
	})
}

// holdResult is what the hold client wrote.
type holdResult struct {
	drops, errors, timeouts, replies, dials int
	maxPauseMs                              int64
	events                                  string
}

func (c *cluster) stopHold(ctx context.Context, o *opsRun) holdResult {
	c.t.Helper()
	if out, err := c.exec(ctx, clientName, "sh", "-c", "kill -TERM $(cat "+o.hold+".pid)"); err != nil {
		c.t.Errorf("stop hold client: %v %s", err, out)
	}
	var out string
	c.poll(ctx, 30*time.Second, "the hold client's result", func() bool {
		var err error
		out, err = c.exec(ctx, clientName, "cat", o.hold)
		return err == nil
	})
	r, err := parseHold(out)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

// parseHold reads the hold client's result file.
func parseHold(out string) (holdResult, error) {
	var r holdResult
	first, rest, _ := strings.Cut(out, "\n")
	if _, err := fmt.Sscanf(first, "drops=%d errors=%d timeouts=%d replies=%d dials=%d max_pause_ms=%d",
		&r.drops, &r.errors, &r.timeouts, &r.replies, &r.dials, &r.maxPauseMs); err != nil {
		return r, fmt.Errorf("hold client result %q: %v", first, err)
	}
	r.events = rest
	return r, nil
}

// opsTargets are the targets for a scenario; a negative value
// means none.
type opsTargets struct {
	vipMoveMs  float64 // the VIP held by another node this long after the fault
	drops      int     // dropped client connections
	errors     int     // client errors (both writers and the hold client)
	maxPauseMs float64 // longest pause a client saw
}

var noTargets = opsTargets{-1, -1, -1, -1}

// finishOps stops the clients, prints the figures line and the ops line,
// and checks the safety properties (never two holders: in report; no
// acknowledged write lost: in finish) and, with REDHAVEN_E2E_TARGETS=1,
// the targets.
func finishOps(t *testing.T, c *cluster, ctx context.Context, o *opsRun, victim string, faultNs int64,
	cut map[string]int64, want opsTargets) {
	t.Helper()
	// Every connection of the hold client answers again (one stuck in its
	// 10 s reply timeout redials) before it stops, so that its figures
	// cover the recovery.
	if !c.waitHold(ctx, o, 10, 60*time.Second) {
		t.Errorf("the hold client's connections did not all answer again within 60 s: replies %v", c.holdProgress(ctx, o))
	}
	hr := c.stopHold(ctx, o)
	_, p, r, _ := finish(t, c, ctx, o.ws, faultNs)
	c.report(ctx, o.scn, p, r, 0, faultNs, cut)
	hist := c.vipHistory(ctx, cut)
	doubleMs, gapMs := vipFigures(hist, faultNs, time.Now().UnixNano())
	move := vipMoveMs(hist, faultNs, victim)
	errs := p.Errors + r.Errors + hr.errors
	pause := max(float64(hr.maxPauseMs), p.MaxStallMs)
	load, _ := os.ReadFile("/proc/loadavg") // the figures depend on it: printed with them
	line := fmt.Sprintf("ops %-22s dropped=%d hold_timeouts=%d errors=%d (writers %d/%d, hold %d) max_pause_ms=%.0f (hold %d, writer %.0f) hold_replies=%d vip_move_ms=%.0f vip_gap_ms=%.0f vip_double_ms=%.0f lost=%d/%d load1=%s",
		o.scn, hr.drops, hr.timeouts, errs, p.Errors, r.Errors, hr.errors, pause, hr.maxPauseMs, p.MaxStallMs, hr.replies,
		move, gapMs, doubleMs, len(p.Lost), len(r.Lost), firstField(string(load)))
	t.Log(line)
	if f, err := os.OpenFile(c.summary, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
		fmt.Fprintln(f, line)
		f.Close()
	}
	if hr.drops+hr.errors > 0 {
		t.Logf("hold client events:\n%s", hr.events)
	}
	if hr.replies < 100 {
		t.Errorf("the hold client got only %d replies", hr.replies)
	}
	if os.Getenv("REDHAVEN_E2E_TARGETS") != "1" {
		return
	}
	if want.vipMoveMs >= 0 && (move < 0 || move > want.vipMoveMs) {
		t.Errorf("target: VIP on another node %.0f ms after the fault, want <= %.0f", move, want.vipMoveMs)
	}
	if want.drops >= 0 && hr.drops > want.drops {
		t.Errorf("target: %d dropped connections, want <= %d", hr.drops, want.drops)
	}
	if want.errors >= 0 && errs > want.errors {
		t.Errorf("target: %d client errors, want <= %d", errs, want.errors)
	}
	if want.maxPauseMs >= 0 && pause > want.maxPauseMs {
		t.Errorf("target: longest pause %.0f ms, want <= %.0f", pause, want.maxPauseMs)
	}
}

// vipMoveMs is the time from faultNs until a node other than victim (the
// holder at the fault) held the VIP; -1: never (the VIP stayed).
func vipMoveMs(hist []vipChange, faultNs int64, victim string) float64 {
	for _, ch := range hist {
		if ch.at >= faultNs && ch.held && ch.node != victim {
			return float64(ch.at-faultNs) / 1e6
		}
	}
	return -1
}

// agentPID is the supervised agent's main PID in node n ("" if none).
func (c *cluster) agentPID(ctx context.Context, n string) string {
	out, err := c.exec(ctx, n, "cat", "/run/e2e-agent.pid")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(out)
}

// signalAgent sends sig to the agent's main process in node n and returns
// the time it was sent.
func (c *cluster) signalAgent(ctx context.Context, n, sig string) int64 {
	c.t.Helper()
	at := time.Now().UnixNano()
	if out, err := c.exec(ctx, n, "/e2e/node.sh", "signal", "agent", sig); err != nil || out != "" {
		c.t.Fatalf("kill -%s the agent in %s: %v %s", sig, n, err, out)
	}
	return at
}

// waitNewPID waits until node n's agent has a main PID other than old
// and the old process is gone.
func (c *cluster) waitNewPID(ctx context.Context, n, old, what string) string {
	c.t.Helper()
	var pid string
	c.poll(ctx, 60*time.Second, what, func() bool {
		pid = c.agentPID(ctx, n)
		if pid == "" || pid == old {
			return false
		}
		_, err := c.exec(ctx, n, "kill", "-0", old)
		return err != nil
	})
	return pid
}

// handOver signals node n's agent (SIGUSR2 or SIGHUP) and waits until the
// new process took over and the cluster is healthy.
func (c *cluster) handOver(ctx context.Context, n, sig string) {
	c.t.Helper()
	began := time.Now()
	old := c.agentPID(ctx, n)
	if old == "" {
		c.t.Fatalf("no agent PID in %s", n)
	}
	c.signalAgent(ctx, n, sig)
	pid := c.waitNewPID(ctx, n, old, "the agent in "+n+" handed over after SIG"+sig)
	c.waitHealthy(ctx, 120*time.Second)
	c.t.Logf("%s: agent %s handed over to %s after SIG%s; healthy after %v", n, old, pid, sig,
		time.Since(began).Round(time.Millisecond))
}

// holderLast orders the nodes: those not holding the VIP first.
func holderLast(c *cluster, holder string) []string {
	var order []string
	for _, n := range c.nodes {
		if n != holder {
			order = append(order, n)
		}
	}
	return append(order, holder)
}

// Rolling restart of the three agents by hand-over (SIGUSR2, as
// `systemctl restart` would with the new binary's hand-over), the VIP
// holder last.
func opsRollingHandover(t *testing.T, c *cluster, ctx context.Context) {
	o := startOps(t, c, ctx, "o5")
	faultNs := time.Now().UnixNano()
	for _, n := range holderLast(c, o.h.holders[0]) {
		c.handOver(ctx, n, "USR2")
	}
	c.waitFlowing(ctx, o.ws, 200, 30*time.Second, "traffic flows after the rolling hand-over")
	finishOps(t, c, ctx, o, o.h.holders[0], faultNs, nil, opsTargets{vipMoveMs: -1, drops: 0, errors: 0, maxPauseMs: 500})
}

// Rolling upgrade of the three nodes, the VIP holder last: on each, dpkg
// -i of a .deb built with another version string, then SIGHUP to the
// agent, as the package's postinst does under systemd (systemctl
// try-reload-or-restart runs the unit's ExecReload; these containers have
// no systemd, so the postinst does nothing): the new binary on disk makes
// a hand-over restart to it. The node's agent then reports the new
// version.
func opsRollingUpgrade(t *testing.T, c *cluster, ctx context.Context) {
	installed, err := c.exec(ctx, "n1", "dpkg-query", "-W", "-f", "${Version}", "redhaven")
	if err != nil {
		t.Fatal(err)
	}
	deb, version := upgradeDeb(t, ctx, installed) // before the clients: no build during the measurement
	o := startOps(t, c, ctx, "o7")
	faultNs := time.Now().UnixNano()
	for _, n := range holderLast(c, o.h.holders[0]) {
		c.upgrade(ctx, n, deb, installed, version)
	}
	c.waitFlowing(ctx, o.ws, 200, 30*time.Second, "traffic flows after the rolling upgrade")
	// Every member's version as the cluster sees it (gossip), from the
	// holder.
	var members string
	if !c.tryPoll(ctx, 30*time.Second, func() bool {
		members, _ = c.exec(ctx, o.h.holders[0], "redhaven", "members")
		ls := strings.Split(members, "\n")
		for _, l := range ls[1:] {
			if f := strings.Fields(l); len(f) == 0 || f[len(f)-1] != version {
				return false
			}
		}
		return len(ls) == 1+len(c.nodes)
	}) {
		t.Errorf("members do not all report version %s:\n%s", version, members)
	}
	t.Logf("members after the upgrade:\n%s", members)
	finishOps(t, c, ctx, o, o.h.holders[0], faultNs, nil, opsTargets{vipMoveMs: -1, drops: 0, errors: 0, maxPauseMs: 500})
}

// upgrade installs deb (version) over installed in node n with dpkg -i,
// SIGHUPs the agent and waits for the hand-over to the new binary; the
// agent must say why (the binary changed) and report the new version.
func (c *cluster) upgrade(ctx context.Context, n, deb, installed, version string) {
	c.t.Helper()
	if err := c.env.CopyTo(ctx, n, deb, "/tmp/redhaven-upgrade.deb"); err != nil {
		c.t.Fatal(err)
	}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	out, err := c.env.Exec(dctx, n, "dpkg", "-i", "/tmp/redhaven-upgrade.deb")
	cancel()
	if err != nil {
		c.t.Fatalf("dpkg -i in %s: %v", n, err)
	}
	c.t.Logf("%s: dpkg -i: %s", n, strings.ReplaceAll(out, "\n", " | "))
	if v, _ := c.exec(ctx, n, "dpkg-query", "-W", "-f", "${Version}", "redhaven"); v != version {
		c.t.Fatalf("%s: installed version %q after dpkg -i, want %q (was %q)", n, v, version, installed)
	}
	c.handOver(ctx, n, "HUP")
	logs, _ := c.exec(ctx, n, "grep", "-F", "reload: these keys cannot change live", "/var/log/e2e-agent.log")
	if !strings.Contains(logs, "binary /usr/bin/redhaven") {
		c.t.Errorf("%s: the reload's log does not name the new binary: %q", n, logs)
	}
	var st string
	c.poll(ctx, 30*time.Second, "the agent in "+n+" reports version "+version, func() bool {
		out, _ := c.exec(ctx, n, "redhaven", "status")
		st = statusVersion(out)
		return st == version
	})
	bin, _ := c.exec(ctx, n, "redhaven", "version")
	if first, _, _ := strings.Cut(bin, "\n"); first != "redhaven "+version {
		c.t.Errorf("%s: redhaven version = %q, want %s", n, bin, version)
	}
	c.t.Logf("%s: upgraded %s -> %s; the agent reports %s", n, installed, version, st)
}

// statusVersion is the running agent's version in `redhaven status`
// output ("node:  n1 (redhaven VERSION)").
func statusVersion(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(l, "node:"); ok {
			_, v, _ := strings.Cut(rest, "(redhaven ")
			return strings.TrimSuffix(strings.TrimSpace(v), ")")
		}
	}
	return ""
}

// `systemctl reload` (SIGHUP) after editing the config on every node:
// log.level changes live, redis.check_interval only by a hand-over
// restart, which the log must name.
func opsReload(t *testing.T, c *cluster, ctx context.Context) {
	o := startOps(t, c, ctx, "o6")
	faultNs := time.Now().UnixNano()
	for _, n := range holderLast(c, o.h.holders[0]) {
		yaml := c.agentYAML(n, c.ip["n1"])
		edited := strings.NewReplacer("level: debug", "level: info", "check_interval: 100ms", "check_interval: 150ms").Replace(yaml)
		if edited == yaml || strings.Count(edited, "info")+strings.Count(edited, "150ms") < 2 {
			t.Fatalf("config of %s not edited:\n%s", n, yaml)
		}
		if err := c.env.WriteFile(ctx, n, "/etc/redhaven/redhaven.yaml", []byte(edited), 0o640); err != nil {
			t.Fatal(err)
		}
		c.handOver(ctx, n, "HUP")
		logs, _ := c.exec(ctx, n, "grep", "-F", "reload: these keys cannot change live", "/var/log/e2e-agent.log")
		if !strings.Contains(logs, "redis.check_interval") {
			t.Errorf("%s: the reload's log does not name redis.check_interval: %q", n, logs)
		}
	}
	c.waitFlowing(ctx, o.ws, 200, 30*time.Second, "traffic flows after the reloads")
	finishOps(t, c, ctx, o, o.h.holders[0], faultNs, nil, opsTargets{vipMoveMs: -1, drops: 0, errors: -1, maxPauseMs: -1})
}

// Graceful stop of the VIP holder's agent (SIGTERM, as `systemctl stop`):
// it releases the VIP and another node takes it at once.
func opsGracefulStop(t *testing.T, c *cluster, ctx context.Context) {
	o := startOps(t, c, ctx, "o1")
	victim := o.h.holders[0]
	faultNs := time.Now().UnixNano()
	c.stopAgent(ctx, victim)
	c.poll(ctx, 30*time.Second, "the VIP on another node", func() bool {
		hs, err := c.vipHolders(ctx)
		return err == nil && len(hs) == 1 && hs[0] != victim
	})
	c.waitFlowing(ctx, o.ws, 200, 60*time.Second, "traffic flows after the holder's agent stopped")
	c.startAgent(ctx, victim)
	c.waitHealthy(ctx, 120*time.Second)
	// The hold client's connections end (the agent stops); the writers
	// reconnect without an error (the proxy's drain: a FIN with a reply),
	// but for one window that no drain closes: a writer that has just
	// dialed the old holder and sends its SET as the address leaves loses
	// it (reset by the new holder after a retransmission). Seen once in
	// three runs: at most 1.
	finishOps(t, c, ctx, o, victim, faultNs, nil, opsTargets{vipMoveMs: 300, drops: -1, errors: 1, maxPauseMs: -1})
}

// The holder's agent paused (SIGSTOP) for 3 s, then SIGCONT: never two
// holders.
func opsSigstop(t *testing.T, c *cluster, ctx context.Context) {
	o := startOps(t, c, ctx, "o4")
	victim := o.h.holders[0]
	faultNs := c.signalAgent(ctx, victim, "STOP")
	time.Sleep(3 * time.Second) // the pause under test
	c.signalAgent(ctx, victim, "CONT")
	c.waitHealthy(ctx, 120*time.Second)
	c.waitFlowing(ctx, o.ws, 200, 60*time.Second, "traffic flows after the pause")
	finishOps(t, c, ctx, o, victim, faultNs, nil, noTargets)
}

// kill -9 of the holder's agent only (the host, Redis and Sentinel live
// on): the supervisor starts it again after 1 s; never two holders.
func opsKill9Agent(t *testing.T, c *cluster, ctx context.Context) {
	o := startOps(t, c, ctx, "o3")
	victim := o.h.holders[0]
	old := c.agentPID(ctx, victim)
	faultNs := c.signalAgent(ctx, victim, "KILL")
	pid := c.waitNewPID(ctx, victim, old, "the supervisor restarts the agent in "+victim)
	t.Logf("%s: agent %s killed, %s started by the supervisor", victim, old, pid)
	c.waitHealthy(ctx, 120*time.Second)
	c.waitFlowing(ctx, o.ws, 200, 60*time.Second, "traffic flows after the agent's restart")
	finishOps(t, c, ctx, o, victim, faultNs, nil, noTargets)
}

// docker kill of the VIP holder (node death), then its restart as a boot
// would.
func opsDockerKill(t *testing.T, c *cluster, ctx context.Context) {
	o := startOps(t, c, ctx, "o2")
	victim := o.h.holders[0]
	faultNs := time.Now().UnixNano()
	if _, err := Docker(ctx, "kill", c.env.Name(victim)); err != nil {
		t.Fatal(err)
	}
	killedNs := time.Now().UnixNano()
	c.mu.Lock()
	c.down[victim] = true
	c.mu.Unlock()
	c.poll(ctx, 30*time.Second, "the VIP on another node", func() bool {
		hs, err := c.vipHolders(ctx)
		return err == nil && len(hs) == 1
	})
	c.waitFlowing(ctx, o.ws, 200, 60*time.Second, "traffic resumes after docker kill of "+victim)
	var master string
	c.poll(ctx, 30*time.Second, "a Sentinel majority on a live master", func() bool {
		master = c.nodeOf(c.sentinelMaster(ctx))
		return master != "" && master != victim
	})
	if _, err := Docker(ctx, "start", c.env.Name(victim)); err != nil {
		t.Fatal(err)
	}
	c.startSampler(ctx, victim)
	// Redis comes back as a replica of the current master (not as an
	// empty master: that is TestFailover's docker-kill scenario).
	if out, err := c.exec(ctx, victim, "/e2e/node.sh", "start-redis", "--replicaof", c.ip[master], "6379"); err != nil {
		t.Fatalf("start-redis in %s: %v %s", victim, err, out)
	}
	if out, err := c.exec(ctx, victim, "/e2e/node.sh", "start-sentinel"); err != nil {
		t.Fatalf("start-sentinel in %s: %v %s", victim, err, out)
	}
	c.startAgent(ctx, victim)
	c.startClassicNode(ctx, victim) // the classic stack's scenarios come later
	c.mu.Lock()
	c.down[victim] = false
	c.mu.Unlock()
	c.waitHealthy(ctx, 120*time.Second)
	c.waitFlowing(ctx, o.ws, 200, 30*time.Second, "traffic flows after the restart of "+victim)
	finishOps(t, c, ctx, o, victim, faultNs, map[string]int64{victim: killedNs},
		opsTargets{vipMoveMs: 1500, drops: -1, errors: -1, maxPauseMs: -1})
}

func firstField(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return "?"
}
