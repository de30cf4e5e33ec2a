//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/probe"
)

// The classic stack of the seeds' recipe, side by side with redhaven in
// the same node containers: HAProxy on each node (:6390, the role:master
// tcp-check on the three Redis) and keepalived (VRRP, advert_int 1,
// priorities 101/100/99, a vrrp_script on the HAProxy process) moving a
// second VIP (.251; VRRP by unicast, see keepalivedConf). Both run under `writer supervise` like systemd would
// run them (restart on failure).

const (
	classicPort   = 6390
	classicVIPLog = "/var/log/e2e-vip2.log"
)

func (c *cluster) classicVIP() string { return c.env.IP(251) }
func (c *cluster) classicCIDR() string {
	return c.classicVIP() + "/" + strconv.Itoa(c.env.Subnet.Bits())
}

func (c *cluster) haproxyCfg(extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `global
    maxconn 4000

defaults
    mode tcp
    timeout connect 3s
    timeout client 60s
    timeout server 60s%s

listen redis
    bind :%d
    option tcp-check
    tcp-check send PING\r\n
    tcp-check expect string +PONG
    tcp-check send info\ replication\r\n
    tcp-check expect string role:master
    tcp-check send QUIT\r\n
    tcp-check expect string +OK
`, extra, classicPort)
	for _, n := range c.nodes {
		fmt.Fprintf(&b, "    server %s %s:6379 check inter 1s\n", n, c.ip[n])
	}
	return b.String()
}

// keepalivedConf: VRRP by unicast to the two peers, because the test's
// network is a Docker --internal one, whose firewall rules drop the
// multicast adverts (224.0.0.18 is outside the subnet); the timing is the
// same.
func (c *cluster) keepalivedConf(n string, prio int) string {
	var peers string
	for _, m := range c.nodes {
		if m != n {
			peers += "    " + c.ip[m] + "\n"
		}
	}
	return fmt.Sprintf(`global_defs {
  router_id e2e_%s
  enable_script_security
  script_user root
}
vrrp_script chk_haproxy {
  script "/etc/e2e/chk_haproxy.sh"
  interval 1
  fall 2
  rise 2
}
vrrp_instance VI_E2E {
  state BACKUP
  interface eth0
  virtual_router_id 61
  priority %d
  advert_int 1
  unicast_src_ip %s
  unicast_peer {
%s  }
  virtual_ipaddress {
    %s dev eth0
  }
  track_script {
    chk_haproxy
  }
}
`, n, prio, c.ip[n], peers, c.classicCIDR())
}

const chkHaproxy = "#!/bin/sh\nkill -0 \"$(cat /run/e2e-haproxy.pid)\" 2>/dev/null\n"

// startClassic writes the classic stack's configs on every node and starts
// HAProxy, keepalived and the second VIP sampler.
func (c *cluster) startClassic(ctx context.Context) {
	c.t.Helper()
	for i, n := range c.nodes {
		for _, f := range []struct {
			path, data string
			mode       os.FileMode
		}{
			{"/etc/e2e/haproxy.cfg", c.haproxyCfg(""), 0o644},
			{"/etc/e2e/keepalived.conf", c.keepalivedConf(n, 101-i), 0o644},
			{"/etc/e2e/chk_haproxy.sh", chkHaproxy, 0o755},
		} {
			if err := c.env.WriteFile(ctx, n, f.path, []byte(f.data), f.mode); err != nil {
				c.t.Fatal(err)
			}
		}
		c.startClassicNode(ctx, n)
	}
}

// startClassicNode starts node n's HAProxy, keepalived and VIP sampler.
func (c *cluster) startClassicNode(ctx context.Context, n string) {
	c.t.Helper()
	c.startService(ctx, n, "haproxy")
	c.startService(ctx, n, "keepalived")
	if err := c.env.ExecDetached(ctx, n, "/e2e/node.sh", "vip-sampler", c.classicVIP(), classicVIPLog); err != nil {
		c.t.Fatalf("start the classic VIP sampler in %s: %v", n, err)
	}
}

// classicServiceCmd is the command line of each classic stack service.
var classicServiceCmd = map[string][]string{
	"haproxy": {"haproxy", "-W", "-db", "-f", "/etc/e2e/haproxy.cfg"},
	"keepalived": {"keepalived", "--dont-fork", "--log-console", "--vrrp", "-f", "/etc/e2e/keepalived.conf",
		"-p", "/run/e2e-ka-parent.pid", "-r", "/run/e2e-ka-vrrp.pid"},
}

func (c *cluster) startService(ctx context.Context, n, name string) {
	c.t.Helper()
	cmd := classicServiceCmd[name]
	if err := c.env.ExecDetached(ctx, n, append([]string{"/e2e/node.sh", "supervise", name}, cmd...)...); err != nil {
		c.t.Fatalf("start %s in %s: %v", name, n, err)
	}
}

func (c *cluster) stopService(ctx context.Context, n, name string) {
	c.t.Helper()
	if out, err := c.exec(ctx, n, "/e2e/node.sh", "stop-service", name); err != nil {
		c.t.Errorf("stop %s in %s: %v %s", name, n, err, out)
	}
}

// classicHolders lists the running nodes whose eth0 carries the classic VIP.
func (c *cluster) classicHolders(ctx context.Context) []string {
	var hs []string
	for _, n := range c.up() {
		out, _ := c.exec(ctx, n, "ip", "-o", "-4", "addr", "show", "dev", "eth0")
		if strings.Contains(out, " "+c.classicCIDR()+" ") {
			hs = append(hs, n)
		}
	}
	return hs
}

// waitClassic waits until one node holds the classic VIP and a SET
// through it succeeds, twice in a row; it returns the holder.
func (c *cluster) waitClassic(ctx context.Context, d time.Duration) string {
	c.t.Helper()
	var hs []string
	good := 0
	if !c.tryPoll(ctx, d, func() bool {
		hs = c.classicHolders(ctx)
		ok := len(hs) == 1 && c.redis(ctx, c.classicVIP(), classicPort, "SET", "e2e:classic", "1") == "OK"
		if ok {
			good++
		} else {
			good = 0
		}
		return good >= 2
	}) {
		c.t.Fatalf("classic stack not healthy within %v: VIP holders %v", d, hs)
	}
	return hs[0]
}

// startClassicOps waits for both stacks to be healthy and starts the
// writers and the hold client through the classic VIP.
func startClassicOps(t *testing.T, c *cluster, ctx context.Context, scn string) (*opsRun, string) {
	t.Helper()
	h := c.waitHealthy(ctx, 120*time.Second)
	holder := c.waitClassic(ctx, 60*time.Second)
	t.Logf("before: master %s, classic VIP on %s", h.master, holder)
	ws := c.startWritersTo(ctx, scn, c.classicVIP()+":"+strconv.Itoa(classicPort))
	c.waitFlowing(ctx, ws, 200, 30*time.Second, "writers flowing through the classic VIP")
	o := &opsRun{scn: scn, h: h, ws: ws}
	c.startHold(ctx, o, c.classicVIP()+":"+strconv.Itoa(classicPort))
	return o, holder
}

// finishClassic prints the classic stack's figures and ops lines; nothing
// is asserted about the classic stack (its figures are the comparison).
func finishClassic(t *testing.T, c *cluster, ctx context.Context, o *opsRun, victim string, faultNs int64, cut map[string]int64) {
	t.Helper()
	if !c.waitHold(ctx, o, 10, 60*time.Second) { // as finishOps, but only noted
		t.Logf("note: the hold client's connections did not all answer again within 60 s: replies %v", c.holdProgress(ctx, o))
	}
	hr := c.stopHold(ctx, o)
	recs := c.stopWriters(ctx, o.ws)
	var master string
	c.poll(ctx, 30*time.Second, "a Sentinel majority names a master", func() bool {
		master = c.nodeOf(c.sentinelMaster(ctx))
		return master != ""
	})
	figs := make([]probe.Figures, len(o.ws))
	for i, w := range o.ws {
		figs[i] = probe.Analyze(recs[w.prefix], probe.Window{Fault: faultNs}, c.present(ctx, w, master))
	}
	p, r := figs[0], figs[1]
	hist := c.vipHistory(ctx, cut)
	doubleMs, gapMs := vipFigures(hist, faultNs, time.Now().UnixNano())
	move := vipMoveMs(hist, faultNs, victim)
	errs := p.Errors + r.Errors + hr.errors
	pause := max(float64(hr.maxPauseMs), p.MaxStallMs)
	load, _ := os.ReadFile("/proc/loadavg")
	line := fmt.Sprintf("ops-classic %-22s dropped=%d hold_timeouts=%d errors=%d (writers %d/%d, hold %d) max_pause_ms=%.0f (hold %d, writer %.0f) hold_replies=%d vip_move_ms=%.0f vip_gap_ms=%.0f vip_double_ms=%.0f lost=%d/%d load1=%s",
		o.scn, hr.drops, hr.timeouts, errs, p.Errors, r.Errors, hr.errors, pause, hr.maxPauseMs, p.MaxStallMs, hr.replies,
		move, gapMs, doubleMs, len(p.Lost), len(r.Lost), firstField(string(load)))
	t.Log(line)
	if f, err := os.OpenFile(c.summary, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
		fmt.Fprintln(f, line)
		f.Close()
	}
}

// classicScenarios are the operations of TestOperations on the classic
// stack: the service that holds the VIP is keepalived, the one that
// serves clients HAProxy.
var classicScenarios = []struct {
	name string
	run  func(t *testing.T, c *cluster, ctx context.Context)
}{
	{"rolling-restart", classicRolling},
	{"reload", classicReload},
	{"graceful-stop-holder", classicGracefulStop},
	{"sigstop-holder-keepalived", classicSigstop},
	{"kill9-holder-keepalived", classicKill9},
	{"docker-kill-holder", classicDockerKill},
}

// Rolling restart (systemctl restart haproxy keepalived) of the three
// nodes, the VIP holder last.
func classicRolling(t *testing.T, c *cluster, ctx context.Context) {
	o, holder := startClassicOps(t, c, ctx, "c5")
	faultNs := time.Now().UnixNano()
	for _, n := range holderLast(c, holder) {
		c.stopService(ctx, n, "haproxy")
		c.stopService(ctx, n, "keepalived")
		c.startService(ctx, n, "haproxy")
		c.startService(ctx, n, "keepalived")
		c.waitClassic(ctx, 60*time.Second)
		time.Sleep(3 * time.Second) // keepalived's preemption settles
		c.waitClassic(ctx, 60*time.Second)
	}
	finishClassic(t, c, ctx, o, holder, faultNs, nil)
}

// systemctl reload haproxy (SIGUSR2 to the master) after editing its
// config on every node.
func classicReload(t *testing.T, c *cluster, ctx context.Context) {
	o, holder := startClassicOps(t, c, ctx, "c6")
	faultNs := time.Now().UnixNano()
	for _, n := range holderLast(c, holder) {
		if err := c.env.WriteFile(ctx, n, "/etc/e2e/haproxy.cfg", []byte(c.haproxyCfg("\n    timeout check 2s")), 0o644); err != nil {
			t.Fatal(err)
		}
		c.signalAgentLike(ctx, n, "haproxy", "USR2")
		time.Sleep(2 * time.Second)
		c.waitClassic(ctx, 60*time.Second)
	}
	finishClassic(t, c, ctx, o, holder, faultNs, nil)
}

// signalAgentLike sends sig to a supervised service's main process.
func (c *cluster) signalAgentLike(ctx context.Context, n, name, sig string) int64 {
	c.t.Helper()
	at := time.Now().UnixNano()
	if out, err := c.exec(ctx, n, "/e2e/node.sh", "signal", name, sig); err != nil || out != "" {
		c.t.Fatalf("kill -%s %s in %s: %v %s", sig, name, n, err, out)
	}
	return at
}

// systemctl stop keepalived on the VIP holder (it sends priority 0).
func classicGracefulStop(t *testing.T, c *cluster, ctx context.Context) {
	o, holder := startClassicOps(t, c, ctx, "c1")
	faultNs := time.Now().UnixNano()
	c.stopService(ctx, holder, "keepalived")
	c.poll(ctx, 30*time.Second, "the classic VIP on another node", func() bool {
		hs := c.classicHolders(ctx)
		return len(hs) == 1 && hs[0] != holder
	})
	c.waitFlowing(ctx, o.ws, 200, 60*time.Second, "traffic flows after keepalived stopped")
	c.startService(ctx, holder, "keepalived")
	c.waitClassic(ctx, 60*time.Second)
	finishClassic(t, c, ctx, o, holder, faultNs, nil)
}

// keepalived on the holder paused (both processes) for 3 s.
func classicSigstop(t *testing.T, c *cluster, ctx context.Context) {
	o, holder := startClassicOps(t, c, ctx, "c4")
	faultNs := c.signalAgentLike(ctx, holder, "keepalived", "STOP") // the parent first: it would restart its child
	c.signalAgentLike(ctx, holder, "ka-vrrp", "STOP")
	time.Sleep(3 * time.Second) // the pause under test
	c.signalAgentLike(ctx, holder, "keepalived", "CONT")
	c.signalAgentLike(ctx, holder, "ka-vrrp", "CONT")
	c.waitClassic(ctx, 60*time.Second)
	c.waitFlowing(ctx, o.ws, 200, 60*time.Second, "traffic flows after the pause")
	finishClassic(t, c, ctx, o, holder, faultNs, nil)
}

// kill -9 of keepalived (both processes) on the holder; the supervisor
// starts it again after 1 s.
func classicKill9(t *testing.T, c *cluster, ctx context.Context) {
	o, holder := startClassicOps(t, c, ctx, "c3")
	faultNs := c.signalAgentLike(ctx, holder, "keepalived", "KILL") // the parent first: it would restart its child
	if out, err := c.exec(ctx, holder, "/e2e/node.sh", "signal", "ka-vrrp", "KILL"); err != nil {
		t.Logf("kill -9 keepalived's VRRP child in %s: %v %s", holder, err, out) // it may have ended with its parent
	}
	time.Sleep(5 * time.Second) // restart and VRRP settle
	c.waitClassic(ctx, 60*time.Second)
	c.waitFlowing(ctx, o.ws, 200, 60*time.Second, "traffic flows after keepalived's restart")
	finishClassic(t, c, ctx, o, holder, faultNs, nil)
}

// docker kill of the classic VIP holder, then its restart.
func classicDockerKill(t *testing.T, c *cluster, ctx context.Context) {
	o, victim := startClassicOps(t, c, ctx, "c2")
	faultNs := time.Now().UnixNano()
	if _, err := Docker(ctx, "kill", c.env.Name(victim)); err != nil {
		t.Fatal(err)
	}
	killedNs := time.Now().UnixNano()
	c.mu.Lock()
	c.down[victim] = true
	c.mu.Unlock()
	c.poll(ctx, 30*time.Second, "the classic VIP on another node", func() bool {
		return len(c.classicHolders(ctx)) == 1
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
	if err := c.env.ExecDetached(ctx, victim, "/e2e/node.sh", "vip-sampler", c.vip); err != nil {
		t.Fatal(err)
	}
	if out, err := c.exec(ctx, victim, "/e2e/node.sh", "start-redis", "--replicaof", c.ip[master], "6379"); err != nil {
		t.Fatalf("start-redis in %s: %v %s", victim, err, out)
	}
	if out, err := c.exec(ctx, victim, "/e2e/node.sh", "start-sentinel"); err != nil {
		t.Fatalf("start-sentinel in %s: %v %s", victim, err, out)
	}
	c.startAgent(ctx, victim)
	c.startClassicNode(ctx, victim)
	c.mu.Lock()
	c.down[victim] = false
	c.mu.Unlock()
	c.waitHealthy(ctx, 120*time.Second)
	c.waitClassic(ctx, 60*time.Second)
	c.waitFlowing(ctx, o.ws, 200, 30*time.Second, "traffic flows after the restart of "+victim)
	finishClassic(t, c, ctx, o, victim, faultNs, map[string]int64{victim: killedNs})
}
