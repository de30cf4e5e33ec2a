package node

import (
	"context"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
)

// TestClusterFigures measures the closing figures (make
// bench-cluster): over FAILOVERS kill -9s of the master with three agents,
// the time from the kill and from Sentinel's +switch-master to every agent
// routing to the new master; the time from stopping the Raft leader to a
// new leader. It runs only with REDHAVEN_FIGURES=1 (it takes a minute or
// two) and asserts generous bounds.
func TestClusterFigures(t *testing.T) {
	if os.Getenv("REDHAVEN_FIGURES") == "" {
		t.Skip("set REDHAVEN_FIGURES=1 (make bench-cluster) to measure the cluster figures")
	}
	rounds := 10
	if v, err := strconv.Atoi(os.Getenv("FAILOVERS")); err == nil && v > 0 {
		rounds = v
	}
	set := redistest.StartSet(t, redistest.SetOptions{DownAfter: time.Second})
	nodes := startAgents(t, set, 3)
	testutil.Eventually(t, 20*time.Second, "every agent routes to the master", func() bool {
		return allEqual(committedMasters(nodes), set.Master.Addr)
	})

	// Follow +switch-master on one Sentinel.
	sc := redis.NewClient(&redis.Options{Addr: set.Sentinels[0].Addr, Protocol: 2, DisableIdentity: true})
	defer sc.Close()
	sub := sc.Subscribe(context.Background(), "+switch-master")
	defer sub.Close()
	// Timestamp each +switch-master as it arrives.
	switches := make(chan time.Time, 16)
	go func() {
		for range sub.Channel() {
			select {
			case switches <- time.Now():
			default:
			}
		}
	}()

	var fromKill, fromSwitch []time.Duration
	for round := 0; round < rounds; round++ {
		master := set.ByAddr(set.CurrentMaster())
		if master == nil {
			t.Fatalf("round %d: no master known to Sentinel", round)
		}
		for len(switches) > 0 {
			<-switches
		}
		killed := time.Now()
		master.Kill()
		var allRouted time.Time
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			ms := committedMasters(nodes)
			if ms[0] != "" && ms[0] != master.Addr && allEqual(ms, ms[0]) {
				allRouted = time.Now()
				break
			}
			time.Sleep(time.Millisecond)
		}
		if allRouted.IsZero() {
			t.Fatalf("round %d: agents did not agree on a new master within 20s: %v", round, committedMasters(nodes))
		}
		var switched time.Time
		select {
		case switched = <-switches:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: no +switch-master within 10s", round)
		}
		fromKill = append(fromKill, allRouted.Sub(killed))
		fromSwitch = append(fromSwitch, allRouted.Sub(switched))
		t.Logf("figure round %d: kill -> all agents route %v; +switch-master seen %v after the kill", round, allRouted.Sub(killed).Round(time.Millisecond), switched.Sub(killed).Round(time.Millisecond))
		// Bring the old master back as a replica for the next round.
		master.Restart()
		testutil.Eventually(t, 30*time.Second, "old master rejoins as a replica", func() bool {
			info, err := master.Client().Info(context.Background(), "replication").Result()
			return err == nil && strings.Contains(info, "role:slave") && strings.Contains(info, "master_link_status:up")
		})
	}
	t.Logf("figure: kill -9 of the master -> every agent routes to the new master: p50 %v max %v (n=%d)", pct(fromKill, 50), pct(fromKill, 100), len(fromKill))
	t.Logf("figure: +switch-master -> every agent routes (negative = before Sentinel announces it): p50 %v max %v", pct(fromSwitch, 50), pct(fromSwitch, 100))
	if pct(fromKill, 100) > 10*time.Second {
		t.Errorf("a failover took %v to reach every agent", pct(fromKill, 100))
	}

	// Leader loss: stop the leader's agent, time until another is leader.
	var leaderIdx int
	for i, n := range nodes {
		if n.cluster.IsLeader() {
			leaderIdx = i
		}
	}
	stopped := time.Now()
	nodes[leaderIdx].cluster.Isolate(true) // as if killed: no leave, no more heartbeats
	testutil.Eventually(t, 15*time.Second, "a new leader", func() bool {
		for i, n := range nodes {
			if i != leaderIdx && n.cluster.IsLeader() {
				return true
			}
		}
		return false
	})
	t.Logf("figure: leader cut off -> new leader elected after %v", time.Since(stopped).Round(time.Millisecond))
	nodes[leaderIdx].cluster.Isolate(false)
}

// pct returns the p-th percentile (nearest rank) of ds.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (p*len(s) + 99) / 100
	if i < 1 {
		i = 1
	}
	return s[i-1].Round(time.Millisecond)
}
