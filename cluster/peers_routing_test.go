package cluster_test

import (
	"slices"
	"testing"
	"time"

	"github.com/redhaven/redhaven/cluster"
	"github.com/redhaven/redhaven/cluster/clustertest"
	"github.com/redhaven/redhaven/e2e/testutil"
)

// TestPeersRouting: three in-process agents. A follower asks the others
// what they route (a VIP holder that cannot route does); the answers come
// back to it, not to the leader. Only a node that routes the decision's
// master and reaches it as a master counts: not one whose watcher does
// not reach it, not one that routes by another decision, and not one
// whose last answer is older than maxAge.
func TestPeersRouting(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{})
	c.StartAll()
	leader := c.WaitLeader(30 * time.Second)
	asker := (leader + 1) % 3
	a, up, down := c.Nodes[asker].Agent, c.Nodes[leader].Agent, c.Nodes[(leader+2)%3].Agent
	svc := cluster.DefaultServiceName
	d := cluster.RouteDecision{Master: "10.0.0.1:6379", Epoch: 3, DecidedBy: "x", Time: time.Now()}
	up.NoteRouted(svc, d, d.Master, true)
	down.NoteRouted(svc, d, d.Master, false) // routes it, but its watcher does not reach it
	var got []string
	testutil.Eventually(t, 10*time.Second, "the leader's answer reaches the follower that asked", func() bool {
		got = a.PeersRouting(svc, d, time.Second)
		return slices.Contains(got, up.Name())
	})
	time.Sleep(200 * time.Millisecond) // further answers
	if got = a.PeersRouting(svc, d, time.Second); slices.Contains(got, down.Name()) {
		t.Errorf("PeersRouting = %v: counts %s, whose watcher does not reach the master", got, down.Name())
	}
	// Another decision (a newer one with another master) is not routed by
	// their notes; an empty master is nobody's.
	newer := cluster.RouteDecision{Master: "10.0.0.2:6379", Epoch: 4, DecidedBy: "x", Time: time.Now()}
	if got := a.PeersRouting(svc, newer, time.Second); len(got) != 0 {
		t.Errorf("PeersRouting(newer decision) = %v, want none", got)
	}
	if got := a.PeersRouting(svc, cluster.RouteDecision{Epoch: 3}, time.Second); len(got) != 0 {
		t.Errorf("PeersRouting(no master) = %v, want none", got)
	}
	// A node that stopped routing answers so; until its answer is in,
	// maxAge bounds how long the old one counts.
	up.NoteRouted(svc, d, "", false)
	testutil.Eventually(t, 10*time.Second, "the leader's new answer (routes nowhere)", func() bool {
		return !slices.Contains(a.PeersRouting(svc, d, time.Second), up.Name())
	})
}
