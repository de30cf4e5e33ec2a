package node

import (
	"context"
	"time"

	"github.com/redhaven/redhaven/vip"
)

// A clean stop drains the proxies' client connections: each closes right
// after a reply (proxy/drain.go) and its client dials again. The node
// orders that with the VIP:
//   - the address stays until the proxies closed the connections open at
//     the stop (proxy.DrainedFirst, at most drainFirstBound): none of
//     their commands is then on its way to an address that is gone;
//   - a proxy closes its listening sockets only once no VIP is left on
//     this host (the stop gate): a client that dials again meanwhile
//     reaches this host, after it the next holder.

// drainFirstBound bounds how long the VIP waits for the proxies' first
// drain step (the proxies' own bound is 120 ms).
const drainFirstBound = 300 * time.Millisecond

// setUpDrain gives each proxy its stop gate, and IP_TRANSPARENT client
// sockets when a VIP may leave while replies are still going out.
func (n *Node) setUpDrain() {
	transparent := false
	for _, v := range n.vips {
		if v.cfg.EffectiveMode() == vip.ModeNetlink && !n.vipAddressOff {
			transparent = true
		}
	}
	for _, s := range n.services {
		s.proxy.SetTransparent(transparent)
		s.proxy.SetStopGate(n.vipsGone)
	}
}

// vipsGone returns a channel closed once no VIP address is on this host
// (looked at every 5 ms, for at most 3 s: the proxy bounds its wait too).
func (n *Node) vipsGone() <-chan struct{} {
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if !n.holdsVIP() {
				return
			}
		}
	}()
	return gone
}

func (n *Node) holdsVIP() bool {
	for _, v := range n.vips {
		if v.mgr.Holding() {
			return true
		}
	}
	return false
}

// vipStopContext is the VIP parts' context: it ends after ctx, once every
// proxy took its first drain step (at most drainFirstBound later).
func (n *Node) vipStopContext(ctx context.Context) (context.Context, context.CancelFunc) {
	vctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		select {
		case <-ctx.Done():
		case <-vctx.Done():
			return
		}
		start := time.Now()
		t := time.NewTimer(drainFirstBound)
		defer t.Stop()
		defer cancel()
		for _, s := range n.services {
			select {
			case <-s.proxy.DrainedFirst():
			case <-t.C:
				n.logger.Warn("stop: the proxy did not close its client connections in time; the VIP goes anyway", "service", s.name, "waited", drainFirstBound)
				return
			}
		}
		n.logger.Debug("stop: client connections closed; the VIP goes", "waited", time.Since(start).Round(time.Millisecond))
	}()
	return vctx, cancel
}
