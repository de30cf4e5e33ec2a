package node

import (
	"testing"
	"time"

	"github.com/redhaven/redhaven/cluster"
	"github.com/redhaven/redhaven/proxy"
	"github.com/redhaven/redhaven/proxy/topology"
)

// TestMayHoldVIP: a node may hold the VIP while it routes to the
// committed master or a planned failover it runs pauses writes; not when
// it cannot route (no contact, contradicted master, nothing committed).
func TestMayHoldVIP(t *testing.T) {
	committed := cluster.State{Route: cluster.RouteDecision{Master: "a:1", Epoch: 1}}
	n := &Node{}
	if !n.mayHoldVIP(proxy.Route{Master: "a:1", Epoch: 1}, committed) {
		t.Fatal("a routing node may not hold the VIP")
	}
	if n.mayHoldVIP(proxy.Route{}, committed) {
		t.Fatal("a node that does not route (out of contact or contradicted) may hold the VIP")
	}
	if n.mayHoldVIP(proxy.Route{}, cluster.State{}) {
		t.Fatal("a node may hold the VIP before any route is committed")
	}
	n.planned = &plannedFailover{id: 1, started: time.Now()}
	if !n.mayHoldVIP(proxy.Route{}, committed) {
		t.Fatal("the leader drops the VIP while its planned failover pauses writes")
	}
}

func TestReachesSomething(t *testing.T) {
	if reachesSomething(topology.Observation{}) {
		t.Fatal("empty observation reaches something")
	}
	if !reachesSomething(topology.Observation{Sentinels: []topology.SentinelState{{Reachable: true}}}) {
		t.Fatal("a reachable sentinel not counted")
	}
	if !reachesSomething(topology.Observation{Nodes: []topology.NodeState{{Up: true}}}) {
		t.Fatal("an up node not counted")
	}
}
