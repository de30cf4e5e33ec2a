package cluster

import (
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

// Event is one entry of the bounded, replicated history.
type Event struct {
	Time     time.Time     `json:"time"`
	Kind     string        `json:"kind"`
	Node     string        `json:"node"`
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

// State is the replicated state; State() hands out copies.
type State struct {
	Route     RouteDecision         `json:"route"`
	Admin     map[string]AdminState `json:"admin"`
	Failovers []FailoverRequest     `json:"failovers"` // oldest first, at most MaxFailovers
	Events    []Event               `json:"events"`    // oldest first, at most MaxEvents
	VIP       VIPLease              `json:"vip"`       // who may hold the VIP (lease.go)
}

// Clone returns a deep copy.
func (s State) Clone() State {
	c := s
	c.Admin = maps.Clone(s.Admin)
	if c.Admin == nil {
		c.Admin = map[string]AdminState{}
	}
	c.Failovers = slices.Clone(s.Failovers)
	c.Events = slices.Clone(s.Events)
	return c
}

// PendingFailover returns the pending planned failover, if any.
func (s State) PendingFailover() (FailoverRequest, bool) {
	for _, f := range s.Failovers {
		if f.Status == FailoverPending {
			return f, true
		}
	}
	return FailoverRequest{}, false
}

// Command ops.
const (
	opRoute            = "route"
	opAdmin            = "admin"
	opFailoverRequest  = "failover_request"
	opFailoverComplete = "failover_complete"
	opEvent            = "event"
	opLease            = "lease"
)

// command is one Raft log entry. The proposer stamps Time so that every
// replica applies the same bytes to the same result.
type command struct {
	Op     string         `json:"op"`
	Time   time.Time      `json:"time"`
	Node   string         `json:"node"` // proposer
	Route  *RouteDecision `json:"route,omitempty"`
	Addr   string         `json:"addr,omitempty"`
	Admin  AdminState     `json:"admin,omitempty"`
	ID     uint64         `json:"id,omitempty"`
	Reason string         `json:"reason,omitempty"`
	Result string         `json:"result,omitempty"`
	Event  *Event         `json:"event,omitempty"`
	Lease  *leaseCmd      `json:"lease,omitempty"`
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
}

func newFSM(onChange func()) *fsm {
	if onChange == nil {
		onChange = func() {}
	}
	return &fsm{st: State{Admin: map[string]AdminState{}}, onChange: onChange, lease: newLeaseLocal()}
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

func (f *fsm) apply(index uint64, c command) applyResult {
	switch c.Op {
	case opRoute:
		if c.Route == nil {
			return applyResult{err: errors.New("route command without decision")}
		}
		r := *c.Route
		if ok, err := r.Replaces(f.st.Route); !ok {
			return applyResult{err: err} // nil for a duplicate: no change, no event
		}
		f.st.Route = r
		f.addEvent(Event{Time: c.Time, Kind: EventRouteChange, Node: c.Node,
			Message: fmt.Sprintf("master %s epoch %d: %s", r.Master, r.Epoch, r.Reason)})
		return applyResult{changed: true}
	case opAdmin:
		if !c.Admin.Valid() || c.Addr == "" {
			return applyResult{err: fmt.Errorf("bad admin command %q for %q", c.Admin, c.Addr)}
		}
		if f.st.Admin[c.Addr] == c.Admin || (c.Admin == AdminReady && f.st.Admin[c.Addr] == "") {
			return applyResult{}
		}
		if c.Admin == AdminReady {
			delete(f.st.Admin, c.Addr)
		} else {
			f.st.Admin[c.Addr] = c.Admin
		}
		f.addEvent(Event{Time: c.Time, Kind: EventAdmin, Node: c.Node,
			Message: fmt.Sprintf("backend %s set to %s", c.Addr, c.Admin)})
		return applyResult{changed: true}
	case opFailoverRequest:
		if p, ok := f.st.PendingFailover(); ok {
			return applyResult{err: fmt.Errorf("%w (id %d)", ErrFailoverPending, p.ID), id: p.ID}
		}
		f.st.Failovers = append(f.st.Failovers, FailoverRequest{ID: index, Reason: c.Reason,
			RequestedBy: c.Node, Requested: c.Time, Status: FailoverPending})
		if n := len(f.st.Failovers); n > MaxFailovers {
			f.st.Failovers = slices.Clone(f.st.Failovers[n-MaxFailovers:])
		}
		f.addEvent(Event{Time: c.Time, Kind: EventFailover, Node: c.Node,
			Message: fmt.Sprintf("planned failover %d requested: %s", index, c.Reason)})
		return applyResult{changed: true, id: index}
	case opFailoverComplete:
		for i := range f.st.Failovers {
			fr := &f.st.Failovers[i]
			if fr.ID != c.ID {
				continue
			}
			if fr.Status != FailoverPending {
				return applyResult{err: fmt.Errorf("%w (id %d)", ErrFailoverDone, c.ID)}
			}
			fr.Status, fr.Result, fr.Completed = FailoverCompleted, c.Result, c.Time
			f.addEvent(Event{Time: c.Time, Kind: EventFailover, Node: c.Node,
				Message:  fmt.Sprintf("planned failover %d completed: %s", c.ID, c.Result),
				Duration: c.Time.Sub(fr.Requested)})
			return applyResult{changed: true, id: c.ID}
		}
		return applyResult{err: fmt.Errorf("%w (id %d)", ErrUnknownFailover, c.ID)}
	case opRouteReset:
		return f.applyRouteReset(c)
	case opEvent:
		if c.Event == nil {
			return applyResult{err: errors.New("event command without event")}
		}
		f.addEvent(*c.Event)
		return applyResult{changed: true}
	case opLease:
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

// Snapshot implements raft.FSM.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	b, err := json.Marshal(f.st)
	if err != nil {
		return nil, fmt.Errorf("encode fsm snapshot: %w", err)
	}
	return fsmSnapshot(b), nil
}

// Restore implements raft.FSM.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var st State
	if err := json.NewDecoder(rc).Decode(&st); err != nil {
		return fmt.Errorf("decode fsm snapshot: %w", err)
	}
	if st.Admin == nil {
		st.Admin = map[string]AdminState{}
	}
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
	f.lease.seen(time.Now()) // a restored lease counts from now here
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
