package topology

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
)

// runScript runs EVAL script on addr on a connection of its own and
// returns its error on the channel when the script ends (or is killed).
func runScript(t *testing.T, addr, script string, args ...string) <-chan error {
	t.Helper()
	c, err := dialRESP(context.Background(), addr, credentials{}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		defer c.close()
		_, err := c.do(30*time.Second, append([]string{"EVAL", script, "0"}, args...)...)
		done <- err
	}()
	t.Cleanup(func() {
		c.close()
		<-finished
	})
	return done
}

// keepsMaster polls the observation for d and fails the test if it ever
// drops master. It returns the master's node states seen meanwhile.
func keepsMaster(t *testing.T, w *Watcher, master string, d time.Duration) []NodeState {
	t.Helper()
	var seen []NodeState
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		o := w.Observation()
		n, _ := nodeByAddr(o, master)
		seen = append(seen, n)
		if o.Master != master {
			t.Fatalf("observation dropped the busy master: master %q (%s), node %+v", o.Master, o.Reason, n)
		}
	}
	return seen
}

func sawStalled(seen []NodeState, errHas string) bool {
	for _, n := range seen {
		if n.Stalled && n.Up && n.Role == RoleMaster && strings.Contains(n.LastError, errHas) {
			return true
		}
	}
	return false
}

// TestWatcherKeepsBusyMaster: a script running on the master makes ROLE
// time out (before busy-reply-threshold) and then answer BUSY. Neither
// drops the master from the observation: Sentinel, which did not act,
// decides that a master is down. Before, both made the watcher report no
// master ("down (timeout)", "down (BUSY ...)").
func TestWatcherKeepsBusyMaster(t *testing.T) {
	// Sentinel's down-after is longer than the busy periods below, so
	// Sentinel itself does nothing (it would SCRIPT KILL a BUSY master
	// it thinks is down).
	set := redistest.StartSet(t, redistest.SetOptions{Replicas: 1, DownAfter: 10 * time.Second})
	cfg := sentinelConfig(set)
	cfg.CheckInterval = 100 * time.Millisecond
	w, logs := startWatcher(t, cfg)
	waitTopology(t, w, set.Master.Addr, redistest.Addrs(set.Replicas))
	mc := set.Master.Client()
	ctx := context.Background()

	// Slow: a 1.5 s script under the default threshold (5 s): ROLE gets
	// no answer at all, every check times out.
	if err := mc.ConfigSet(ctx, "busy-reply-threshold", "5000").Err(); err != nil {
		t.Fatal(err)
	}
	slow := `local s = redis.call('TIME')
while true do
  local n = redis.call('TIME')
  if (n[1] - s[1]) * 1000000 + (n[2] - s[2]) > tonumber(ARGV[1]) then return 1 end
end`
	done := runScript(t, set.Master.Addr, slow, "1500000")
	seen := keepsMaster(t, w, set.Master.Addr, 1400*time.Millisecond)
	if err := <-done; err != nil {
		t.Fatalf("slow script: %v", err)
	}
	if !sawStalled(seen, "timeout") {
		t.Errorf("never saw the master stalled by a timeout: the test did not exercise the slow case")
	}

	// Busy: past a 100 ms threshold ROLE is answered -BUSY.
	if err := mc.ConfigSet(ctx, "busy-reply-threshold", "100").Err(); err != nil {
		t.Fatal(err)
	}
	done = runScript(t, set.Master.Addr, "while true do end")
	seen = keepsMaster(t, w, set.Master.Addr, 1500*time.Millisecond)
	if !sawStalled(seen, "BUSY") {
		t.Errorf("never saw the master answer BUSY: the test did not exercise the busy case")
	}
	testutil.Eventually(t, 5*time.Second, "SCRIPT KILL ends the script", func() bool {
		return mc.ScriptKill(ctx).Err() == nil
	})
	if err := <-done; err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("busy script ended with %v, want killed by SCRIPT KILL", err)
	}
	testutil.Eventually(t, 5*time.Second, "master checked fine again", func() bool {
		n, _ := nodeByAddr(w.Observation(), set.Master.Addr)
		return n.Up && !n.Stalled && n.LastError == "" && n.Role == RoleMaster
	})
	if got := logs.count("node busy or slow", set.Master.Addr); got < 1 || got > 4 {
		t.Errorf("%d 'node busy or slow' warn lines, want 1 to 4 (rate-limited per class)", got)
	}
	if got := logs.count("master changed", `master_addr=""`); got != 0 {
		t.Errorf("the master was dropped %d times", got)
	}
}
