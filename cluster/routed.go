package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// Routed reports: what each node's proxy routes to, and from which
// committed route decision. A committed decision is not yet followed
// everywhere: a follower's FSM may lag the commit (a stalled disk holds
// Raft's main loop while the heartbeat fast path keeps the follower "in
// contact"), and its proxy then still routes by the older decision. A
// planned failover must not ask Sentinel to move the master while some
// proxy still sends reads to the old one (issue 13: a stale read after a
// newer write was acknowledged by the new master). So the leader asks
// (WaitRouted) and each node answers with its last NoteRouted, over
// memberlist user messages (encrypted and authenticated with the cluster
// key like the lease renewals), until every Raft server follows the
// decision or can no longer route at all.
//
// A VIP holder that cannot route asks the same question of the other
// servers (PeersRouting): it gives its lease up only when another node
// routes what it cannot. Its query names it, and the answer goes to it;
// the leader's query names nobody (the form older releases send and
// answer), and the answer goes to the leader.

// Prefixes of routed messages among memberlist user messages.
const (
	routedQueryPrefix  = 'Q' // "answer with your routed note for a service" (service, or service NUL asker)
	routedReportPrefix = 'R' // the note, to the leader or to the asker
)

// routedQueryEvery is how often WaitRouted asks a member that has not
// answered what it waits for (UDP: a lost query or answer is asked again).
const routedQueryEvery = 20 * time.Millisecond

// ErrRouteNotFollowed: some members still route by an older decision
// (and are still in contact, so they may use it) when WaitRouted gives up.
var ErrRouteNotFollowed = errors.New("cluster: members still route by an older decision")

// routedNote is one node's proxy route for one service.
type routedNote struct {
	Node    string        `json:"n"`
	Service string        `json:"s"`
	From    RouteDecision `json:"d"` // the committed decision it was computed from (Reason dropped)
	Master  string        `json:"m"` // where the proxy sends writes ("" none)
	// Up: this node's watcher reached Master at its last check and it
	// answered ROLE as a master (older releases leave it out: false).
	Up bool `json:"u,omitempty"`
	// Grants: this node takes the lease of the service's own VIP when the
	// leader grants it (GrantLease): it holds that VIP (netlink mode) and
	// its release knows such grants. Older releases leave it out: false.
	Grants bool      `json:"g,omitempty"`
	at     time.Time // when this node learned it
}

// routedState holds this node's notes and, on the leader, the members'.
type routedState struct {
	mu    sync.Mutex
	notes map[string]routedNote // by node + "\x00" + service
	asked map[string]time.Time  // PeersRouting's last query, by node + "\x00" + service
	hint  chan struct{}         // a note arrived
	query chan routedQuery      // queries received, for routedLoop
}

// routedQuery is a query for this node's note on service; asker is the
// node that wants the answer, "" for the leader.
type routedQuery struct{ service, asker string }

func newRoutedState() *routedState {
	return &routedState{notes: map[string]routedNote{}, asked: map[string]time.Time{},
		hint: make(chan struct{}, 1), query: make(chan routedQuery, 16)}
}

func (s *routedState) put(n routedNote) {
	s.mu.Lock()
	s.notes[n.Node+"\x00"+n.Service] = n
	s.mu.Unlock()
	hint(s.hint)
}

func (s *routedState) get(node, service string) (routedNote, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.notes[node+"\x00"+service]
	return n, ok
}

// NoteRouted records where this node's proxy for service sends writes now
// (master, "" for nowhere), whether its watcher reaches that master as a
// master (up), and the committed decision that route was computed from.
// node calls it on every pass of its policy loop, after the proxy's route
// table was set; the leader's WaitRouted and a VIP holder's PeersRouting
// read it.
func (a *Agent) NoteRouted(service string, from RouteDecision, master string, up bool) {
	from.Reason = "" // not needed to identify it, and keeps the answer one small packet
	a.routed.put(routedNote{Node: a.cfg.NodeName, Service: service, From: from, Master: master, Up: up && master != "",
		Grants: slices.Contains(a.cfg.VIPServices, service), at: time.Now()})
}

// takesGrants tells whether node's last note on service says it takes a
// lease of the service's own VIP that the leader grants it.
func (s *routedState) takesGrants(node, service string) bool {
	n, ok := s.get(node, service)
	return ok && n.Grants
}

// TakesLeaseGrants tells whether node (another server) last said that it
// takes the lease of service's own VIP when the leader grants it
// (GrantLease).
func (a *Agent) TakesLeaseGrants(node, service string) bool {
	return a.routed.takesGrants(node, service)
}

// follows says whether note n shows a proxy that follows decision d: its
// route was computed from d itself or from a later epoch, and it sends
// writes to d's master or nowhere.
func (n routedNote) follows(d RouteDecision) bool {
	same := n.From.Epoch == d.Epoch && n.From.Master == d.Master && n.From.Time.Equal(d.Time) && n.From.DecidedBy == d.DecidedBy
	return (same || n.From.Epoch > d.Epoch) && (n.Master == "" || n.Master == d.Master)
}

// WaitRouted waits (leader only, bounded by ctx) until every server of the
// Raft configuration, this one included, either routes service by the
// committed decision d (its note follows d) or cannot route at all: no
// answer and no Raft contact with this leader for 2*ContactBound since
// the later of its last answer to a heartbeat and this node's election. A
// follower stops routing ContactBound after it last heard from a leader
// (InContact); the second ContactBound covers its policy loop's next pass
// and clock-rate drift. On timeout the error wraps ErrRouteNotFollowed and
// names the members that lag.
func (a *Agent) WaitRouted(ctx context.Context, service string, d RouteDecision) error {
	r := a.raftNode()
	if r == nil {
		return ErrNotRunning
	}
	if r.State() != raft.Leader {
		return ErrNotLeader
	}
	service, err := a.serviceName(service)
	if err != nil {
		return err
	}
	fence := 2 * a.cfg.ContactBound
	start := time.Now()
	asked := map[string]time.Time{}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if r.State() != raft.Leader {
			return ErrNotLeader
		}
		f := r.GetConfiguration()
		if err := f.Error(); err != nil {
			return fmt.Errorf("read raft configuration: %w", err)
		}
		a.mu.RLock()
		contact, since := a.contact, a.leaderSince
		a.mu.RUnlock()
		if since.IsZero() {
			since = start // not observed yet: count from now
		}
		now := time.Now()
		var lagging []string
		for _, s := range f.Configuration().Servers {
			name := string(s.ID)
			note, ok := a.routed.get(name, service)
			if ok && note.follows(d) {
				continue
			}
			if name == a.cfg.NodeName {
				lagging = append(lagging, name+" (this leader's own proxy)")
				continue
			}
			last := since
			if contact != nil {
				if t := contact.lastContact(s.ID); t.After(last) {
					last = t
				}
			}
			if now.Sub(last) >= fence {
				continue // cannot be in contact any more: not routing
			}
			if now.Sub(asked[name]) >= routedQueryEvery {
				asked[name] = now
				a.askRouted(name, service)
			}
			why := "no answer"
			if ok {
				why = fmt.Sprintf("routes %s from epoch %d decision by %s at %s",
					cmp.Or(note.Master, "nowhere"), note.From.Epoch, note.From.DecidedBy, note.From.Time.Format(time.RFC3339Nano))
			}
			lagging = append(lagging, fmt.Sprintf("%s (%s, raft contact %v ago)", name, why, now.Sub(last).Round(time.Millisecond)))
		}
		if len(lagging) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			slices.Sort(lagging)
			return fmt.Errorf("%w (master %q epoch %d): %s: %v", ErrRouteNotFollowed, d.Master, d.Epoch,
				strings.Join(lagging, ", "), ctx.Err())
		case <-a.routed.hint:
		case <-tick.C:
		}
	}
}

// askRouted sends a routed query for service to member name (best effort),
// answered to the leader.
func (a *Agent) askRouted(name, service string) { a.sendRoutedQuery(name, service, "") }

// sendRoutedQuery sends a routed query for service to member name (best
// effort), to be answered to asker ("" for the leader; older releases
// answer only those).
func (a *Agent) sendRoutedQuery(name, service, asker string) {
	ml := a.memberlist()
	if ml == nil {
		return
	}
	msg := append([]byte{routedQueryPrefix}, service...)
	if asker != "" {
		msg = append(append(msg, 0), asker...)
	}
	if to := memberNode(ml, name); to != nil {
		_ = ml.SendBestEffort(to, msg)
	}
}

// PeersRouting tells which other servers of the Raft configuration route
// service by the committed decision d and send its writes to d's master,
// which their watcher reaches as a master (d must name one): their last
// note, received within maxAge, says so.
// It asks each server whose note is older than routedQueryEvery again
// (best effort; the answers come back to this node), so a caller that
// polls it sees fresh answers a round later. Any node may call it; an
// older release does not answer a follower's query, and so never counts.
func (a *Agent) PeersRouting(service string, d RouteDecision, maxAge time.Duration) []string {
	r := a.raftNode()
	if r == nil || d.Master == "" {
		return nil
	}
	service, err := a.serviceName(service)
	if err != nil {
		return nil
	}
	f := r.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	now := time.Now()
	var routing []string
	for _, srv := range f.Configuration().Servers {
		name := string(srv.ID)
		if name == a.cfg.NodeName {
			continue
		}
		key := name + "\x00" + service
		a.routed.mu.Lock()
		note, ok := a.routed.notes[key]
		ask := now.Sub(a.routed.asked[key]) >= routedQueryEvery
		if ask {
			a.routed.asked[key] = now
		}
		a.routed.mu.Unlock()
		if ask {
			a.sendRoutedQuery(name, service, a.cfg.NodeName)
		}
		if ok && now.Sub(note.at) <= maxAge && note.follows(d) && note.Master == d.Master && note.Up {
			routing = append(routing, name)
		}
	}
	return routing
}

func memberNode(ml *memberlist.Memberlist, name string) *memberlist.Node {
	for _, m := range ml.Members() {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// receiveRouted handles a routed query or report (memberlist's NotifyMsg:
// must not block).
func (a *Agent) receiveRouted(kind byte, b []byte) {
	switch kind {
	case routedQueryPrefix:
		service, asker, _ := strings.Cut(string(b), "\x00")
		select {
		case a.routed.query <- routedQuery{service: service, asker: asker}:
		default: // full: the asker asks again
		}
	case routedReportPrefix:
		var n routedNote
		if err := json.Unmarshal(b, &n); err != nil || n.Node == "" || n.Node == a.cfg.NodeName ||
			!slices.Contains(a.cfg.ServiceNames(), n.Service) {
			if ok, cnt := a.logLimit.allow("routed-msg"); ok {
				a.log.Warn("malformed routed report ignored", "error", err, "suppressed", cnt)
			}
			return
		}
		n.at = time.Now()
		a.routed.put(n)
	}
}

// routedLoop answers routed queries with this node's note: a query that
// names its asker to that node (a member), any other to the leader this
// node follows.
func (a *Agent) routedLoop(ctx context.Context) {
	for {
		var q routedQuery
		select {
		case <-ctx.Done():
			return
		case q = <-a.routed.query:
		}
		note, ok := a.routed.get(a.cfg.NodeName, q.service)
		to := q.asker
		if to == "" {
			to, _ = a.Leader()
		}
		ml := a.memberlist()
		if !ok || to == "" || to == a.cfg.NodeName || ml == nil {
			continue
		}
		b, err := json.Marshal(note)
		if err != nil {
			continue
		}
		if m := memberNode(ml, to); m != nil {
			_ = ml.SendBestEffort(m, append([]byte{routedReportPrefix}, b...))
		}
	}
}
