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
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
)

// stopAllLimit is how long each agent may take to exit after a SIGTERM
// that reaches all three at once (no quorum is left to commit anything).
const stopAllLimit = 10 * time.Second

// slowStop: a stop that took longer has its steps logged (passing).
const slowStop = 2 * time.Second

// stopLines returns the lines of p's log from its "stopping" line on
// that name a stop step (node/stop.go, cluster/stop.go).
func stopLines(p *nsProc) string {
	b, _ := os.ReadFile(p.logPath)
	lines := strings.Split(string(b), "\n")
	var out []string
	from := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, "msg=stopping") })
	if from < 0 {
		return "(no stopping line)"
	}
	for _, l := range lines[from:] {
		if strings.Contains(l, "stop") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// When a round of TestNetnsStopAllAtOnce stops the agents, in turn.
const (
	stopSettled    = "settled"
	stopStarting   = "1.5 s after start"
	stopAfterPause = "the holder just woke from a 3 s SIGSTOP"
)

var stopWhen = []string{stopSettled, stopStarting, stopAfterPause}

// TestNetnsStopAllAtOnce starts three real agents (the built binary) in
// three namespaces, sends SIGTERM to all three at once and asserts that
// each exits, with status 0, within stopAllLimit; then starts them again
// on the same data and repeats. The rounds stop them in turn once they
// serve with one VIP holder, while they start, and just after the holder
// woke from a pause. REDHAVEN_STOPALL_ROUNDS (default 3, at most 10) sets the
// rounds. An agent that overruns gets SIGQUIT (its log ends with every
// goroutine's stack) and SIGKILL, and the test fails with its log.
func TestNetnsStopAllAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	requireNetnsLab(t)
	redistest.RequireRedis(t)
	if _, err := exec.LookPath("curl"); err != nil {
		testutil.Require(t, "netns", "curl not on PATH (apt-get install curl)")
	}
	rounds := 3
	if s := os.Getenv("REDHAVEN_STOPALL_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10 {
			t.Fatalf("REDHAVEN_STOPALL_ROUNDS=%q: want 1..10", s)
		}
		rounds = n
	}
	tmp := t.TempDir()
	bin := buildAgentBinary(t, tmp)
	lab := newNetLab(t, 3)
	rs := startLabRedis(t, lab)
	sampler := startVIPSamplerEvery(t, lab, netip.MustParseAddr(labVIP), time.Duration(rounds)*2*time.Minute, 50*time.Millisecond)
	agents := make([]*nsProc, len(lab.nodes))
	t.Cleanup(func() { stopNSProcs(agents, stopAllLimit) }) // after a failed round
	env := agentEnv()
	cfgs := make([]string, len(lab.nodes))
	for i, h := range lab.nodes {
		dir := filepath.Join(tmp, h.name)
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
			t.Fatal(err)
		}
		cfgs[i] = filepath.Join(dir, "redhaven.yaml")
		if err := os.WriteFile(cfgs[i], []byte(agentYAML(h, filepath.Join(dir, "data"), rs.sentinels, lab.nodes[0].ip)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var worst time.Duration
	for round := 1; round <= rounds; round++ {
		for i, h := range lab.nodes {
			log := filepath.Join(tmp, h.name, fmt.Sprintf("agent-%d.log", round))
			agents[i] = startNSProc(t, "agent-"+h.name, h.ns, log, env, bin, "agent", "-c", cfgs[i])
		}
		when := stopWhen[(round-1)%len(stopWhen)]
		if when == stopStarting {
			time.Sleep(1500 * time.Millisecond) // joining, electing, first grant
		} else {
			holder := waitVIPSettled(t, lab, sampler, agents, fmt.Sprintf("round %d", round))
			// Vary the moment against the lease renewals (every vip_lease/4).
			time.Sleep(time.Duration(round%4) * 150 * time.Millisecond)
			if when == stopAfterPause {
				// As at the end of TestNetnsTakeoverVsKeepalived: the holder
				// wakes from a pause to find its lease taken over.
				_ = agents[holder].cmd.Process.Signal(syscall.SIGSTOP)
				time.Sleep(3 * time.Second)
				_ = agents[holder].cmd.Process.Signal(syscall.SIGCONT)
			}
		}

		took := make([]time.Duration, len(agents))
		var wg sync.WaitGroup
		sent := time.Now()
		for _, p := range agents {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
		for i, p := range agents {
			wg.Add(1)
			go func() {
				defer wg.Done()
				select {
				case <-p.done:
					took[i] = time.Since(sent)
				case <-time.After(stopAllLimit):
					took[i] = -1
				}
			}()
		}
		wg.Wait()
		var line []string
		for i, p := range agents {
			if took[i] < 0 {
				// SIGQUIT: a Go process writes every goroutine's stack.
				_ = p.cmd.Process.Signal(syscall.SIGQUIT)
				select {
				case <-p.done:
				case <-time.After(2 * time.Second):
				}
				p.kill()
				t.Errorf("round %d: %s did not exit within %v of SIGTERM; log (last lines):\n%s",
					round, p.name, stopAllLimit, p.tail(300, false))
				line = append(line, p.name+" >"+stopAllLimit.String())
				continue
			}
			worst = max(worst, took[i])
			if code := p.cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("round %d: %s exited with status %d after SIGTERM; log (last lines):\n%s",
					round, p.name, code, p.tail(40, false))
			}
			if took[i] > slowStop {
				t.Logf("round %d: %s took %v; its stop steps:\n%s", round, p.name, took[i].Round(time.Millisecond), stopLines(p))
			}
			line = append(line, fmt.Sprintf("%s %v", p.name, took[i].Round(time.Millisecond)))
		}
		t.Logf("round %d (%s): all three stopped at once: %s", round, when, strings.Join(line, ", "))
		if t.Failed() {
			return
		}
	}
	t.Logf("%d rounds: slowest exit %v (limit %v)", rounds, worst.Round(time.Millisecond), stopAllLimit)
}
