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
	obs := n.watcher.Observation()
	st := n.cluster.State()
	route := n.routes.Route()
	snap := webui.Snapshot{
		Node: n.cfg.NodeName, Version: Version, Time: time.Now(), Started: n.started,
		Ready:  route.Master != "",
		Leader: n.cluster.IsLeader(),
		Route:  webui.Route{Master: st.Route.Master, Epoch: st.Route.Epoch, Reason: st.Route.Reason, Since: st.Route.Time},
	}
	chk := checkRoute(obs, st.Route)
	snap.Route.Contradicted, snap.Route.EpochAhead = chk.contradicted, chk.epochAhead
	n.fillProxyStats(&snap, obs, st)
	for _, se := range obs.Sentinels {
		snap.Sentinels = append(snap.Sentinels, webui.Sentinel{Addr: se.Addr, Reachable: se.Reachable, Master: se.Master,
			Epoch: se.Epoch, LastEvent: se.LastEvent, LastEventTime: se.LastEventTime, LastError: se.LastError})
	}
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
	vs := n.vip.Status()
	snap.VIP = webui.VIP{Mode: vs.Mode, Address: vs.Address, Interface: vs.Interface, HeldHere: vs.Holding}
	if vs.Mode != "none" && vs.Mode != "" {
		snap.VIP.Holder = st.VIP.Holder // the lease holder, not the Raft leader
	}
	for _, e := range st.Events {
		snap.Events = append(snap.Events, webui.Event{Time: e.Time, Kind: eventKind(e.Kind), Node: e.Node, Message: e.Message, Duration: e.Duration})
	}
	n.mu.Lock()
	snap.Failovers = n.failovers.Clone()
	n.mu.Unlock()
	snap.Process = processInfo()
	return snap
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

func (a *webAdmin) SetBackendState(ctx context.Context, addr, state string) error {
	n := (*Node)(a)
	// The cluster records the admin event itself.
	return leaderHint(n, n.cluster.SetBackendAdmin(ctx, addr, cluster.AdminState(state)))
}

func (a *webAdmin) RequestFailover(ctx context.Context) error {
	n := (*Node)(a)
	if _, err := n.cluster.RequestFailover(ctx, "requested on "+n.cfg.NodeName); err != nil {
		return leaderHint(n, err)
	}
	return nil
}

func (a *webAdmin) TransferLeadership(ctx context.Context, node string) error {
	n := (*Node)(a)
	return leaderHint(n, n.cluster.TransferLeadership(ctx, node))
}

// leaderHint adds where the leader is to a not-leader error.
func leaderHint(n *Node, err error) error {
	if err == nil || !errors.Is(err, cluster.ErrNotLeader) {
		return err
	}
	name, _ := n.cluster.Leader()
	for _, m := range n.cluster.Members() {
		if m.Name == name && m.HTTPAddr != "" {
			return fmt.Errorf("%w: the leader is %s, its page is http://%s/", err, name, m.HTTPAddr)
		}
	}
	return fmt.Errorf("%w (leader: %s)", err, name)
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

func (a *webAdmin) Join(ctx context.Context, addrs []string) (int, error) {
	return (*Node)(a).cluster.Join(addrs)
}

func (a *webAdmin) Leave(ctx context.Context) error {
	n := (*Node)(a)
	n.releaseBeforeLeave(ctx) // the next holder takes the VIP at once
	return n.cluster.Leave(ctx)
}

// RemoveMember removes a failed server from the Raft configuration (on the
// leader; elsewhere the error names the leader).
func (a *webAdmin) RemoveMember(ctx context.Context, name string) error {
	n := (*Node)(a)
	return leaderHint(n, n.cluster.RemoveMember(ctx, name))
}

// fillProxyStats adds the proxy's frontends and the Redis backends, with
// commands per second computed from the previous snapshot.
func (n *Node) fillProxyStats(snap *webui.Snapshot, obs topology.Observation, st cluster.State) {
	ps := n.proxy.Stats()
	now := time.Now()
	n.mu.Lock()
	for _, l := range ps.Listeners {
		f := webui.Frontend{Name: l.Name, Addr: l.Addr, CurrentSessions: l.CurrentSessions, MaxSessions: l.MaxSessions,
			Limit: l.Limit, TotalSessions: uint64(l.TotalSessions), CommandsTotal: uint64(l.Commands),
			BytesIn: uint64(l.BytesIn), BytesOut: uint64(l.BytesOut), Errors: uint64(l.Errors), Refused: uint64(l.Refused),
			IdleSessions: l.Parked, MovedToOwn: uint64(l.MovedToOwn), AuthFailures: uint64(l.AuthFailures)}
		prev, ok := n.rates[l.Name]
		if ok && now.Sub(prev.at) > 0 {
			f.CommandsPerSec = float64(l.Commands-prev.commands) / now.Sub(prev.at).Seconds()
			f.SessionsPerSec = float64(l.TotalSessions-prev.sessions) / now.Sub(prev.at).Seconds()
		}
		f.MaxSessionRate = max(prev.maxSessionRate, f.SessionsPerSec)
		if !ok || now.Sub(prev.at) >= time.Second {
			prev.at, prev.commands, prev.sessions = now, l.Commands, l.TotalSessions
		}
		prev.maxSessionRate = f.MaxSessionRate
		n.rates[l.Name] = prev
		snap.Frontends = append(snap.Frontends, f)
	}
	n.mu.Unlock()
	snap.Clients = webui.ClientLimits{BufferBytes: ps.BufferBytes, BufferLimit: ps.BufferLimit, Closed: map[string]uint64{}}
	for reason, c := range ps.ClientsClosed {
		snap.Clients.Closed[reason] = uint64(c)
	}
	traffic := map[string]struct{ sessions, commands, errors int64 }{}
	for _, b := range ps.Backends {
		traffic[b.Addr] = struct{ sessions, commands, errors int64 }{b.Sessions, b.Commands, b.Errors}
	}
	for _, nd := range obs.Nodes {
		admin := st.Admin[nd.Addr]
		tr := traffic[nd.Addr]
		b := webui.Backend{Addr: nd.Addr, Role: string(nd.Role), State: backendState(nd, admin), IsMaster: nd.Addr == st.Route.Master,
			LastCheck: nd.LastCheck, CheckDuration: nd.CheckDuration, LastError: nd.LastError, LastChange: nd.LastChange, Downtime: nd.Downtime,
			Offset: nd.Offset, LagBytes: nd.LagBytes, LinkUp: nd.LinkUp,
			Sessions: tr.sessions, Commands: uint64(tr.commands), Errors: uint64(tr.errors), Admin: string(admin)}
		if b.Admin == "" {
			b.Admin = webui.AdminReady
		}
		snap.Backends = append(snap.Backends, b)
	}
	sortedBackends(snap.Backends)
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
