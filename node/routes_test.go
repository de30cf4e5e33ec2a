package node

import (
	"log/slog"
	"reflect"
	"testing"

	"github.com/redhaven/redhaven/cluster"
	"github.com/redhaven/redhaven/proxy"
	"github.com/redhaven/redhaven/proxy/topology"
)

func TestRouteFromObservation(t *testing.T) {
	replica := func(addr, master string, link bool, lag int64) topology.NodeState {
		return topology.NodeState{Addr: addr, Up: true, Role: topology.RoleReplica, MasterAddr: master, LinkUp: link, LagBytes: lag}
	}
	tests := []struct {
		name string
		obs  topology.Observation
		want proxy.Route
	}{
		{"no master holds", topology.Observation{Nodes: []topology.NodeState{replica("b:1", "a:1", true, 0)}}, proxy.Route{}},
		{"healthy replicas of the master only", topology.Observation{Master: "a:1", Epoch: 3, Nodes: []topology.NodeState{
			{Addr: "a:1", Up: true, Role: topology.RoleMaster},
			replica("b:1", "a:1", true, 0),
			replica("c:1", "a:1", false, 0),   // link down
			replica("d:1", "a:1", true, 5000), // lagging
			replica("e:1", "z:1", true, 0),    // follows another master
		}}, proxy.Route{Master: "a:1", Epoch: 3, Replicas: []string{"b:1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := routeFromObservation(tt.obs, 1000); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRouteTableHints(t *testing.T) {
	rt := newRouteTable()
	if rt.set(proxy.Route{}) {
		t.Fatal("setting the same empty route reported a change")
	}
	if !rt.set(proxy.Route{Master: "a:1", Epoch: 1}) {
		t.Fatal("new master not reported as a change")
	}
	select {
	case <-rt.RouteChanges():
	default:
		t.Fatal("no hint after a change")
	}
	rt.set(proxy.Route{Master: "b:1", Epoch: 2})
	rt.set(proxy.Route{Master: "c:1", Epoch: 3}) // hint channel full: must not block
	if got := rt.Route().Master; got != "c:1" {
		t.Fatalf("Route().Master = %q, want c:1", got)
	}
}

func TestCheckRouteAndNote(t *testing.T) {
	obs := topology.Observation{
		Nodes: []topology.NodeState{
			{Addr: "a:1", Up: true, Role: topology.RoleMaster},
			{Addr: "b:1", Up: true, Role: topology.RoleReplica, MasterAddr: "a:1", LinkUp: true},
		},
		Sentinels: []topology.SentinelState{{Addr: "s:1", Reachable: true, Master: "a:1", Epoch: 4}},
	}
	if c := checkRoute(obs, cluster.RouteDecision{Master: "a:1", Epoch: 4}); c != (routeCheck{sentinelEpoch: 4}) {
		t.Fatalf("confirmed master: %+v", c)
	}
	if c := checkRoute(obs, cluster.RouteDecision{}); c != (routeCheck{}) {
		t.Fatalf("empty route: %+v", c)
	}
	stranger := checkRoute(obs, cluster.RouteDecision{Master: "x:1", Epoch: 99})
	if stranger.contradicted == "" || !stranger.epochAhead || stranger.sentinelEpoch != 4 {
		t.Fatalf("stranger at epoch 99: %+v", stranger)
	}

	// A stale committed route (a follower whose log lags behind a failover
	// its watcher already confirms) is contradicted although the deposed
	// master still answers ROLE as a master; an older Sentinel view is not.
	moved := obs
	moved.Master, moved.Epoch = "b:1", 5
	moved.Sentinels = []topology.SentinelState{{Addr: "s:1", Reachable: true, Master: "b:1", Epoch: 5}}
	if c := checkRoute(moved, cluster.RouteDecision{Master: "a:1", Epoch: 4}); c.contradicted == "" || !c.staleBySentinel {
		t.Fatalf("committed a:1 at epoch 4, Sentinels at epoch 5 name b:1: not contradicted as stale: %+v", c)
	}
	// Until the new master is committed, the route names none and the old
	// one as replaced (the proxy passes on no reply from it).
	c := checkRoute(moved, cluster.RouteDecision{Master: "a:1", Epoch: 4})
	if r := withReplaced(proxy.Route{}, c, "a:1"); r.Master != "" || r.Replaced != "a:1" {
		t.Fatalf("stale by Sentinel: route %+v, want no master, a:1 replaced", r)
	}
	if r := withReplaced(proxy.Route{}, stranger, "x:1"); r.Replaced != "" {
		t.Fatalf("contradicted for another reason: route %+v, want nothing replaced", r)
	}
	rt := newRouteTable()
	if !rt.set(proxy.Route{Replaced: "a:1"}) || rt.Route().Replaced != "a:1" || rt.set(proxy.Route{Replaced: "a:1"}) {
		t.Fatalf("routeTable.set does not follow Replaced: %+v", rt.Route())
	}
	// A stranger is no mere lag behind Sentinel: the VIP may move for it.
	if stranger.staleBySentinel {
		t.Fatalf("stranger marked as stale by Sentinel: %+v", stranger)
	}
	if c := checkRoute(moved, cluster.RouteDecision{Master: "a:1", Epoch: 6}); c.contradicted != "" {
		t.Fatalf("committed a:1 at epoch 6 above the watcher's epoch 5: contradicted: %+v", c)
	}
	// Deposed as soon as one Sentinel says so (issue 13): a failover in
	// progress at a higher epoch, with the candidate not confirmed yet
	// and every Sentinel still naming a:1 ...
	promoting := obs
	promoting.Master, promoting.Epoch = "", 4
	promoting.Failover = topology.Failover{Addr: "b:1", Epoch: 5}
	if c := checkRoute(promoting, cluster.RouteDecision{Master: "a:1", Epoch: 4}); c.contradicted == "" || !c.staleBySentinel {
		t.Fatalf("a Sentinel promotes b:1 at epoch 5, committed a:1 at 4: not stale: %+v", c)
	}
	if c := checkRoute(promoting, cluster.RouteDecision{Master: "a:1", Epoch: 5}); c.contradicted != "" {
		t.Fatalf("a failover at the committed epoch is no news: contradicted: %+v", c)
	}
	// ... or one Sentinel of three naming b:1 at epoch 5.
	oneOfThree := obs
	oneOfThree.Master, oneOfThree.Epoch = "a:1", 4
	oneOfThree.Sentinels = []topology.SentinelState{
		{Addr: "s:1", Reachable: true, Master: "a:1", Epoch: 4},
		{Addr: "s:2", Reachable: true, Master: "b:1", Epoch: 5},
		{Addr: "s:3", Reachable: true, Master: "a:1", Epoch: 4},
	}
	if c := checkRoute(oneOfThree, cluster.RouteDecision{Master: "a:1", Epoch: 4}); c.contradicted == "" || !c.staleBySentinel {
		t.Fatalf("one Sentinel names b:1 at epoch 5, committed a:1 at 4: not stale: %+v", c)
	}
	// An epoch is a fact once reported: the Sentinel that reported it
	// may be unreachable now, the switch happened.
	oneOfThree.Sentinels[1].Reachable = false
	if c := checkRoute(oneOfThree, cluster.RouteDecision{Master: "a:1", Epoch: 4}); !c.staleBySentinel {
		t.Fatalf("an unreachable Sentinel's last word names b:1 at epoch 5: not stale: %+v", c)
	}
	noSentinel := moved
	noSentinel.Sentinels = nil
	if c := checkRoute(noSentinel, cluster.RouteDecision{Master: "a:1", Epoch: 4}); c.contradicted != "" {
		t.Fatalf("without Sentinel the epochs are local counters: contradicted: %+v", c)
	}

	n, s := &Node{}, &service{logger: slog.New(slog.DiscardHandler)}
	if n.noteRouteCheck(s, routeCheck{}, cluster.RouteDecision{Master: "a:1"}) {
		t.Fatal("no contradiction reported as begun")
	}
	if !n.noteRouteCheck(s, stranger, cluster.RouteDecision{Master: "x:1"}) {
		t.Fatal("contradiction not reported as begun")
	}
	if n.noteRouteCheck(s, stranger, cluster.RouteDecision{Master: "x:1"}) {
		t.Fatal("the same contradiction reported as begun twice")
	}
	replica := checkRoute(obs, cluster.RouteDecision{Master: "b:1", Epoch: 100})
	if !n.noteRouteCheck(s, replica, cluster.RouteDecision{Master: "b:1"}) {
		t.Fatal("a contradiction of another committed master not reported as begun")
	}
}
