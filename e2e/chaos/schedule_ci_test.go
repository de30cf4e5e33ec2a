package chaos

import (
	"testing"
	"time"
)

// TestScheduleCI: the CI schedule never crashes, pauses or partitions
// anything but a replica, never picks a kind outside CIKinds, and a
// replica's fault runs alone (the node is picked when it is applied).
func TestScheduleCI(t *testing.T) {
	nodes := []string{"n1", "n2", "n3"}
	allowed := map[string]bool{}
	for _, k := range CIKinds {
		allowed[k] = true
	}
	for seed := uint64(1); seed <= 200; seed++ {
		sched := ScheduleCI(seed, 150*time.Second, nodes)
		if len(sched) < 8 {
			t.Errorf("seed %d: %d faults in 150 s", seed, len(sched))
		}
		for i, f := range sched {
			if !allowed[f.Kind] {
				t.Fatalf("seed %d: %v is not a CI fault", seed, f)
			}
			if heavy[f.Kind] && f.Target != "replica" {
				t.Fatalf("seed %d: %v may hit the master", seed, f)
			}
			for j, g := range sched {
				if i == j || (f.Target != "replica" && g.Target != "replica") {
					continue
				}
				if f.At < g.At+g.Duration+time.Second && g.At < f.At+f.Duration+time.Second {
					t.Fatalf("seed %d: %v overlaps %v", seed, f, g)
				}
			}
		}
	}
	// The seed TestChaosCI runs covers every kind.
	seen := map[string]int{}
	for _, f := range ScheduleCI(CISeed, CIDuration, nodes) {
		seen[f.Kind]++
	}
	for _, k := range CIKinds {
		if seen[k] == 0 {
			t.Errorf("seed %d, %v: no %s (%v)", CISeed, CIDuration, k, seen)
		}
	}
}
