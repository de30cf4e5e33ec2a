package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestLeaseGrantToAnotherNode applies the leader's grants of a service's
// lease to another node (GrantLease's commands: the grant and takeover
// every release knows, with a holder other than the proposer): the
// grantee holds it with no request of its own (Request 0), the record
// names the granting leader and whether the grant follows a clean
// release; a held lease is refused whoever asks; the grantee renews and
// releases it like any holder; a snapshot carries the new fields, and an
// older reader's form (without them) leaves them empty.
func TestLeaseGrantToAnotherNode(t *testing.T) {
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
	grant := func(kind, holder string, prev uint64) command {
		c := serviceLeaseOp("cache", kind, holder, 0, prev) // proposed by n1, the leader
		c.Lease.Request = 0
		c.Node, c.Time = "n1", t0
		return c
	}

	// A free lease that was never held: granted to n2; n2 must probe.
	must(applyTo(t, f, 10, grant(LeaseGrant, "n2", 0)))
	l := f.state().Lease("cache")
	if l.Holder != "n2" || l.GrantedBy != "n1" || l.AfterRelease || l.Request != 0 || l.Index != 10 {
		t.Fatalf("after the grant to n2: %+v", l)
	}
	// Held (by a live lease): no grant, to anybody, by anybody.
	expectErr(applyTo(t, f, 11, grant(LeaseGrant, "n3", 0)), ErrLeaseHeld)
	expectErr(applyTo(t, f, 12, serviceLeaseOp("cache", LeaseGrant, "n1", 5, 0)), ErrLeaseHeld)
	if l := f.state().Lease("cache"); l.Holder != "n2" || l.Index != 10 {
		t.Fatalf("a refused grant changed the lease: %+v", l)
	}
	// The grantee's first renewal names its request; the record keeps
	// who granted it.
	must(applyTo(t, f, 13, serviceLeaseOp("cache", LeaseRenew, "n2", 77, 0)))
	if l := f.state().Lease("cache"); l.Holder != "n2" || l.Request != 77 || l.GrantedBy != "n1" {
		t.Fatalf("after n2's renewal: %+v", l)
	}
	// A clean release, then a grant to n3: no probe needed.
	must(applyTo(t, f, 14, serviceLeaseOp("cache", LeaseRelease, "n2", 0, 0)))
	must(applyTo(t, f, 15, grant(LeaseGrant, "n3", 0)))
	if l := f.state().Lease("cache"); l.Holder != "n3" || l.GrantedBy != "n1" || !l.AfterRelease || l.Released {
		t.Fatalf("grant after a clean release: %+v", l)
	}
	// n3's lease expires (judged by the leader): given to n2 by takeover,
	// which names the index judged; a stale judgment is refused.
	expectErr(applyTo(t, f, 16, grant(LeaseTakeover, "n2", 14)), ErrLeaseChanged)
	must(applyTo(t, f, 17, grant(LeaseTakeover, "n2", 15)))
	if l := f.state().Lease("cache"); l.Holder != "n2" || l.GrantedBy != "n1" || l.AfterRelease || l.Index != 17 {
		t.Fatalf("takeover for n2: %+v", l)
	}
	// The leader's own grant and takeover name nobody else.
	must(applyTo(t, f, 18, leaseOp(LeaseGrant, "n1", 3, 0)))
	if l := f.state().VIP; l.Holder != "n1" || l.GrantedBy != "" || l.AfterRelease {
		t.Fatalf("the leader's own grant: %+v", l)
	}
	var msgs []string
	for _, e := range f.state().Events {
		if e.Kind == EventVIPMove && e.Service == "cache" {
			msgs = append(msgs, e.Message)
		}
	}
	want := []string{
		"vip lease of service cache granted to n2 by leader n1",
		"vip lease of service cache released by n2",
		"vip lease of service cache granted to n3 by leader n1 after a clean release",
		"vip lease of service cache given to n2 by leader n1 after n3's lease expired",
	}
	if !slices.Equal(msgs, want) {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(msgs, "\n"), strings.Join(want, "\n"))
	}

	// Snapshot and restore keep the fields.
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	g := newFSM(nil, testService)
	if err := g.Restore(nopCloser{bytes.NewBuffer(snap.(fsmSnapshot))}); err != nil {
		t.Fatal(err)
	}
	if g.state().Lease("cache") != f.state().Lease("cache") || g.state().VIP != f.state().VIP {
		t.Fatalf("restored %+v / %+v, want %+v / %+v", g.state().Lease("cache"), g.state().VIP, f.state().Lease("cache"), f.state().VIP)
	}
	// A snapshot of an older release (no granted_by, after_release): the
	// lease restores with them empty, so its holder probes.
	var raw map[string]any
	if err := json.Unmarshal(snap.(fsmSnapshot), &raw); err != nil {
		t.Fatal(err)
	}
	for _, lease := range raw["vips"].(map[string]any) {
		delete(lease.(map[string]any), "granted_by")
		delete(lease.(map[string]any), "after_release")
	}
	old, err := json.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	h := newFSM(nil, testService)
	if err := h.Restore(nopCloser{bytes.NewBuffer(old)}); err != nil {
		t.Fatal(err)
	}
	if l := h.state().Lease("cache"); l.Holder != "n2" || l.Index != 17 || l.GrantedBy != "" || l.AfterRelease {
		t.Fatalf("restored from the older form: %+v", l)
	}

	// The command itself has only the fields older releases know (they
	// apply it alike: a grant to the holder it names).
	b, err := json.Marshal(grant(LeaseGrant, "n3", 0).Lease)
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]any
	if err := json.Unmarshal(b, &keys); err != nil {
		t.Fatal(err)
	}
	for k := range keys {
		if !slices.Contains([]string{"kind", "holder", "request", "length", "prev_index", "vip"}, k) {
			t.Errorf("lease command field %q unknown to older releases", k)
		}
	}
}

// TestLeaseClientNoRequest: a lease granted by the leader names request 0,
// which is none of the holder's: the holder's lease does not count
// (HeldUntil stays zero) until a renewal of its own commits.
func TestLeaseClientNoRequest(t *testing.T) {
	c := newLeaseClient()
	if from, ok := c.heldFrom(0); ok {
		t.Fatalf("heldFrom(0) = %v, true; want no send time (a fresh client's zero request would count from year 1)", from)
	}
	sent := time.Now()
	req := c.request(sent)
	if from, ok := c.heldFrom(req); !ok || !from.Equal(sent) {
		t.Fatalf("heldFrom(own request) = %v %v", from, ok)
	}
	if _, ok := c.heldFrom(0); ok {
		t.Fatal("heldFrom(0) after a request of its own")
	}
}
