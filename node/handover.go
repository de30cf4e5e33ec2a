package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/redhaven/redhaven/proxy"
)

// A hand-over restart replaces the agent process without closing its
// client connections (cmd/redhaven starts the new process; proxy/handover.go
// moves the sockets). The old process stops every service's proxy at a
// command boundary (HandOver), then stops the rest without leaving the
// cluster; the new one takes the sockets (each service's to the service
// of the same name), the Raft state and the ports.
//
// Between the two, the new process has no Raft contact yet (it must
// restart Raft and hear from the leader, or win an election). So that
// clients see a pause of milliseconds and not of an election, it routes
// to the route the old process followed, for as long as the old process
// itself would have (cluster.contact_bound after its last check), and
// only while its own watcher does not contradict it; from the first Raft
// contact on, the committed route rules as always.

// Inherited is what the previous process hands over: each service's
// sockets and route, and the VIP leases.
type Inherited struct {
	Services []InheritedService
	// VIPUntil: the old process held the shared VIP's lease and left the
	// address on the interface; its lease runs until then (wall clock:
	// same host). Zero: no VIP to adopt.
	VIPUntil time.Time
}

// InheritedService is one service's part of a hand-over. The new process
// gives it to its service of the same name (the proxy then keeps each
// listening socket whose address is still the configured one); when both
// processes run one service, the two match whatever their names, as
// before there were several services. A service of the old process that
// the new config no longer has gets its listeners and client connections
// closed; a service new in the config starts with none.
type InheritedService struct {
	// Name is the service's name in the previous process ("" when that
	// process was a release before several services: it ran one).
	Name  string
	Proxy *proxy.Handoff
	// Route is the route the old process followed when it stopped, valid
	// until RouteUntil.
	Route      proxy.Route
	RouteUntil time.Time
	// VIPUntil is the end of the lease of the service's own VIP, as
	// Inherited.VIPUntil is the shared VIP's; the new process adopts it
	// for its service of the same name with its own VIP.
	VIPUntil time.Time
}

type seedRoute struct {
	route proxy.Route
	until time.Time
}

func (is *InheritedService) proxyHandoff() *proxy.Handoff {
	if is == nil {
		return nil
	}
	return is.Proxy
}

func (is *InheritedService) seed() *seedRoute {
	if is == nil || is.Route.Master == "" || !time.Now().Before(is.RouteUntil) {
		return nil
	}
	return &seedRoute{route: is.Route, until: is.RouteUntil}
}

// Close closes every handed-over socket of in (after sending it, or when
// it is dropped).
func (in *Inherited) Close() {
	if in == nil {
		return
	}
	for _, is := range in.Services {
		is.Proxy.Close()
	}
}

// Counts is the number of listening sockets and client connections in in.
func (in *Inherited) Counts() (listeners, sessions int) {
	if in == nil {
		return 0, 0
	}
	for _, is := range in.Services {
		if is.Proxy != nil {
			listeners += len(is.Proxy.Listeners)
			sessions += len(is.Proxy.Sessions)
		}
	}
	return listeners, sessions
}

// match gives each of names (the new process's services, in config
// order) its part of in, nil for a service new in the config, and
// returns the parts no service takes (services removed from the config).
func (in *Inherited) match(names []string) (mine []*InheritedService, removed []InheritedService) {
	mine = make([]*InheritedService, len(names))
	if in == nil {
		return mine, nil
	}
	if len(in.Services) == 1 && len(names) == 1 {
		mine[0] = &in.Services[0]
		return mine, nil
	}
	taken := make([]bool, len(in.Services))
	for i, name := range names {
		for j := range in.Services {
			if !taken[j] && in.Services[j].Name == name {
				mine[i], taken[j] = &in.Services[j], true
				break
			}
		}
	}
	for j, t := range taken {
		if !t {
			removed = append(removed, in.Services[j])
		}
	}
	return mine, removed
}

// part is in's part of the service called name, nil when none.
func (in *Inherited) part(name string) *InheritedService {
	for i := range in.Services {
		if in.Services[i].Name == name {
			return &in.Services[i]
		}
	}
	return nil
}

// seeded is the route to follow given the one computed from Raft (r):
// the handed-over route while it is valid and nothing better is known.
func (n *Node) seeded(s *service, r proxy.Route, inContact, contradicted bool) proxy.Route {
	n.mu.Lock()
	defer n.mu.Unlock()
	sd := s.seed
	if sd == nil {
		return r
	}
	if inContact || contradicted || !time.Now().Before(sd.until) {
		s.seed = nil
		s.logger.Info("hand-over: route from the previous process no longer used",
			"in_contact", inContact, "contradicted", contradicted)
		return r
	}
	if r.Master != "" {
		return r
	}
	return sd.route
}

// HandOver stops every service's proxy with every client connection at a
// command boundary (or closed at deadline), all at once, and returns what
// the next process needs; it also makes the cluster agent stop without
// leaving. The caller then ends Run (cancels its context) to free the
// ports and the Raft store, and sends the result with SendInherited.
//
// A service whose proxy cannot hand over (e.g. no descriptor left for a
// listener's copy) is left out, and its clients are closed when Run ends;
// the error is returned only when no service could hand over, and then
// nothing was handed over and this process may go on serving.
func (n *Node) HandOver(deadline time.Time) (*Inherited, error) {
	checked := time.Now()
	until := checked.Add(n.cfg.Cluster.ContactBound)
	if n.soleVoter() {
		// No other node can commit another route meanwhile: the seed
		// may cover the election the new process must win on its own.
		until = checked.Add(soleVoterSeed)
	}
	parts := make([]InheritedService, len(n.services))
	errs := make([]error, len(n.services))
	var wg sync.WaitGroup
	for i, s := range n.services {
		parts[i] = InheritedService{Name: s.name}
		if r := s.routes.Route(); r.Master != "" {
			parts[i].Route, parts[i].RouteUntil = r, until
		}
		wg.Add(1)
		go func() { // at once: the clients of every service pause together, not one after the other
			defer wg.Done()
			parts[i].Proxy, errs[i] = s.proxy.HandOver(deadline)
		}()
	}
	wg.Wait()
	in := &Inherited{}
	for i, s := range n.services {
		if errs[i] != nil {
			errs[i] = fmt.Errorf("service %q: %w", s.name, errs[i])
			continue
		}
		in.Services = append(in.Services, parts[i])
	}
	if len(in.Services) == 0 {
		return nil, errors.Join(errs...)
	}
	if err := errors.Join(errs...); err != nil {
		n.logger.Warn("hand-over: some services cannot hand over; their clients are closed", "err", err)
	}
	n.cluster.StayOnStop()
	n.keepVIPFor(in) // vip_lease.go: the VIP stays on this host for the next process
	return in, nil
}

// inheritedMsg precedes the services' proxy hand-offs (one each, in the
// order of Services). Route and RouteUntil are the only service's, for a
// release before several services, which reads them and one hand-off;
// VIPUntil is the shared VIP's lease end, which such a release reads too.
type inheritedMsg struct {
	Route      proxy.Route           `json:"route"`
	RouteUntil time.Time             `json:"route_until"`
	VIPUntil   time.Time             `json:"vip_until,omitzero"`
	Services   []inheritedServiceMsg `json:"services,omitempty"`
}

type inheritedServiceMsg struct {
	Name       string      `json:"name"`
	Route      proxy.Route `json:"route"`
	RouteUntil time.Time   `json:"route_until"`
	VIPUntil   time.Time   `json:"vip_until,omitzero"` // the service's own VIP's lease end
}

// SendInherited writes in to c (a SOCK_SEQPACKET Unix socket). It does
// not close in's sockets.
func SendInherited(c *net.UnixConn, in *Inherited) error {
	msg := inheritedMsg{VIPUntil: in.VIPUntil}
	if len(in.Services) == 1 {
		msg.Route, msg.RouteUntil = in.Services[0].Route, in.Services[0].RouteUntil
	}
	for _, is := range in.Services {
		msg.Services = append(msg.Services, inheritedServiceMsg{Name: is.Name, Route: is.Route, RouteUntil: is.RouteUntil, VIPUntil: is.VIPUntil})
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if _, err := c.Write(b); err != nil {
		return fmt.Errorf("hand-over: send: %w", err)
	}
	for _, is := range in.Services {
		h := is.Proxy
		if h == nil {
			h = &proxy.Handoff{}
		}
		if err := proxy.SendHandoff(c, h); err != nil {
			return fmt.Errorf("service %q: %w", is.Name, err)
		}
	}
	return nil
}

// ReceiveInherited reads what SendInherited wrote (or a release before
// several services: one nameless service). On an error it closes every
// descriptor it received.
func ReceiveInherited(c *net.UnixConn) (*Inherited, error) {
	buf := make([]byte, 64<<10)
	n, err := c.Read(buf)
	if err != nil {
		return nil, fmt.Errorf("hand-over: receive: %w", err)
	}
	var msg inheritedMsg
	if err := json.Unmarshal(buf[:n], &msg); err != nil {
		return nil, fmt.Errorf("hand-over: receive: %w", err)
	}
	if len(msg.Services) == 0 {
		msg.Services = []inheritedServiceMsg{{Route: msg.Route, RouteUntil: msg.RouteUntil}}
	}
	in := &Inherited{VIPUntil: msg.VIPUntil}
	for _, sm := range msg.Services {
		h, err := proxy.ReceiveHandoff(c)
		if err != nil {
			in.Close()
			if sm.Name != "" {
				err = fmt.Errorf("service %q: %w", sm.Name, err)
			}
			return nil, err
		}
		in.Services = append(in.Services, InheritedService{Name: sm.Name, Proxy: h, Route: sm.Route, RouteUntil: sm.RouteUntil, VIPUntil: sm.VIPUntil})
	}
	return in, nil
}

// soleVoterSeed bounds the handed-over route when this node is the only
// voter (its restarted Raft waits a heartbeat timeout, then elects itself).
const soleVoterSeed = 5 * time.Second

func (n *Node) soleVoter() bool {
	voters, self := 0, false
	for _, m := range n.cluster.Members() {
		if m.Suffrage == "voter" {
			voters++
			self = self || m.Self
		}
	}
	return voters == 1 && self
}

// PrepareHandOver hands Raft leadership to another voter first
// when this node leads: otherwise every node loses contact (and stops
// routing writes) until the others notice the leader is gone and elect
// one, and the restarted process waits for that too. Then it renews
// every VIP lease this node holds (renewVIPsNow), so the next process
// inherits nearly a whole one. Done while this process still serves, so
// clients do not wait for it.
func (n *Node) PrepareHandOver() {
	n.transferLeadershipFirst()
	n.renewVIPsNow(n.cfg.Cluster.VIPLease / 2)
}

func (n *Node) transferLeadershipFirst() {
	if !n.cluster.IsLeader() {
		return
	}
	others := 0
	for _, m := range n.cluster.Members() {
		if m.Suffrage == "voter" && m.GossipState == "alive" && !m.Self {
			others++
		}
	}
	if others == 0 {
		return
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := n.cluster.TransferLeadership(ctx, ""); err != nil {
		n.logger.Warn("hand-over: leadership transfer failed; the others will elect a leader", "err", err)
		return
	}
	// the new leader's heartbeats reach this node before its proxy stops
	for !n.cluster.InContact() && time.Since(start) < 2*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	n.logger.Info("hand-over: leadership transferred first", "took", time.Since(start).Round(time.Millisecond),
		"in_contact", n.cluster.InContact())
}
