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

// TestPlannedFailoverLeaderChange (issue 13, chaos seed 3): the Raft
// leadership moves while a planned failover has writes paused. The old
// leader can no longer commit anything (neither the new master nor the
// old route back), so the pause stays committed with the request still
// pending, and the next leader runs the request. It used to fail at once
// with "no committed master to fail over from" (the committed route is
// the pause); it must take the pause over and finish the failover, with
// an event saying so, and every proxy must route to the new master.
//
// To hold the old leader inside its failover a follower's Raft log is
// stalled (its proxy cannot follow the pause, so the leader waits up to
// the sync budget), and the leadership is handed to the other follower
// meanwhile; the stall is released right after.
func TestPlannedFailoverLeaderChange(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	set := redistest.StartSet(t, redistest.SetOptions{DownAfter: 5 * time.Second})
	nodes := startAgents(t, set, 3)
	testutil.Eventually(t, 20*time.Second, "every agent routes to the master", func() bool {
		return allEqual(committedMasters(nodes), set.Master.Addr)
	})
	old := set.Master.Addr
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var res string
	var next *Node
	for attempt := 1; ; attempt++ {
		leader := leaderOf(nodes)
		var followers []*Node
		for _, n := range nodes {
			if n != leader {
				followers = append(followers, n)
			}
		}
		lag := followers[0]
		next = followers[1]
		lag.cluster.StallLog(true)
		id, err := leader.cluster.RequestFailover(ctx, "", "leader change test")
		if err != nil {
			lag.cluster.StallLog(false)
			t.Fatalf("request failover on %s: %v", leader.cfg.NodeName, err)
		}
		testutil.Eventually(t, 5*time.Second, "the leader's proxy pauses", func() bool {
			return leader.services[0].routes.Route().Master == ""
		})
		terr := leader.cluster.TransferLeadership(ctx, next.cfg.NodeName)
		lag.cluster.StallLog(false)
		res = failoverResult(t, next, id)
		by := completedBy(next, id)
		t.Logf("attempt %d: leadership %s -> %s (transfer: %v); completed by %s: %q", attempt, leader.cfg.NodeName, next.cfg.NodeName, terr, by, res)
		if by != leader.cfg.NodeName {
			break // a new leader ran the request
		}
		// The old leader's sync budget ran out before the transfer (a
		// loaded machine): it resumed writes itself, nothing was tested.
		if attempt == 3 {
			t.Skipf("the leadership did not move during the failover in %d attempts (load?)", attempt)
		}
		testutil.Eventually(t, 20*time.Second, "every agent routes to the old master again", func() bool {
			return allEqual(committedMasters(nodes), old)
		})
	}
	if !strings.HasPrefix(res, "ok") || !strings.Contains(res, "leader change") {
		t.Fatalf("planned failover result %q, want ok, taken over after the leader change", res)
	}
	var newMaster string
	testutil.Eventually(t, 30*time.Second, "every agent routes to one new master", func() bool {
		ms := committedMasters(nodes)
		newMaster = ms[0]
		return newMaster != "" && newMaster != old && allEqual(ms, newMaster)
	})
	testutil.Eventually(t, 20*time.Second, "Sentinel names the master the agents route to", func() bool {
		return set.CurrentMaster() == newMaster
	})
	found := false
	for _, e := range next.cluster.State().Events {
		if e.Kind == cluster.EventFailover && strings.Contains(e.Message, "leader change") {
			found = true
			t.Logf("event: %s %s", e.Node, e.Message)
		}
	}
	if !found {
		t.Errorf("no failover event about the leader change in %+v", next.cluster.State().Events)
	}
}

// completedBy names the node that completed planned failover id (its
// completion event), "" if none did.
func completedBy(n *Node, id uint64) string {
	for _, e := range n.cluster.State().Events {
		if strings.Contains(e.Message, fmt.Sprintf("planned failover %d completed", id)) {
			return e.Node
		}
	}
	return ""
}
