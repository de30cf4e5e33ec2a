package topology

import "fmt"

// This file holds the second safety net on the route (DESIGN.md "Trust"):
// a proxy follows the committed master only while its own watcher does not
// contradict it. The rule is a pure function of one observation, so every
// node applies the same rule to what it sees itself.

// Contradicts reports whether this observation contradicts sending writes
// to masterAddr (the committed master), and why. It does when:
//   - masterAddr is not a Redis node this watcher knows (configured in
//     redis.nodes, reported by a Sentinel, or named by a known master's
//     ROLE or a Sentinel event): a committed entry must not send clients
//     to a stranger;
//   - the node's own ROLE last answered replica (also while it is
//     stalled: its last answer stands).
//
// A node that is down, unreachable, BUSY or slow is no contradiction:
// Sentinel decides that a master is down, and the committed route follows
// it. An empty masterAddr is never contradicted.
func (o Observation) Contradicts(masterAddr string) (reason string, ok bool) {
	if masterAddr == "" {
		return "", false
	}
	for _, n := range o.Nodes {
		if n.Addr != masterAddr {
			continue
		}
		if n.Up && n.Role == RoleReplica {
			if n.MasterAddr == "" {
				return fmt.Sprintf("%s answers ROLE as a replica", masterAddr), true
			}
			return fmt.Sprintf("%s answers ROLE as a replica of %s", masterAddr, n.MasterAddr), true
		}
		return "", false
	}
	return fmt.Sprintf("%s is not a redis node this watcher knows", masterAddr), true
}

// EpochAhead reports whether epoch is above every epoch the Sentinels
// report (the config epoch of their last poll and the epoch of their last
// +new-epoch event), and the highest of those. It is false when no
// Sentinel reports an epoch (none configured, none reachable yet): then
// there is nothing to compare with. A committed epoch that no Sentinel
// has reached did not come from Sentinel.
func (o Observation) EpochAhead(epoch int64) (sentinelMax int64, ahead bool) {
	seen := false
	for _, s := range o.Sentinels {
		if s.Reachable && s.Master != "" {
			sentinelMax, seen = max(sentinelMax, s.Epoch), true
		}
		if s.NewEpoch > 0 {
			sentinelMax, seen = max(sentinelMax, s.NewEpoch), true
		}
	}
	return sentinelMax, seen && epoch > sentinelMax
}
