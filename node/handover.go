package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"

	"github.com/redhaven/redhaven/proxy"
)

// A hand-over restart replaces the agent process without closing its
// client connections (cmd/redhaven starts the new process; proxy/handover.go
// moves the sockets). The old process stops its proxy at a command
// boundary (HandOver), then stops the rest without leaving the cluster;
// the new one takes the sockets, the Raft state and the ports.
//
// Between the two, the new process has no Raft contact yet (it must
// restart Raft and hear from the leader, or win an election). So that
// clients see a pause of milliseconds and not of an election, it routes
// to the route the old process followed, for as long as the old process
// itself would have (cluster.contact_bound after its last check), and
// only while its own watcher does not contradict it; from the first Raft
// contact on, the committed route rules as always.

// Inherited is what the previous process hands over.
type Inherited struct {
	Proxy *proxy.Handoff
	// Route is the route the old process followed when it stopped, valid
	// until RouteUntil.
	Route      proxy.Route
	RouteUntil time.Time
	// VIPUntil: the old process held the VIP lease and left the address
	// on the interface; its lease runs until then (wall clock: same host).
	// Zero: no VIP to adopt.
	VIPUntil time.Time
}

type seedRoute struct {
	route proxy.Route
	until time.Time
}

func (in *Inherited) proxyHandoff() *proxy.Handoff {
	if in == nil {
		return nil
	}
	return in.Proxy
}

func (in *Inherited) seed() *seedRoute {
	if in == nil || in.Route.Master == "" || !time.Now().Before(in.RouteUntil) {
		return nil
	}
	return &seedRoute{route: in.Route, until: in.RouteUntil}
}

// seeded is the route to follow given the one computed from Raft (r):
// the handed-over route while it is valid and nothing better is known.
func (n *Node) seeded(r proxy.Route, inContact, contradicted bool) proxy.Route {
	n.mu.Lock()
	defer n.mu.Unlock()
	sd := n.seed
	if sd == nil {
		return r
	}
	if inContact || contradicted || !time.Now().Before(sd.until) {
		n.seed = nil
		n.logger.Info("hand-over: route from the previous process no longer used",
			"in_contact", inContact, "contradicted", contradicted)
		return r
	}
	if r.Master != "" {
		return r
	}
	return sd.route
}

// HandOver stops the proxy with every client connection at a command
// boundary (or closed at deadline) and returns what the next process
// needs; it also makes the cluster agent stop without leaving. The caller
// then ends Run (cancels its context) to free the ports and the Raft
// store, and sends the result with SendInherited.
func (n *Node) HandOver(deadline time.Time) (*Inherited, error) {
	r := n.routes.Route()
	checked := time.Now()
	h, err := n.proxy.HandOver(deadline)
	if err != nil {
		return nil, err
	}
	n.cluster.StayOnStop()
	in := &Inherited{Proxy: h}
	n.keepVIPFor(in) // vip_lease.go: the VIP stays on this host for the next process
	if r.Master != "" {
		in.Route, in.RouteUntil = r, checked.Add(n.cfg.Cluster.ContactBound)
		if n.soleVoter() {
			// No other node can commit another route meanwhile: the seed
			// may cover the election the new process must win on its own.
			in.RouteUntil = checked.Add(soleVoterSeed)
		}
	}
	return in, nil
}

type inheritedMsg struct {
	Route      proxy.Route `json:"route"`
	RouteUntil time.Time   `json:"route_until"`
	VIPUntil   time.Time   `json:"vip_until,omitzero"`
}

// SendInherited writes in to c (a SOCK_SEQPACKET Unix socket).
func SendInherited(c *net.UnixConn, in *Inherited) error {
	b, err := json.Marshal(inheritedMsg{Route: in.Route, RouteUntil: in.RouteUntil, VIPUntil: in.VIPUntil})
	if err != nil {
		return err
	}
	if _, err := c.Write(b); err != nil {
		return fmt.Errorf("hand-over: send: %w", err)
	}
	return proxy.SendHandoff(c, in.Proxy)
}

// ReceiveInherited reads what SendInherited wrote.
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
	h, err := proxy.ReceiveHandoff(c)
	if err != nil {
		return nil, err
	}
	return &Inherited{Proxy: h, Route: msg.Route, RouteUntil: msg.RouteUntil, VIPUntil: msg.VIPUntil}, nil
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
// one, and the restarted process waits for that too. Done while this
// process still serves, so clients do not wait for it.
func (n *Node) PrepareHandOver() {
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
