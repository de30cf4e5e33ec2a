package webui

import (
	"context"
	"encoding/json"
	"math"
	"time"
)

// Source gives the page everything it shows, as plain values. node
// implements it; it is called on every request and every metrics scrape, so
// it should copy counters rather than compute anything expensive.
type Source interface {
	Snapshot() Snapshot
}

// Admin performs the admin actions; node implements it by committing the
// request through Raft so that every node shows the result. Errors are shown
// to the user as they are.
// Each returns the node that acted (the leader: a follower forwards);
// errors wrapped with Classify get their HTTP status.
type Admin interface {
	// SetBackendState sets addr's admin state: AdminReady, AdminDrain or
	// AdminMaintenance.
	SetBackendState(ctx context.Context, addr, state string) (Acted, error)
	// RequestFailover asks for a planned failover of the Redis master.
	RequestFailover(ctx context.Context) (Acted, error)
	// TransferLeadership moves Raft leadership (and so the VIP) to node,
	// or to any suitable node when node is "".
	TransferLeadership(ctx context.Context, node string) (Acted, error)
}

// Backend states shown on the page (Backend.State), HAProxy's words.
const (
	StateUp        = "up"
	StateDown      = "down"
	StateGoingUp   = "going up"   // failing checks are recovering
	StateGoingDown = "going down" // checks started failing
	StateMaint     = "maint"      // admin maintenance: no traffic
	StateDrain     = "drain"      // admin drain: no new sessions
)

// Admin states of a backend (Backend.Admin, Admin.SetBackendState).
const (
	AdminReady       = "ready"
	AdminDrain       = "drain"
	AdminMaintenance = "maintenance"
)

// Event kinds (Event.Kind); others are shown as they are.
const (
	EventFailover = "failover" // Duration: from master lost to new master routed
	EventSwitch   = "switch"   // committed route changed
	EventVIP      = "vip"      // VIP moved
	EventLeader   = "leader"   // Raft leadership changed
	EventJoin     = "join"
	EventLeave    = "leave"
	EventAdmin    = "admin" // an admin action
)

// Snapshot is everything the page, the APIs and the metrics show, at one
// moment. JSON field names are part of the versioned API (/api/v1/stats,
// "version": 1): add fields, never rename. Durations are encoded as float
// seconds in fields ending in _seconds; zero times are left out.
type Snapshot struct {
	Node    string    `json:"node"`             // this node's name
	Version string    `json:"redhaven_version"` // redhaven version of this node
	Time    time.Time `json:"time,omitzero"`    // when the snapshot was taken; zero: now
	Started time.Time `json:"started,omitzero"` // process start

	Ready  bool `json:"ready"`  // /health/ready: this node routes clients
	Leader bool `json:"leader"` // /health/leader: this node is the Raft leader

	// Rejected counts refused cluster connections since start.
	Rejected []RejectedConnections `json:"rejected_connections,omitempty"`

	Route     Route      `json:"route"`
	Frontends []Frontend `json:"frontends"`
	// RefusedCommands counts the commands the proxy refused
	// (proxy.deny_commands, or never allowed), by command
	RefusedCommands map[string]uint64 `json:"refused_commands,omitempty"`
	Clients         ClientLimits      `json:"clients"`
	Backends        []Backend         `json:"backends"`
	Sentinels       []Sentinel        `json:"sentinels"`
	Members         []Member          `json:"members"`
	VIP             VIP               `json:"vip"`
	Events          []Event           `json:"events"` // any order; shown newest first
	Failovers       FailoverStats     `json:"failovers"`
	Process         Process           `json:"process"`
}

// Process is the agent process itself (HAProxy's "process information").
type Process struct {
	PID        int     `json:"pid"`
	RSSBytes   uint64  `json:"rss_bytes"`   // resident memory
	OpenFDs    int     `json:"open_fds"`    // file descriptors in use
	MaxFDs     uint64  `json:"max_fds"`     // RLIMIT_NOFILE
	CPUSeconds float64 `json:"cpu_seconds"` // user + system since start
	Goroutines int     `json:"goroutines"`
	GOMAXPROCS int     `json:"gomaxprocs"`
	GoVersion  string  `json:"go_version"`
}

// Route is the committed route decision: where writes go.
type Route struct {
	Master string    `json:"master"` // host:port, "" when none is known
	Epoch  int64     `json:"epoch"`  // Sentinel config epoch of the decision
	Reason string    `json:"reason"` // e.g. "switch-master", "promoted-slave"
	Since  time.Time `json:"since,omitzero"`
	// Contradicted says why this node's own watcher contradicts Master
	// (not a known Redis node, or it answers as a replica); "" when it
	// does not. A contradicted master gets no traffic from this node.
	Contradicted string `json:"contradicted,omitempty"`
	// EpochAhead: Epoch is above every epoch the Sentinels report.
	EpochAhead bool `json:"epoch_ahead"`
}

// Frontend is one proxy listener.
type Frontend struct {
	Name            string  `json:"name"` // e.g. "rw", "ro"
	Addr            string  `json:"addr"`
	CurrentSessions int64   `json:"current_sessions"`
	MaxSessions     int64   `json:"max_sessions"` // highest seen
	Limit           int64   `json:"limit"`        // max_clients; 0: none
	TotalSessions   uint64  `json:"total_sessions"`
	CommandsTotal   uint64  `json:"commands_total"`
	CommandsPerSec  float64 `json:"commands_per_sec"`
	SessionsPerSec  float64 `json:"sessions_per_sec"`     // new sessions per second
	MaxSessionRate  float64 `json:"max_sessions_per_sec"` // highest seen
	BytesIn         uint64  `json:"bytes_in"`
	BytesOut        uint64  `json:"bytes_out"`
	Errors          uint64  `json:"errors"`
	Refused         uint64  `json:"refused"`                // clients refused (limit, no master)
	IdleSessions    int64   `json:"idle_sessions"`          // parked: idle, no goroutine until the client sends
	MovedToOwn      uint64  `json:"moved_to_own_conn"`      // sessions that left a shared backend connection for their own
	AuthFailures    uint64  `json:"auth_failures"`          // wrong proxy passwords
	TLSFailed       uint64  `json:"tls_handshake_failures"` // TLS handshakes that failed (proxy.tls)
}

// ClientLimits is what the proxy's bounds on clients cost and did.
type ClientLimits struct {
	BufferBytes int64 `json:"buffer_bytes"`       // clients' buffered input and unread replies now
	BufferLimit int64 `json:"buffer_limit_bytes"` // proxy.max_buffer_memory
	// Closed counts clients the proxy closed or refused, by reason
	// (buffer_memory, output_limit, auth_timeout, http, ...).
	Closed map[string]uint64 `json:"closed"`
}

// Backend is one Redis node.
type Backend struct {
	Addr          string        `json:"addr"`
	Role          string        `json:"role"`      // "master", "replica", "" unknown
	State         string        `json:"state"`     // StateUp, StateDown, ...
	IsMaster      bool          `json:"is_master"` // the committed master
	LastCheck     time.Time     `json:"last_check,omitzero"`
	CheckDuration time.Duration `json:"-"` // check_duration_seconds
	LastError     string        `json:"last_error"`
	LastChange    time.Time     `json:"last_change,omitzero"` // last state change
	Downtime      time.Duration `json:"-"`                    // downtime_seconds, total
	Offset        int64         `json:"offset"`               // replication offset
	LagBytes      int64         `json:"lag_bytes"`            // behind the master
	LinkUp        bool          `json:"link_up"`              // replica's master link
	Sessions      int64         `json:"sessions"`             // current proxied sessions
	Commands      uint64        `json:"commands"`
	Errors        uint64        `json:"errors"`
	Admin         string        `json:"admin"` // AdminReady, AdminDrain, AdminMaintenance
}

// Sentinel is one Redis Sentinel as this node's watcher sees it.
type Sentinel struct {
	Addr          string    `json:"addr"`
	Reachable     bool      `json:"reachable"`
	Master        string    `json:"master"` // master it reports
	Epoch         int64     `json:"epoch"`  // its config epoch
	LastEvent     string    `json:"last_event"`
	LastEventTime time.Time `json:"last_event_time,omitzero"`
	LastError     string    `json:"last_error"`
}

// Member is one redhaven node of the cluster.
type Member struct {
	Name        string        `json:"name"`
	Addr        string        `json:"addr"`         // gossip address
	GossipState string        `json:"gossip_state"` // "alive", "suspect", "dead", "left"
	RaftRole    string        `json:"raft_role"`    // "leader", "follower", "candidate", "nonvoter", ""
	RaftAddr    string        `json:"raft_addr"`
	LastContact time.Duration `json:"-"` // last_contact_seconds: with the leader
	Version     string        `json:"version"`
	HTTPAddr    string        `json:"http_addr"` // its stats page, for links
	IsLeader    bool          `json:"is_leader"`
}

// RejectedConnections counts refused cluster connections of one kind:
// Raft TLS handshakes refused, gossip packets not encrypted with an
// installed key.
type RejectedConnections struct {
	Transport string `json:"transport"` // "raft" or "gossip"
	Reason    string `json:"reason"`    // e.g. untrusted_certificate, not_tls, decrypt
	Count     uint64 `json:"count"`
}

// VIP is the virtual IP and who holds it.
type VIP struct {
	Mode      string `json:"mode"` // "netlink", "none"
	Address   string `json:"address"`
	Interface string `json:"interface"`
	Holder    string `json:"holder"`    // node name, "" none
	HeldHere  bool   `json:"held_here"` // this node has it on its interface
	// LeaseRemaining is how long the holder's lease lasts as this node
	// sees it: on the holder until its own lease ends, elsewhere until
	// this node may judge it expired (0 when free).
	LeaseRemaining float64 `json:"lease_remaining_seconds"`
	// LeaseChanges counts the lease changes this node applied since it
	// started, by kind: grant, takeover, release.
	LeaseChanges map[string]uint64 `json:"lease_changes,omitempty"`
}

// Event is one entry of the replicated history.
type Event struct {
	Time     time.Time     `json:"time,omitzero"`
	Kind     string        `json:"kind"` // EventFailover, EventVIP, ...
	Node     string        `json:"node"` // node that recorded it
	Message  string        `json:"message"`
	Duration time.Duration `json:"-"` // duration_seconds, e.g. of a failover
}

// FailoverStats feeds the redhaven_failover_duration_seconds histogram. node
// may keep one with Observe (counts survive the bounded event history); when
// Count is 0 the histogram is built from the failover events instead.
type FailoverStats struct {
	Count   uint64        `json:"count"`
	Sum     time.Duration `json:"-"`       // sum_seconds
	Buckets []uint64      `json:"buckets"` // cumulative counts per FailoverBuckets bound
}

// FailoverBuckets are the upper bounds, in seconds, of the failover duration
// histogram.
var FailoverBuckets = []float64{0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60}

// Observe adds one failover of duration d.
func (f *FailoverStats) Observe(d time.Duration) {
	if len(f.Buckets) != len(FailoverBuckets) {
		f.Buckets = make([]uint64, len(FailoverBuckets))
	}
	f.Count++
	f.Sum += d
	for i, le := range FailoverBuckets {
		if d.Seconds() <= le {
			f.Buckets[i]++
		}
	}
}

// Clone returns a copy that shares no memory with f (Snapshot is a value).
func (f FailoverStats) Clone() FailoverStats {
	f.Buckets = append([]uint64(nil), f.Buckets...)
	return f
}

// failoverHistogram returns count, sum and cumulative buckets, from s.Failovers
// or else from the failover events.
func (s *Snapshot) failoverHistogram() (uint64, float64, map[float64]uint64) {
	f := s.Failovers
	if f.Count == 0 {
		f = FailoverStats{}
		for _, e := range s.Events {
			if e.Kind == EventFailover && e.Duration > 0 {
				f.Observe(e.Duration)
			}
		}
	}
	buckets := make(map[float64]uint64, len(FailoverBuckets))
	for i, le := range FailoverBuckets {
		if i < len(f.Buckets) {
			buckets[le] = f.Buckets[i]
		} else {
			buckets[le] = 0
		}
	}
	return f.Count, seconds(f.Sum), buckets
}

// seconds is d in seconds, rounded correctly (1840ms is 1.84, where
// d.Seconds() gives 1.8399999999999999).
func seconds(d time.Duration) float64 { return float64(d) / float64(time.Second) }

func fromSeconds(s float64) time.Duration { return time.Duration(math.Round(s * float64(time.Second))) }

// The Marshal/Unmarshal pairs below encode time.Duration fields as float
// seconds under a _seconds name.

func (b Backend) MarshalJSON() ([]byte, error) {
	type plain Backend
	return json.Marshal(struct {
		plain
		CheckDuration float64 `json:"check_duration_seconds"`
		Downtime      float64 `json:"downtime_seconds"`
	}{plain(b), seconds(b.CheckDuration), seconds(b.Downtime)})
}

func (b *Backend) UnmarshalJSON(data []byte) error {
	type plain Backend
	var v struct {
		plain
		CheckDuration float64 `json:"check_duration_seconds"`
		Downtime      float64 `json:"downtime_seconds"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	*b = Backend(v.plain)
	b.CheckDuration, b.Downtime = fromSeconds(v.CheckDuration), fromSeconds(v.Downtime)
	return nil
}

func (m Member) MarshalJSON() ([]byte, error) {
	type plain Member
	return json.Marshal(struct {
		plain
		LastContact float64 `json:"last_contact_seconds"`
	}{plain(m), seconds(m.LastContact)})
}

func (m *Member) UnmarshalJSON(data []byte) error {
	type plain Member
	var v struct {
		plain
		LastContact float64 `json:"last_contact_seconds"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	*m = Member(v.plain)
	m.LastContact = fromSeconds(v.LastContact)
	return nil
}

func (e Event) MarshalJSON() ([]byte, error) {
	type plain Event
	return json.Marshal(struct {
		plain
		Duration float64 `json:"duration_seconds"`
	}{plain(e), seconds(e.Duration)})
}

func (e *Event) UnmarshalJSON(data []byte) error {
	type plain Event
	var v struct {
		plain
		Duration float64 `json:"duration_seconds"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	*e = Event(v.plain)
	e.Duration = fromSeconds(v.Duration)
	return nil
}

func (f FailoverStats) MarshalJSON() ([]byte, error) {
	type plain FailoverStats
	if f.Buckets == nil {
		f.Buckets = make([]uint64, len(FailoverBuckets))
	}
	return json.Marshal(struct {
		plain
		Sum    float64   `json:"sum_seconds"`
		Bounds []float64 `json:"bucket_bounds_seconds"`
	}{plain(f), seconds(f.Sum), FailoverBuckets})
}

func (f *FailoverStats) UnmarshalJSON(data []byte) error {
	type plain FailoverStats
	var v struct {
		plain
		Sum float64 `json:"sum_seconds"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	*f = FailoverStats(v.plain)
	f.Sum = fromSeconds(v.Sum)
	return nil
}
