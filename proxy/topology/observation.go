// Package topology watches Redis Sentinel and probes every Redis node to
// tell which node is the master right now and which replicas are healthy.
// A Watcher follows one master name; a Group follows several over shared
// connections (one per Sentinel, one ROLE probe per Redis node).
package topology

import "time"

// Observation is what the watcher believes at one moment. It is a plain
// value: safe to copy and hand to other components.
type Observation struct {
	// Master is the confirmed master "host:port", or "" when no master
	// can be confirmed (the proxy then holds commands).
	Master string
	// Epoch is the Sentinel config epoch of the decision (without
	// Sentinel: a local counter, +1 on each change of master). It never
	// goes backwards.
	Epoch int64
	// Reason says in a few words why Master was chosen, or why there is none.
	Reason string
	// Nodes is every known Redis node (configured or discovered), sorted by address.
	Nodes []NodeState
	// Sentinels is every configured Sentinel, in configuration order.
	Sentinels []SentinelState
	// Failover is the replica that a Sentinel is promoting right now, as
	// its failover events name it, until the watcher confirms it, a newer
	// epoch overtakes it or the failover is aborted; Addr "" when none. A
	// master below its epoch is being deposed even while nobody reports
	// the new one yet.
	Failover Failover
	// Time is when this observation was made.
	Time time.Time
}

// Role of a Redis node as reported by its own ROLE command.
type Role string

const (
	RoleUnknown Role = ""
	RoleMaster  Role = "master"
	RoleReplica Role = "replica"
)

// NodeState is the last probe result of one Redis node.
type NodeState struct {
	// Addr is the node's "host:port".
	Addr string
	// Up is true when the node answered its last check; a check that
	// stalled (see Stalled) keeps the value it had.
	Up bool
	// Role is what the node's own ROLE said last (RoleUnknown when down
	// or not checked yet).
	Role Role
	// MasterAddr is the master a replica follows ("" for a master).
	MasterAddr string
	// LinkUp is a replica's master_link_status (always true for a master).
	LinkUp bool
	// Stalled is true when the last check got BUSY (a script or function
	// is running) or, with Sentinel, timed out on an open connection: the
	// node is slow, not gone. Up, Role, MasterAddr, LinkUp and Offset keep
	// the last answer; Sentinel, not a slow answer, decides that a master
	// is down. A stalled node is not a healthy replica.
	Stalled bool
	// Offset is the replication offset (master_repl_offset / slave_repl_offset).
	Offset int64
	// LagBytes is how far a replica is behind its master, in bytes of offset.
	LagBytes int64
	// LastCheck is when the last check finished.
	LastCheck time.Time
	// CheckDuration is how long the last check took.
	CheckDuration time.Duration
	// LastError is the last check's error text, "" when it succeeded.
	LastError string
	// LastChange is when Up or Role last changed.
	LastChange time.Time
	// Downtime is the total time this node was seen down since the watcher
	// started: from each failed check to the next check (HAProxy's
	// "Dwntme"). A node down now adds up check after check.
	Downtime time.Duration
}

// HealthyReplica reports whether the node can serve reads as a replica:
// up, not stalled, role replica, link up and at most maxLagBytes behind
// (maxLagBytes <= 0: no lag limit).
func (n NodeState) HealthyReplica(maxLagBytes int64) bool {
	return n.Up && !n.Stalled && n.Role == RoleReplica && n.LinkUp && (maxLagBytes <= 0 || n.LagBytes <= maxLagBytes)
}

// SentinelState is the last view of one Sentinel.
type SentinelState struct {
	// Addr is the Sentinel's "host:port".
	Addr string
	// Reachable is true when the last poll got an answer (an error reply
	// counts: the Sentinel is there but reports no master).
	Reachable bool
	// Master is the master address this Sentinel reports, "" when none.
	Master string
	// Epoch is the config epoch this Sentinel reports for Master.
	Epoch int64
	// NewEpoch is the highest epoch of this Sentinel's +new-epoch events
	// (its current epoch; 0 before the first event). It runs ahead of
	// Epoch during a failover, until +switch-master.
	NewEpoch int64
	// LastEvent is the last event received on pub/sub ("channel payload").
	LastEvent string
	// LastEventTime is when LastEvent arrived.
	LastEventTime time.Time
	// LastError is the last poll's or subscription's error, "" when fine.
	LastError string
}

// Failover is a Sentinel failover in progress: the replica being promoted
// and the failover's epoch.
type Failover struct {
	Addr  string
	Epoch int64
}
