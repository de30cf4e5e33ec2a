package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redhaven/redhaven/cluster"
	"github.com/redhaven/redhaven/vip"
)

// The VIP policy, for each VIP (vips.go) on its own: the node named by
// the VIP's committed lease (cluster lease.go) holds the address until
// its lease ends, and renews the lease while it is in contact with the
// quorum and no other node is better placed. The Raft leader grants a
// free lease to itself, or takes an expired one over, when it may serve
// (it routes every service the VIP carries). Raft leadership can move
// without moving a VIP. A service's own VIP does not wait for
// leadership: a leader that may not serve the service grants that VIP's
// free (or expired) lease to another node that routes it
// (grantToPeer, cluster.GrantLease); the shared VIP moves with
// leadership instead (releaseVIPTo).
//
// A holder that cannot route (its watcher contradicts the committed
// master of a service the VIP carries) keeps the VIP while no other node
// routes either: every node sees that during a Sentinel failover, and
// moving the VIP would cost every client connection on it for nothing.
// It releases the lease only when, for vip_lease/4, another node that
// would get the lease next has reported that it routes the committed
// master of every service the VIP carries and reaches that master as a
// master (judgePeers, peerServing, cluster.PeersRouting).
//
// How the address is taken:
//   - after a clean release the old holder removed the address before it
//     released (and then handed Raft leadership over if it led the
//     shared VIP), so the successor adds it at once (gratuitous ARP),
//     also when the leader granted it the lease (VIPLease.AfterRelease);
//     a node granted a lease by the leader holds the address only once
//     its first renewal has committed (its lease counts from that send);
//   - otherwise (takeover after expiry, first grant) it first sends ARP
//     probes: nobody answering (the old host is dead or cut off) means at
//     once; the old host still answering (its agent was killed or paused,
//     the kernel keeps the address) means waiting until that copy's
//     lifetime has run out.

// kernelExpirySlack is how late the kernel may remove an address whose
// lifetime ran out (its expiry check runs at most once a second).
const kernelExpirySlack = time.Second

// vipLease is the node's side of one VIP's lease, used by that VIP's
// leaseLoop only (mayServe is set by the policy loops).
type vipLease struct {
	// mayServe: for every service the VIP carries, this node's proxy
	// would route writes to the committed master (its watcher does not
	// contradict it), or pause them for a planned failover, once in
	// contact with the quorum; so it may hold the VIP (vipSlot.mayServe).
	// Set by step. Contact is checked apart: a leader's commit of a grant
	// or takeover proves it, a renewal needs InContact.
	mayServe atomic.Bool
	// leave: a graceful leave asks leaseLoop to release the VIP and hold
	// it no more; the reply channel is closed when done.
	leave   chan chan struct{}
	leaving bool
	// leftContact: since leaving, the node was out of contact (removed
	// from Raft); back in contact it has rejoined and may hold again.
	leftContact bool

	lastRequest time.Time // last grant or renewal this node sent
	renewing    atomic.Bool
	// How to take the address in the current holding: probe first, and
	// wait for an answering host until waitUntil.
	probe     bool
	waitUntil time.Time
	holding   bool // this node was the holder at the last step
	// servedAt is the last step at which this node could serve
	// (mayServe); zero until it could once in this process.
	servedAt time.Time
	// betterSince: since when, while this holder could not serve,
	// another node (betterPeer) has routed what the VIP carries; zero
	// when not (peerServing).
	betterSince time.Time
	betterPeer  string

	// handoff: a hand-over restart is under way; leaseLoop leaves the
	// VIP on the interface and writes the lease's end into it.
	handoff atomic.Pointer[Inherited]
	// inherited: end of the lease of the previous process (hand-over),
	// this process's monotonic clock; zero when none or superseded.
	inherited time.Time
	// adoptedAt: when this process adopted the previous one's lease,
	// until its own first renewal applied (logged); adoptedUntil is that
	// lease's end.
	adoptedAt, adoptedUntil time.Time
}

// mayHoldVIP tells whether, as far as service s goes, this node may hold
// (or take) the VIP: its proxy follows the committed master (not
// contradicted by its watcher), or the committed route is a planned
// failover's pause (which clients should wait through on the same
// address). A VIP needs it of every service it carries (vips.go).
func (n *Node) mayHoldVIP(s *service, ss cluster.ServiceState, contradicted string) bool {
	n.mu.Lock()
	planned := s.planned != nil
	n.mu.Unlock()
	switch {
	case planned:
		return true
	case ss.Route.Master != "":
		return contradicted == ""
	default:
		return ss.Route.Reason != "" // a committed pause
	}
}

// leaseLoop runs one VIP's lease until ctx ends, then releases it
// cleanly.
func (n *Node) leaseLoop(ctx context.Context, v *vipSlot) error {
	if v.cfg.EffectiveMode() != vip.ModeNetlink {
		<-ctx.Done()
		return nil
	}
	tick := time.NewTicker(min(n.cfg.Cluster.VIPLease/8, 20*time.Millisecond))
	defer tick.Stop()
	for {
		n.leaseStep(ctx, v, time.Now())
		select {
		case <-ctx.Done():
			if in := v.lease.handoff.Load(); in != nil {
				n.handVIPOver(v, in)
			} else {
				n.releaseVIP(v)
			}
			return nil
		case done := <-v.lease.leave:
			v.lease.leaving = true
			n.releaseVIP(v)
			close(done)
		case <-n.cluster.LeaseChanges():
		case <-tick.C:
		}
	}
}

// releaseBeforeLeave has every leaseLoop release its VIP for good (a
// graceful leave follows), all at once, bounded by ctx; nothing to do for
// a VIP in mode none.
func (n *Node) releaseBeforeLeave(ctx context.Context) {
	var wg sync.WaitGroup
	for _, v := range n.vips {
		if v.cfg.EffectiveMode() != vip.ModeNetlink {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			done := make(chan struct{})
			select {
			case v.lease.leave <- done:
			case <-ctx.Done():
				return
			}
			select {
			case <-done:
			case <-ctx.Done():
			}
		}()
	}
	wg.Wait()
}

// leaseStep is one pass for one VIP: renew or acquire its lease, and tell
// its manager what to do with the address.
func (n *Node) leaseStep(ctx context.Context, v *vipSlot, now time.Time) {
	l := &v.lease
	ls := n.cluster.LeaseStatus(v.key)
	self := n.cfg.NodeName
	inContact := n.cluster.InContact()
	if l.leaving {
		switch {
		case !inContact:
			l.leftContact = true
		case l.leftContact: // rejoined
			l.leaving, l.leftContact = false, false
		}
	}
	mayServe := l.mayServe.Load() && !l.leaving
	canServe := mayServe && inContact
	if mayServe {
		l.servedAt = now
	}

	// A new leader need not wait for its first leadership check: the
	// commit of the grant or takeover proves the quorum follows it.
	if ls.Lease.Holder != self && mayServe && n.cluster.IsLeader() &&
		(ls.Lease.Holder == "" || ls.Expired(now)) {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		probe, err := n.cluster.AcquireLease(actx, v.key)
		cancel()
		switch {
		case err == nil:
			l.lastRequest = now
			l.probe = probe
			l.waitUntil = time.Time{}
			if probe && v.cfg.Lifetime > 0 {
				l.waitUntil = now.Add(v.cfg.Lifetime + kernelExpirySlack)
			}
			ls = n.cluster.LeaseStatus(v.key)
		case errors.Is(err, cluster.ErrLeaseHeld), errors.Is(err, cluster.ErrLeaseChanged), errors.Is(err, cluster.ErrNotLeader):
		default:
			v.logger.Warn("vip lease not acquired", "err", err)
		}
	}
	// A leader that may not serve a service's own VIP grants its free or
	// expired lease to a node that does: leadership does not move with
	// that VIP, so nobody else could take it.
	if v.key != cluster.SharedVIP && ls.Lease.Holder != self && !mayServe && n.cluster.IsLeader() &&
		(ls.Lease.Holder == "" || ls.Expired(now)) && n.grantToPeer(ctx, v, ls) {
		ls = n.cluster.LeaseStatus(v.key)
	}

	// A hand-over's inherited lease counts until it ends or the committed
	// state names another holder once this node is in contact. A free
	// lease is no such sign: this process's state may not have caught up
	// yet (only the holder, this node, could have released it).
	otherHolder := ls.Lease.Holder != "" && ls.Lease.Holder != self
	inherited := !l.inherited.IsZero() && now.Before(l.inherited) && !(inContact && otherHolder)
	if !inherited {
		l.inherited = time.Time{}
	}
	if !l.adoptedAt.IsZero() && ls.Lease.Holder == self && !ls.HeldUntil.IsZero() {
		v.logger.Info("vip lease renewed by this process after the hand-over", "after", now.Sub(l.adoptedAt).Round(time.Millisecond),
			"inherited_lease_left", l.adoptedUntil.Sub(now).Round(time.Millisecond))
		l.adoptedAt = time.Time{}
	}
	heldUntil := ls.HeldUntil
	if inherited && l.inherited.After(heldUntil) {
		heldUntil = l.inherited
	}

	if ls.Lease.Holder != self && !inherited {
		if l.holding {
			v.logger.Info("vip lease now held by another node", "holder", ls.Lease.Holder)
		}
		l.holding = false
		v.mgr.Want(vip.Desire{})
		return
	}
	if !l.holding {
		l.holding = true
		switch {
		case inherited:
		case ls.Lease.GrantedBy != "" && ls.Lease.GrantedBy != self && ls.Lease.Request == 0:
			// Granted by the leader (this node sent no request for it): no
			// probe after a clean release, else as after a takeover. The
			// address waits for the first renewal, sent at once.
			l.probe, l.waitUntil, l.lastRequest = !ls.Lease.AfterRelease, time.Time{}, time.Time{}
			if l.probe && v.cfg.Lifetime > 0 {
				l.waitUntil = now.Add(v.cfg.Lifetime + kernelExpirySlack)
			}
			v.logger.Info("vip lease granted to this node by the leader", "granted_by", ls.Lease.GrantedBy,
				"after_release", ls.Lease.AfterRelease, "probe", l.probe)
		case l.lastRequest.IsZero():
			// Holder by a predecessor process (restart): the address may
			// be anywhere; probe as after a takeover.
			l.probe = true
			if v.cfg.Lifetime > 0 {
				l.waitUntil = now.Add(v.cfg.Lifetime + kernelExpirySlack)
			}
		}
	}
	n.judgePeers(v, mayServe, inContact, inherited, now)
	if n.unhealthyHolder(l, now) {
		// Released here rather than run out (lease + skew, 1.1 s by
		// default, then the successor's probe): the leader grants the
		// free lease to a node that can serve at once, without a probe.
		v.logger.Warn("vip lease released: this node cannot route (its watcher contradicts the committed master) while another node routes it",
			"routing_node", l.betterPeer, "for", now.Sub(l.servedAt).Round(time.Millisecond),
			"other_node_routes_for", now.Sub(l.betterSince).Round(time.Millisecond))
		n.releaseVIPTo(v, l.betterPeer)
		l.holding, l.betterSince, l.betterPeer = false, time.Time{}, ""
		return
	}
	// A holder that cannot route keeps renewing while no other node is
	// better placed (every node sees the same during a failover): letting
	// the lease run out would only take the VIP away from every node.
	// A new process renews an inherited lease as soon as it is in
	// contact, before its watcher has observed Redis: the previous
	// process could serve a moment ago, and the inherited lease is short.
	keep := canServe || (inContact && !l.leaving && (!l.servedAt.IsZero() || inherited))
	every := n.cfg.Cluster.VIPLease / 4
	if ls.HeldUntil.IsZero() && !inherited {
		// No renewal of this process committed yet (granted by the
		// leader, or a restart): the address waits for one, and a
		// follower's renewal is one UDP packet.
		every = n.cfg.Cluster.VIPLease / 16
	}
	if keep && now.Sub(l.lastRequest) >= every && l.renewing.CompareAndSwap(false, true) {
		l.lastRequest = now
		go func() {
			defer l.renewing.Store(false)
			rctx, cancel := context.WithTimeout(ctx, n.cfg.Cluster.VIPLease/2)
			defer cancel()
			if err := n.cluster.RenewLease(rctx, v.key); err != nil && !errors.Is(err, context.Canceled) {
				v.logger.Debug("vip lease renewal not sent", "err", err)
			}
		}()
	}
	v.mgr.Want(vip.Desire{Hold: !heldUntil.IsZero() && !l.leaving, Until: heldUntil, Probe: l.probe, WaitConflictUntil: l.waitUntil})
}

// judgePeers keeps l.betterSince: while this holder cannot serve
// (mayServe false, in contact, not leaving, not on an inherited lease,
// after it could serve once in this process), it asks the other nodes
// what they route (peerServing) and notes since when one of them serves
// what this VIP carries. Any other time it is cleared.
func (n *Node) judgePeers(v *vipSlot, mayServe, inContact, inherited bool, now time.Time) {
	l := &v.lease
	peer := ""
	if !mayServe && inContact && !l.leaving && !inherited && !l.servedAt.IsZero() {
		peer = n.peerServing(v)
	}
	switch {
	case peer == "":
		l.betterSince, l.betterPeer = time.Time{}, ""
	case l.betterSince.IsZero():
		l.betterSince, l.betterPeer = now, peer
	}
}

// peerServing names another node that routes every service v carries to
// its committed master by the committed decision, a master its watcher
// reaches as a master (its last routed note, asked for by
// cluster.PeersRouting, at most vip_lease/4 old), "" when none does (also
// when some service has no committed master: nobody routes it).
func (n *Node) peerServing(v *vipSlot) string {
	if len(v.services) == 0 {
		return ""
	}
	st := n.cluster.State()
	var common []string
	for i, s := range v.services {
		d := st.Service(s.name).Route
		if d.Master == "" {
			return ""
		}
		peers := n.cluster.PeersRouting(s.name, d, n.cfg.Cluster.VIPLease/4)
		if i == 0 {
			common = peers
			continue
		}
		common = slices.DeleteFunc(common, func(p string) bool { return !slices.Contains(peers, p) })
	}
	// Count only a node that gets the lease once it is released.
	//   - The shared VIP: only the leader takes it (for itself). A follower
	//     holder counts the leader alone; a leader holder any node, to
	//     which it then hands leadership (releaseVIPTo).
	//   - A service's own VIP: the leader takes it if it may serve, else
	//     grants it to a node that routes the service and takes such
	//     grants (grantToPeer). So any such node counts, and the leader
	//     if this node follows; a follower counts other nodes only when
	//     the leader grants (its note says so: not an older release).
	leader, _ := n.cluster.Leader()
	isLeader := n.cluster.IsLeader()
	leaderGrants := isLeader || n.cluster.TakesLeaseGrants(leader, v.key)
	common = slices.DeleteFunc(common, func(p string) bool {
		switch {
		case v.key == cluster.SharedVIP:
			return !isLeader && p != leader
		case p == leader:
			return false
		default:
			return !leaderGrants || !n.cluster.TakesLeaseGrants(p, v.key)
		}
	})
	if len(common) == 0 {
		return ""
	}
	return common[0]
}

// grantToPeer is the leader's grant of service VIP v's free or expired
// lease (ls) to another node, when the leader may not serve the service:
// to the first node that routes it (peerServing's notion: its committed
// master, reached as a master, reported within vip_lease/4) and takes
// such grants, never the expired holder. Tells whether a lease was
// granted.
func (n *Node) grantToPeer(ctx context.Context, v *vipSlot, ls cluster.LeaseStatus) bool {
	if len(v.services) != 1 {
		return false
	}
	s := v.services[0]
	d := n.cluster.State().Service(s.name).Route
	if d.Master == "" {
		return false
	}
	var to string
	for _, p := range n.cluster.PeersRouting(s.name, d, n.cfg.Cluster.VIPLease/4) {
		if p != ls.Lease.Holder && n.cluster.TakesLeaseGrants(p, v.key) {
			to = p
			break
		}
	}
	if to == "" {
		return false
	}
	why := fmt.Sprintf("this leader may not serve %s; %s routes its committed master %s (epoch %d) and reaches it as a master",
		s.name, to, d.Master, d.Epoch)
	gctx, cancel := context.WithTimeout(ctx, time.Second)
	err := n.cluster.GrantLease(gctx, v.key, to, why)
	cancel()
	switch {
	case err == nil:
		return true
	case errors.Is(err, cluster.ErrLeaseHeld), errors.Is(err, cluster.ErrLeaseChanged), errors.Is(err, cluster.ErrNotLeader):
	default:
		v.logger.Warn("vip lease not granted", "to", to, "err", err)
	}
	return false
}

// unhealthyHolder tells whether this holder should give the lease up:
// it cannot route what the VIP carries while another node has routed it
// for a renewal interval (vip_lease/4, judgePeers). A holder that cannot
// route while no other node can either (every node during a Sentinel
// failover, a master that died, a committed route every watcher
// contradicts) keeps its lease and renews it: moving the VIP would cost
// every client connection on it and gain nothing. Out of contact it
// keeps the lease too: a release could not commit, and a follower holder
// is out of contact whenever the leader dies, after which it renews
// through the new leader without moving the VIP. An inherited lease
// (hand-over) is kept too: the new process may not have observed Redis
// yet.
func (n *Node) unhealthyHolder(l *vipLease, now time.Time) bool {
	return !l.betterSince.IsZero() && now.Sub(l.betterSince) >= n.cfg.Cluster.VIPLease/4
}

// releaseVIP ends this node's holding on a clean stop or leave: the
// address goes first, then the lease is released, then Raft leadership
// moves if this node leads. Releasing while still leading is one local
// commit; the new leader finds the lease free and released as soon as it
// is elected and adds the VIP at once (no probe). Releasing after the
// transfer would wait until this node hears of the new leader, and send
// the release over gossip.
func (n *Node) releaseVIP(v *vipSlot) { n.releaseVIPTo(v, "") }

// releaseVIPTo is releaseVIP handing Raft leadership, if it moves, to the
// node named next ("" any).
func (n *Node) releaseVIPTo(v *vipSlot, next string) {
	v.mgr.Want(vip.Desire{})
	if n.cluster.LeaseStatus(v.key).Lease.Holder != n.cfg.NodeName {
		return
	}
	start := time.Now()
	for deadline := start.Add(time.Second); v.mgr.Holding() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if v.mgr.Holding() {
		v.logger.Warn("vip still on the interface after 1s; not releasing the lease (it expires by itself)")
		return
	}
	if !n.cluster.InContact() {
		// No quorum to commit a release (e.g. the whole cluster stops at
		// once): the address is gone, the lease runs out by itself.
		v.logger.Info("vip removed; lease not released (not in contact with the raft quorum), it expires by itself")
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	stopWatch := n.cancelOutOfContact(rctx, cancel, releaseOutOfContact)
	err := n.cluster.ReleaseLease(rctx, v.key)
	stopWatch()
	cancel()
	if err != nil {
		// E.g. every agent stops at once: nobody is left to commit it.
		v.logger.Warn("vip lease release not committed; it expires by itself", "err", err,
			"took", time.Since(start).Round(time.Millisecond), "in_contact", n.cluster.InContact())
	} else {
		v.logger.Info("vip released for the next holder", "took", time.Since(start).Round(time.Millisecond))
	}
	// Leadership moves with the shared VIP only: a service's VIP is
	// released when this node cannot route that service (or it leaves,
	// and the shared VIP's release moves leadership then).
	if v.key == cluster.SharedVIP && n.cluster.IsLeader() && n.cluster.InContact() { // out of contact, nobody could take leadership over
		tctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err := n.cluster.TransferLeadership(tctx, next); err != nil && !errors.Is(err, cluster.ErrNotLeader) {
			n.logger.Warn("leadership transfer after the vip release failed; the others will elect a leader", "err", err)
		}
		cancel()
	}
}

// Bounds of the lease release on a stop or leave: at most releaseTimeout,
// and given up once the node has been out of contact with the Raft quorum
// for releaseOutOfContact (no leader could commit it: e.g. the whole
// cluster stops at once, and a stop must be quick).
const (
	releaseTimeout      = 2 * time.Second
	releaseOutOfContact = 200 * time.Millisecond
)

// cancelOutOfContact calls cancel once this node has been out of contact
// with the Raft quorum for grace, checked until ctx ends; the returned
// function stops the check.
func (n *Node) cancelOutOfContact(ctx context.Context, cancel context.CancelFunc, grace time.Duration) (stop func()) {
	quit := make(chan struct{})
	go func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		var since time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case <-quit:
				return
			case now := <-t.C:
				switch {
				case n.cluster.InContact():
					since = time.Time{}
				case since.IsZero():
					since = now
				case now.Sub(since) >= grace:
					cancel()
					return
				}
			}
		}
	}()
	return func() { close(quit) }
}

// keepVIPFor prepares a hand-over restart (called before the node
// stops): each VIP this node holds stays on the interface and the next
// process adopts it with the rest of this process's lease, so
// connections made through the VIP survive the restart. A service's own
// VIP goes with that service's part of in; a service left out of in (its
// proxy could not hand over) has its VIP released as on a plain stop.
func (n *Node) keepVIPFor(in *Inherited) {
	for _, v := range n.vips {
		if v.cfg.EffectiveMode() != vip.ModeNetlink {
			continue
		}
		if v.key != cluster.SharedVIP && in.part(v.key) == nil {
			continue
		}
		if ls := n.cluster.LeaseStatus(v.key); ls.Lease.Holder != n.cfg.NodeName || !time.Now().Before(ls.HeldUntil) {
			continue
		}
		v.mgr.KeepOnStop()
		v.lease.handoff.Store(in)
	}
}

// renewVIPsNow renews every VIP lease this node holds and waits, bounded
// by d, until each renewal has been applied here: called before a
// hand-over restart (PrepareHandOver, while this process still serves),
// so that the next process inherits nearly a whole lease, not what was
// left of the last periodic renewal (as little as 265 ms was seen under
// load after a leadership transfer), and has that long to be in contact
// and renew it itself.
func (n *Node) renewVIPsNow(d time.Duration) {
	deadline := time.Now().Add(d)
	for _, v := range n.vips {
		if v.cfg.EffectiveMode() != vip.ModeNetlink {
			continue
		}
		start := time.Now()
		if ls := n.cluster.LeaseStatus(v.key); ls.Lease.Holder != n.cfg.NodeName || !start.Before(ls.HeldUntil) {
			continue
		}
		renewed := func() bool {
			ls := n.cluster.LeaseStatus(v.key)
			return ls.Lease.Holder == n.cfg.NodeName && !ls.HeldUntil.Before(start.Add(ls.Lease.Length))
		}
		var err error
		var sent time.Time
		for !renewed() && time.Now().Before(deadline) {
			if time.Since(sent) >= 50*time.Millisecond { // a follower's renewal is one UDP packet: resend
				sent = time.Now()
				ctx, cancel := context.WithDeadline(context.Background(), deadline)
				err = n.cluster.RenewLease(ctx, v.key)
				cancel()
			}
			time.Sleep(5 * time.Millisecond)
		}
		ls := n.cluster.LeaseStatus(v.key)
		if !renewed() {
			v.logger.Warn("hand-over: vip lease not renewed before handing it over", "lease_left",
				time.Until(ls.HeldUntil).Round(time.Millisecond), "err", err)
			continue
		}
		v.logger.Info("hand-over: vip lease renewed before handing it over", "took", time.Since(start).Round(time.Millisecond),
			"lease_left", time.Until(ls.HeldUntil).Round(time.Millisecond))
	}
}

// handVIPOver is leaseLoop's end in a hand-over: the lease's end as of
// now (renewals went on until here) goes to the next process. Each slot's
// loop writes its own field of in (the shared VIP's, or its service's
// part's), read once Run has ended.
func (n *Node) handVIPOver(v *vipSlot, in *Inherited) {
	ls := n.cluster.LeaseStatus(v.key)
	if ls.Lease.Holder != n.cfg.NodeName || !time.Now().Before(ls.HeldUntil) {
		// Lost meanwhile: the kept address expires by its lifetime, and a
		// successor's probe waits for that.
		v.logger.Warn("vip lease lost during the hand-over; the address left behind expires by its lifetime")
		return
	}
	if v.key == cluster.SharedVIP {
		in.VIPUntil = ls.HeldUntil
	} else {
		in.part(v.key).VIPUntil = ls.HeldUntil
	}
	v.logger.Info("vip kept on the interface for the next process", "lease_left", time.Until(ls.HeldUntil).Round(time.Millisecond))
}

// adoptVIP takes over the previous process's VIP leases (hand-over): the
// manager of each VIP holds the address (already on the interface) until
// that lease ends, so its first round adopts rather than removes it, and
// this process renews the lease as soon as it is in contact. A service's
// own VIP is adopted only from the part of the same name: its lease is
// keyed by the name.
func (n *Node) adoptVIP(in *Inherited) {
	if in == nil {
		return
	}
	for _, v := range n.vips {
		until := in.VIPUntil
		if v.key != cluster.SharedVIP {
			until = time.Time{}
			if is := in.part(v.key); is != nil {
				until = is.VIPUntil
			}
		}
		if until.IsZero() || v.cfg.EffectiveMode() != vip.ModeNetlink {
			continue
		}
		left := time.Until(until) // wall clock, same host; then this process's monotonic clock
		if left <= 0 {
			continue
		}
		v.lease.inherited = time.Now().Add(left)
		v.lease.adoptedAt, v.lease.adoptedUntil = time.Now(), v.lease.inherited
		v.mgr.Want(vip.Desire{Hold: true, Until: v.lease.inherited})
		v.logger.Info("vip lease taken over from the previous process", "lease_left", left.Round(time.Millisecond))
	}
}
