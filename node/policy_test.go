package node

import (
	"testing"
	"time"

	"github.com/redhaven/redhaven/proxy"
	"github.com/redhaven/redhaven/proxy/topology"
)

// TestWantVIP: only a leader that routes wants the VIP, and only after
// the previous holder's copy (vip.lifetime + kernel slack) has expired.
func TestWantVIP(t *testing.T) {
	routed := proxy.Route{Master: "a:1", Epoch: 1}
	tests := []struct {
		name      string
		lifetime  time.Duration
		leader    bool
		route     proxy.Route
		leaderFor time.Duration // how long this node has been leader
		want      bool
	}{
		{"follower never", 0, false, routed, 0, false},
		{"leader without a master", 0, true, proxy.Route{}, time.Hour, false},
		{"leader, no lifetime: at once", 0, true, routed, 0, true},
		{"new leader waits for the old copy to expire", 3 * time.Second, true, routed, 3 * time.Second, false},
		{"leader after lifetime + slack", 3 * time.Second, true, routed, 4*time.Second + 10*time.Millisecond, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := &Node{}
			n.cfg.VIP.Lifetime = tt.lifetime
			if tt.leader {
				n.leaderSince = time.Now().Add(-tt.leaderFor)
				if tt.leaderFor == 0 {
					n.leaderSince = time.Time{} // becomes leader in this step
				}
			}
			if got := n.wantVIP(tt.leader, tt.route); got != tt.want {
				t.Fatalf("wantVIP = %v, want %v", got, tt.want)
			}
			if !tt.leader && !n.leaderSince.IsZero() {
				t.Fatal("a follower keeps a leaderSince")
			}
		})
	}
}

// TestWantVIPDuringPlannedFailover: the paused (empty) route of a planned
// failover does not make the leader drop the VIP.
func TestWantVIPDuringPlannedFailover(t *testing.T) {
	n := &Node{leaderSince: time.Now().Add(-time.Hour)}
	if n.wantVIP(true, proxy.Route{}) {
		t.Fatal("leader without a route and no planned failover wants the VIP")
	}
	n.planned = &plannedFailover{id: 1, started: time.Now()}
	if !n.wantVIP(true, proxy.Route{}) {
		t.Fatal("leader drops the VIP while a planned failover pauses writes")
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
