package node

import (
	"testing"
	"time"

	"github.com/redhaven/redhaven/cluster"
	"github.com/redhaven/redhaven/proxy/topology"
)

// TestMayHoldVIP: a node may hold the VIP while its proxy follows the
// committed master or a planned failover pauses writes; not when its
// watcher contradicts the master or nothing is committed.
func TestMayHoldVIP(t *testing.T) {
	committed := cluster.ServiceState{Route: cluster.RouteDecision{Master: "a:1", Epoch: 1}}
	n, s := &Node{}, &service{}
	if !n.mayHoldVIP(s, committed, "") {
		t.Fatal("a node that follows the committed master may not hold the VIP")
	}
	if n.mayHoldVIP(s, committed, "answers as a replica") {
		t.Fatal("a node whose watcher contradicts the master may hold the VIP")
	}
	if n.mayHoldVIP(s, cluster.ServiceState{}, "") {
		t.Fatal("a node may hold the VIP before any route is committed")
	}
	paused := cluster.ServiceState{Route: cluster.RouteDecision{Epoch: 1, Reason: "planned failover"}}
	if !n.mayHoldVIP(s, paused, "") {
		t.Fatal("a committed pause drops the VIP")
	}
	s.planned = &plannedFailover{id: 1, started: time.Now()}
	if !n.mayHoldVIP(s, committed, "answers as a replica") {
		t.Fatal("the leader drops the VIP while its planned failover runs")
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
