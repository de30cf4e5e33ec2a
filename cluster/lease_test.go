package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func leaseOp(kind, holder string, req, prev uint64) command {
	return command{Op: opLease, Time: t0, Node: "n1",
		Lease: &leaseCmd{Kind: kind, Holder: holder, Request: req, Length: time.Second, PrevIndex: prev}}
}

// TestLeaseSkewBound: with every pair of clock rates whose ratio is within
// 1+LeaseSkew, the holder's lease has ended in real time before another
// node may judge it expired, however late that node applied the renewal;
// a ratio beyond the bound breaks it (so the check can fail).
func TestLeaseSkewBound(t *testing.T) {
	const length = time.Second
	// realAfter is the real time at which a clock running at rate (local
	// seconds per real second) has counted local from real start s.
	realAfter := func(s float64, local time.Duration, rate float64) float64 {
		return s + local.Seconds()/rate
	}
	safe := func(rh, rj, sendReal, applyReal float64) bool {
		base := time.Unix(0, 0)
		holderLocal := leaseHeldUntil(base, length).Sub(base)
		judgeLocal := leaseExpiredAt(base, length).Sub(base)
		return realAfter(sendReal, holderLocal, rh) <= realAfter(applyReal, judgeLocal, rj)+1e-9
	}
	rates := []float64{0.95, 0.99, 1, 1.01, 1.049}
	for _, rh := range rates {
		for _, rj := range rates {
			if rj/rh > 1+LeaseSkew {
				continue
			}
			for _, apply := range []float64{0, 0.001, 0.3, 2} { // the judge applies at or after the send
				if !safe(rh, rj, 0, apply) {
					t.Errorf("holder rate %.3f, judge rate %.3f, applied %.3fs after the send: holder's lease outlives the judge's expiry", rh, rj, apply)
				}
			}
		}
	}
	if safe(0.9, 1.1, 0, 0) {
		t.Errorf("a rate ratio of %.2f (beyond 1+LeaseSkew) should break the bound; the rule is not what this test thinks", 1.1/0.9)
	}
}

// TestLeaseRules applies the four lease commands through the FSM: grant
// only when free, renew and release only by the holder, takeover only of
// the exact lease judged expired (a renewal in between defeats it).
func TestLeaseRules(t *testing.T) {
	f := newFSM(nil, testService)
	expectErr := func(res applyResult, want error) {
		t.Helper()
		if !errors.Is(res.err, want) {
			t.Fatalf("err = %v, want %v", res.err, want)
		}
	}
	ok := func(res applyResult) {
		t.Helper()
		if res.err != nil || !res.changed {
			t.Fatalf("apply: %+v, want a change", res)
		}
	}
	if !f.lease.appliedAt(SharedVIP).IsZero() {
		t.Fatal("applied time before any lease change")
	}
	ok(applyTo(t, f, 10, leaseOp(LeaseGrant, "n1", 7, 0)))
	if l := f.state().VIP; l.Holder != "n1" || l.Request != 7 || l.Index != 10 || l.Length != time.Second {
		t.Fatalf("after grant: %+v", l)
	}
	if f.lease.appliedAt(SharedVIP).IsZero() {
		t.Fatal("no local applied time after a grant")
	}
	expectErr(applyTo(t, f, 11, leaseOp(LeaseGrant, "n2", 1, 0)), ErrLeaseHeld)
	expectErr(applyTo(t, f, 12, leaseOp(LeaseRenew, "n2", 1, 0)), ErrNotHolder)
	expectErr(applyTo(t, f, 13, leaseOp(LeaseRelease, "n2", 0, 0)), ErrNotHolder)

	ok(applyTo(t, f, 14, leaseOp(LeaseRenew, "n1", 8, 0)))
	if l := f.state().VIP; l.Request != 8 || l.Index != 14 {
		t.Fatalf("after renew: %+v", l)
	}
	// n2 judged the lease of index 10 expired, but n1 renewed at 14.
	expectErr(applyTo(t, f, 15, leaseOp(LeaseTakeover, "n2", 1, 10)), ErrLeaseChanged)
	ok(applyTo(t, f, 16, leaseOp(LeaseTakeover, "n2", 1, 14)))
	if l := f.state().VIP; l.Holder != "n2" || l.Index != 16 {
		t.Fatalf("after takeover: %+v", l)
	}
	// The old holder wakes up (pause) and renews: refused.
	expectErr(applyTo(t, f, 17, leaseOp(LeaseRenew, "n1", 9, 0)), ErrNotHolder)

	ok(applyTo(t, f, 18, leaseOp(LeaseRelease, "n2", 0, 0)))
	if l := f.state().VIP; l.Holder != "" || !l.Released {
		t.Fatalf("after release: %+v", l)
	}
	ok(applyTo(t, f, 19, leaseOp(LeaseGrant, "n3", 1, 0)))
	if l := f.state().VIP; l.Holder != "n3" || l.Released {
		t.Fatalf("grant after release: %+v", l)
	}
	moves := 0
	for _, e := range f.state().Events {
		if e.Kind == EventVIPMove {
			moves++
		}
	}
	if moves != 4 { // grant, takeover, release, grant; renewals are not history
		t.Errorf("%d vip_move events, want 4", moves)
	}
	// Only applied changes count (refused commands and renewals do not).
	f.lease.mu.Lock()
	changes := maps.Clone(f.lease.changes[SharedVIP])
	f.lease.mu.Unlock()
	if want := map[string]uint64{LeaseGrant: 2, LeaseTakeover: 1, LeaseRelease: 1}; !maps.Equal(changes, want) {
		t.Errorf("lease changes %v, want %v", changes, want)
	}

	// A snapshot carries the lease; a restored node counts it from now.
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := buf.Write(snap.(fsmSnapshot)); err != nil {
		t.Fatal(err)
	}
	g := newFSM(nil, testService)
	before := time.Now()
	if err := g.Restore(nopCloser{&buf}); err != nil {
		t.Fatal(err)
	}
	if l := g.state().VIP; l != f.state().VIP {
		t.Fatalf("restored lease %+v, want %+v", l, f.state().VIP)
	}
	if g.lease.appliedAt(SharedVIP).Before(before) {
		t.Error("a restored lease must count from the restore, not from before")
	}
}

type nopCloser struct{ *bytes.Buffer }

func (nopCloser) Close() error { return nil }

// TestLeaseStatusJudgement: expiry is judged from the local applied time
// plus length and skew; the holder's own lease counts from the send of a
// request of this process only.
func TestLeaseStatusJudgement(t *testing.T) {
	applied := time.Now()
	st := LeaseStatus{Lease: VIPLease{Holder: "n1", Length: time.Second}, Applied: applied,
		ExpiredAt: leaseExpiredAt(applied, time.Second)}
	if st.Expired(applied.Add(time.Second)) {
		t.Error("expired after exactly the length; the skew margin is missing")
	}
	if !st.Expired(applied.Add(1100 * time.Millisecond)) {
		t.Error("not expired after length*(1+skew)")
	}
	if (LeaseStatus{}).Expired(applied.Add(time.Hour)) {
		t.Error("a free lease cannot expire")
	}

	c := newLeaseClient()
	sent := time.Now()
	n := c.request(sent)
	if from, ok := c.heldFrom(n); !ok || !from.Equal(sent) {
		t.Fatalf("heldFrom(own request) = %v %v, want %v", from, ok, sent)
	}
	if _, ok := c.heldFrom(n - 1); ok {
		t.Error("heldFrom vouches for a request this process never sent")
	}
	// Renewals can commit out of order: an older one committing after a
	// newer one still vouches, from the newer one's send time.
	older := c.request(sent.Add(time.Second))
	newer := c.request(sent.Add(2 * time.Second))
	if from, ok := c.heldFrom(newer); !ok || !from.Equal(sent.Add(2*time.Second)) {
		t.Fatalf("heldFrom(newer) = %v %v", from, ok)
	}
	if from, ok := c.heldFrom(older); !ok || !from.Equal(sent.Add(2*time.Second)) {
		t.Errorf("heldFrom(older request committed after a newer one) = %v %v, want the newer one's send time", from, ok)
	}
	if from, ok := c.heldFrom(newer); !ok || !from.Equal(sent.Add(2*time.Second)) {
		t.Errorf("heldFrom(newer) after the older one = %v %v", from, ok)
	}
	restarted := newLeaseClient()
	if _, ok := restarted.heldFrom(n); ok {
		t.Error("a restarted process vouches for its predecessor's request")
	}
	// Many lost requests stay bounded.
	for range 1000 {
		c.request(time.Now())
	}
	if len(c.sent) > 64 {
		t.Errorf("%d pending requests kept, want a bound", len(c.sent))
	}
}

// TestLeaseCountsFromArrival: a lease entry counts from when it reached
// this node's log, not from its (possibly much later) apply: a new leader
// applies the old leader's last renewal only after its election.
func TestLeaseCountsFromArrival(t *testing.T) {
	f := newFSM(nil, testService)
	store := arrivalStore{LogStore: raft.NewInmemStore(), l: f.lease}
	lease, err := json.Marshal(leaseOp(LeaseGrant, "n1", 1, 0))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := json.Marshal(route("a:1", 1))
	arrived := time.Now()
	if err := store.StoreLogs([]*raft.Log{
		{Index: 5, Type: raft.LogCommand, Data: lease},
		{Index: 6, Type: raft.LogCommand, Data: other},
	}); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.lease.arrived[6]; ok {
		t.Error("a route entry's arrival was noted")
	}
	time.Sleep(200 * time.Millisecond) // the election
	applyTo(t, f, 5, leaseOp(LeaseGrant, "n1", 1, 0))
	if got := f.lease.appliedAt(SharedVIP); got.Before(arrived) || got.Sub(arrived) > 100*time.Millisecond {
		t.Errorf("lease counted from %v after the arrival, want the arrival", got.Sub(arrived))
	}
	if len(f.lease.arrived) != 0 {
		t.Errorf("%d arrivals kept after the apply", len(f.lease.arrived))
	}
	// Without a noted arrival (replayed at start), the apply time counts.
	before := time.Now()
	applyTo(t, f, 7, leaseOp(LeaseRenew, "n1", 2, 0))
	if f.lease.appliedAt(SharedVIP).Before(before) {
		t.Error("an entry without arrival counted from before its apply")
	}
}
