package topology

import (
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
)

// TestNodeDowntime: a killed replica's Downtime grows while it is down
// (about the time it was down) and stops when it is back; the master's
// stays 0.
func TestNodeDowntime(t *testing.T) {
	set := redistest.StartSet(t, redistest.SetOptions{NoSentinel: true})
	cfg := DefaultConfig()
	cfg.Nodes = append([]string{set.Master.Addr}, redistest.Addrs(set.Replicas)...)
	cfg.CheckInterval = 100 * time.Millisecond
	w, _ := startWatcher(t, cfg)
	waitTopology(t, w, set.Master.Addr, redistest.Addrs(set.Replicas))

	victim := set.Replicas[0]
	victim.Kill()
	killed := time.Now()
	testutil.Eventually(t, 10*time.Second, "replica seen down", func() bool {
		n, _ := nodeByAddr(w.Observation(), victim.Addr)
		return !n.Up
	})
	time.Sleep(1500 * time.Millisecond)
	n, _ := nodeByAddr(w.Observation(), victim.Addr)
	down := time.Since(killed)
	if n.Downtime < time.Second || n.Downtime > down {
		t.Fatalf("downtime %v after %v down, want between 1s and %v", n.Downtime, down, down)
	}

	victim.Restart()
	testutil.Eventually(t, 10*time.Second, "replica back", func() bool {
		n, _ := nodeByAddr(w.Observation(), victim.Addr)
		return n.Up
	})
	n1, _ := nodeByAddr(w.Observation(), victim.Addr)
	time.Sleep(500 * time.Millisecond)
	n2, _ := nodeByAddr(w.Observation(), victim.Addr)
	if n2.Downtime != n1.Downtime || n2.Downtime < n.Downtime {
		t.Errorf("downtime after the restart: %v then %v (was %v while down); want it kept and no longer growing", n1.Downtime, n2.Downtime, n.Downtime)
	}
	if m, _ := nodeByAddr(w.Observation(), set.Master.Addr); m.Downtime != 0 {
		t.Errorf("master downtime %v, want 0", m.Downtime)
	}
	t.Logf("replica down %v: downtime %v, after restart %v", down, n.Downtime, n2.Downtime)
}
