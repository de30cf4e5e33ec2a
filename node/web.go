package node

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/redhaven/redhaven/cluster"
	"github.com/redhaven/redhaven/proxy/topology"
	"github.com/redhaven/redhaven/webui"
)

// webSource gives the stats page its snapshot (webui.Source).
type webSource Node

// webAdmin carries the page's admin actions into the cluster (webui.Admin).
type webAdmin Node

// Snapshot gathers every part's state as plain values.
func (s *webSource) Snapshot() webui.Snapshot {
	n := (*Node)(s)
	st := n.cluster.State()
	snap := webui.Snapshot{
		Node: n.cfg.NodeName, Version: Version, Time: time.Now(), Started: n.started,
		Leader: n.cluster.IsLeader(),
	}
	snap.Clients.Closed = map[string]uint64{}
	snap.Ready = true
	for _, sv := range n.services {
		snap.Services = append(snap.Services, n.serviceSnapshot(sv, st, &snap))
		snap.Ready = snap.Ready && snap.Services[len(snap.Services)-1].Ready
	}
	// The single-service view, as webui derives it (Snapshot): the first
	// service's; Ready when every service is.
	first := snap.Services[0]
	snap.Route, snap.Frontends, snap.Backends, snap.Sentinels, snap.Failovers = first.Route, first.Frontends, first.Backends, first.Sentinels, first.Failovers
	for _, m := range n.cluster.Members() {
		role := ""
		switch {
		case m.IsLeader:
			role = "leader"
		case m.Suffrage == "voter":
			role = "follower"
		case m.Suffrage == "nonvoter":
			role = "nonvoter"
		}
		lc := m.LastContact
		if lc < 0 {
			lc = 0
		}
		snap.Members = append(snap.Members, webui.Member{Name: m.Name, Addr: m.GossipAddr, GossipState: m.GossipState,
			RaftRole: role, RaftAddr: m.RaftAddr, LastContact: lc, Version: m.Version, HTTPAddr: m.HTTPAddr, IsLeader: m.IsLeader})
	}
	for _, r := range n.cluster.RejectedConnections() {
		snap.Rejected = append(snap.Rejected, webui.RejectedConnections{Transport: r.Transport, Reason: r.Reason, Count: r.Count})
	}
	snap.VIP = n.vipSnapshot(n.sharedVIP(), st, snap.Time)
	for _, v := range n.vips[1:] {
		for i := range snap.Services {
			if snap.Services[i].Name == v.key || (snap.Services[i].Name == "" && len(snap.Services) == 1) {
				vs := n.vipSnapshot(v, st, snap.Time)
				snap.Services[i].VIP = &vs
			}
		}
	}
	for _, e := range st.Events {
		snap.Events = append(snap.Events, webui.Event{Time: e.Time, Kind: eventKind(e.Kind), Service: e.Service, Node: e.Node, Message: e.Message, Duration: e.Duration})
	}
	snap.Process = processInfo()
	return snap
}

// serviceSnapshot is one service's part of the snapshot; the proxy's
// refused commands and client bounds add up in snap.
func (n *Node) serviceSnapshot(s *service, st cluster.State, snap *webui.Snapshot) webui.Service {
	obs := s.watcher.Observation()
	ss := st.Service(s.name)
	sv := webui.Service{Name: s.cfg.Name, Ready: s.routes.Route().Master != "",
		Route: webui.Route{Master: ss.Route.Master, Epoch: ss.Route.Epoch, Reason: ss.Route.Reason, Since: ss.Route.Time}}
	chk := checkRoute(obs, ss.Route)
	sv.Route.Contradicted, sv.Route.EpochAhead = chk.contradicted, chk.epochAhead
	n.fillProxyStats(s, &sv, snap, obs, ss)
	for _, se := range obs.Sentinels {
		sv.Sentinels = append(sv.Sentinels, webui.Sentinel{Addr: se.Addr, Reachable: se.Reachable, Master: se.Master,
			Epoch: se.Epoch, LastEvent: se.LastEvent, LastEventTime: se.LastEventTime, LastError: se.LastError})
	}
	if len(ss.Failovers) > 0 {
		f := ss.Failovers[len(ss.Failovers)-1] // the latest: at most one is pending
		sv.PlannedFailover = &webui.PlannedFailover{ID: f.ID, Status: f.Status, Result: f.Result, Requested: f.Requested, Completed: f.Completed}
	}
	n.mu.Lock()
	sv.Failovers = s.failovers.Clone()
	n.mu.Unlock()
	return sv
}

// vipSnapshot is one VIP for the page: who holds its lease (not the Raft
// leader), whether this node has it on its interface.
func (n *Node) vipSnapshot(v *vipSlot, st cluster.State, now time.Time) webui.VIP {
	vs := v.mgr.Status()
	out := webui.VIP{Service: v.key, Mode: vs.Mode, Address: vs.Address, Interface: vs.Interface, HeldHere: vs.Holding}
	if vs.Mode != "none" && vs.Mode != "" {
		out.Holder = st.Lease(v.key).Holder
		out.LeaseRemaining = leaseRemaining(n.cluster.LeaseStatus(v.key), now).Seconds()
	}
	out.LeaseChanges = n.cluster.LeaseChangeCounts(v.key) // zeros in vip.mode none
	return out
}

// leaseRemaining is how long the lease lasts as this node sees it: on the
// holder until its own lease ends, elsewhere until this node may judge it
// expired; 0 when free or over.
func leaseRemaining(ls cluster.LeaseStatus, now time.Time) time.Duration {
	end := ls.ExpiredAt
	if !ls.HeldUntil.IsZero() {
		end = ls.HeldUntil
	}
	if ls.Lease.Holder == "" || end.IsZero() {
		return 0
	}
	return max(end.Sub(now), 0)
}

// eventKind maps the cluster's event kinds to the page's words.
func eventKind(k string) string {
	switch k {
	case cluster.EventRouteChange:
		return webui.EventSwitch
	case cluster.EventLeaderChange:
		return webui.EventLeader
	case cluster.EventMemberJoin:
		return webui.EventJoin
	case cluster.EventMemberLeave:
		return webui.EventLeave
	case cluster.EventFailover:
		return webui.EventFailover
	case cluster.EventVIPMove:
		return webui.EventVIP
	case cluster.EventAdmin:
		return webui.EventAdmin
	}
	return k
}

// backendState is HAProxy's word for a Redis node's state.
func backendState(nd topology.NodeState, admin cluster.AdminState) string {
	switch {
	case admin == cluster.AdminMaintenance:
		return webui.StateMaint
	case admin == cluster.AdminDrain:
		return webui.StateDrain
	case nd.Up:
		return webui.StateUp
	}
	return webui.StateDown
}

// The admin actions that need the leader run there: here when this node
// leads, else forwarded over the cluster's admin channel (cluster.OnLeader).

func (a *webAdmin) SetBackendState(ctx context.Context, service, addr, state string) (webui.Acted, error) {
	s, err := (*Node)(a).service(service)
	if err != nil {
		return webui.Acted{}, err
	}
	// The cluster records the admin event itself.
	return a.onLeader(ctx, cluster.LeaderOp{Kind: cluster.OpBackendState, Service: s.name, Addr: addr, State: cluster.AdminState(state)})
}

func (a *webAdmin) RequestFailover(ctx context.Context, service string) (webui.Acted, error) {
	n := (*Node)(a)
	s, err := n.service(service)
	if err != nil {
		return webui.Acted{}, err
	}
	return a.onLeader(ctx, cluster.LeaderOp{Kind: cluster.OpFailover, Service: s.name, Reason: "requested on " + n.cfg.NodeName})
}

func (a *webAdmin) TransferLeadership(ctx context.Context, node string) (webui.Acted, error) {
	return a.onLeader(ctx, cluster.LeaderOp{Kind: cluster.OpTransferLeadership, Node: node})
}

// RemoveMember removes a failed server from the Raft configuration.
func (a *webAdmin) RemoveMember(ctx context.Context, name string) (webui.Acted, error) {
	return a.onLeader(ctx, cluster.LeaderOp{Kind: cluster.OpRemoveMember, Node: name})
}

// ResetRoute clears the committed route (`redhaven route reset`); with an
// epoch, only while master and epoch are still committed.
func (a *webAdmin) ResetRoute(ctx context.Context, master string, epoch *int64) (webui.Acted, error) {
	n := (*Node)(a)
	s, err := n.resetService(master, epoch)
	if err != nil {
		return webui.Acted{}, err
	}
	op := cluster.LeaderOp{Kind: cluster.OpResetRoute, Service: s.name, Reason: "reset by operator on " + n.cfg.NodeName}
	if epoch != nil {
		op.Expect = &cluster.RouteDecision{Master: master, Epoch: *epoch}
	}
	return a.onLeader(ctx, op)
}

// resetService is the service a route reset names: the only one, or,
// with several, the one whose committed route is master at epoch (the
// request carries no service name).
func (n *Node) resetService(master string, epoch *int64) (*service, error) {
	if len(n.services) == 1 {
		return n.services[0], nil
	}
	if epoch != nil {
		st := n.cluster.State()
		for _, s := range n.services {
			if r := st.Service(s.name).Route; r.Master == master && r.Epoch == *epoch {
				return s, nil
			}
		}
	}
	return nil, webui.Classify(webui.ErrBadRequest, fmt.Errorf("route reset with several services (%s): give the master and epoch of the route to reset", quoted(n.ServiceNames())))
}

func (a *webAdmin) onLeader(ctx context.Context, op cluster.LeaderOp) (webui.Acted, error) {
	n := (*Node)(a)
	acted, err := n.cluster.OnLeader(ctx, op)
	return webui.Acted{Node: acted.Node, Forwarded: acted.Forwarded, ID: acted.ID}, adminError(n, err)
}

// RotateKey runs a cluster key operation on every member
// (`redhaven keys`).
func (a *webAdmin) RotateKey(ctx context.Context, op, key string) ([]webui.KeyResult, error) {
	n := (*Node)(a)
	res, err := n.cluster.RotateKey(ctx, op, key)
	if err != nil {
		return nil, adminError(n, err)
	}
	out := make([]webui.KeyResult, 0, len(res))
	for _, r := range res {
		out = append(out, webui.KeyResult{Node: r.Node, Primary: r.Keys.Primary, Keys: r.Keys.Keys, Error: r.Error})
	}
	return out, nil
}

// adminError gives a cluster error its kind, so the API answers it with
// its own status: 400 bad input, 404 unknown, 409 not possible now, 503
// no leader, 504 the leader did not answer in time.
func adminError(n *Node, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, cluster.ErrBadRequest):
		return webui.Classify(webui.ErrBadRequest, err)
	case errors.Is(err, cluster.ErrUnknownMember), errors.Is(err, cluster.ErrUnknownFailover):
		return webui.Classify(webui.ErrNotFound, err)
	case errors.Is(err, cluster.ErrLeaderTimeout), errors.Is(err, context.DeadlineExceeded):
		return webui.Classify(webui.ErrTimeout, err)
	case errors.Is(err, cluster.ErrNoLeader), errors.Is(err, cluster.ErrNotLeader), errors.Is(err, cluster.ErrNotRunning):
		return webui.Classify(webui.ErrNoLeader, err)
	case errors.Is(err, cluster.ErrNoAdminChannel):
		return webui.Classify(webui.ErrConflict, leaderHint(n, err))
	case errors.Is(err, cluster.ErrMemberAlive), errors.Is(err, cluster.ErrQuorum),
		errors.Is(err, cluster.ErrFailoverPending), errors.Is(err, cluster.ErrFailoverDone),
		errors.Is(err, cluster.ErrStaleEpoch), errors.Is(err, cluster.ErrRouteChanged),
		errors.Is(err, cluster.ErrNotKeyed), errors.Is(err, cluster.ErrKeyNotInstalled),
		errors.Is(err, cluster.ErrPrimaryKey), errors.Is(err, cluster.ErrTransferFailed):
		return webui.Classify(webui.ErrConflict, err)
	}
	return err
}

// leaderHint adds where the leader is to an error of a node that cannot
// forward (cluster.insecure: no admin channel).
func leaderHint(n *Node, err error) error {
	name, _ := n.cluster.Leader()
	for _, m := range n.cluster.Members() {
		if m.Name == name && m.HTTPAddr != "" {
			return fmt.Errorf("%w: run it on the leader %s, http://%s/", err, name, m.HTTPAddr)
		}
	}
	return fmt.Errorf("%w (leader: %s)", err, orNone(name))
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// sortedBackends orders backends: the committed master first, then by address.
func sortedBackends(b []webui.Backend) {
	sort.SliceStable(b, func(i, j int) bool {
		if b[i].IsMaster != b[j].IsMaster {
			return b[i].IsMaster
		}
		return strings.Compare(b[i].Addr, b[j].Addr) < 0
	})
}

// Join and Leave act on this node only (never forwarded).
func (a *webAdmin) Join(ctx context.Context, addrs []string) (int, error) {
	return (*Node)(a).cluster.Join(addrs)
}

func (a *webAdmin) Leave(ctx context.Context) error {
	n := (*Node)(a)
	n.releaseBeforeLeave(ctx) // the next holder takes the VIP at once
	return adminError(n, n.cluster.Leave(ctx))
}

// fillProxyStats adds a service's proxy frontends and Redis backends to
// sv, with commands per second computed from the previous snapshot, and
// its refused commands and client bounds to snap.
func (n *Node) fillProxyStats(s *service, sv *webui.Service, snap *webui.Snapshot, obs topology.Observation, ss cluster.ServiceState) {
	ps := s.proxy.Stats()
	now := time.Now()
	n.mu.Lock()
	for _, l := range ps.Listeners {
		f := webui.Frontend{Name: l.Name, Addr: l.Addr, CurrentSessions: l.CurrentSessions, MaxSessions: l.MaxSessions,
			Limit: l.Limit, TotalSessions: uint64(l.TotalSessions), CommandsTotal: uint64(l.Commands),
			BytesIn: uint64(l.BytesIn), BytesOut: uint64(l.BytesOut), Errors: uint64(l.Errors), Refused: uint64(l.Refused),
			IdleSessions: l.Parked, MovedToOwn: uint64(l.MovedToOwn), AuthFailures: uint64(l.AuthFailures),
			TLSFailed: uint64(l.TLSFailed)}
		prev, ok := s.rates[l.Name]
		if ok && now.Sub(prev.at) > 0 {
			f.CommandsPerSec = float64(l.Commands-prev.commands) / now.Sub(prev.at).Seconds()
			f.SessionsPerSec = float64(l.TotalSessions-prev.sessions) / now.Sub(prev.at).Seconds()
		}
		f.MaxSessionRate = max(prev.maxSessionRate, f.SessionsPerSec)
		if !ok || now.Sub(prev.at) >= time.Second {
			prev.at, prev.commands, prev.sessions = now, l.Commands, l.TotalSessions
		}
		prev.maxSessionRate = f.MaxSessionRate
		s.rates[l.Name] = prev
		sv.Frontends = append(sv.Frontends, f)
	}
	n.mu.Unlock()
	for _, c := range ps.RefusedCommands {
		if snap.RefusedCommands == nil {
			snap.RefusedCommands = map[string]uint64{}
		}
		snap.RefusedCommands[c.Command] += uint64(c.Count)
	}
	snap.Clients.BufferBytes += ps.BufferBytes
	snap.Clients.BufferLimit = ps.BufferLimit // proxy.client_output_limit: shared by the services
	for reason, c := range ps.ClientsClosed {
		snap.Clients.Closed[reason] += uint64(c)
	}
	traffic := map[string]struct{ sessions, commands, errors int64 }{}
	for _, b := range ps.Backends {
		traffic[b.Addr] = struct{ sessions, commands, errors int64 }{b.Sessions, b.Commands, b.Errors}
	}
	for _, nd := range obs.Nodes {
		admin := ss.Admin[nd.Addr]
		tr := traffic[nd.Addr]
		b := webui.Backend{Addr: nd.Addr, Role: string(nd.Role), State: backendState(nd, admin), IsMaster: nd.Addr == ss.Route.Master,
			LastCheck: nd.LastCheck, CheckDuration: nd.CheckDuration, LastError: nd.LastError, LastChange: nd.LastChange, Downtime: nd.Downtime,
			Offset: nd.Offset, LagBytes: nd.LagBytes, LinkUp: nd.LinkUp,
			Sessions: tr.sessions, Commands: uint64(tr.commands), Errors: uint64(tr.errors), Admin: string(admin)}
		if b.Admin == "" {
			b.Admin = webui.AdminReady
		}
		sv.Backends = append(sv.Backends, b)
	}
	sortedBackends(sv.Backends)
}

// rateSample is a counter value at a time, for per-second rates.
type rateSample struct {
	at             time.Time
	commands       int64
	sessions       int64   // total sessions
	maxSessionRate float64 // highest sessions/s seen
}

// HashPassword returns the bcrypt hash of pw for http.auth[].password_hash
// (`redhaven passwd`).
func HashPassword(pw string) (string, error) { return webui.HashPassword(pw) }
