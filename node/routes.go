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
	if old.Master == r.Master && old.Epoch == r.Epoch && old.Replaced == r.Replaced && slices.Equal(old.Replicas, r.Replicas) {
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

// withReplaced names the committed master as Replaced in a route with
// no master when the reason is that the Sentinels replaced it: until the
// new one is committed, no reply from the old one is passed on as an
// acknowledgement (a stopped master that continues runs and answers the
// writes queued on its sockets, then loses them as a replica; issue 13).
func withReplaced(r proxy.Route, c routeCheck, committed string) proxy.Route {
	if r.Master == "" && c.staleBySentinel {
		r.Replaced = committed
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
	// The committed master is deposed as soon as one Sentinel says so,
	// before a majority agrees or the new master is confirmed: a Sentinel
	// is promoting another node at a higher epoch (its failover events),
	// or one reachable Sentinel already names another master at a higher
	// epoch. A stopped master that continues in that time still answers
	// as a master, and what it acknowledges is lost when Sentinel makes
	// it a replica (issue 13: 1.4 s of acknowledged writes through one
	// node, TestDeposedMasterWindow).
	if c.contradicted == "" && committed.Master != "" {
		if f := obs.Failover; f.Addr != "" && f.Addr != committed.Master && f.Epoch > committed.Epoch {
			c.contradicted = fmt.Sprintf("a Sentinel is promoting %s at epoch %d, above the committed epoch %d",
				f.Addr, f.Epoch, committed.Epoch)
			c.staleBySentinel = true
		}
	}
	if c.contradicted == "" && committed.Master != "" {
		for _, s := range obs.Sentinels {
			if s.Master != "" && s.Master != committed.Master && s.Epoch > committed.Epoch { // reachable now or not: it happened
				c.contradicted = fmt.Sprintf("Sentinel %s names %s at epoch %d, above the committed epoch %d",
					s.Addr, s.Master, s.Epoch, committed.Epoch)
				c.staleBySentinel = true
				break
			}
		}
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
func (n *Node) noteRouteCheck(s *service, c routeCheck, d cluster.RouteDecision) (began bool) {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	t := &s.trust
	if c.contradicted != "" && (t.last.contradicted == "" || t.master != d.Master) {
		t.contradictedSince, began = now, true
	}
	if t.loggedContra && (c.contradicted == "" || t.master != d.Master) {
		s.logger.Info("committed route no longer contradicted", "master_addr", t.master, "now_master_addr", d.Master, "epoch", d.Epoch)
		t.loggedContra = false
	}
	if c.contradicted != "" && !t.loggedContra && now.Sub(t.contradictedSince) >= trustLogAfter {
		s.logger.Warn("committed route contradicted by local observation; not routing", "master_addr", d.Master,
			"epoch", d.Epoch, "decided_by", d.DecidedBy, "reason", c.contradicted)
		t.loggedContra = true
	}
	if c.epochAhead && !t.last.epochAhead {
		t.epochAheadSince = now
	}
	if !c.epochAhead && t.loggedEpo {
		s.logger.Info("committed epoch no longer ahead of sentinel", "epoch", d.Epoch, "sentinel_epoch", c.sentinelEpoch)
		t.loggedEpo = false
	}
	if c.epochAhead && !t.loggedEpo && now.Sub(t.epochAheadSince) >= trustLogAfter {
		s.logger.Warn("committed epoch above every sentinel epoch", "master_addr", d.Master, "epoch", d.Epoch,
			"sentinel_epoch", c.sentinelEpoch, "decided_by", d.DecidedBy)
		t.loggedEpo = true
	}
	t.last, t.master = c, d.Master
	return began
}
