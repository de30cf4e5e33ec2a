// Package topology watches Redis Sentinel and probes every Redis node to
// tell which node is the master right now and which replicas are healthy.
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
	Addr string
	// Up is true when the last check succeeded.
	Up   bool
	Role Role
	// MasterAddr is the master a replica follows ("" for a master).
	MasterAddr string
	// LinkUp is a replica's master_link_status.
	LinkUp bool
	// Offset is the replication offset (master_repl_offset / slave_repl_offset).
	Offset int64
	// Lag is how far a replica is behind its master, in bytes of offset.
	LagBytes int64
	// LastCheck is when the last check finished, CheckDuration how long it took.
	LastCheck     time.Time
	CheckDuration time.Duration
	// LastError is the last check's error text, "" when it succeeded.
	LastError string
	// LastChange is when Up or Role last changed.
	LastChange time.Time
}

// Healthy reports whether the node can serve reads as a replica.
func (n NodeState) HealthyReplica(maxLagBytes int64) bool {
	return n.Up && n.Role == RoleReplica && n.LinkUp && (maxLagBytes <= 0 || n.LagBytes <= maxLagBytes)
}

// SentinelState is the last view of one Sentinel.
type SentinelState struct {
	Addr      string
	Reachable bool
	// Master is the master address this Sentinel reports, Epoch its config epoch.
	Master        string
	Epoch         int64
	LastEvent     string
	LastEventTime time.Time
	LastError     string
}
