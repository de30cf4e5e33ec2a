package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redhaven/redhaven/cluster"
)

// plannedFailover is the planned failover this leader is running.
type plannedFailover struct {
	id      uint64
	started time.Time
}

// Planned failover timings: each step is bounded so that the whole pause
// stays inside the proxies' hold_timeout (default 5s).
const (
	plannedSyncTimeout     = 2 * time.Second // replicas catch up with the paused master
	plannedPromoteTimeout  = 10 * time.Second
	plannedFailoverTimeout = plannedSyncTimeout + plannedPromoteTimeout + 3*time.Second
)

// runPlannedFailover starts the leader's side of a committed failover
// request once; leaderStep calls it on every pass while it is pending.
func (n *Node) runPlannedFailover(ctx context.Context, s *service, req cluster.FailoverRequest) {
	n.mu.Lock()
	if s.planned != nil {
		n.mu.Unlock()
		return
	}
	s.planned = &plannedFailover{id: req.ID, started: time.Now()}
	n.mu.Unlock()
	go func() {
		result, err := n.plannedFailover(ctx, s, req)
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err != nil {
			result = "failed: " + err.Error()
			s.logger.Warn("planned failover failed", "id", req.ID, "err", err)
		}
		if cerr := n.cluster.CompleteFailover(cctx, s.name, req.ID, result); cerr != nil {
			s.logger.Warn("complete failover request", "id", req.ID, "err", cerr)
		}
		n.mu.Lock()
		s.planned = nil
		n.mu.Unlock()
	}()
}

// plannedFailover pauses writes at every proxy (a committed route with no
// master), waits until the replicas have every acknowledged write, asks
// Sentinel to fail over, waits for the new master and commits it. On any
// failure it puts the old route back, so writes resume where they were.
func (n *Node) plannedFailover(ctx context.Context, s *service, req cluster.FailoverRequest) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, plannedFailoverTimeout)
	defer cancel()
	started := time.Now()
	old := n.cluster.State().Service(s.name).Route
	if old.Master == "" {
		return "", errors.New("no committed master to fail over from")
	}
	s.logger.Info("planned failover: pausing writes", "id", req.ID, "master_addr", old.Master, "epoch", old.Epoch)
	// Time and DecidedBy as ProposeRoute would stamp them: WaitRouted
	// recognises the pause by them.
	pause := cluster.RouteDecision{Master: "", Epoch: old.Epoch, Reason: "planned failover: writes paused",
		Time: time.Now().UTC(), DecidedBy: n.cfg.NodeName}
	if err := n.cluster.ProposeRoute(ctx, s.name, pause); err != nil {
		return "", fmt.Errorf("pause writes: %w", err)
	}
	restore := func(why error) error {
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer rcancel()
		cur := n.cluster.State().Service(s.name).Route
		if cur.Master == "" && cur.Epoch == old.Epoch {
			back := old
			back.Reason = "planned failover aborted: writes resumed"
			if err := n.cluster.ProposeRoute(rctx, s.name, back); err != nil {
				return fmt.Errorf("%w; restoring the route also failed: %v", why, err)
			}
		}
		return why
	}

	// A committed pause is not yet a paused proxy: a follower whose FSM
	// lags the commit (a stalled disk; heartbeats keep it in contact)
	// still routes to the old master, and after Sentinel's switch would
	// serve reads from it that miss writes the new master acknowledged
	// through another node (issue 13). So every proxy must follow the
	// pause, or be out of contact long enough to have stopped routing,
	// before anything else. Both waits share the sync budget.
	syncCtx, syncCancel := context.WithTimeout(ctx, plannedSyncTimeout)
	defer syncCancel()
	waited := time.Now()
	if err := n.cluster.WaitRouted(syncCtx, s.name, pause); err != nil {
		return "", restore(fmt.Errorf("proxies did not pause: %w", err))
	}
	s.logger.Info("planned failover: every proxy paused", "id", req.ID, "took", time.Since(waited).Round(time.Millisecond))
	// Every proxy's note is WritingTo (node.go route): it follows the
	// pause only once no session of it is still connected to the old
	// master, so its in-flight commands were answered (run by Redis)
	// and none can be sent there any more. The offset read now covers
	// every write a proxy acknowledged, and no later one can come.
	inSync, err := s.watcher.WaitReplicasInSync(syncCtx, old.Master)
	syncCancel()
	if err != nil {
		return "", restore(fmt.Errorf("replicas did not catch up: %w", err))
	}
	if inSync == 0 {
		return "", restore(errors.New("no replica in sync with the master"))
	}
	// A leader deposed meanwhile (an election on a loaded box) leaves
	// the route to its successor, which may already have resumed writes
	// on the old master: moving it now would lose them.
	if !n.cluster.IsLeader() {
		return "", restore(cluster.ErrNotLeader)
	}
	if err := s.watcher.Failover(ctx); err != nil {
		return "", restore(fmt.Errorf("sentinel failover: %w", err))
	}
	deadline := time.NewTimer(plannedPromoteTimeout)
	defer deadline.Stop()
	for {
		obs := s.watcher.Observation()
		if obs.Master != "" && obs.Master != old.Master && obs.Epoch > old.Epoch {
			d := cluster.RouteDecision{Master: obs.Master, Epoch: obs.Epoch, Reason: "planned failover"}
			if err := n.cluster.ProposeRoute(ctx, s.name, d); err != nil {
				return "", fmt.Errorf("commit new master %s: %w", obs.Master, err)
			}
			took := time.Since(started)
			n.mu.Lock()
			s.failovers.Observe(took)
			n.mu.Unlock()
			msg := fmt.Sprintf("planned failover %s -> %s (epoch %d)", old.Master, obs.Master, obs.Epoch)
			_ = n.cluster.RecordEvent(ctx, cluster.Event{Time: time.Now(), Kind: cluster.EventFailover, Node: n.cfg.NodeName, Service: s.name, Message: msg, Duration: took})
			s.logger.Info("planned failover done", "id", req.ID, "master_addr", obs.Master, "epoch", obs.Epoch, "paused_for", took.Round(time.Millisecond))
			return fmt.Sprintf("ok: new master %s epoch %d after %s", obs.Master, obs.Epoch, took.Round(time.Millisecond)), nil
		}
		select {
		case <-s.watcher.Changes():
		case <-time.After(5 * time.Millisecond):
		case <-deadline.C:
			return "", restore(fmt.Errorf("no new master within %s", plannedPromoteTimeout))
		case <-ctx.Done():
			return "", restore(ctx.Err())
		}
	}
}
