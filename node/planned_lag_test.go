package node

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redhaven/redhaven/cluster"
	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
)

// sentinelMoved says whether Sentinel has started to move the master away
// from old: it names another master, or a replica answers ROLE as master.
func sentinelMoved(set *redistest.Set, old string) string {
	if m := set.CurrentMaster(); m != "" && m != old {
		return "sentinel names " + m
	}
	for _, r := range set.Replicas {
		c := r.Client()
		role, err := c.Do(context.Background(), "ROLE").Slice()
		c.Close()
		if err == nil && len(role) > 0 && role[0] == "master" {
			return "replica " + r.Addr + " answers ROLE master"
		}
	}
	return ""
}

// failoverResult waits for the planned failover id to complete on n and
// returns its result text.
func failoverResult(t *testing.T, n *Node, id uint64) string {
	t.Helper()
	var res string
	testutil.Eventually(t, 30*time.Second, fmt.Sprintf("planned failover %d completes", id), func() bool {
		for _, f := range n.cluster.State().Service(n.Service()).Failovers {
			if f.ID == id && f.Status == cluster.FailoverCompleted {
				res = f.Result
				return true
			}
		}
		return false
	})
	return res
}

// TestPlannedFailoverWaitsForLaggingProxy (issue 13, stale read): a
// follower whose Raft log writes stall (a stuck disk) keeps answering
// heartbeats, so it stays in contact and its proxy keeps routing to the
// old master after the pause is committed by the other two. The leader
// must not ask Sentinel to fail over until that proxy follows the pause:
// while the stall lasts longer than the sync budget the failover aborts
// naming the node and Sentinel never moves; with a shorter stall the
// failover waits for the node and then succeeds, and the node's proxy had
// stopped routing to the old master before Sentinel moved it.
func TestPlannedFailoverWaitsForLaggingProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	set := redistest.StartSet(t, redistest.SetOptions{DownAfter: 5 * time.Second})
	nodes := startAgents(t, set, 3)
	testutil.Eventually(t, 20*time.Second, "every agent routes to the master", func() bool {
		return allEqual(committedMasters(nodes), set.Master.Addr)
	})
	old := set.Master.Addr
	leader := leaderOf(nodes)
	var lag *Node
	for _, n := range nodes {
		if n != leader {
			lag = n
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// 1. A stall longer than the sync budget: the failover aborts. On a
	// loaded machine the leader may lose its quorum meanwhile (its
	// failover then ends "not the raft leader"): try again, up to 3 times.
	t.Cleanup(func() { lag.cluster.StallLog(false) })
	for attempt := 1; ; attempt++ {
		res, lost := abortedByLag(t, set, nodes, leader, lag, old)
		if !lost {
			if !strings.Contains(res, "did not pause") || !strings.Contains(res, lag.cfg.NodeName) {
				t.Errorf("failover result %q, want a failure naming the lagging %s", res, lag.cfg.NodeName)
			}
			t.Logf("stall > budget: %q", res)
			break
		}
		t.Logf("attempt %d: leadership or contact changed during the failover (%q)", attempt, res)
		if attempt == 3 {
			// An unstable quorum (a loaded machine) tests nothing here;
			// the property itself is checked whenever an attempt holds.
			t.Skipf("leadership or contact changed in each of %d attempts (load?)", attempt)
		}
		leader = leaderOf(nodes)
		if leader == lag {
			t.Skipf("leadership moved to the lagging node %s", lag.cfg.NodeName)
		}
	}

	// 2. A short stall: the failover waits for the node, then goes on.
	leader = leaderOf(nodes)
	if leader == lag {
		t.Skipf("leadership moved to the lagging node %s; phase 2 needs it to follow", lag.cfg.NodeName)
	}
	lag.cluster.StallLog(true)
	id, err := leader.cluster.RequestFailover(ctx, "", "short stall")
	if err != nil {
		t.Fatalf("second request failover: %v", err)
	}
	testutil.Eventually(t, 5*time.Second, "the leader's proxy pauses again", func() bool {
		return leader.services[0].routes.Route().Master == ""
	})
	release := time.Now()
	var lagLeft, moved time.Time
	go func() {
		time.Sleep(500 * time.Millisecond)
		lag.cluster.StallLog(false)
	}()
	testutil.EventuallyEvery(t, 20*time.Second, 5*time.Millisecond, "Sentinel moves the master", func() bool {
		if lagLeft.IsZero() && lag.services[0].routes.Route().Master != old {
			lagLeft = time.Now()
		}
		if moved.IsZero() && sentinelMoved(set, old) != "" {
			moved = time.Now()
		}
		return !moved.IsZero()
	})
	if lagLeft.IsZero() || !lagLeft.Before(moved) {
		t.Errorf("%s's proxy left the old master at %v, Sentinel moved at %v (since the pause): want the proxy first",
			lag.cfg.NodeName, lagLeft.Sub(release), moved.Sub(release))
	}
	res := failoverResult(t, leader, id)
	if !strings.HasPrefix(res, "ok") {
		t.Errorf("failover after a 500ms stall: %q, want ok", res)
	}
	t.Logf("stall 500ms: %s's proxy left %s %v after the pause, Sentinel moved %v after; %q",
		lag.cfg.NodeName, old, lagLeft.Sub(release).Round(time.Millisecond), moved.Sub(release).Round(time.Millisecond), res)
}

// abortedByLag stalls lag's Raft log for longer than the sync budget,
// asks leader for a planned failover, checks that Sentinel does not move
// the master meanwhile while lag's proxy still routes to old, and returns
// the failover's result once every agent routes to old again. lost: the
// leader lost its leadership during the failover.
func abortedByLag(t *testing.T, set *redistest.Set, nodes []*Node, leader, lag *Node, old string) (res string, lost bool) {
	t.Helper()
	lag.cluster.StallLog(true)
	defer lag.cluster.StallLog(false)
	id, err := leader.cluster.RequestFailover(context.Background(), "", "lagging follower test")
	if err != nil {
		return err.Error(), true
	}
	testutil.Eventually(t, 5*time.Second, "the leader's proxy pauses", func() bool {
		return leader.services[0].routes.Route().Master == ""
	})
	paused := time.Now()
	stillOld := 0
	for time.Since(paused) < plannedSyncTimeout+time.Second {
		m := lag.services[0].routes.Route().Master
		if m == old {
			stillOld++
		}
		if why := sentinelMoved(set, old); why != "" {
			if m != old && !lag.cluster.InContact() {
				// lost contact under load: it stopped routing, so the
				// leader was right to go on; nothing left to test
				t.Skipf("%s lost contact with the quorum during its stall (load): Sentinel moved (%s)", lag.cfg.NodeName, why)
			}
			t.Fatalf("Sentinel moved the master (%s) %v after the pause; %s's proxy routed to %q just before (old master %s)",
				why, time.Since(paused).Round(time.Millisecond), lag.cfg.NodeName, m, old)
		}
		time.Sleep(20 * time.Millisecond)
	}
	lag.cluster.StallLog(false)
	res = failoverResult(t, leader, id)
	// Generous: raft backs off replication to the follower whose appends
	// failed during the stall (doubling up to ~41 s) before it catches up.
	testutil.Eventually(t, 45*time.Second, "every agent routes to the old master again", func() bool {
		return allEqual(committedMasters(nodes), old)
	})
	if why := sentinelMoved(set, old); why != "" {
		t.Fatalf("after the aborted failover: %s", why)
	}
	if stillOld == 0 { // out of contact all along (an unstable quorum under load): nothing tested
		return res + fmt.Sprintf(" (%s never routed to the old master during its stall)", lag.cfg.NodeName), true
	}
	return res, strings.Contains(res, "not the raft leader") || strings.Contains(res, "no committed master")
}
