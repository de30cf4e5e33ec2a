package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
		if errors.Is(err, errFailoverNotPending) {
			s.logger.Info("planned failover already completed by the previous leader", "id", req.ID)
			n.mu.Lock()
			s.planned = nil
			n.mu.Unlock()
			return
		}
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
	// A leader elected a moment ago may not have applied every committed
	// entry yet: it would take the master of a route its predecessor had
	// already paused as the one to fail over from, and its own pause
	// would then be no change at all (issue 13: a leader change during a
	// planned failover).
	if err := n.cluster.Barrier(ctx); err != nil {
		return "", fmt.Errorf("catch up with the raft log: %w", err)
	}
	ss := n.cluster.State().Service(s.name)
	if p, ok := ss.PendingFailover(); !ok || p.ID != req.ID {
		return "", errFailoverNotPending
	}
	old := ss.Route
	var pause cluster.RouteDecision
	taken := "" // the previous leader whose pause this leader took over
	if old.Master == "" {
		if old.Reason != pauseReason {
			return "", errors.New("no committed master to fail over from")
		}
		// The pause of a leader that lost its leadership mid-failover.
		pause, taken = old, old.DecidedBy
		master, result, err := n.takeOverPause(ctx, s, req, pause)
		if result != "" || err != nil {
			return result, err
		}
		// what restore puts back if the resumed failover fails
		old = cluster.RouteDecision{Master: master, Epoch: pause.Epoch}
	} else {
		s.logger.Info("planned failover: pausing writes", "id", req.ID, "master_addr", old.Master, "epoch", old.Epoch)
		// Time and DecidedBy as ProposeRoute would stamp them: WaitRouted
		// recognises the pause by them.
		pause = cluster.RouteDecision{Master: "", Epoch: old.Epoch, Reason: pauseReason,
			Time: time.Now().UTC(), DecidedBy: n.cfg.NodeName}
		if err := n.cluster.ProposeRoute(ctx, s.name, pause); err != nil {
			return "", fmt.Errorf("pause writes: %w", err)
		}
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
	// the route to its successor, which runs the request from the pause
	// and may already have resumed writes on the old master: moving it
	// now would lose them.
	if !n.cluster.IsLeader() {
		return "", restore(fmt.Errorf("lost the raft leadership before asking Sentinel: %w", cluster.ErrNotLeader))
	}
	if err := s.watcher.Failover(ctx); err != nil {
		if taken == "" || !strings.Contains(err.Error(), "INPROG") {
			return "", restore(fmt.Errorf("sentinel failover: %w", err))
		}
		// the previous leader asked Sentinel before it lost the leadership
		s.logger.Info("planned failover: Sentinel already fails over (asked by the previous leader)", "id", req.ID, "previous_leader", taken)
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
			if taken != "" {
				msg += fmt.Sprintf(", taken over from %s after a leader change", taken)
			}
			_ = n.cluster.RecordEvent(ctx, cluster.Event{Time: time.Now(), Kind: cluster.EventFailover, Node: n.cfg.NodeName, Service: s.name, Message: msg, Duration: took})
			s.logger.Info("planned failover done", "id", req.ID, "master_addr", obs.Master, "epoch", obs.Epoch, "paused_for", took.Round(time.Millisecond))
			if taken != "" {
				return fmt.Sprintf("ok: new master %s epoch %d after %s (taken over from %s after a leader change)",
					obs.Master, obs.Epoch, took.Round(time.Millisecond), taken), nil
			}
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

// errFailoverNotPending: the request was completed in entries this new
// leader had not applied yet when it saw it pending.
var errFailoverNotPending = errors.New("planned failover request no longer pending")

// pauseReason is the Reason of a planned failover's pause: a new leader
// recognises by it a pause its predecessor left.
const pauseReason = "planned failover: writes paused"

// takeOverPause: the committed route is the pause of a planned failover
// whose leader lost the Raft leadership before it finished (a leader
// change mid-failover: its ProposeRoute of the new master, or of the old
// route back, fails with ErrNotLeader), and the request is still pending,
// so this new leader runs it. It waits, bounded, for its watcher to
// confirm a master:
//   - at a higher epoch than the pause: Sentinel has already moved (the
//     previous leader asked it); the new master is committed, done;
//   - at the pause's epoch, with no Sentinel failover in progress: the
//     failover resumes from the pause (proxies, replicas in sync,
//     Sentinel) with that master, which it returns (result "");
//   - none within plannedPromoteTimeout: the request is abandoned; the
//     pause is then what a route without a confirmed master is, and the
//     ordinary leader step commits the first master the watcher confirms
//     (RouteDecision.Replaces lets a master replace a pause).
//
// Each outcome is logged and recorded as an event.
func (n *Node) takeOverPause(ctx context.Context, s *service, req cluster.FailoverRequest, pause cluster.RouteDecision) (master, result string, err error) {
	started := time.Now()
	s.logger.Info("planned failover: taking over the pause left by the previous leader",
		"id", req.ID, "paused_by", pause.DecidedBy, "paused_at", pause.Time, "epoch", pause.Epoch)
	event := func(msg string) {
		ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = n.cluster.RecordEvent(ectx, cluster.Event{Time: time.Now(), Kind: cluster.EventFailover, Node: n.cfg.NodeName,
			Service: s.name, Message: msg, Duration: time.Since(pause.Time)})
	}
	deadline := time.NewTimer(plannedPromoteTimeout)
	defer deadline.Stop()
	for {
		obs := s.watcher.Observation()
		switch {
		case obs.Master != "" && obs.Epoch > pause.Epoch:
			d := cluster.RouteDecision{Master: obs.Master, Epoch: obs.Epoch,
				Reason: "planned failover by " + pause.DecidedBy + ", finished by " + n.cfg.NodeName}
			if err := n.cluster.ProposeRoute(ctx, s.name, d); err != nil {
				return "", "", fmt.Errorf("commit new master %s after taking over the pause of %s: %w", obs.Master, pause.DecidedBy, err)
			}
			msg := fmt.Sprintf("planned failover -> %s (epoch %d), finished after a leader change (paused by %s)", obs.Master, obs.Epoch, pause.DecidedBy)
			event(msg)
			s.logger.Info("planned failover done: Sentinel had already moved, the new leader committed the new master",
				"id", req.ID, "master_addr", obs.Master, "epoch", obs.Epoch, "paused_by", pause.DecidedBy, "paused_for", time.Since(pause.Time).Round(time.Millisecond))
			return obs.Master, "ok: " + msg, nil
		case obs.Master != "" && obs.Epoch == pause.Epoch && obs.Failover.Addr == "":
			s.logger.Info("planned failover: resuming from the pause", "id", req.ID, "master_addr", obs.Master,
				"epoch", pause.Epoch, "paused_by", pause.DecidedBy, "waited", time.Since(started).Round(time.Millisecond))
			return obs.Master, "", nil
		}
		select {
		case <-s.watcher.Changes():
		case <-time.After(20 * time.Millisecond):
		case <-deadline.C:
			why := fmt.Sprintf("planned failover abandoned after a leader change (paused by %s): no master confirmed within %s; the route follows the topology again",
				pause.DecidedBy, plannedPromoteTimeout)
			event(why)
			s.logger.Warn(why, "id", req.ID, "epoch", pause.Epoch)
			return "", "", errors.New(why)
		case <-ctx.Done():
			return "", "", ctx.Err()
		}
	}
}
