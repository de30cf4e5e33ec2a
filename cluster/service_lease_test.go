package cluster

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func serviceLeaseOp(vip, kind, holder string, req, prev uint64) command {
	c := leaseOp(kind, holder, req, prev)
	c.Lease.VIP = vip
	return leaseCommand(c.Lease)
}

// TestServiceLeasesIndependent: a service's own VIP has a lease of its
// own, keyed by the service: the same rules per lease, no effect on the
// shared lease (or another service's), its own applied time and change
// counts, its own events, and a snapshot that carries every lease.
func TestServiceLeasesIndependent(t *testing.T) {
	f := newFSM(nil, testService)
	must := func(res applyResult) {
		t.Helper()
		if res.err != nil || !res.changed {
			t.Fatalf("apply: %+v, want a change", res)
		}
	}
	expectErr := func(res applyResult, want error) {
		t.Helper()
		if !errors.Is(res.err, want) {
			t.Fatalf("err = %v, want %v", res.err, want)
		}
	}
	must(applyTo(t, f, 10, leaseOp(LeaseGrant, "n1", 1, 0)))
	if !f.lease.appliedAt("cache").IsZero() {
		t.Fatal("the shared lease's grant set the service lease's applied time")
	}
	// The service's lease is free although the shared one is held.
	must(applyTo(t, f, 11, serviceLeaseOp("cache", LeaseGrant, "n2", 1, 0)))
	st := f.state()
	if st.VIP.Holder != "n1" || st.VIP.Index != 10 || st.Lease("cache").Holder != "n2" || st.Lease("cache").Index != 11 {
		t.Fatalf("leases: shared %+v, cache %+v", st.VIP, st.Lease("cache"))
	}
	if st.Lease("other").Holder != "" {
		t.Fatalf("a service without a lease: %+v", st.Lease("other"))
	}
	expectErr(applyTo(t, f, 12, serviceLeaseOp("cache", LeaseGrant, "n1", 2, 0)), ErrLeaseHeld)
	expectErr(applyTo(t, f, 13, serviceLeaseOp("cache", LeaseRenew, "n1", 2, 0)), ErrNotHolder)
	// A takeover names the index of the lease it judged: the shared one's
	// index is not the service lease's.
	expectErr(applyTo(t, f, 14, serviceLeaseOp("cache", LeaseTakeover, "n1", 2, 10)), ErrLeaseChanged)
	must(applyTo(t, f, 15, serviceLeaseOp("cache", LeaseTakeover, "n3", 1, 11)))
	must(applyTo(t, f, 16, serviceLeaseOp("cache", LeaseRelease, "n3", 0, 0)))
	if l := f.state().Lease("cache"); l.Holder != "" || !l.Released {
		t.Fatalf("after release: %+v", l)
	}
	if l := f.state().VIP; l.Holder != "n1" || l.Index != 10 || l.Released {
		t.Fatalf("the shared lease changed with the service's: %+v", l)
	}
	// A renewal of the shared lease leaves the service's alone.
	must(applyTo(t, f, 17, leaseOp(LeaseRenew, "n1", 3, 0)))
	if l := f.state().Lease("cache"); l.Index != 16 {
		t.Fatalf("service lease index %d after a shared renewal, want 16", l.Index)
	}
	// The op and the key must agree: a key under the shared op (or none
	// under the service op) is refused, never applied to the wrong lease.
	bad := serviceLeaseOp("cache", LeaseGrant, "n4", 1, 0)
	bad.Op = opLease
	if res := applyTo(t, f, 18, bad); res.err == nil {
		t.Fatal("a service lease under the shared op applied")
	}
	bad = leaseOp(LeaseRenew, "n1", 4, 0)
	bad.Op = opServiceLease
	if res := applyTo(t, f, 19, bad); res.err == nil {
		t.Fatal("the shared lease under the service op applied")
	}

	if got := f.lease.counts("cache"); got[LeaseGrant] != 1 || got[LeaseTakeover] != 1 || got[LeaseRelease] != 1 {
		t.Errorf("cache lease changes %v", got)
	}
	if got := f.lease.counts(SharedVIP); got[LeaseGrant] != 1 || got[LeaseTakeover] != 0 || got[LeaseRelease] != 0 {
		t.Errorf("shared lease changes %v", got)
	}
	var shared, cache int
	for _, e := range f.state().Events {
		switch {
		case e.Kind != EventVIPMove:
		case e.Service == "cache" && strings.Contains(e.Message, "of service cache"):
			cache++
		case e.Service == "":
			shared++
		}
	}
	if shared != 1 || cache != 3 {
		t.Errorf("vip_move events: %d shared, %d of cache; want 1 and 3", shared, cache)
	}

	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	g := newFSM(nil, testService)
	before := time.Now()
	if err := g.Restore(nopCloser{bytes.NewBuffer(snap.(fsmSnapshot))}); err != nil {
		t.Fatal(err)
	}
	if g.state().VIP != f.state().VIP || g.state().Lease("cache") != f.state().Lease("cache") {
		t.Fatalf("restored leases %+v %+v, want %+v %+v", g.state().VIP, g.state().Lease("cache"), f.state().VIP, f.state().Lease("cache"))
	}
	if g.lease.appliedAt("cache").Before(before) || g.lease.appliedAt(SharedVIP).Before(before) {
		t.Error("restored leases must count from the restore")
	}
}

// TestRestoreOneLeaseSnapshot reads a snapshot written by the release
// before service VIPs (testdata/v2-one-lease.json: version 2, two
// services, the VIP lease held by n2 and no "vips"): its lease is the
// shared VIP's, no service has one, and a service lease can be granted
// on top.
func TestRestoreOneLeaseSnapshot(t *testing.T) {
	raw, err := os.ReadFile("testdata/v2-one-lease.json")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(`"vips"`)) {
		t.Fatal("fixture has per-service leases; it must be the one-lease format")
	}
	f := newFSM(nil, testService)
	if err := f.Restore(nopCloser{bytes.NewBuffer(raw)}); err != nil {
		t.Fatal(err)
	}
	st := f.state()
	if l := st.VIP; l.Holder != "n2" || l.Request != 42 || l.Index != 13 || l.Length != time.Second {
		t.Fatalf("shared lease %+v", l)
	}
	if len(st.VIPs) != 0 || st.Lease("cache").Holder != "" {
		t.Fatalf("service leases from a one-lease snapshot: %+v", st.VIPs)
	}
	if st.Service("cache").Route.Master != "10.0.0.12:6379" || st.Service(testService).Route.Epoch != 3 {
		t.Fatalf("services %+v", st.Services)
	}
	if f.lease.appliedAt(SharedVIP).IsZero() {
		t.Fatal("the restored shared lease has no applied time")
	}
	if res := applyTo(t, f, 14, serviceLeaseOp("cache", LeaseGrant, "n1", 1, 0)); res.err != nil {
		t.Fatal(res.err)
	}
	// An old follower's renewal (no vip key, op lease) still renews the
	// shared lease.
	if res := applyTo(t, f, 15, leaseOp(LeaseRenew, "n2", 43, 0)); res.err != nil {
		t.Fatal(res.err)
	}
	if st := f.state(); st.VIP.Holder != "n2" || st.VIP.Request != 43 || st.Lease("cache").Holder != "n1" {
		t.Fatalf("after: shared %+v, cache %+v", st.VIP, st.Lease("cache"))
	}
}
