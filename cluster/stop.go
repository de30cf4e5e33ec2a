package cluster

import "time"

// A stop must end even when a step hangs (a peer that no longer answers,
// a lock held by a stuck goroutine): Run does each step of its stop with a
// time limit and logs the step that overran, then goes on without it.
// The process exits soon after; its last-resort exit (cmd/redhaven) dumps
// every goroutine's stack if the stop as a whole still hangs.

// Time limits of the steps of Run's stop, after the leave (leaveTimeout).
const (
	loopsStopLimit = 3 * time.Second // the agent's own loops (a commit in flight ends within 2 s)
	raftStopLimit  = 5 * time.Second // raft.Shutdown: replication and the FSM
	stepStopLimit  = 2 * time.Second // memberlist, transports, the store
)

// stopStep is one step of the stop (or of the cleanup after a failed
// start).
type stopStep struct {
	name  string
	limit time.Duration
	f     func()
}

// bounded runs f, waiting at most limit; it reports whether f returned in
// time. An overrun is logged with the step's name, and f goes on in the
// background.
func (a *Agent) bounded(name string, limit time.Duration, f func()) bool {
	start := time.Now()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-done:
		a.log.Debug("stop step done", "step", name, "took", time.Since(start).Round(time.Millisecond))
		return true
	case <-t.C:
		a.log.Error("stop step overran its time limit; going on without it", "step", name, "limit", limit)
		return false
	}
}
