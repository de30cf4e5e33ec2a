package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// The VIP leases: for each virtual IP the FSM names the one node that
// may hold it and how long a renewal lasts. Raft leadership and the VIPs
// are separate: the leader commits lease changes, any voter may hold a
// lease. Each lease is keyed by its VIP: SharedVIP ("") for the VIP the
// services share, a service's name for that service's own VIP. The
// leases are independent: every rule below holds per lease.
//
// Time is never compared across nodes. The holder counts its lease from
// the moment it *sent* a renewal that then committed; every other node
// counts from the moment it *applied* that renewal (always later). The
// holder's lease ends Length after its send; another node judges it
// expired only LeaseSkew more than Length after its apply. So as long as
// no clock runs more than LeaseSkew faster or slower than another one,
// the holder's lease has ended (in real time) before anybody may take it
// over. A holder that is paused (SIGSTOP, a stall) counts on from its
// send time when it wakes, and finds its lease over.
//
// Who takes a free or expired lease: the leader, for itself
// (AcquireLease). For a service's own VIP, a leader that may not serve
// the service grants the lease to another node that routes it
// (GrantLease; the shared VIP goes with leadership instead). That holder
// sent no request for it: its lease counts only from its first renewal
// that commits (Request 0 until then, HeldUntil zero), and the others
// judge expiry from the grant's arrival, so it is safe the same way.

// LeaseSkew bounds the relative rate difference between two nodes'
// monotonic clocks that the lease rules tolerate (10%; real clocks differ
// by parts per million).
const LeaseSkew = 0.1

// SharedVIP is the key of the shared VIP's lease (State.VIP); a
// service's own VIP has its lease under the service's name (State.VIPs).
const SharedVIP = ""

// Lease command kinds.
const (
	LeaseGrant    = "grant"    // free lease to a holder
	LeaseRenew    = "renew"    // the holder extends its lease
	LeaseTakeover = "takeover" // an expired lease to a new holder
	LeaseRelease  = "release"  // the holder gives the lease up
)

// Errors of the lease commands.
var (
	// ErrLeaseHeld: the lease is held (and not expired in this node's
	// view), so it cannot be granted.
	ErrLeaseHeld = errors.New("cluster: vip lease is held by another node")
	// ErrLeaseChanged: the lease changed (was renewed, released or moved)
	// after the takeover was judged; nothing was taken.
	ErrLeaseChanged = errors.New("cluster: vip lease changed since it was judged expired")
	// ErrNotHolder: a renewal or release by a node that does not hold the
	// lease.
	ErrNotHolder = errors.New("cluster: this node does not hold the vip lease")
)

// VIPLease is the committed lease on the VIP.
type VIPLease struct {
	Holder string        `json:"holder,omitempty"` // node name; "" = free
	Length time.Duration `json:"length,omitempty"` // how long a renewal lasts
	// Request is the holder's number of the grant or renewal that
	// committed last: the holder knows from it which of its requests
	// (and so which send time) the lease counts from.
	Request uint64 `json:"request,omitempty"`
	// Index is the Raft index of the last lease change; a takeover names
	// the index it judged expired, so a renewal in between defeats it.
	Index uint64 `json:"index,omitempty"`
	// Released: free because the holder released it after removing the
	// address, so the next holder need not probe for it.
	Released bool      `json:"released,omitempty"`
	Since    time.Time `json:"since,omitzero"` // when the holder got it (proposer's clock; shown only)
	// GrantedBy is the leader that granted the lease (or gave it after
	// expiry) to Holder, another node (GrantLease); "" when the holder
	// took it itself. Kept through renewals.
	GrantedBy string `json:"granted_by,omitempty"`
	// AfterRelease: GrantedBy granted it while free after a clean release,
	// so the holder need not probe for the address. (Not set when the
	// holder took it itself: AcquireLease tells it.) Older releases do not
	// record either field; a holder without them probes.
	AfterRelease bool `json:"after_release,omitempty"`
}

// leaseCmd is the lease part of a command.
type leaseCmd struct {
	Kind      string        `json:"kind"`
	Holder    string        `json:"holder"`
	Request   uint64        `json:"request,omitempty"`
	Length    time.Duration `json:"length,omitempty"`
	PrevIndex uint64        `json:"prev_index,omitempty"` // takeover: the lease index judged expired
	// VIP is the lease's key: SharedVIP, or the service whose own VIP it
	// is. Such commands are committed as opServiceLease, which releases
	// without per-service VIPs refuse (unknown op) rather than apply to
	// their one lease.
	VIP string `json:"vip,omitempty"`
}

// leaseCommand wraps a lease request into its log entry.
func leaseCommand(lc *leaseCmd) command {
	if lc.VIP != SharedVIP {
		return command{Op: opServiceLease, Lease: lc}
	}
	return command{Op: opLease, Lease: lc}
}

// leaseLocal is this node's own, unreplicated view of the leases: when
// the last change of each reached this node's Raft log (by its own
// monotonic clock).
type leaseLocal struct {
	mu      sync.Mutex
	applied map[string]time.Time // by VIP key
	hint    chan struct{}
	// arrived holds when lease entries not yet applied were stored in
	// this node's log, by index (arrivalStore).
	arrived map[uint64]time.Time
	// changes counts the lease changes this process applied, by VIP key
	// and kind (grant, takeover, release; renewals are not changes).
	changes map[string]map[string]uint64
}

func newLeaseLocal() *leaseLocal {
	return &leaseLocal{hint: make(chan struct{}, 1), arrived: map[uint64]time.Time{},
		applied: map[string]time.Time{}, changes: map[string]map[string]uint64{}}
}

func (l *leaseLocal) changed(vip, kind string) {
	l.mu.Lock()
	if l.changes[vip] == nil {
		l.changes[vip] = map[string]uint64{}
	}
	l.changes[vip][kind]++
	l.mu.Unlock()
}

// counts returns the changes of one lease, every kind present.
func (l *leaseLocal) counts(vip string) map[string]uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]uint64{LeaseGrant: 0, LeaseTakeover: 0, LeaseRelease: 0}
	maps.Copy(out, l.changes[vip])
	return out
}

func (l *leaseLocal) seen(at time.Time, vips ...string) {
	l.mu.Lock()
	for _, v := range vips {
		l.applied[v] = at
	}
	l.mu.Unlock()
	hint(l.hint)
}

// maxArrivals bounds the arrival times kept for entries not yet applied.
const maxArrivals = 4096

func (l *leaseLocal) arrive(index uint64, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.arrived) >= maxArrivals {
		clear(l.arrived) // never in practice: entries are applied soon after
	}
	l.arrived[index] = at
}

// arrival returns (and forgets) when entry index reached this node's log;
// now if not known (replayed at start, or from a snapshot).
func (l *leaseLocal) arrival(index uint64, now time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	at, ok := l.arrived[index]
	for i := range l.arrived {
		if i <= index {
			delete(l.arrived, i)
		}
	}
	if !ok || at.After(now) {
		return now
	}
	return at
}

// arrivalStore wraps the Raft log store to note when lease entries reach
// this node. Judging expiry from the arrival rather than the apply matters
// after the leader dies: the new leader applies the old leader's last
// renewal only once elected (the commit index travels with the next
// entry), and counting from then would add the election to every
// takeover. The arrival is still after the holder sent its request, which
// is all the lease rules need.
type arrivalStore struct {
	raft.LogStore
	l     *leaseLocal
	stall *diskStall // StallLog (stall.go)
}

// leasePrefixes are how every lease command's JSON starts (Op is the
// first field of command).
var leasePrefixes = [][]byte{[]byte(`{"op":"` + opLease + `"`), []byte(`{"op":"` + opServiceLease + `"`)}

func isLeaseEntry(lg *raft.Log) bool {
	if lg.Type != raft.LogCommand {
		return false
	}
	for _, p := range leasePrefixes {
		if bytes.HasPrefix(lg.Data, p) {
			return true
		}
	}
	return false
}

func (s arrivalStore) note(logs ...*raft.Log) {
	now := time.Now()
	for _, lg := range logs {
		if isLeaseEntry(lg) {
			s.l.arrive(lg.Index, now)
		}
	}
}

func (s arrivalStore) StoreLog(lg *raft.Log) error {
	s.stall.wait(maxDiskStall)
	s.note(lg)
	return s.LogStore.StoreLog(lg)
}

func (s arrivalStore) StoreLogs(logs []*raft.Log) error {
	s.stall.wait(maxDiskStall)
	s.note(logs...)
	return s.LogStore.StoreLogs(logs)
}

func (l *leaseLocal) appliedAt(vip string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.applied[vip]
}

// vipLease returns the committed lease of one VIP (cheaper than state():
// no copy of the history).
func (f *fsm) vipLease(vip string) VIPLease {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.Lease(vip)
}

// setLease stores the lease of one VIP (f.mu held).
func (f *fsm) setLease(vip string, l VIPLease) {
	if vip == SharedVIP {
		f.st.VIP = l
		return
	}
	if f.st.VIPs == nil {
		f.st.VIPs = map[string]VIPLease{}
	}
	f.st.VIPs[vip] = l
}

// applyLease applies a lease command (f.mu held) to the lease its key
// names. The rules use no clock: whether a lease expired is judged by the
// proposer, and the takeover applies only if the lease has not changed
// since.
func (f *fsm) applyLease(index uint64, c command) applyResult {
	lc := c.Lease
	if lc == nil || lc.Holder == "" {
		return applyResult{err: errors.New("lease command without holder")}
	}
	if (c.Op == opServiceLease) != (lc.VIP != SharedVIP) {
		return applyResult{err: fmt.Errorf("lease command %q for vip %q", c.Op, lc.VIP)}
	}
	key := lc.VIP
	what := "vip lease"
	if key != SharedVIP {
		what = fmt.Sprintf("vip lease of service %s", key)
	}
	event := func(msg string) {
		f.addEvent(Event{Time: c.Time, Kind: EventVIPMove, Node: c.Node, Service: key, Message: msg})
	}
	cur := f.st.Lease(key)
	switch lc.Kind {
	case LeaseGrant:
		if cur.Holder != "" {
			return applyResult{err: fmt.Errorf("%w (%s)", ErrLeaseHeld, cur.Holder)}
		}
		l := VIPLease{Holder: lc.Holder, Length: lc.Length, Request: lc.Request, Index: index, Since: c.Time}
		msg := fmt.Sprintf("%s granted to %s", what, lc.Holder)
		if c.Node != "" && c.Node != lc.Holder {
			l.GrantedBy, l.AfterRelease = c.Node, cur.Released
			msg += fmt.Sprintf(" by leader %s", c.Node)
			if cur.Released {
				msg += " after a clean release"
			}
		}
		f.setLease(key, l)
		event(msg)
	case LeaseRenew:
		if cur.Holder != lc.Holder {
			return applyResult{err: fmt.Errorf("%w: %s renews, holder is %q", ErrNotHolder, lc.Holder, cur.Holder)}
		}
		cur.Request, cur.Index = lc.Request, index
		if lc.Length > 0 {
			cur.Length = lc.Length
		}
		f.setLease(key, cur)
	case LeaseTakeover:
		if cur.Index != lc.PrevIndex {
			return applyResult{err: fmt.Errorf("%w (index %d, judged %d)", ErrLeaseChanged, cur.Index, lc.PrevIndex)}
		}
		l := VIPLease{Holder: lc.Holder, Length: lc.Length, Request: lc.Request, Index: index, Since: c.Time}
		msg := fmt.Sprintf("%s taken over by %s", what, lc.Holder)
		if c.Node != "" && c.Node != lc.Holder {
			l.GrantedBy = c.Node
			msg = fmt.Sprintf("%s given to %s by leader %s", what, lc.Holder, c.Node)
		}
		if cur.Holder != "" {
			msg += fmt.Sprintf(" after %s's lease expired", cur.Holder)
		}
		f.setLease(key, l)
		event(msg)
	case LeaseRelease:
		if cur.Holder != lc.Holder {
			return applyResult{err: fmt.Errorf("%w: %s releases, holder is %q", ErrNotHolder, lc.Holder, cur.Holder)}
		}
		f.setLease(key, VIPLease{Length: cur.Length, Index: index, Released: true, Since: c.Time})
		event(fmt.Sprintf("%s released by %s", what, lc.Holder))
	default:
		return applyResult{err: fmt.Errorf("unknown lease command %q", lc.Kind)}
	}
	if lc.Kind != LeaseRenew {
		f.lease.changed(key, lc.Kind)
	}
	f.lease.seen(f.lease.arrival(index, time.Now()), key)
	return applyResult{changed: true}
}

// leaseExpiredAt is when a node that applied the last lease change at
// applied judges it expired: LeaseSkew more than the lease length later.
func leaseExpiredAt(applied time.Time, length time.Duration) time.Time {
	return applied.Add(length + time.Duration(float64(length)*LeaseSkew))
}

// leaseHeldUntil is when the holder's lease ends: length after it sent
// the request that committed.
func leaseHeldUntil(sent time.Time, length time.Duration) time.Time {
	return sent.Add(length)
}

// LeaseStatus is this node's view of one VIP lease.
type LeaseStatus struct {
	Lease VIPLease
	// Applied is when this node applied the last lease change (its own
	// clock); zero when it never saw one.
	Applied time.Time
	// ExpiredAt is when this node judges the current holder's lease
	// expired (zero when free).
	ExpiredAt time.Time
	// HeldUntil is, on the holder, when its own lease ends (zero when this
	// node does not hold it, or holds it but has no committed request of
	// this process yet, e.g. just after a restart).
	HeldUntil time.Time
}

// Expired reports whether the lease is held and this node judges it
// expired at now.
func (s LeaseStatus) Expired(now time.Time) bool {
	return s.Lease.Holder != "" && !s.ExpiredAt.IsZero() && !now.Before(s.ExpiredAt)
}

// leaseClient is the holder's side: the numbers and send times of this
// process's requests, to know from when its lease counts.
type leaseClient struct {
	mu    sync.Mutex
	first uint64 // numbers above first and up to next are this process's
	next  uint64
	sent  map[uint64]time.Time
	// from is the send time of the newest committed request (number req).
	req  uint64
	from time.Time
}

func newLeaseClient() *leaseClient {
	var b [8]byte
	_, _ = rand.Read(b[:])
	// A random start keeps the numbers of a restarted process apart from
	// its predecessor's (a committed old number must not vouch for a new
	// send time).
	start := binary.BigEndian.Uint64(b[:]) >> 1
	return &leaseClient{first: start, next: start, sent: map[uint64]time.Time{}}
}

// request numbers a new request sent now.
func (c *leaseClient) request(now time.Time) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next++
	c.sent[c.next] = now
	if len(c.sent) > 64 { // requests that never committed
		for n := range c.sent {
			if n+32 < c.next {
				delete(c.sent, n)
			}
		}
	}
	return c.next
}

// heldFrom returns the send time of committed request req, if it is one
// of this process's.
func (c *leaseClient) heldFrom(req uint64) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if req == 0 { // granted by the leader: no request of the holder yet
		return time.Time{}, false
	}
	if req == c.req {
		return c.from, true
	}
	if c.req != 0 && req > c.first && req < c.req {
		// An older request of this process committed after a newer one
		// (a follower's renewals travel over gossip and can commit out
		// of order). Its entry is the later one in the log, so the others
		// count the lease from a later point than the newer request's
		// send time: counting on from that is still safe. Forgetting it
		// (its send time is gone) would drop the VIP until the next
		// renewal commits.
		return c.from, true
	}
	t, ok := c.sent[req]
	if !ok {
		return time.Time{}, false
	}
	c.req, c.from = req, t
	for n := range c.sent {
		if n <= req {
			delete(c.sent, n)
		}
	}
	return t, true
}

// leaseClients keeps one leaseClient per VIP key: each lease counts from
// its own requests.
type leaseClients struct {
	mu sync.Mutex
	m  map[string]*leaseClient
}

func (c *leaseClients) of(vip string) *leaseClient {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*leaseClient{}
	}
	lc := c.m[vip]
	if lc == nil {
		lc = newLeaseClient()
		c.m[vip] = lc
	}
	return lc
}

// LeaseStatus returns this node's view of the lease of vip (SharedVIP, or
// a service's name for its own VIP).
func (a *Agent) LeaseStatus(vip string) LeaseStatus {
	st := LeaseStatus{Lease: a.fsm.vipLease(vip), Applied: a.fsm.lease.appliedAt(vip)}
	if st.Lease.Holder == "" {
		return st
	}
	if !st.Applied.IsZero() {
		st.ExpiredAt = leaseExpiredAt(st.Applied, st.Lease.Length)
	}
	if st.Lease.Holder == a.cfg.NodeName {
		if from, ok := a.leaseReq.of(vip).heldFrom(st.Lease.Request); ok {
			st.HeldUntil = leaseHeldUntil(from, st.Lease.Length)
		}
	}
	return st
}

// LeaseChangeCounts returns how many changes of vip's lease this process
// applied, by kind (LeaseGrant, LeaseTakeover, LeaseRelease; all three
// present). Entries applied again after a restart (the log after the
// last snapshot) count again: it is a per-process counter.
func (a *Agent) LeaseChangeCounts(vip string) map[string]uint64 {
	return a.fsm.lease.counts(vip)
}

// LeaseChanges returns a cap-1 hint channel: a change of some lease was
// applied.
func (a *Agent) LeaseChanges() <-chan struct{} { return a.fsm.lease.hint }

// AcquireLease makes this node (the Raft leader) the holder of vip's
// lease: at once when the lease is free, or by takeover when this node
// judges the holder's lease expired. probe tells whether the address may
// still be on another host (not after a clean release). Returns
// ErrLeaseHeld while another node's lease runs, ErrNotLeader on a
// follower, ErrUnknownService for a service VIP of a service this node is
// not configured with.
func (a *Agent) AcquireLease(ctx context.Context, vip string) (probe bool, err error) {
	if !a.IsLeader() {
		return false, ErrNotLeader
	}
	if vip != SharedVIP && !slices.Contains(a.cfg.Services, vip) {
		return false, fmt.Errorf("%w %q: no vip lease for it", ErrUnknownService, vip)
	}
	st := a.LeaseStatus(vip)
	now := time.Now()
	cmd := leaseCmd{Holder: a.cfg.NodeName, Length: a.cfg.VIPLease, VIP: vip}
	switch {
	case st.Lease.Holder == a.cfg.NodeName:
		return false, nil
	case st.Lease.Holder == "":
		cmd.Kind = LeaseGrant
		probe = !st.Lease.Released
	case st.Expired(now):
		cmd.Kind, cmd.PrevIndex = LeaseTakeover, st.Lease.Index
		probe = true
	default:
		return false, fmt.Errorf("%w (%s, expires in %v)", ErrLeaseHeld, st.Lease.Holder, st.ExpiredAt.Sub(now).Round(time.Millisecond))
	}
	cmd.Request = a.leaseReq.of(vip).request(now)
	if _, err := a.applyCmd(ctx, leaseCommand(&cmd)); err != nil {
		return false, err
	}
	if cmd.Kind == LeaseTakeover {
		a.log.Warn("vip lease taken over after expiry", "vip_service", vip, "old_holder", st.Lease.Holder,
			"last_renewal_seen_ago", now.Sub(st.Applied).Round(time.Millisecond))
	} else {
		a.log.Info("vip lease granted to this node", "vip_service", vip, "after_release", st.Lease.Released)
	}
	return probe, nil
}

// Errors of GrantLease.
var (
	// ErrNoGrantee: the node named does not take a lease the leader grants
	// it for that service (its routed note does not say so: an older
	// release, no own VIP for the service in netlink mode, or no note).
	ErrNoGrantee = errors.New("cluster: node does not take leader-granted vip leases for the service")
)

// GrantLease makes node to, another Raft server, the holder of the lease
// of service vip's own VIP: at once when the lease is free (after a clean
// release the new holder need not probe, VIPLease.AfterRelease), by
// takeover when this node judges another holder's lease expired. Only
// the leader grants; it grants to another node when it may not serve the
// service itself (the caller's judgment, node's leaseStep). The grant
// commits with the lease op every release knows (a grant or takeover
// naming a holder other than the proposer, which older releases apply
// alike), so every node agrees who holds the lease; it names no request
// of the holder, whose lease counts from its first renewal that commits.
// The shared VIP cannot be granted so: it moves with leadership. why is
// logged. Returns ErrLeaseHeld while a lease runs, ErrNotLeader on a
// follower, ErrUnknownService, ErrNoGrantee.
func (a *Agent) GrantLease(ctx context.Context, vip, to, why string) error {
	if !a.IsLeader() {
		return ErrNotLeader
	}
	switch {
	case vip == SharedVIP:
		return errors.New("cluster: the shared vip lease is not granted to another node (it moves with leadership)")
	case !slices.Contains(a.cfg.Services, vip):
		return fmt.Errorf("%w %q: no vip lease for it", ErrUnknownService, vip)
	case to == "" || to == a.cfg.NodeName:
		return fmt.Errorf("cluster: lease grant to %q: not another node", to)
	case !a.routed.takesGrants(to, vip):
		return fmt.Errorf("%w (%s, service %s)", ErrNoGrantee, to, vip)
	}
	st := a.LeaseStatus(vip)
	now := time.Now()
	cmd := leaseCmd{Holder: to, Length: a.cfg.VIPLease, VIP: vip}
	switch {
	case st.Lease.Holder == to:
		return nil
	case st.Lease.Holder == "":
		cmd.Kind = LeaseGrant
	case st.Expired(now):
		cmd.Kind, cmd.PrevIndex = LeaseTakeover, st.Lease.Index
	default:
		return fmt.Errorf("%w (%s, expires in %v)", ErrLeaseHeld, st.Lease.Holder, st.ExpiredAt.Sub(now).Round(time.Millisecond))
	}
	if _, err := a.applyCmd(ctx, leaseCommand(&cmd)); err != nil {
		return err
	}
	if cmd.Kind == LeaseTakeover {
		a.log.Warn("vip lease given to another node after expiry", "vip_service", vip, "to", to, "old_holder", st.Lease.Holder,
			"last_renewal_seen_ago", now.Sub(st.Applied).Round(time.Millisecond), "why", why)
	} else {
		a.log.Info("vip lease granted to another node", "vip_service", vip, "to", to,
			"after_release", st.Lease.Released, "why", why)
	}
	return nil
}

// RenewLease asks for a renewal of this node's lease of vip: committed
// directly on the leader, sent to the leader (gossip, encrypted with the
// cluster key) on a follower. It does not wait for the commit;
// LeaseStatus shows the new HeldUntil once this node applied it.
func (a *Agent) RenewLease(ctx context.Context, vip string) error {
	return a.leaseRequest(ctx, LeaseRenew, vip)
}

// ReleaseLease gives vip's lease up (the caller removed the address
// first) and waits, bounded by ctx, until this node applied the release.
// Resent every 25 ms, to whichever node leads by then.
func (a *Agent) ReleaseLease(ctx context.Context, vip string) error {
	t := time.NewTicker(25 * time.Millisecond)
	defer t.Stop()
	hints := a.LeaseChanges()
	for {
		if a.fsm.vipLease(vip).Holder != a.cfg.NodeName {
			return nil
		}
		err := a.leaseRequest(ctx, LeaseRelease, vip)
		if a.fsm.vipLease(vip).Holder != a.cfg.NodeName {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("release vip lease: %w (last: %v)", ctx.Err(), err)
		case <-hints:
		case <-t.C:
		}
	}
}

// leaseRequest commits (leader) or forwards (follower) a renewal or a
// release by this node.
func (a *Agent) leaseRequest(ctx context.Context, kind, vip string) error {
	cmd := leaseCmd{Kind: kind, Holder: a.cfg.NodeName, Length: a.cfg.VIPLease, VIP: vip}
	if kind == LeaseRenew {
		cmd.Request = a.leaseReq.of(vip).request(time.Now())
	}
	if a.IsLeader() {
		_, err := a.applyCmd(ctx, leaseCommand(&cmd))
		return err
	}
	if kind == LeaseRelease {
		// The holding it releases (leaseLoop): copies of a release resent
		// meanwhile must not release a later grant to this node.
		cmd.PrevIndex = a.fsm.vipLease(vip).Index
	}
	return a.sendToLeader(cmd)
}

// leaseMsgPrefix marks a lease request among memberlist user messages.
const leaseMsgPrefix = 'L'

// sendToLeader sends a lease request to the leader over memberlist,
// encrypted and authenticated with the cluster key like all gossip: a
// renewal as one UDP packet (the next one follows a quarter lease later,
// so a lost one costs nothing), a release over TCP.
func (a *Agent) sendToLeader(cmd leaseCmd) error {
	ml := a.memberlist()
	if ml == nil {
		return ErrNotRunning
	}
	leader, _ := a.Leader()
	if leader == "" {
		return errors.New("cluster: no raft leader known to send the lease request to")
	}
	var to *memberlist.Node
	for _, m := range ml.Members() {
		if m.Name == leader {
			to = m
		}
	}
	if to == nil {
		return fmt.Errorf("cluster: raft leader %s is not a gossip member", leader)
	}
	b, err := json.Marshal(cmd)
	if err != nil {
		return err
	}
	send := ml.SendReliable
	if cmd.Kind == LeaseRenew {
		send = ml.SendBestEffort
	}
	if err := send(to, append([]byte{leaseMsgPrefix}, b...)); err != nil {
		return fmt.Errorf("send lease %s to %s: %w", cmd.Kind, leader, err)
	}
	return nil
}

// receiveLeaseMsg queues a lease request from a follower (memberlist's
// NotifyMsg: must not block).
func (a *Agent) receiveLeaseMsg(b []byte) {
	var cmd leaseCmd
	if err := json.Unmarshal(b, &cmd); err != nil || (cmd.Kind != LeaseRenew && cmd.Kind != LeaseRelease) || cmd.Holder == "" {
		if ok, n := a.logLimit.allow("lease-msg"); ok {
			a.log.Warn("malformed lease request ignored", "error", err, "suppressed", n)
		}
		return
	}
	select {
	case a.leaseIn <- cmd:
	default: // full: the holder sends the next renewal soon
	}
}

// leaseLoop commits the followers' lease requests while this node leads.
// Renew and release carry the holder's name; the FSM accepts them only
// from the current holder.
func (a *Agent) leaseLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case cmd := <-a.leaseIn:
			if a.raftNode().State() != raft.Leader {
				continue
			}
			if cmd.Kind == LeaseRelease && cmd.PrevIndex != 0 {
				// A release names the lease index its holder saw: one resent
				// while an earlier copy committed, still queued when the
				// leader granted the lease to that node again, would release
				// the new grant (whose address the node may hold). A holder
				// whose view lags a renewal resends with its newer view. An
				// older release names none (0) and is committed as before.
				if cur := a.fsm.vipLease(cmd.VIP); cur.Index != cmd.PrevIndex {
					continue
				}
				cmd.PrevIndex = 0 // committed as older releases commit it
			}
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := a.applyCmd(cctx, leaseCommand(&cmd))
			cancel()
			if err != nil && !errors.Is(err, ErrNotHolder) {
				a.log.Debug("lease request from follower not committed", "kind", cmd.Kind, "holder", cmd.Holder, "vip_service", cmd.VIP, "error", err)
			}
		}
	}
}
