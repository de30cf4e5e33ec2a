package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// applyRaw applies the bytes of a log entry as they are stored.
func applyRaw(t *testing.T, f *fsm, index uint64, data string) applyResult {
	t.Helper()
	res, ok := f.Apply(&raft.Log{Index: index, Data: []byte(data)}).(applyResult)
	if !ok {
		t.Fatalf("Apply returned %T", res)
	}
	return res
}

// TestFSMLogEntryWithoutService: log entries as a single-service release
// writes them (no "service" field; bytes copied from its encoding) apply
// to the default service and to no other.
func TestFSMLogEntryWithoutService(t *testing.T) {
	f := newFSM(nil, "mymaster")
	for i, e := range []string{
		`{"op":"route","time":"2026-01-02T03:04:05Z","node":"n1","route":{"master":"10.0.0.1:6379","epoch":4,"reason":"sentinel","time":"2026-01-02T03:04:05Z","decided_by":"n1"}}`,
		`{"op":"admin","time":"2026-01-02T03:04:06Z","node":"n1","addr":"10.0.0.2:6379","admin":"drain"}`,
		`{"op":"failover_request","time":"2026-01-02T03:04:07Z","node":"n2","reason":"upgrade"}`,
	} {
		if res := applyRaw(t, f, uint64(i+1), e); res.err != nil {
			t.Fatalf("entry %d: %v", i+1, res.err)
		}
	}
	st := f.state()
	ss := st.Service("mymaster")
	if ss.Route.Master != "10.0.0.1:6379" || ss.Route.Epoch != 4 || ss.Admin["10.0.0.2:6379"] != AdminDrain {
		t.Fatalf("default service = %+v", ss)
	}
	if p, ok := ss.PendingFailover(); !ok || p.ID != 3 || p.Reason != "upgrade" || p.RequestedBy != "n2" {
		t.Fatalf("pending failover = %+v %v", p, ok)
	}
	if names := st.ServiceNames(); !reflect.DeepEqual(names, []string{"mymaster"}) {
		t.Fatalf("services = %v, want only the default", names)
	}
	for _, e := range st.Events {
		if e.Service != "mymaster" {
			t.Fatalf("event not tagged with the default service: %+v", e)
		}
	}
	// The completion names the default service too when it names none.
	if res := applyRaw(t, f, 4, `{"op":"failover_complete","time":"2026-01-02T03:04:09Z","node":"n1","id":3,"result":"ok"}`); res.err != nil {
		t.Fatal(res.err)
	}
	if _, ok := f.state().Service("mymaster").PendingFailover(); ok {
		t.Fatal("failover still pending after its completion")
	}
}

// v1Snapshot is a snapshot as a single-service release writes it: State
// with route, admin and failovers at the top level and no version.
const v1Snapshot = `{"route":{"master":"10.0.0.1:6379","epoch":7,"reason":"sentinel +switch-master","time":"2026-01-02T03:04:05Z","decided_by":"n1"},` +
	`"admin":{"10.0.0.3:6379":"maintenance"},` +
	`"failovers":[{"id":12,"reason":"upgrade","requested_by":"n2","requested":"2026-01-02T03:04:06Z","status":"completed","result":"ok","completed":"2026-01-02T03:04:08Z"},` +
	`{"id":20,"reason":"again","requested_by":"n1","requested":"2026-01-02T03:05:00Z","status":"pending"}],` +
	`"events":[{"time":"2026-01-02T03:04:05Z","kind":"route_change","node":"n1","message":"master 10.0.0.1:6379 epoch 7: sentinel"},` +
	`{"time":"2026-01-02T03:04:07Z","kind":"member_join","node":"n1","message":"n2 joined"}],` +
	`"vip":{"holder":"n1","length":1000000000,"request":5,"index":9,"since":"2026-01-02T03:04:05Z"}}`

// TestFSMRestoreV1Snapshot: a version 1 snapshot restores into the
// default service; the next snapshot is version 2 and still carries the
// default service where a version 1 reader looks.
func TestFSMRestoreV1Snapshot(t *testing.T) {
	f := newFSM(nil, "mymaster")
	if err := f.Restore(io.NopCloser(strings.NewReader(v1Snapshot))); err != nil {
		t.Fatal(err)
	}
	st := f.state()
	ss := st.Service("mymaster")
	if ss.Route.Master != "10.0.0.1:6379" || ss.Route.Epoch != 7 || ss.Route.DecidedBy != "n1" {
		t.Fatalf("route = %+v", ss.Route)
	}
	if !reflect.DeepEqual(ss.Admin, map[string]AdminState{"10.0.0.3:6379": AdminMaintenance}) {
		t.Fatalf("admin = %v", ss.Admin)
	}
	if len(ss.Failovers) != 2 || ss.Failovers[0].Status != FailoverCompleted || ss.Failovers[0].Result != "ok" {
		t.Fatalf("failovers = %+v", ss.Failovers)
	}
	if p, ok := ss.PendingFailover(); !ok || p.ID != 20 {
		t.Fatalf("pending = %+v %v, want id 20", p, ok)
	}
	if len(st.Events) != 2 || st.VIP.Holder != "n1" || st.VIP.Index != 9 || st.VIP.Length != time.Second {
		t.Fatalf("events %d, vip %+v", len(st.Events), st.VIP)
	}
	if st.Version != StateVersion || !reflect.DeepEqual(st.ServiceNames(), []string{"mymaster"}) {
		t.Fatalf("version %d, services %v", st.Version, st.ServiceNames())
	}
	// The restored route still holds the epoch rule; the pending failover
	// still blocks a second one.
	if res := applyTo(t, f, 30, route("10.0.0.9:6379", 6)); !errors.Is(res.err, ErrStaleEpoch) {
		t.Fatalf("lower epoch after restore: %v, want ErrStaleEpoch", res.err)
	}
	if res := applyTo(t, f, 31, command{Op: opFailoverRequest, Time: t0}); !errors.Is(res.err, ErrFailoverPending) {
		t.Fatalf("second failover after restore: %v, want ErrFailoverPending", res.err)
	}

	// Written again: version 2, which this release reads back unchanged
	// and a version 1 reader (the old State type) reads as before.
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	raw := sink.Bytes()
	var head struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(raw, &head); err != nil || head.Version != StateVersion {
		t.Fatalf("snapshot version = %d (%v), want %d", head.Version, err, StateVersion)
	}
	var old struct {
		Route     RouteDecision         `json:"route"`
		Admin     map[string]AdminState `json:"admin"`
		Failovers []FailoverRequest     `json:"failovers"`
	}
	if err := json.Unmarshal(raw, &old); err != nil {
		t.Fatal(err)
	}
	if old.Route != ss.Route || !reflect.DeepEqual(old.Admin, ss.Admin) || !reflect.DeepEqual(old.Failovers, ss.Failovers) {
		t.Fatalf("a version 1 reader sees %+v", old)
	}
	g := newFSM(nil, "mymaster")
	if err := g.Restore(io.NopCloser(bytes.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	if got := g.state(); !reflect.DeepEqual(got, st) {
		t.Fatalf("version 2 round trip differs:\n got %+v\nwant %+v", got, st)
	}
}

// TestFSMRestoreUnknownVersion: a snapshot from a newer release is refused
// with an error that names its version, and the state is left alone.
func TestFSMRestoreUnknownVersion(t *testing.T) {
	f := newFSM(nil, "mymaster")
	applyTo(t, f, 1, route("a:6379", 3))
	err := f.Restore(io.NopCloser(strings.NewReader(`{"version":3,"services":{},"events":[],"vip":{}}`)))
	if err == nil || !strings.Contains(err.Error(), "version 3") {
		t.Fatalf("restore of version 3 = %v, want an error naming version 3", err)
	}
	if f.state().Service("mymaster").Route.Master != "a:6379" {
		t.Fatal("a refused restore changed the state")
	}
}

// TestFSMServicesIndependent: every route, admin, failover and reset
// command changes its own service only.
func TestFSMServicesIndependent(t *testing.T) {
	f := newFSM(nil, "mymaster")
	in := func(svc string, c command) command { c.Service = svc; return c }
	mustApply := func(index uint64, c command) applyResult {
		t.Helper()
		res := applyTo(t, f, index, c)
		if res.err != nil {
			t.Fatalf("entry %d (%s %s): %v", index, c.Op, c.Service, res.err)
		}
		return res
	}
	mustApply(1, in("mymaster", route("a:6379", 50)))
	// A lower epoch is fine for another service: epochs are per master.
	mustApply(2, in("cache", route("c:6379", 3)))
	if res := applyTo(t, f, 3, in("mymaster", route("b:6379", 3))); !errors.Is(res.err, ErrStaleEpoch) {
		t.Fatalf("epoch 3 on mymaster: %v, want ErrStaleEpoch", res.err)
	}
	mustApply(4, in("mymaster", command{Op: opAdmin, Addr: "r:6379", Admin: AdminDrain, Time: t0}))
	mustApply(5, in("cache", command{Op: opAdmin, Addr: "r:6379", Admin: AdminMaintenance, Time: t0}))
	// Two pending planned failovers, one per service.
	a := mustApply(6, in("mymaster", command{Op: opFailoverRequest, Reason: "one", Time: t0}))
	b := mustApply(7, in("cache", command{Op: opFailoverRequest, Reason: "two", Time: t0}))
	if res := applyTo(t, f, 8, in("cache", command{Op: opFailoverRequest, Time: t0})); !errors.Is(res.err, ErrFailoverPending) || res.id != b.id {
		t.Fatalf("second failover of cache: %+v, want ErrFailoverPending for id %d", res, b.id)
	}
	// A failover is completed in its own service only.
	if res := applyTo(t, f, 9, in("cache", command{Op: opFailoverComplete, ID: a.id, Time: t0})); !errors.Is(res.err, ErrUnknownFailover) {
		t.Fatalf("completing mymaster's failover as cache's: %v, want ErrUnknownFailover", res.err)
	}
	st := f.state()
	m, c := st.Service("mymaster"), st.Service("cache")
	if m.Route.Master != "a:6379" || m.Route.Epoch != 50 || c.Route.Master != "c:6379" || c.Route.Epoch != 3 {
		t.Fatalf("routes: mymaster %+v, cache %+v", m.Route, c.Route)
	}
	if m.Admin["r:6379"] != AdminDrain || c.Admin["r:6379"] != AdminMaintenance {
		t.Fatalf("admin: mymaster %v, cache %v", m.Admin, c.Admin)
	}
	pm, okm := m.PendingFailover()
	pc, okc := c.PendingFailover()
	if !okm || !okc || pm.ID != a.id || pc.ID != b.id || len(m.Failovers) != 1 || len(c.Failovers) != 1 {
		t.Fatalf("pending: mymaster %+v %v, cache %+v %v", pm, okm, pc, okc)
	}
	// A reset is refused while the service's own failover runs, and does
	// not care about another service's.
	if res := applyTo(t, f, 10, in("cache", command{Op: opRouteReset, Reason: "x", Time: t0})); !errors.Is(res.err, ErrFailoverPending) {
		t.Fatalf("reset of cache during its failover: %v, want ErrFailoverPending", res.err)
	}
	mustApply(11, in("mymaster", command{Op: opFailoverComplete, ID: a.id, Result: "ok", Time: t0}))
	mustApply(12, in("mymaster", command{Op: opRouteReset, Reason: "x", Time: t0}))
	mustApply(13, in("mymaster", command{Op: opAdmin, Addr: "r:6379", Admin: AdminReady, Time: t0}))
	st = f.state()
	m, c = st.Service("mymaster"), st.Service("cache")
	if m.Route.Master != "" || m.Route.Epoch != 0 || c.Route.Master != "c:6379" {
		t.Fatalf("after reset of mymaster: mymaster %+v, cache %+v", m.Route, c.Route)
	}
	if len(m.Admin) != 0 || c.Admin["r:6379"] != AdminMaintenance {
		t.Fatalf("after ready on mymaster: mymaster %v, cache %v", m.Admin, c.Admin)
	}
	if _, ok := c.PendingFailover(); !ok {
		t.Fatal("cache's failover ended with mymaster's")
	}
	// Every event of these commands names its service.
	want := []string{"mymaster", "cache", "mymaster", "cache", "mymaster", "cache", "mymaster", "mymaster", "mymaster"}
	var got []string
	for _, e := range st.Events {
		got = append(got, e.Service)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("event services = %v, want %v", got, want)
	}
	if !reflect.DeepEqual(st.ServiceNames(), []string{"cache", "mymaster"}) {
		t.Fatalf("services = %v", st.ServiceNames())
	}
	// Both services survive a snapshot.
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	g := newFSM(nil, "mymaster")
	if err := g.Restore(io.NopCloser(&sink)); err != nil {
		t.Fatal(err)
	}
	if got := g.state(); !reflect.DeepEqual(got, st) {
		t.Fatalf("restored:\n got %+v\nwant %+v", got, st)
	}
}

// TestFSMAppliesServiceItDoesNotKnow: the FSM applies whatever service a
// committed entry names (a follower may be configured with it later);
// only the leader checks names against its configuration.
func TestFSMAppliesServiceItDoesNotKnow(t *testing.T) {
	f := newFSM(nil, "mymaster")
	c := route("x:6379", 1)
	c.Service = "later"
	if res := applyTo(t, f, 1, c); res.err != nil || !res.changed {
		t.Fatalf("apply: %+v", res)
	}
	if got := f.state().Service("later").Route.Master; got != "x:6379" {
		t.Fatalf("route of later = %q", got)
	}
	if got := f.state().Service("mymaster").Route.Master; got != "" {
		t.Fatalf("default service changed: %q", got)
	}
}

// TestStateServiceZero: an absent service reads as the zero state with a
// usable Admin map.
func TestStateServiceZero(t *testing.T) {
	var st State
	ss := st.Service("none")
	if ss.Admin == nil || ss.Route != (RouteDecision{}) || len(ss.Failovers) != 0 {
		t.Fatalf("absent service = %+v", ss)
	}
	if _, ok := ss.PendingFailover(); ok {
		t.Fatal("absent service has a pending failover")
	}
	if len(st.ServiceNames()) != 0 {
		t.Fatal("names of an empty state")
	}
}
