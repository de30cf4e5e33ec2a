package node

import (
	"slices"
	"sync/atomic"

	"github.com/redhaven/redhaven/proxy"
	"github.com/redhaven/redhaven/proxy/topology"
)

// routeTable holds the route every proxy listener follows and implements
// proxy.RouteSource. Writers call set; readers get a hint on change.
type routeTable struct {
	cur     atomic.Pointer[proxy.Route]
	changes chan struct{}
}

func newRouteTable() *routeTable {
	t := &routeTable{changes: make(chan struct{}, 1)}
	t.cur.Store(&proxy.Route{})
	return t
}

func (t *routeTable) Route() proxy.Route            { return *t.cur.Load() }
func (t *routeTable) RouteChanges() <-chan struct{} { return t.changes }

// set stores r and reports whether it differs from the previous route.
func (t *routeTable) set(r proxy.Route) bool {
	old := t.cur.Load()
	if old.Master == r.Master && old.Epoch == r.Epoch && slices.Equal(old.Replicas, r.Replicas) {
		return false
	}
	t.cur.Store(&r)
	select {
	case t.changes <- struct{}{}:
	default:
	}
	return true
}

// routeFromObservation is the single-node rule: route to the watcher's
// confirmed master, and reads to the healthy replicas that follow it.
func routeFromObservation(obs topology.Observation, maxLagBytes int64) proxy.Route {
	r := proxy.Route{Master: obs.Master, Epoch: obs.Epoch}
	if obs.Master == "" {
		return r
	}
	for _, n := range obs.Nodes {
		if n.MasterAddr == obs.Master && n.HealthyReplica(maxLagBytes) {
			r.Replicas = append(r.Replicas, n.Addr)
		}
	}
	return r
}
