package cluster

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// defaultApplyTimeout bounds a write when ctx has no deadline.
const defaultApplyTimeout = 5 * time.Second

// applyCmd commits c through Raft on the leader and returns the FSM's
// result. Writes are leader-only: a follower gets ErrNotLeader (node can
// forward the call to the leader's HTTP address, see Members).
func (a *Agent) applyCmd(ctx context.Context, c command) (applyResult, error) {
	r := a.raftNode()
	if r == nil {
		return applyResult{}, ErrNotRunning
	}
	if r.State() != raft.Leader {
		return applyResult{}, ErrNotLeader
	}
	c.Node = a.cfg.NodeName
	if c.Time.IsZero() {
		c.Time = time.Now().UTC()
	}
	b, err := json.Marshal(c)
	if err != nil {
		return applyResult{}, fmt.Errorf("encode %s command: %w", c.Op, err)
	}
	timeout := defaultApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	f := r.Apply(b, timeout)
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case <-ctx.Done():
		return applyResult{}, fmt.Errorf("%s command, outcome unknown: %w", c.Op, ctx.Err())
	case err = <-done:
	}
	if err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) ||
			errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return applyResult{}, fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		return applyResult{}, fmt.Errorf("commit %s command: %w", c.Op, err)
	}
	res, _ := f.Response().(applyResult)
	return res, res.err
}

// serviceName checks a service name against this node's configuration
// (Config.Services): "" is the default service (the first). Writes are
// made on the leader, so the leader's configuration decides; an unknown
// name is ErrUnknownService.
func (a *Agent) serviceName(service string) (string, error) {
	if service == "" {
		return a.cfg.DefaultService(), nil
	}
	if !slices.Contains(a.cfg.ServiceNames(), service) {
		return "", fmt.Errorf("%w %q: %s knows %s", ErrUnknownService, service, a.cfg.NodeName,
			strings.Join(a.cfg.ServiceNames(), ", "))
	}
	return service, nil
}

// ProposeRoute commits a route decision for a service ("" = the default
// service) (leader only, else ErrNotLeader).
// A decision that may not replace the committed one (RouteDecision.Replaces)
// is rejected with ErrStaleEpoch; a decision equal to the committed one
// (same master and epoch) is a no-op and returns nil without writing.
// DecidedBy is set to this
// node and Time to now when zero. A decision with no Master pauses writes
// at every proxy (planned failover); it needs a Reason.
func (a *Agent) ProposeRoute(ctx context.Context, service string, d RouteDecision) error {
	service, err := a.serviceName(service)
	if err != nil {
		return err
	}
	if d.Master == "" && d.Reason == "" {
		return errors.New("cluster: route decision without master address needs a reason")
	}
	if ok, err := d.Replaces(a.fsm.state().Service(service).Route); !ok {
		return err
	}
	d.DecidedBy = a.cfg.NodeName
	if d.Time.IsZero() {
		d.Time = time.Now().UTC()
	}
	_, err = a.applyCmd(ctx, command{Op: opRoute, Service: service, Time: d.Time, Route: &d})
	return err
}

// SetBackendAdmin sets the admin state of a service's Redis backend
// (leader only, else ErrNotLeader: OnLeader forwards). AdminReady clears
// the entry.
func (a *Agent) SetBackendAdmin(ctx context.Context, service, addr string, state AdminState) error {
	service, err := a.serviceName(service)
	if err != nil {
		return err
	}
	if addr == "" {
		return fmt.Errorf("%w: backend address is empty", ErrBadRequest)
	}
	if !state.Valid() {
		return fmt.Errorf("%w: admin state %q is not ready, drain or maintenance", ErrBadRequest, state)
	}
	_, err = a.applyCmd(ctx, command{Op: opAdmin, Service: service, Addr: addr, Admin: state})
	return err
}

// RequestFailover commits a planned failover request for a service
// (leader only) and returns its ID. ErrFailoverPending if one is already
// pending for that service (each service has at most one).
func (a *Agent) RequestFailover(ctx context.Context, service, reason string) (uint64, error) {
	service, err := a.serviceName(service)
	if err != nil {
		return 0, err
	}
	res, err := a.applyCmd(ctx, command{Op: opFailoverRequest, Service: service, Reason: reason})
	return res.id, err
}

// CompleteFailover marks a service's planned failover request done with a
// result text (leader only).
func (a *Agent) CompleteFailover(ctx context.Context, service string, id uint64, result string) error {
	service, err := a.serviceName(service)
	if err != nil {
		return err
	}
	_, err = a.applyCmd(ctx, command{Op: opFailoverComplete, Service: service, ID: id, Result: result})
	return err
}

// RecordEvent appends an event to the replicated history (leader only).
// Time defaults to now and Node to this node.
func (a *Agent) RecordEvent(ctx context.Context, e Event) error {
	if e.Kind == "" {
		return errors.New("cluster: event without kind")
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if e.Node == "" {
		e.Node = a.cfg.NodeName
	}
	_, err := a.applyCmd(ctx, command{Op: opEvent, Time: e.Time, Event: &e})
	return err
}

// Member is one node as seen from this node.
type Member struct {
	Name        string `json:"name"`
	GossipAddr  string `json:"gossip_addr"`
	GossipState string `json:"gossip_state"` // alive, leaving, left, dead, unknown
	RaftAddr    string `json:"raft_addr"`
	Suffrage    string `json:"suffrage"` // voter, nonvoter, none (not in the Raft configuration)
	IsLeader    bool   `json:"is_leader"`
	// LastContact is how long ago this node last heard from the leader,
	// filled on this node's own row and on the leader's row (0 on the
	// leader itself, -1 when unknown). On the leader, every follower's row
	// has how long ago that follower last answered a heartbeat.
	LastContact time.Duration `json:"last_contact"`
	HTTPAddr    string        `json:"http_addr"`
	Version     string        `json:"version"`
	Self        bool          `json:"self"`
}

// Members lists the gossip members and the Raft servers, sorted by name.
func (a *Agent) Members() []Member {
	r := a.raftNode()
	byName := map[string]*Member{}
	a.mu.RLock()
	for _, m := range a.members {
		mm := &Member{Name: m.name, GossipAddr: m.addr, GossipState: m.state, Suffrage: "none",
			LastContact: -1, Self: m.name == a.cfg.NodeName}
		if m.hasMeta {
			mm.RaftAddr, mm.HTTPAddr, mm.Version = m.meta.Raft, m.meta.HTTP, m.meta.Version
			if m.meta.Leaving && m.state == GossipAlive {
				mm.GossipState = GossipLeaving
			}
		}
		byName[m.name] = mm
	}
	a.mu.RUnlock()
	if r != nil {
		if f := r.GetConfiguration(); f.Error() == nil {
			for _, s := range f.Configuration().Servers {
				mm := byName[string(s.ID)]
				if mm == nil {
					mm = &Member{Name: string(s.ID), GossipState: GossipUnknown, LastContact: -1}
					byName[mm.Name] = mm
				}
				mm.RaftAddr = string(s.Address)
				mm.Suffrage = strings.ToLower(s.Suffrage.String())
			}
		}
		_, leader := r.LeaderWithID()
		lc := time.Duration(-1)
		if r.State() == raft.Leader {
			lc = 0
		} else if t := r.LastContact(); !t.IsZero() {
			lc = time.Since(t)
		}
		if mm := byName[string(leader)]; mm != nil && leader != "" {
			mm.IsLeader = true
			mm.LastContact = lc
		}
		if mm := byName[a.cfg.NodeName]; mm != nil {
			mm.LastContact = lc
		}
		a.mu.RLock()
		contact := a.contact
		a.mu.RUnlock()
		if r.State() == raft.Leader && contact != nil {
			now := time.Now()
			for name, mm := range byName {
				if name == a.cfg.NodeName || mm.Suffrage == "none" {
					continue
				}
				if t := contact.lastContact(raft.ServerID(name)); !t.IsZero() {
					mm.LastContact = now.Sub(t)
				}
			}
		}
	}
	out := make([]Member, 0, len(byName))
	for _, m := range byName {
		out = append(out, *m)
	}
	slices.SortFunc(out, func(x, y Member) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// LeaderMember returns the leader's Member row (its HTTPAddr is where a
// follower forwards writes), false when no leader is known.
func (a *Agent) LeaderMember() (Member, bool) {
	for _, m := range a.Members() {
		if m.IsLeader {
			return m, true
		}
	}
	return Member{}, false
}

// Join contacts the given gossip addresses ("host" or "host:port") and
// returns how many were reached (as `redhaven join`).
func (a *Agent) Join(addrs []string) (int, error) {
	ml := a.memberlist()
	if ml == nil {
		return 0, ErrNotRunning
	}
	norm := make([]string, 0, len(addrs))
	for _, s := range addrs {
		n, err := joinAddr(s)
		if err != nil {
			return 0, fmt.Errorf("join address: %w", err)
		}
		norm = append(norm, n)
	}
	n, err := ml.Join(norm)
	if err != nil {
		return n, fmt.Errorf("join %v: %w", norm, err)
	}
	return n, nil
}

// Leave leaves the cluster gracefully: it announces the leave in the
// gossip metadata, hands leadership over if this node leads, waits (bounded
// by ctx) until the leader has removed it from the Raft configuration, and
// leaves gossip. Run keeps running until its ctx ends; the caller cancels it.
func (a *Agent) Leave(ctx context.Context) error {
	r, ml := a.raftNode(), a.memberlist()
	if r == nil || ml == nil {
		return ErrNotRunning
	}
	a.leaving.Store(true)
	a.log.Info("leaving cluster")
	a.setMeta(func(m *nodeMeta) { m.Leaving = true })

	self := raft.ServerID(a.cfg.NodeName)
	others := func() (inConfig bool, n int) {
		f := r.GetConfiguration()
		if f.Error() != nil {
			return false, 0 // shut down: removed
		}
		for _, s := range f.Configuration().Servers {
			if s.ID == self {
				inConfig = true
			} else if s.Suffrage == raft.Voter {
				n++
			}
		}
		return inConfig, n
	}
	var errs []error
	if in, n := others(); in && n > 0 {
		if r.State() == raft.Leader {
			if err := r.LeadershipTransfer().Error(); err != nil {
				a.log.Warn("leadership transfer before leave failed, removing self", "error", err)
				if err := r.RemoveServer(self, 0, defaultApplyTimeout).Error(); err != nil {
					errs = append(errs, fmt.Errorf("remove self from raft: %w", err))
				}
			}
		}
		t := time.NewTicker(50 * time.Millisecond)
		// Without a leader nobody can remove this server: give up after
		// leaderlessLeave instead of the whole ctx (a cluster stopped all
		// at once must not make every agent wait out leaveTimeout).
		leaderSeen := time.Now()
	wait:
		for {
			if in, _ := others(); !in {
				break
			}
			if addr, _ := r.LeaderWithID(); addr != "" {
				leaderSeen = time.Now()
			} else if time.Since(leaderSeen) > leaderlessLeave {
				// Raft's leader stops replicating to a server the moment
				// it removes it, with one best-effort send of the entry
				// that removes it: a follower whose send was lost (a
				// loaded host) never learns its removal and sees no leader
				// from then on. Ask the others.
				if by, ok := a.confirmRemoval(ctx); ok {
					a.log.Info("removal from the raft configuration confirmed by another member", "member", by)
					break wait
				}
				errs = append(errs, fmt.Errorf("wait for removal from raft configuration: no leader for %v", leaderlessLeave))
				break wait
			}
			select {
			case <-ctx.Done():
				errs = append(errs, fmt.Errorf("wait for removal from raft configuration: %w", ctx.Err()))
				break wait
			case <-t.C:
			}
		}
		t.Stop()
	}
	if err := ml.Leave(leaveGossipTimeout); err != nil {
		errs = append(errs, fmt.Errorf("leave gossip: %w", err))
	}
	a.notify()
	return errors.Join(errs...)
}

// confirmRemoval asks the other members, over the admin channel, to
// remove this node from the Raft configuration (as OpRemoveMember; a
// leaving node may be removed): true, with the member that answered, when
// the leader did so or answered that this node is no longer in its
// configuration. False when none could (no leader among them, no admin
// channel without cluster TLS, nobody reachable).
func (a *Agent) confirmRemoval(ctx context.Context) (string, bool) {
	type peer struct{ name, addr string }
	var peers []peer
	a.mu.RLock()
	for name, m := range a.members {
		if name != a.cfg.NodeName && m.hasMeta && m.meta.Raft != "" {
			peers = append(peers, peer{name, m.meta.Raft})
		}
	}
	a.mu.RUnlock()
	slices.SortFunc(peers, func(x, y peer) int { return strings.Compare(x.name, y.name) })
	op := LeaderOp{Kind: OpRemoveMember, Node: a.cfg.NodeName}
	// All at once, bounded as a whole: a cluster stopped all at once must
	// not hold each agent's exit for a timeout per peer.
	actx, cancel := context.WithTimeout(ctx, confirmRemovalTimeout)
	defer cancel()
	confirmed := make(chan string, len(peers))
	for _, p := range peers {
		go func() {
			ans, err := a.ask(actx, p.name, p.addr, adminRequest{Leader: &op})
			switch {
			case err != nil:
				a.log.Debug("leave: removal not confirmed", "member", p.name, "error", err)
			case ans.Error == "" || errors.Is(decodeWireError(ans.Kind, ans.Error), ErrUnknownMember):
				confirmed <- ans.Node
				return
			default:
				a.log.Debug("leave: removal not confirmed", "member", p.name, "answer", ans.Error)
			}
			confirmed <- ""
		}()
	}
	for range peers {
		if by := <-confirmed; by != "" {
			return by, true
		}
	}
	return "", false
}

// confirmRemovalTimeout bounds confirmRemoval's questions.
const confirmRemovalTimeout = 3 * time.Second

// leaderlessLeave bounds how long Leave waits for its removal while no
// leader is known.
const leaderlessLeave = time.Second

// leaveGossipTimeout bounds memberlist's Leave (the broadcast of this
// node's leave).
const leaveGossipTimeout = 2 * time.Second

// Barrier waits (leader only, bounded by ctx) until this node's state
// machine has applied every entry committed before the call. A new
// leader's State() may lag its log for a moment after the election; a
// decision taken from it (e.g. a planned failover's starting route) must
// wait for this first.
func (a *Agent) Barrier(ctx context.Context) error {
	r := a.raftNode()
	if r == nil {
		return ErrNotRunning
	}
	if r.State() != raft.Leader {
		return ErrNotLeader
	}
	timeout := defaultApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	f := r.Barrier(timeout)
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case <-ctx.Done():
		return fmt.Errorf("raft barrier: %w", ctx.Err())
	case err := <-done:
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) ||
			errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		if err != nil {
			return fmt.Errorf("raft barrier: %w", err)
		}
	}
	return nil
}

// TransferLeadership hands leadership to the named node ("" = any voter).
// Leader only (ErrNotLeader otherwise).
func (a *Agent) TransferLeadership(ctx context.Context, toNodeName string) error {
	r := a.raftNode()
	if r == nil {
		return ErrNotRunning
	}
	if r.State() != raft.Leader {
		return ErrNotLeader
	}
	var f raft.Future
	if toNodeName == "" {
		f = r.LeadershipTransfer()
	} else {
		cf := r.GetConfiguration()
		if err := cf.Error(); err != nil {
			return fmt.Errorf("read raft configuration: %w", err)
		}
		var target *raft.Server
		for _, s := range cf.Configuration().Servers {
			if string(s.ID) == toNodeName && s.Suffrage == raft.Voter {
				target = &s
			}
		}
		if target == nil {
			return fmt.Errorf("%w: transfer leadership: %q is not a voter", ErrUnknownMember, toNodeName)
		}
		f = r.LeadershipTransferToServer(target.ID, target.Address)
	}
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case <-ctx.Done():
		return fmt.Errorf("transfer leadership: %w", ctx.Err())
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%w: to %q: %v", ErrTransferFailed, toNodeName, err)
		}
	}
	return nil
}

// Stats is a small view of this node's Raft state.
type Stats struct {
	RaftState    string        `json:"raft_state"` // Follower, Candidate, Leader, Shutdown
	Term         uint64        `json:"term"`
	LastIndex    uint64        `json:"last_index"`
	CommitIndex  uint64        `json:"commit_index"`
	AppliedIndex uint64        `json:"applied_index"`
	Leader       string        `json:"leader"`
	LastContact  time.Duration `json:"last_contact"` // since the leader was last heard (0 on the leader, -1 never)
	InContact    bool          `json:"in_contact"`
	Voters       int           `json:"voters"`
}

// Stats returns this node's Raft state.
func (a *Agent) Stats() Stats {
	r := a.raftNode()
	if r == nil {
		return Stats{RaftState: "NotStarted", LastContact: -1}
	}
	_, leader := r.LeaderWithID()
	st := Stats{
		RaftState:    r.State().String(),
		Term:         r.CurrentTerm(),
		LastIndex:    r.LastIndex(),
		CommitIndex:  r.CommitIndex(),
		AppliedIndex: r.AppliedIndex(),
		Leader:       string(leader),
		LastContact:  -1,
		InContact:    a.InContact(),
	}
	if r.State() == raft.Leader {
		st.LastContact = 0
	} else if t := r.LastContact(); !t.IsZero() {
		st.LastContact = time.Since(t)
	}
	if f := r.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				st.Voters++
			}
		}
	}
	return st
}

// Keyring operations for a key rotation, applied to this node only (run
// each step on every node before the next, as with Consul's keyring):
// InstallKey on all, UseKey on all, RemoveKey of the old key on all.
// Gossip (memberlist's keyring) and Raft TLS (the accepted CAs and the CA
// that signs this node's certificate) change together. They need a node
// started with a cluster key; with the operator's PKI the Raft side is not
// affected. Put the final keys in the config file too, for restarts.

// InstallKey adds a cluster key (base64) that gossip decrypts with and
// whose CA Raft accepts.
func (a *Agent) InstallKey(key string) error {
	k, kr, err := a.keyringOp(key)
	if err != nil {
		return err
	}
	if err := kr.AddKey(k); err != nil {
		return fmt.Errorf("install gossip key: %w", err)
	}
	if err := a.stream.tls.addKey(k); err != nil {
		return fmt.Errorf("install raft key: %w", err)
	}
	a.log.Info("cluster key installed", "keys", len(kr.GetKeys()))
	return nil
}

// UseKey makes an installed key the primary one: gossip is encrypted with
// it and this node's Raft certificate is issued again from its CA.
func (a *Agent) UseKey(key string) error {
	k, kr, err := a.keyringOp(key)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(kr.GetKeys(), func(x []byte) bool { return bytes.Equal(x, k) }) {
		return fmt.Errorf("%w: install it on every node first", ErrKeyNotInstalled)
	}
	if err := kr.UseKey(k); err != nil {
		return fmt.Errorf("use gossip key: %w", err)
	}
	if err := a.stream.tls.useKey(k); err != nil {
		return fmt.Errorf("use raft key: %w", err)
	}
	a.log.Info("cluster primary key changed")
	return nil
}

// RemoveKey stops accepting a key (not the primary one). Open Raft
// connections are closed so that every peer proves itself again with a
// certificate from a key still installed.
func (a *Agent) RemoveKey(key string) error {
	k, kr, err := a.keyringOp(key)
	if err != nil {
		return err
	}
	if bytes.Equal(kr.GetPrimaryKey(), k) {
		return fmt.Errorf("%w: make another key primary first", ErrPrimaryKey)
	}
	if err := kr.RemoveKey(k); err != nil {
		return fmt.Errorf("remove gossip key: %w", err)
	}
	if err := a.stream.tls.removeKey(k); err != nil {
		return fmt.Errorf("remove raft key: %w", err)
	}
	a.stream.closeRaft()
	a.log.Info("cluster key removed", "keys", len(kr.GetKeys()))
	return nil
}

func (a *Agent) keyringOp(key string) ([]byte, *memberlist.Keyring, error) {
	k, err := decodeKey(key)
	if err != nil || k == nil {
		return nil, nil, fmt.Errorf("%w: cluster key: %v", ErrBadRequest, cmp.Or(err, errors.New("empty")))
	}
	ml := a.memberlist()
	if ml == nil {
		return nil, nil, ErrNotRunning
	}
	if a.key == nil || a.stream.tls == nil {
		return nil, nil, fmt.Errorf("%w: this node was started without cluster.encrypt; keys can only be rotated on a keyed cluster", ErrNotKeyed)
	}
	a.mu.RLock()
	kr := a.keyring
	a.mu.RUnlock()
	return k, kr, nil
}

// ErrQuorum: removing the server would leave fewer alive voters than a
// majority of the remaining configuration.
var ErrQuorum = errors.New("cluster: removal would lose the raft quorum")

// RemoveMember removes a server (a failed node, e.g. one that will not
// come back) from the Raft configuration; committed through Raft on the
// leader (ErrNotLeader elsewhere). Refused with ErrQuorum when the alive
// voters left would not be a majority of the new configuration, for this
// node itself (use Leave on it), and for a member that gossip shows alive
// (reconcile would add it again: stop it or make it leave first).
func (a *Agent) RemoveMember(ctx context.Context, name string) error {
	r := a.raftNode()
	if r == nil {
		return ErrNotRunning
	}
	if r.State() != raft.Leader {
		return ErrNotLeader
	}
	if name == a.cfg.NodeName {
		return fmt.Errorf("%w: %q is the leader itself: run leave on it instead", ErrMemberAlive, name)
	}
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("read raft configuration: %w", err)
	}
	var target *raft.Server
	voters, aliveVoters := 0, 0
	a.mu.RLock()
	alive := func(id raft.ServerID) bool {
		if string(id) == a.cfg.NodeName {
			return true
		}
		m := a.members[string(id)]
		return m != nil && m.state == GossipAlive
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == raft.ServerID(name) {
			target = &s
		}
		if s.Suffrage == raft.Voter {
			voters++
			if alive(s.ID) {
				aliveVoters++
			}
		}
	}
	m := a.members[name]
	targetAlive := m != nil && m.state == GossipAlive
	leaving := targetAlive && m.hasMeta && m.meta.Leaving
	a.mu.RUnlock()
	if target == nil {
		return fmt.Errorf("%w: %q is not in the raft configuration", ErrUnknownMember, name)
	}
	if targetAlive && !leaving {
		return fmt.Errorf("%w: %q is alive in gossip and would be added again: stop it or run leave on it first", ErrMemberAlive, name)
	}
	if err := removalKeepsQuorum(voters, aliveVoters, target.Suffrage == raft.Voter, targetAlive); err != nil {
		return fmt.Errorf("remove %q: %w", name, err)
	}
	timeout := defaultApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	if err := r.RemoveServer(target.ID, 0, timeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		return fmt.Errorf("remove %q from raft: %w", name, err)
	}
	a.log.Info("raft server removed", "member", name, "reason", "removed by operator")
	a.recordEvent(ctx, EventMemberLeave, fmt.Sprintf("%s removed by operator", name))
	return nil
}

// removalKeepsQuorum is RemoveMember's quorum rule: after removing the
// target, the alive voters (as this leader sees them: itself and the
// gossip members alive) must still be a majority of the remaining voters.
func removalKeepsQuorum(voters, aliveVoters int, targetVoter, targetAlive bool) error {
	newVoters, aliveAfter := voters, aliveVoters
	if targetVoter {
		newVoters--
		if targetAlive {
			aliveAfter--
		}
	}
	if newVoters < 1 || aliveAfter < newVoters/2+1 {
		return fmt.Errorf("%w: %d alive of %d voters would remain, a majority needs %d", ErrQuorum,
			aliveAfter, newVoters, newVoters/2+1)
	}
	return nil
}
