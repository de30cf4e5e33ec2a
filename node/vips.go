package node

import (
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/redhaven/redhaven/cluster"
	"github.com/redhaven/redhaven/vip"
)

// The VIPs: one shared VIP (the vip section) and, for each service with
// its own `vip:`, that service's VIP. Each is a vipSlot: its own address
// manager, its own lease in the cluster (keyed cluster.SharedVIP or the
// service's name) and its own lease loop (vip_lease.go). The rule, per
// VIP: a node may hold or claim it only while it may serve every service
// the VIP carries (mayHoldVIP of each):
//   - a service's own VIP carries that service only;
//   - the shared VIP carries the services without their own VIP (all of
//     them when every service has its own).
//
// So one service that a node cannot route moves that service's own VIP
// (or the shared VIP, if the service shares it) and no other.
type vipSlot struct {
	// key names the VIP's lease: cluster.SharedVIP, or the service's name.
	key      string
	cfg      vip.Config
	mgr      *vip.Manager
	services []*service // the services the holder must be able to serve
	logger   *slog.Logger
	lease    vipLease // the lease policy's state (vip_lease.go)
}

// newVIPSlots builds the shared VIP's slot (first; also in vip.mode
// none, where it holds nothing) and one per service with its own VIP.
func newVIPSlots(cfg Config, services []*service, logger *slog.Logger) ([]*vipSlot, error) {
	var shared, all []*service
	var slots []*vipSlot
	for _, s := range services {
		all = append(all, s)
		if s.cfg.VIP == nil {
			shared = append(shared, s)
		}
	}
	if len(shared) == 0 {
		shared = all
	}
	mgr, err := vip.New(cfg.VIP, logger)
	if err != nil {
		return nil, fmt.Errorf("vip: %w", err)
	}
	slots = append(slots, &vipSlot{key: cluster.SharedVIP, cfg: cfg.VIP, mgr: mgr, services: shared, logger: logger})
	for _, s := range services {
		if s.cfg.VIP == nil {
			continue
		}
		l := logger.With("vip_service", s.name)
		mgr, err := vip.New(*s.cfg.VIP, l)
		if err != nil {
			return nil, fmt.Errorf("vip of service %q: %w", s.name, err)
		}
		slots = append(slots, &vipSlot{key: s.name, cfg: *s.cfg.VIP, mgr: mgr, services: []*service{s}, logger: l})
	}
	for _, v := range slots {
		v.lease.leave = make(chan chan struct{})
		if p, err := vip.ParseAddress(v.cfg.Address); err == nil {
			v.mgr.OnGone(func() []vip.Conn { return closeClientsOn(all, p.Addr()) })
		}
	}
	return slots, nil
}

// closeClientsOn ends the client connections that any service's proxy
// accepted on ip, a VIP this host no longer has (their clients are then
// tickled: vip.Manager.OnGone), and returns them.
func closeClientsOn(services []*service, ip netip.Addr) []vip.Conn {
	var out []vip.Conn
	for _, s := range services {
		for _, c := range s.proxy.CloseClientsOn(ip) {
			out = append(out, vip.Conn{Local: c.Local, Remote: c.Remote})
		}
	}
	return out
}

// mayServe tells whether this node may hold the slot's VIP: it may serve
// every service the VIP carries.
func (v *vipSlot) mayServe() bool {
	for _, s := range v.services {
		if !s.mayServe.Load() {
			return false
		}
	}
	return true
}

// sharedVIP is the shared VIP's slot.
func (n *Node) sharedVIP() *vipSlot { return n.vips[0] }
