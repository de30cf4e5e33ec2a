package node

import (
	"context"
	"time"
)

// A stop must end promptly even when the whole cluster stops at once (no
// quorum left to commit anything) or a part hangs: Run waits for each
// serving part with a time limit after its context ended and logs the part
// that overran, then stops the cluster (whose own steps are bounded,
// cluster/stop.go). cmd/redhaven's last-resort exit covers the rest.

// Time limits of Run's stop. Together below cmd/redhaven's stopDeadline
// (25 s), itself below systemd's TimeoutStopSec (30 s).
const (
	// partStopLimit: a serving part (proxy, watcher, web, VIP, the
	// policy and lease loops). The VIP release takes at most about 4 s
	// (releaseVIP), the web server's drain 5 s.
	partStopLimit = 6 * time.Second
	// clusterStopLimit: the cluster agent (leave, Raft, memberlist).
	clusterStopLimit = 17 * time.Second
)

// bounded returns an errgroup function running part: once ctx ends it
// waits at most partStopLimit for part to return, then logs the overrun
// and returns nil without it (the process is stopping; the cluster must
// still stop in time).
func (n *Node) bounded(ctx context.Context, name string, part func(context.Context) error) func() error {
	return func() error {
		done := make(chan error, 1)
		go func() { done <- part(ctx) }()
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
		}
		start := time.Now()
		t := time.NewTimer(partStopLimit)
		defer t.Stop()
		select {
		case err := <-done:
			n.logger.Debug("stop: part stopped", "part", name, "took", time.Since(start).Round(time.Millisecond))
			return err
		case <-t.C:
			n.logger.Error("stop: part did not stop in time; going on without it", "part", name, "limit", partStopLimit)
			return nil
		}
	}
}

// waitCluster waits for the cluster agent's Run to return, at most
// clusterStopLimit after it was told to stop.
func (n *Node) waitCluster(done chan error) error {
	start := time.Now()
	t := time.NewTimer(clusterStopLimit)
	defer t.Stop()
	select {
	case err := <-done:
		n.logger.Debug("stop: cluster stopped", "took", time.Since(start).Round(time.Millisecond))
		return err
	case <-t.C:
		n.logger.Error("stop: the cluster agent did not stop in time; going on without it", "limit", clusterStopLimit)
		return nil
	}
}
