//go:build linux

package node

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
)

// keepalived's VIP in the same lab, next to redhaven's (labVIP).
const (
	labKAVIP     = labSubnet + ".200"
	labKAVIPCIDR = labKAVIP + "/24"
)

// kaProc is one keepalived (a parent and its VRRP child) in its own
// process group, so that kill -9 takes both at once, as a crash would.
type kaProc struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
}

func (p *kaProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the whole process group and waits (bounded) for the
// parent to end.
func (p *kaProc) signal(sig syscall.Signal) {
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// keepalivedConf is the seeds' VRRP setup: advert_int 1, priorities
// 101/100/99, preemption (the default), the VIP on eth0.
func keepalivedConf(h *labHost, prio int) string {
	return fmt.Sprintf(`global_defs {
  router_id rh_%s
  enable_script_security
}
vrrp_instance VI_RH {
  state BACKUP
  interface eth0
  virtual_router_id 51
  priority %d
  advert_int 1
  virtual_ipaddress {
    %s dev eth0
  }
}
`, h.name, prio, labKAVIPCIDR)
}

func startKeepalived(t *testing.T, h *labHost, dir string, prio int) *kaProc {
	t.Helper()
	conf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(conf, []byte(keepalivedConf(h, prio)), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "keepalived.log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("ip", "netns", "exec", h.ns, "keepalived", "--dont-fork", "--log-console", "--vrrp",
		"-f", conf, "-p", filepath.Join(dir, "keepalived.pid"), "-r", filepath.Join(dir, "vrrp.pid"))
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start keepalived in %s: %v", h.ns, err)
	}
	p := &kaProc{name: "keepalived-" + h.name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p
}

// compareStack is one of the two stacks under the same faults.
type compareStack struct {
	name    string
	sampler *vipSampler
	vip     netip.Addr
	vipCIDR string
	stop    func(i int) // clean stop (SIGTERM) of node i's process
	kill9   func(i int) // kill -9 of node i's process (group)
	pause   func(i int, on bool)
	start   func(i int)
	settled func() int // waits until one node holds the VIP steadily; returns it
}

// Scenarios, in the order they run.
const (
	scCleanStop = "clean stop of the holder (SIGTERM)"
	scNodeDeath = "node death (link down + kill -9)"
	scKill9     = "holder's process kill -9 (host alive)"
	scPause     = "holder paused 3 s (SIGSTOP)"
)

// compareResult is one measured move.
type compareResult struct {
	took    time.Duration // fault -> first sample with another holder
	doubles int           // samples with two holders from the fault until restored
	note    string        // e.g. whether the old holder also led Raft
}

// TestNetnsTakeoverVsKeepalived runs redhaven (three agents, the built
// binary) and keepalived (three VRRP instances, the seeds' config) side by
// side in the same three namespaces, each with its own VIP, and applies
// the same faults to each stack's VIP holder: a clean stop, node death
// (the holder's bridge port down and its process killed), kill -9 of the
// process only, and a 3 s pause. Both VIPs are sampled every 20 ms; the
// time to a new holder and the samples with two holders are reported side
// by side. redhaven must never show two holders; its moves are asserted
// with generous bounds (targets: clean stop 0.3 s, node death 1.5 s).
// REDHAVEN_COMPARE_RUNS (default 1) repeats the four scenarios;
// REDHAVEN_COMPARE_SCENARIOS picks some ("stop,death"),
// REDHAVEN_COMPARE_HEARTBEAT sets the agents' Raft heartbeat and election
// timeouts and contact bound (e.g. 300ms), REDHAVEN_COMPARE_TRACE=1 logs
// the new holder's Raft and VIP log lines after each redhaven fault.
func TestNetnsTakeoverVsKeepalived(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	requireNetnsLab(t)
	redistest.RequireRedis(t)
	for _, bin := range []string{"curl", "redis-cli", "keepalived"} {
		if _, err := exec.LookPath(bin); err != nil {
			testutil.Require(t, "netns", bin+" not on PATH (apt-get install curl redis-tools keepalived)")
		}
	}
	runs := 1
	if s := os.Getenv("REDHAVEN_COMPARE_RUNS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10 {
			t.Fatalf("REDHAVEN_COMPARE_RUNS=%q: want 1..10", s)
		}
		runs = n
	}
	tmp := t.TempDir()
	bin := buildAgentBinary(t, tmp)
	lab := newNetLab(t, 3)
	rs := startLabRedis(t, lab)
	maxRun := time.Duration(runs)*4*time.Minute + 2*time.Minute
	rh := &compareStack{name: "redhaven", vip: netip.MustParseAddr(labVIP), vipCIDR: labVIPCIDR}
	ka := &compareStack{name: "keepalived", vip: netip.MustParseAddr(labKAVIP), vipCIDR: labKAVIPCIDR}
	rh.sampler = startVIPSamplerEvery(t, lab, rh.vip, maxRun, 20*time.Millisecond)
	ka.sampler = startVIPSamplerEvery(t, lab, ka.vip, maxRun, 20*time.Millisecond)
	name := func(i int) string { return lab.nodes[i].name }

	agents := make([]*nsProc, len(lab.nodes))
	kas := make([]*kaProc, len(lab.nodes))
	t.Cleanup(func() {
		for _, p := range kas {
			if p != nil && !p.exited() {
				p.signal(syscall.SIGKILL)
			}
		}
		for _, p := range agents {
			if p != nil {
				_ = p.cmd.Process.Signal(syscall.SIGCONT) // a paused one must see its SIGTERM
			}
		}
		// Every step of an agent's stop is bounded (node/stop.go), also
		// when all three stop at once: one that needs SIGKILL (its log
		// ends with every goroutine's stack) or exits non-zero (its
		// last-resort exit) fails the test.
		var running []*nsProc
		for _, p := range agents {
			if p != nil && !p.exited() {
				running = append(running, p)
			}
		}
		stopping := time.Now()
		killed := stopNSProcs(agents, 15*time.Second)
		t.Logf("closing SIGTERM to %d agents at once: all gone after %v", len(running), time.Since(stopping).Round(time.Millisecond))
		if len(killed) > 0 {
			t.Errorf("agents that needed SIGKILL 15 s after SIGTERM: %v", killed)
			for _, p := range agents {
				if p != nil && slices.Contains(killed, p.name) {
					t.Logf("%s log (last lines):\n%s", p.name, p.tail(400, false))
				}
			}
		}
		for _, p := range running {
			if code := p.cmd.ProcessState.ExitCode(); code > 0 {
				t.Errorf("%s exited with status %d after SIGTERM:\n%s", p.name, code, p.tail(400, false))
			}
		}
		if t.Failed() {
			for _, p := range agents {
				if p != nil {
					t.Logf("%s log (last lines, no debug):\n%s", p.name, p.tail(40, false))
				}
			}
			for _, p := range kas {
				if p != nil {
					b, _ := os.ReadFile(p.logPath)
					lines := strings.Split(strings.TrimSpace(string(b)), "\n")
					t.Logf("%s log (last lines):\n%s", p.name, strings.Join(lines[max(0, len(lines)-15):], "\n"))
				}
			}
			t.Logf("redhaven VIP history:\n%s", rh.sampler.history(name))
			t.Logf("keepalived VIP history:\n%s", ka.sampler.history(name))
		}
	})

	env := agentEnv()
	if hb := os.Getenv("REDHAVEN_COMPARE_HEARTBEAT"); hb != "" { // e.g. 300ms: faster elections
		env = append(env, "REDHAVEN_CLUSTER__HEARTBEAT_TIMEOUT="+hb, "REDHAVEN_CLUSTER__ELECTION_TIMEOUT="+hb,
			"REDHAVEN_CLUSTER__CONTACT_BOUND="+hb)
	}
	dirs := make([]string, len(lab.nodes))
	for i, h := range lab.nodes {
		dirs[i] = filepath.Join(tmp, h.name)
		if err := os.MkdirAll(filepath.Join(dirs[i], "data"), 0o700); err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(dirs[i], "redhaven.yaml")
		if err := os.WriteFile(cfg, []byte(agentYAML(h, filepath.Join(dirs[i], "data"), rs.sentinels, lab.nodes[0].ip)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rh.start = func(i int) {
		h := lab.nodes[i]
		agents[i] = startNSProc(t, "agent-"+h.name, h.ns, filepath.Join(dirs[i], fmt.Sprintf("agent-%d.log", time.Now().UnixNano())),
			env, bin, "agent", "-c", filepath.Join(dirs[i], "redhaven.yaml"))
	}
	rh.stop = func(i int) {
		_ = agents[i].cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-agents[i].done:
		case <-time.After(15 * time.Second):
			t.Errorf("%s did not stop within 15 s of SIGTERM", agents[i].name)
			agents[i].kill()
		}
	}
	rh.kill9 = func(i int) { agents[i].kill() }
	rh.pause = func(i int, on bool) {
		sig := syscall.SIGCONT
		if on {
			sig = syscall.SIGSTOP
		}
		_ = agents[i].cmd.Process.Signal(sig)
	}
	rh.settled = func() int { return waitVIPSettled(t, lab, rh.sampler, agents, "redhaven") }
	ka.start = func(i int) { kas[i] = startKeepalived(t, lab.nodes[i], dirs[i], 101-i) }
	ka.stop = func(i int) { kas[i].signal(syscall.SIGTERM) }
	ka.kill9 = func(i int) { kas[i].signal(syscall.SIGKILL) }
	ka.pause = func(i int, on bool) {
		sig := syscall.SIGCONT
		if on {
			sig = syscall.SIGSTOP
		}
		_ = syscall.Kill(-kas[i].cmd.Process.Pid, sig)
	}
	ka.settled = func() int {
		var holder int
		testutil.EventuallyEvery(t, 60*time.Second, 100*time.Millisecond, "keepalived: one VIP holder, the highest priority, for 1 s", func() bool {
			for _, p := range kas {
				if p.exited() {
					t.Fatalf("%s exited", p.name)
				}
			}
			hs, since := ka.sampler.holders()
			if len(hs) != 1 || hs[0] != 0 || time.Since(since) < time.Second {
				return false
			}
			holder = hs[0]
			return true
		})
		return holder
	}

	for i := range lab.nodes {
		rh.start(i)
		ka.start(i)
	}

	// measure applies one fault to the stack's settled holder, waits for
	// another holder, restores the node and waits until the stack settles.
	measure := func(s *compareStack, sc string) compareResult {
		old := s.settled()
		h := lab.nodes[old]
		note := ""
		if s == rh {
			if st, err := statsFrom(lab, h); err == nil {
				note = fmt.Sprintf(" (the holder %s the Raft leader)", map[bool]string{true: "was", false: "was not"}[st.Leader])
			}
		}
		_, d0 := s.sampler.counts()
		fault := time.Now()
		switch sc {
		case scCleanStop:
			s.stop(old)
		case scNodeDeath:
			s.sampler.setDead(old, true)
			labIP(t, "-n", lab.lan, "link", "set", "v"+h.name, "down")
			s.kill9(old)
		case scKill9:
			s.kill9(old)
		case scPause:
			s.pause(old, true)
		}
		var moved holderChange
		testutil.EventuallyEvery(t, 30*time.Second, 10*time.Millisecond, s.name+": the VIP on another node after "+sc, func() bool {
			var ok bool
			moved, ok = s.sampler.changedAfter(fault, func(hs []int) bool {
				return slices.ContainsFunc(hs, func(i int) bool { return i != old })
			})
			return ok
		})
		// Watch a second after the move: two holders then would be the
		// stack's own doing (keepalived killed with -9 keeps its copy).
		time.Sleep(time.Until(moved.at.Add(time.Second)))
		if sc == scPause {
			time.Sleep(time.Until(fault.Add(3 * time.Second)))
			s.pause(old, false)
			time.Sleep(2 * time.Second) // the woken holder must find its lease gone
		}
		// The old node's copy: redhaven's expires by its lifetime (or was
		// removed); a killed keepalived leaves it for good, and a dead
		// node's would go with its reboot: remove it then.
		if sc == scNodeDeath || (s == ka && sc == scKill9) {
			if s == rh {
				nh := nsHandle(t, h.ns)
				link, err := nh.LinkByName("eth0")
				if err != nil {
					t.Fatal(err)
				}
				testutil.EventuallyEvery(t, 10*time.Second, 50*time.Millisecond, "the killed agent's copy expires", func() bool {
					held, err := hasAddr(nh, link, s.vip)
					return err == nil && !held
				})
			} else {
				_, _ = nsRun(5*time.Second, h.ns, "ip", "addr", "del", s.vipCIDR, "dev", "eth0")
			}
		}
		if s == rh && os.Getenv("REDHAVEN_COMPARE_TRACE") != "" {
			for _, i := range moved.holders {
				t.Logf("trace of %s from the fault:\n%s", name(i), traceSince(agents[i].logPath, fault))
			}
		}
		_, d1 := s.sampler.counts()
		if sc == scNodeDeath {
			labIP(t, "-n", lab.lan, "link", "set", "v"+h.name, "up")
			s.sampler.setDead(old, false)
		}
		if sc != scPause {
			s.start(old)
		}
		s.settled()
		return compareResult{took: moved.at.Sub(fault), doubles: d1 - d0, note: note}
	}

	scenarios := []string{scCleanStop, scNodeDeath, scKill9, scPause}
	if only := os.Getenv("REDHAVEN_COMPARE_SCENARIOS"); only != "" { // e.g. "death,stop"
		scenarios = slices.DeleteFunc(scenarios, func(sc string) bool {
			return !slices.ContainsFunc(strings.Split(only, ","), func(w string) bool { return strings.Contains(sc, strings.TrimSpace(w)) })
		})
		if len(scenarios) == 0 {
			t.Fatalf("REDHAVEN_COMPARE_SCENARIOS=%q matches none of the scenarios", only)
		}
	}
	results := map[string]map[string][]compareResult{}
	for _, sc := range scenarios {
		results[sc] = map[string][]compareResult{}
	}
	for run := 1; run <= runs; run++ {
		for _, sc := range scenarios {
			for _, s := range []*compareStack{rh, ka} {
				r := measure(s, sc)
				results[sc][s.name] = append(results[sc][s.name], r)
				t.Logf("run %d, %s, %s: new holder after %v, %d samples with two holders%s",
					run, sc, s.name, r.took.Round(time.Millisecond), r.doubles, r.note)
			}
		}
	}
	rh.sampler.Stop()
	ka.sampler.Stop()

	var b strings.Builder
	fmt.Fprintf(&b, "VIP on another node after the fault (s), %d run(s), sampled every 20 ms;\n"+
		"[samples with two holders, from the fault until 1 s after the move (and 2 s after a pause ends)]\n", runs)
	fmt.Fprintf(&b, "%-40s %-28s %s\n", "scenario", "redhaven", "keepalived")
	cell := func(rs []compareResult) string {
		var parts []string
		doubles := 0
		for _, r := range rs {
			parts = append(parts, fmt.Sprintf("%.2f", r.took.Seconds()))
			doubles += r.doubles
		}
		return fmt.Sprintf("%s [%d]", strings.Join(parts, " "), doubles)
	}
	for _, sc := range scenarios {
		fmt.Fprintf(&b, "%-40s %-28s %s\n", sc, cell(results[sc]["redhaven"]), cell(results[sc]["keepalived"]))
	}
	t.Logf("side by side:\n%s", b.String())

	samples, doubles := rh.sampler.counts()
	if doubles != 0 {
		t.Errorf("redhaven: %d of %d samples saw two holders, want 0", doubles, samples)
	}
	if want := int(time.Since(rh.sampler.started)/(20*time.Millisecond)) / 4; samples < want {
		t.Errorf("redhaven sampler: only %d samples; it did not run every 20 ms", samples)
	}
	// Generous bounds (a loaded 2-core machine); the targets are in the
	// doc comment.
	bounds := map[string]time.Duration{scCleanStop: 1500 * time.Millisecond, scNodeDeath: 4 * time.Second,
		scKill9: labLifetime + kernelExpirySlack + 3*time.Second, scPause: labLifetime + kernelExpirySlack + 3*time.Second}
	for _, sc := range scenarios {
		for _, r := range results[sc]["redhaven"] {
			if r.took > bounds[sc] {
				t.Errorf("redhaven, %s: new holder after %v, want within %v", sc, r.took.Round(time.Millisecond), bounds[sc])
			}
		}
	}
}

// traceSince returns the agent log lines about Raft roles and the VIP
// from since on, with their offset from since (REDHAVEN_COMPARE_TRACE).
func traceSince(logPath string, since time.Time) string {
	b, _ := os.ReadFile(logPath)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, "raft state changed") && !strings.Contains(line, "vip") &&
			!strings.Contains(line, "in contact") && !strings.Contains(line, "entering") {
			continue
		}
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "time=") {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(f[0], "time="))
		if err != nil || at.Before(since) {
			continue
		}
		out = append(out, fmt.Sprintf("  +%v %s", at.Sub(since).Round(time.Millisecond), strings.Join(f[1:], " ")))
	}
	return strings.Join(out, "\n")
}
