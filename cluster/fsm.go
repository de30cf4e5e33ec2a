package cluster

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Bounds of the replicated history.
const (
	MaxEvents    = 200
	MaxFailovers = 50
)

// Errors returned by the Agent's write methods.
var (
	// ErrNotLeader: the write must be made on the Raft leader (see Leader
	// and Members for its name and HTTP address).
	ErrNotLeader = errors.New("cluster: not the raft leader")
	// ErrStaleEpoch: a route decision with an epoch lower than the
	// committed one, or another master at the same epoch
	// (RouteDecision.Replaces).
	ErrStaleEpoch = errors.New("cluster: route epoch is older than the committed one")
	// ErrUnknownFailover: no failover request with that ID.
	ErrUnknownFailover = errors.New("cluster: unknown failover request")
	// ErrFailoverPending: another planned failover is still pending.
	ErrFailoverPending = errors.New("cluster: a planned failover is already pending")
	// ErrFailoverDone: the failover request is already completed.
	ErrFailoverDone = errors.New("cluster: failover request already completed")
	// ErrNotRunning: Run has not started (or has finished).
	ErrNotRunning = errors.New("cluster: agent is not running")
	// ErrUnknownService: the service is not one the leader is configured
	// with (Config.Services).
	ErrUnknownService = errors.New("cluster: unknown service")
)

// AdminState is the operator's state for one Redis backend.
type AdminState string

// Admin states.
const (
	AdminReady       AdminState = "ready"
	AdminDrain       AdminState = "drain"
	AdminMaintenance AdminState = "maintenance"
)

// Valid reports whether s is one of the known admin states.
func (s AdminState) Valid() bool {
	return s == AdminReady || s == AdminDrain || s == AdminMaintenance
}

// Event kinds.
const (
	EventRouteChange  = "route_change"
	EventLeaderChange = "leader_change"
	EventMemberJoin   = "member_join"
	EventMemberLeave  = "member_leave"
	EventFailover     = "failover"
	EventVIPMove      = "vip_move"
	EventAdmin        = "admin"
)

// RouteDecision is the committed answer to "where do writes go".
type RouteDecision struct {
	Master    string    `json:"master"` // host:port of the Redis master
	Epoch     int64     `json:"epoch"`  // Sentinel config epoch; never moves backwards
	Reason    string    `json:"reason"`
	Time      time.Time `json:"time"`
	DecidedBy string    `json:"decided_by"` // node name of the leader that committed it
}

// Replaces tells whether d may replace the committed decision cur. It is
// the one rule for "epochs only move forward", used by the leader before it
// proposes (node, ProposeRoute) and by every FSM when it applies:
//   - a higher epoch replaces;
//   - the same master at the same epoch is a duplicate: false, nil (nothing
//     to do);
//   - at the same epoch a pause (no master) may replace a master and a
//     master may replace a pause: a planned failover pauses at the epoch it
//     started from and, if Sentinel does not fail over, resumes at it;
//   - another master at the same epoch, or a lower epoch: ErrStaleEpoch.
//     Sentinel never names two masters at one epoch, and without Sentinel
//     node counts the epoch up itself.
func (d RouteDecision) Replaces(cur RouteDecision) (bool, error) {
	switch {
	case d.Epoch > cur.Epoch:
		return true, nil
	case d.Epoch < cur.Epoch:
		return false, fmt.Errorf("%w: epoch %d < committed %d", ErrStaleEpoch, d.Epoch, cur.Epoch)
	case d.Master == cur.Master:
		return false, nil
	case d.Master == "" || cur.Master == "":
		return true, nil
	default:
		return false, fmt.Errorf("%w: master %s at epoch %d, committed %s at the same epoch", ErrStaleEpoch, d.Master, d.Epoch, cur.Master)
	}
}

// Event is one entry of the bounded, replicated history. Events about a
// route, an admin state or a failover name their service; the others
// (members, leadership, VIP) have none.
type Event struct {
	Time     time.Time     `json:"time"`
	Kind     string        `json:"kind"`
	Node     string        `json:"node"`
	Service  string        `json:"service,omitempty"`
	Message  string        `json:"message"`
	Duration time.Duration `json:"duration,omitempty"`
}

// Failover request statuses.
const (
	FailoverPending   = "pending"
	FailoverCompleted = "completed"
)

// FailoverRequest is a planned failover asked for by an operator.
type FailoverRequest struct {
	ID          uint64    `json:"id"` // the Raft index that committed the request
	Reason      string    `json:"reason"`
	RequestedBy string    `json:"requested_by"`
	Requested   time.Time `json:"requested"`
	Status      string    `json:"status"`
	Result      string    `json:"result,omitempty"`
	Completed   time.Time `json:"completed,omitzero"`
}

// StateVersion is the version of the snapshot format this release writes
// (State.Version). Version 1 (no version field) is the single-service
// format of earlier releases: route, admin and failovers at the top level.
const StateVersion = 2

// ServiceState is the replicated state of one service (one Sentinel
// master name): where its writes go, its backends' admin states and its
// planned failovers.
type ServiceState struct {
	Route     RouteDecision         `json:"route"`
	Admin     map[string]AdminState `json:"admin"`     // backend address -> state; ready is absent
	Failovers []FailoverRequest     `json:"failovers"` // oldest first, at most MaxFailovers
}

// Clone returns a deep copy (Admin never nil).
func (s ServiceState) Clone() ServiceState {
	c := s
	c.Admin = maps.Clone(s.Admin)
	if c.Admin == nil {
		c.Admin = map[string]AdminState{}
	}
	c.Failovers = slices.Clone(s.Failovers)
	return c
}

// PendingFailover returns the service's pending planned failover, if any.
func (s ServiceState) PendingFailover() (FailoverRequest, bool) {
	for _, f := range s.Failovers {
		if f.Status == FailoverPending {
			return f, true
		}
	}
	return FailoverRequest{}, false
}

// State is the replicated state; State() hands out copies.
type State struct {
	Version  int                     `json:"version"`  // StateVersion
	Services map[string]ServiceState `json:"services"` // by service name
	Events   []Event                 `json:"events"`   // oldest first, at most MaxEvents
	VIP      VIPLease                `json:"vip"`      // who may hold the shared VIP (lease.go)
	// VIPs are the leases of the services' own VIPs, by service name
	// (lease.go); nil when none was ever taken.
	VIPs map[string]VIPLease `json:"vips,omitempty"`
}

// Lease returns the lease of vip: the shared VIP's for SharedVIP, else
// the own VIP's of the service called vip (free when never taken).
func (s State) Lease(vip string) VIPLease {
	if vip == SharedVIP {
		return s.VIP
	}
	return s.VIPs[vip]
}

// Service returns the state of the named service: a copy, the zero state
// (with a non-nil Admin) when nothing was committed for it yet.
func (s State) Service(name string) ServiceState {
	return s.Services[name].Clone()
}

// ServiceNames lists the services that have committed state, sorted.
func (s State) ServiceNames() []string {
	return slices.Sorted(maps.Keys(s.Services))
}

// Clone returns a deep copy.
func (s State) Clone() State {
	c := s
	c.Services = make(map[string]ServiceState, len(s.Services))
	for name, ss := range s.Services {
		c.Services[name] = ss.Clone()
	}
	c.Events = slices.Clone(s.Events)
	c.VIPs = maps.Clone(s.VIPs)
	return c
}

// Command ops.
const (
	opRoute            = "route"
	opAdmin            = "admin"
	opFailoverRequest  = "failover_request"
	opFailoverComplete = "failover_complete"
	opEvent            = "event"
	opLease            = "lease"         // the shared VIP's lease
	opServiceLease     = "service_lease" // a service's own VIP's lease (lease.go)
)

// command is one Raft log entry. The proposer stamps Time so that every
// replica applies the same bytes to the same result.
type command struct {
	Op   string    `json:"op"`
	Time time.Time `json:"time"`
	Node string    `json:"node"` // proposer
	// Service names the service of a route, admin, failover or route
	// reset command. Entries written before services existed have none:
	// they apply to the default service (fsm.defaultService).
	Service string         `json:"service,omitempty"`
	Route   *RouteDecision `json:"route,omitempty"`
	Addr    string         `json:"addr,omitempty"`
	Admin   AdminState     `json:"admin,omitempty"`
	ID      uint64         `json:"id,omitempty"`
	Reason  string         `json:"reason,omitempty"`
	Result  string         `json:"result,omitempty"`
	Event   *Event         `json:"event,omitempty"`
	Lease   *leaseCmd      `json:"lease,omitempty"`
}

// applyResult is what fsm.Apply returns to the proposer.
type applyResult struct {
	err     error
	id      uint64
	changed bool
}

// fsm is the raft.FSM. It is safe for concurrent use.
type fsm struct {
	mu       sync.RWMutex
	st       State
	onChange func()
	lease    *leaseLocal // when this node applied the last lease change
	// defaultService receives the log entries without a service and the
	// route, admin and failovers of a version 1 snapshot (both written by
	// a single-service release). Config.Services[0]; the same on every node.
	defaultService string
}

func newFSM(onChange func(), defaultService string) *fsm {
	if onChange == nil {
		onChange = func() {}
	}
	return &fsm{st: State{Version: StateVersion, Services: map[string]ServiceState{}}, onChange: onChange,
		lease: newLeaseLocal(), defaultService: defaultService}
}

func (f *fsm) state() State {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.Clone()
}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any {
	var c command
	if err := json.Unmarshal(l.Data, &c); err != nil {
		return applyResult{err: fmt.Errorf("decode raft log %d: %w", l.Index, err)}
	}
	f.mu.Lock()
	res := f.apply(l.Index, c)
	f.mu.Unlock()
	if res.changed {
		f.onChange()
	}
	return res
}

// service returns the name a command applies to (the default service for
// an entry without one) and that service's current state (f.mu held). The
// FSM applies whatever service a committed entry names: the leader checked
// it against its configuration, and a follower may learn of a service
// before it is configured with it.
func (f *fsm) service(c command) (string, ServiceState) {
	name := cmp.Or(c.Service, f.defaultService)
	ss := f.st.Services[name]
	if ss.Admin == nil {
		ss.Admin = map[string]AdminState{}
	}
	return name, ss
}

func (f *fsm) apply(index uint64, c command) applyResult {
	switch c.Op {
	case opRoute:
		if c.Route == nil {
			return applyResult{err: errors.New("route command without decision")}
		}
		name, ss := f.service(c)
		r := *c.Route
		if ok, err := r.Replaces(ss.Route); !ok {
			return applyResult{err: err} // nil for a duplicate: no change, no event
		}
		ss.Route = r
		f.st.Services[name] = ss
		f.addEvent(Event{Time: c.Time, Kind: EventRouteChange, Node: c.Node, Service: name,
			Message: fmt.Sprintf("master %s epoch %d: %s", r.Master, r.Epoch, r.Reason)})
		return applyResult{changed: true}
	case opAdmin:
		if !c.Admin.Valid() || c.Addr == "" {
			return applyResult{err: fmt.Errorf("bad admin command %q for %q", c.Admin, c.Addr)}
		}
		name, ss := f.service(c)
		if ss.Admin[c.Addr] == c.Admin || (c.Admin == AdminReady && ss.Admin[c.Addr] == "") {
			return applyResult{}
		}
		if c.Admin == AdminReady {
			delete(ss.Admin, c.Addr)
		} else {
			ss.Admin[c.Addr] = c.Admin
		}
		f.st.Services[name] = ss
		f.addEvent(Event{Time: c.Time, Kind: EventAdmin, Node: c.Node, Service: name,
			Message: fmt.Sprintf("backend %s set to %s", c.Addr, c.Admin)})
		return applyResult{changed: true}
	case opFailoverRequest:
		name, ss := f.service(c)
		if p, ok := ss.PendingFailover(); ok {
			return applyResult{err: fmt.Errorf("%w (id %d)", ErrFailoverPending, p.ID), id: p.ID}
		}
		ss.Failovers = append(ss.Failovers, FailoverRequest{ID: index, Reason: c.Reason,
			RequestedBy: c.Node, Requested: c.Time, Status: FailoverPending})
		if n := len(ss.Failovers); n > MaxFailovers {
			ss.Failovers = slices.Clone(ss.Failovers[n-MaxFailovers:])
		}
		f.st.Services[name] = ss
		f.addEvent(Event{Time: c.Time, Kind: EventFailover, Node: c.Node, Service: name,
			Message: fmt.Sprintf("planned failover %d requested: %s", index, c.Reason)})
		return applyResult{changed: true, id: index}
	case opFailoverComplete:
		name, ss := f.service(c)
		for i := range ss.Failovers {
			fr := &ss.Failovers[i]
			if fr.ID != c.ID {
				continue
			}
			if fr.Status != FailoverPending {
				return applyResult{err: fmt.Errorf("%w (id %d)", ErrFailoverDone, c.ID)}
			}
			fr.Status, fr.Result, fr.Completed = FailoverCompleted, c.Result, c.Time
			f.st.Services[name] = ss
			f.addEvent(Event{Time: c.Time, Kind: EventFailover, Node: c.Node, Service: name,
				Message:  fmt.Sprintf("planned failover %d completed: %s", c.ID, c.Result),
				Duration: c.Time.Sub(fr.Requested)})
			return applyResult{changed: true, id: c.ID}
		}
		return applyResult{err: fmt.Errorf("%w (id %d of service %q)", ErrUnknownFailover, c.ID, name)}
	case opRouteReset:
		return f.applyRouteReset(c)
	case opEvent:
		if c.Event == nil {
			return applyResult{err: errors.New("event command without event")}
		}
		f.addEvent(*c.Event)
		return applyResult{changed: true}
	case opLease, opServiceLease:
		return f.applyLease(index, c)
	}
	return applyResult{err: fmt.Errorf("unknown command %q", c.Op)}
}

func (f *fsm) addEvent(e Event) {
	f.st.Events = append(f.st.Events, e)
	if n := len(f.st.Events); n > MaxEvents {
		f.st.Events = slices.Clone(f.st.Events[n-MaxEvents:])
	}
}

// snapshotState is the snapshot format. Version 2 has the services; it
// also repeats the default service's route, admin and failovers at the top
// level, where a version 1 reader (a single-service release, e.g. a
// follower not yet upgraded in a rolling upgrade) finds them. A version 1
// snapshot has only those top-level fields and no version.
type snapshotState struct {
	Version  int                     `json:"version,omitempty"`
	Services map[string]ServiceState `json:"services,omitempty"`
	Events   []Event                 `json:"events"`
	VIP      VIPLease                `json:"vip"`            // the shared VIP's lease (the only one before service VIPs)
	VIPs     map[string]VIPLease     `json:"vips,omitempty"` // the services' own VIPs' leases; ignored by older readers
	// Version 1 fields: the default service.
	Route     RouteDecision         `json:"route"`
	Admin     map[string]AdminState `json:"admin"`
	Failovers []FailoverRequest     `json:"failovers"`
}

// encodeSnapshot writes st in the current format.
func encodeSnapshot(st State, defaultService string) ([]byte, error) {
	def := st.Service(defaultService)
	return json.Marshal(snapshotState{Version: StateVersion, Services: st.Services, Events: st.Events, VIP: st.VIP, VIPs: st.VIPs,
		Route: def.Route, Admin: def.Admin, Failovers: def.Failovers})
}

// decodeSnapshot reads a snapshot of version 1 (into defaultService) or 2.
func decodeSnapshot(r io.Reader, defaultService string) (State, error) {
	var s snapshotState
	if err := json.NewDecoder(r).Decode(&s); err != nil {
		return State{}, fmt.Errorf("decode fsm snapshot: %w", err)
	}
	st := State{Version: StateVersion, Services: map[string]ServiceState{}, Events: s.Events, VIP: s.VIP, VIPs: s.VIPs}
	switch s.Version {
	case 0, 1:
		v1 := ServiceState{Route: s.Route, Admin: s.Admin, Failovers: s.Failovers}
		if v1.Route != (RouteDecision{}) || len(v1.Admin) > 0 || len(v1.Failovers) > 0 {
			st.Services[defaultService] = v1.Clone()
		}
	case StateVersion:
		for name, ss := range s.Services {
			st.Services[name] = ss.Clone()
		}
	default:
		return State{}, fmt.Errorf("fsm snapshot has format version %d; this redhaven reads versions 1 to %d: upgrade it", s.Version, StateVersion)
	}
	return st, nil
}

// Snapshot implements raft.FSM.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	b, err := encodeSnapshot(f.st, f.defaultService)
	if err != nil {
		return nil, fmt.Errorf("encode fsm snapshot: %w", err)
	}
	return fsmSnapshot(b), nil
}

// Restore implements raft.FSM.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, err := decodeSnapshot(rc, f.defaultService)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
	// A restored lease counts from now here.
	f.lease.seen(time.Now(), append([]string{SharedVIP}, slices.Collect(maps.Keys(st.VIPs))...)...)
	f.onChange()
	return nil
}

type fsmSnapshot []byte

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("write fsm snapshot: %w", err)
	}
	return sink.Close()
}

func (s fsmSnapshot) Release() {}
