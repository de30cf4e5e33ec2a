package webui

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
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
//
// service names one of Snapshot.Services. webui checks it against the
// snapshot before calling (an unknown name is a 404; "" with several
// services a 400 naming them) and passes the only service's name for "";
// an Admin still accepts "" as "the only service" and answers an unknown
// name with an error classified ErrNotFound.
type Admin interface {
	// SetBackendState sets the admin state of service's backend addr:
	// AdminReady, AdminDrain or AdminMaintenance.
	SetBackendState(ctx context.Context, service, addr, state string) (Acted, error)
	// RequestFailover asks for a planned failover of service's Redis master.
	RequestFailover(ctx context.Context, service string) (Acted, error)
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
//
// Services is the full picture: one entry per Sentinel-monitored master
// set this node routes, each with its route, listeners, backends,
// Sentinels and failovers. The top-level Route, Frontends, Backends,
// Sentinels and Failovers are those of the first service and Ready is
// true when every service is ready, so that a client of the single-service
// API keeps working: webui derives them from Services on every request
// (see normalize); a Source may leave them empty. A Source that fills
// only the top-level fields (Services empty) describes one service, which
// webui then builds from them.
type Snapshot struct {
	Node    string    `json:"node"`             // this node's name
	Version string    `json:"redhaven_version"` // redhaven version of this node
	Time    time.Time `json:"time,omitzero"`    // when the snapshot was taken; zero: now
	Started time.Time `json:"started,omitzero"` // process start

	Ready  bool `json:"ready"`  // /health/ready: this node routes clients of every service
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

	// Services is every service this node routes, in configuration
	// order (see above).
	Services []Service `json:"services"`
}

// Service is one Sentinel-monitored master set that redhaven routes: a
// `services:` entry, or the single-service keys. Services share the node,
// the cluster, the VIP, the events and the proxy's client bounds; each has
// its own route, listeners and Redis nodes.
type Service struct {
	Name      string        `json:"name"`  // Sentinel's name of the master (master_name)
	Ready     bool          `json:"ready"` // this node routes the service's clients: /health/ready?service=NAME
	Route     Route         `json:"route"`
	Frontends []Frontend    `json:"frontends"` // the service's proxy listeners
	Backends  []Backend     `json:"backends"`  // its Redis nodes
	Sentinels []Sentinel    `json:"sentinels"` // the Sentinels as they report this master
	Failovers FailoverStats `json:"failovers"` // from the events tagged with the service when Count is 0
	// VIP is the service's own virtual IP and who holds it; nil when the
	// service shares Snapshot.VIP.
	VIP *VIP `json:"vip,omitempty"`
	// PlannedFailover is the service's latest planned failover request;
	// nil when there was none.
	PlannedFailover *PlannedFailover `json:"planned_failover,omitempty"`
	// Summary is filled by webui from the fields above (a Source leaves
	// it zero): the service's line on the page.
	Summary ServiceSummary `json:"summary"`
}

// PlannedFailover is a planned failover request (`redhaven failover`, the
// page's button) and how it ended: a client that asked for one (the
// action's answer has its ID) learns here that the leader aborted it,
// which the route alone does not tell (an abort puts the old route back).
type PlannedFailover struct {
	ID     uint64 `json:"id"`
	Status string `json:"status"` // "pending" or "completed"
	// Result of a completed request: "ok: ..." or "failed: <why>" (the
	// leader aborted it; writes resumed on the old master unless it says
	// otherwise).
	Result    string    `json:"result,omitempty"`
	Requested time.Time `json:"requested,omitzero"`
	Completed time.Time `json:"completed,omitzero"`
}

// ServiceSummary is one service at a glance, HAProxy's summary row: its
// listeners added up, its backends counted.
type ServiceSummary struct {
	State           string  `json:"state"`            // ServiceReady, ServiceNoMaster, ServiceContradicted or ServiceNotReady
	CurrentSessions int64   `json:"current_sessions"` // over its frontends
	TotalSessions   uint64  `json:"total_sessions"`
	SessionsPerSec  float64 `json:"sessions_per_sec"`
	CommandsTotal   uint64  `json:"commands_total"`
	CommandsPerSec  float64 `json:"commands_per_sec"`
	BytesIn         uint64  `json:"bytes_in"`
	BytesOut        uint64  `json:"bytes_out"`
	Errors          uint64  `json:"errors"`
	Refused         uint64  `json:"refused"`
	BackendsUp      int     `json:"backends_up"` // State StateUp
	Backends        int     `json:"backends"`
	Failovers       uint64  `json:"failovers"` // the histogram's count
}

// Service states (ServiceSummary.State), most telling first.
const (
	ServiceReady        = "ready"        // this node routes the service
	ServiceNoMaster     = "no master"    // no master committed
	ServiceContradicted = "contradicted" // this node's watcher contradicts the committed master
	ServiceNotReady     = "not ready"    // e.g. fenced: out of contact with the quorum
)

// state is the service's ServiceSummary.State.
func (sv *Service) state() string {
	switch {
	case sv.Ready:
		return ServiceReady
	case sv.Route.Master == "":
		return ServiceNoMaster
	case sv.Route.Contradicted != "":
		return ServiceContradicted
	}
	return ServiceNotReady
}

// sumFrontends adds up frontends (a service's summary, the page's total
// rows).
func sumFrontends(fs []Frontend) Frontend {
	var t Frontend
	for _, f := range fs {
		t.CurrentSessions += f.CurrentSessions
		t.MaxSessions += f.MaxSessions
		t.Limit += f.Limit
		t.TotalSessions += f.TotalSessions
		t.SessionsPerSec += f.SessionsPerSec
		t.MaxSessionRate += f.MaxSessionRate
		t.CommandsTotal += f.CommandsTotal
		t.CommandsPerSec += f.CommandsPerSec
		t.BytesIn += f.BytesIn
		t.BytesOut += f.BytesOut
		t.Errors += f.Errors
		t.Refused += f.Refused
	}
	return t
}

// normalize makes s.Services the full picture and the top-level fields
// the single-service view of it (see Snapshot), and fills each service's
// Summary. It is the one place that rule is written.
func (s *Snapshot) normalize() {
	if len(s.Services) == 0 {
		s.Services = []Service{{Ready: s.Ready, Route: s.Route, Frontends: s.Frontends,
			Backends: s.Backends, Sentinels: s.Sentinels, Failovers: s.Failovers}}
	} else {
		s.Services = append([]Service(nil), s.Services...) // the Source's value stays as it was
		first := s.Services[0]
		s.Route, s.Frontends, s.Backends, s.Sentinels, s.Failovers = first.Route, first.Frontends, first.Backends, first.Sentinels, first.Failovers
		s.Ready = true
		for _, sv := range s.Services {
			s.Ready = s.Ready && sv.Ready
		}
	}
	only := len(s.Services) == 1
	for i := range s.Services {
		sv := &s.Services[i]
		t := sumFrontends(sv.Frontends)
		sum := ServiceSummary{State: sv.state(), CurrentSessions: t.CurrentSessions, TotalSessions: t.TotalSessions,
			SessionsPerSec: t.SessionsPerSec, CommandsTotal: t.CommandsTotal, CommandsPerSec: t.CommandsPerSec,
			BytesIn: t.BytesIn, BytesOut: t.BytesOut, Errors: t.Errors, Refused: t.Refused, Backends: len(sv.Backends)}
		for _, b := range sv.Backends {
			if b.State == StateUp {
				sum.BackendsUp++
			}
		}
		sum.Failovers = s.failoverStats(sv.Name, sv.Failovers, only).Count
		sv.Summary = sum
	}
}

// Service returns the service called name; "" names the only service.
// The error says which services there are: ErrNotFound for an unknown
// name, ErrBadRequest for "" with several.
func (s *Snapshot) Service(name string) (*Service, error) {
	if name == "" && len(s.Services) == 1 {
		return &s.Services[0], nil
	}
	for i := range s.Services {
		if s.Services[i].Name == name {
			return &s.Services[i], nil
		}
	}
	if name == "" {
		return nil, Classify(ErrBadRequest, fmt.Errorf("service: give one of %s", s.serviceNames()))
	}
	return nil, Classify(ErrNotFound, fmt.Errorf("service %q: not configured on %s (services: %s)", name, s.Node, s.serviceNames()))
}

func (s *Snapshot) serviceNames() string {
	names := make([]string, 0, len(s.Services))
	for _, sv := range s.Services {
		names = append(names, strconv.Quote(sv.Name))
	}
	return strings.Join(names, ", ")
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

// VIP is a virtual IP and who holds it: the shared one (Snapshot.VIP) or
// a service's own (Service.VIP).
type VIP struct {
	// Service names the service whose own VIP this is; "" for the shared
	// one.
	Service   string `json:"service,omitempty"`
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
	Kind     string        `json:"kind"`              // EventFailover, EventVIP, ...
	Service  string        `json:"service,omitempty"` // the service it is about; "" for the node, the cluster, the VIP
	Node     string        `json:"node"`              // node that recorded it
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

// failoverStats is f, or, when f counts nothing, the failovers of
// service in the events (an untagged event counts for the only service).
func (s *Snapshot) failoverStats(service string, f FailoverStats, only bool) FailoverStats {
	if f.Count > 0 {
		return f
	}
	f = FailoverStats{}
	for _, e := range s.Events {
		if e.Kind == EventFailover && e.Duration > 0 && (e.Service == service || (only && e.Service == "")) {
			f.Observe(e.Duration)
		}
	}
	return f
}

// failoverHistogram returns count, sum and cumulative buckets of the
// service's failovers (failoverStats).
func (s *Snapshot) failoverHistogram(sv *Service) (uint64, float64, map[float64]uint64) {
	f := s.failoverStats(sv.Name, sv.Failovers, len(s.Services) == 1)
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
