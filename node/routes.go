package node

import (
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/redhaven/redhaven/cluster"
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

// routeCheck is what this node's own observation says about the
// committed route (DESIGN.md "Trust"); the rule itself is
// topology.Observation.Contradicts / EpochAhead.
type routeCheck struct {
	// contradicted says why the observation contradicts the committed
	// master, "" when it does not. A contradicted master is not routed to.
	contradicted string
	// staleBySentinel: the contradiction is only that the Sentinels have
	// moved on to a newer master the leader has not committed yet. Every
	// node sees that during each failover, so it is no reason to move the
	// VIP (mayHoldVIP), only not to route to the old master.
	staleBySentinel bool
	// epochAhead: the committed epoch is above every epoch the Sentinels
	// report (sentinelEpoch is the highest of those). Shown, not refused.
	epochAhead    bool
	sentinelEpoch int64
}

func checkRoute(obs topology.Observation, committed cluster.RouteDecision) routeCheck {
	var c routeCheck
	c.contradicted, _ = obs.Contradicts(committed.Master)
	// A committed route older than the Sentinel decision this watcher
	// confirms (a majority at a higher epoch names another master) is
	// stale: a follower back from a partition is in contact as soon as the
	// leader's heartbeats reach it, before its log has caught up with the
	// failover committed meanwhile, and its deposed master still answers
	// ROLE as a master (chaos seed 1: n1 routed to itself at epoch 0 for
	// 367 ms after the partition healed, Sentinel was at epoch 2). Without
	// Sentinel the epochs are each watcher's own counter: not comparable.
	if c.contradicted == "" && committed.Master != "" && len(obs.Sentinels) > 0 &&
		obs.Master != "" && obs.Master != committed.Master && obs.Epoch > committed.Epoch {
		c.contradicted = fmt.Sprintf("the Sentinels name %s at epoch %d, above the committed epoch %d",
			obs.Master, obs.Epoch, committed.Epoch)
		c.staleBySentinel = true
	}
	if committed.Master != "" {
		c.sentinelEpoch, c.epochAhead = obs.EpochAhead(committed.Epoch)
	}
	return c
}

// routeTrust remembers the last routeCheck to log changes: a flag is
// logged (Warn) once it has lasted trustLogAfter, so that the moment at
// start-up before the watcher's first Sentinel poll, or a follower whose
// probe of a just-promoted master is a few milliseconds old, is not
// reported as an attack; it is logged again (Info) when it clears.
type routeTrust struct {
	last                    routeCheck
	master                  string // the committed master last checked
	contradictedSince       time.Time
	epochAheadSince         time.Time
	loggedContra, loggedEpo bool
}

const trustLogAfter = 2 * time.Second

// noteRouteCheck records c for the committed route d and logs what
// changed. It returns true when a contradiction has just begun (the caller
// asks the watcher for a fresh ROLE of the master).
func (n *Node) noteRouteCheck(c routeCheck, d cluster.RouteDecision) (began bool) {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	t := &n.trust
	if c.contradicted != "" && (t.last.contradicted == "" || t.master != d.Master) {
		t.contradictedSince, began = now, true
	}
	if t.loggedContra && (c.contradicted == "" || t.master != d.Master) {
		n.logger.Info("committed route no longer contradicted", "master_addr", t.master, "now_master_addr", d.Master, "epoch", d.Epoch)
		t.loggedContra = false
	}
	if c.contradicted != "" && !t.loggedContra && now.Sub(t.contradictedSince) >= trustLogAfter {
		n.logger.Warn("committed route contradicted by local observation; not routing", "master_addr", d.Master,
			"epoch", d.Epoch, "decided_by", d.DecidedBy, "reason", c.contradicted)
		t.loggedContra = true
	}
	if c.epochAhead && !t.last.epochAhead {
		t.epochAheadSince = now
	}
	if !c.epochAhead && t.loggedEpo {
		n.logger.Info("committed epoch no longer ahead of sentinel", "epoch", d.Epoch, "sentinel_epoch", c.sentinelEpoch)
		t.loggedEpo = false
	}
	if c.epochAhead && !t.loggedEpo && now.Sub(t.epochAheadSince) >= trustLogAfter {
		n.logger.Warn("committed epoch above every sentinel epoch", "master_addr", d.Master, "epoch", d.Epoch,
			"sentinel_epoch", c.sentinelEpoch, "decided_by", d.DecidedBy)
		t.loggedEpo = true
	}
	t.last, t.master = c, d.Master
	return began
}
