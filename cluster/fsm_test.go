package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// testService is the default service of the FSMs under test: commands
// without a service apply to it.
const testService = "mymaster"

// applyTo applies one command to f at the given log index.
func applyTo(t *testing.T, f *fsm, index uint64, c command) applyResult {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	res, ok := f.Apply(&raft.Log{Index: index, Data: b}).(applyResult)
	if !ok {
		t.Fatalf("Apply returned %T", res)
	}
	return res
}

func route(master string, epoch int64) command {
	return command{Op: opRoute, Time: t0, Node: "n1",
		Route: &RouteDecision{Master: master, Epoch: epoch, Reason: "test", Time: t0, DecidedBy: "n1"}}
}

// TestRouteDecisionReplaces is the table of the one epoch rule that the
// FSM, ProposeRoute and node's commit all call.
func TestRouteDecisionReplaces(t *testing.T) {
	d := func(master string, epoch int64) RouteDecision { return RouteDecision{Master: master, Epoch: epoch} }
	for _, tc := range []struct {
		name      string
		next, cur RouteDecision
		want      bool
		stale     bool
	}{
		{"first decision over the empty state", d("a:1", 0), RouteDecision{}, true, false},
		{"higher epoch, other master", d("b:1", 3), d("a:1", 2), true, false},
		{"higher epoch, same master", d("a:1", 3), d("a:1", 2), true, false},
		{"higher epoch over a pause", d("b:1", 3), d("", 2), true, false},
		{"duplicate", d("a:1", 2), d("a:1", 2), false, false},
		{"duplicate pause", d("", 2), d("", 2), false, false},
		{"pause at the same epoch", d("", 2), d("a:1", 2), true, false},
		{"resume at the same epoch", d("a:1", 2), d("", 2), true, false},
		{"another master at the same epoch", d("b:1", 2), d("a:1", 2), false, true},
		{"lower epoch", d("b:1", 1), d("a:1", 2), false, true},
		{"lower epoch, same master", d("a:1", 1), d("a:1", 2), false, true},
		{"pause at a lower epoch", d("", 1), d("a:1", 2), false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.next.Replaces(tc.cur)
			if got != tc.want || errors.Is(err, ErrStaleEpoch) != tc.stale || (err != nil) != tc.stale {
				t.Errorf("Replaces = %v, %v; want %v, stale %v", got, err, tc.want, tc.stale)
			}
		})
	}
}

func TestFSMRouteEpochRules(t *testing.T) {
	tests := []struct {
		name       string
		steps      []command
		wantErr    error // of the last step
		wantMaster string
		wantEpoch  int64
		wantEvents int
	}{
		{"first decision", []command{route("a:6379", 1)}, nil, "a:6379", 1, 1},
		{"epoch forward", []command{route("a:6379", 1), route("b:6379", 2)}, nil, "b:6379", 2, 2},
		{"epoch backwards rejected", []command{route("a:6379", 5), route("b:6379", 4)}, ErrStaleEpoch, "a:6379", 5, 1},
		{"duplicate is a no-op", []command{route("a:6379", 3), route("a:6379", 3)}, nil, "a:6379", 3, 1},
		{"same epoch other master rejected", []command{route("a:6379", 0), route("b:6379", 0)}, ErrStaleEpoch, "a:6379", 0, 1},
		{"pause and resume at the same epoch", []command{route("a:6379", 4), route("", 4), route("a:6379", 4)}, nil, "a:6379", 4, 3},
		{"same master new epoch accepted", []command{route("a:6379", 1), route("a:6379", 2)}, nil, "a:6379", 2, 2},
		{"stale after several", []command{route("a:6379", 1), route("b:6379", 7), route("a:6379", 6)}, ErrStaleEpoch, "b:6379", 7, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFSM(nil, testService)
			var res applyResult
			for i, c := range tt.steps {
				res = applyTo(t, f, uint64(i+1), c)
			}
			if !errors.Is(res.err, tt.wantErr) || (tt.wantErr == nil && res.err != nil) {
				t.Fatalf("last apply error = %v, want %v", res.err, tt.wantErr)
			}
			st := f.state()
			if st.Service(testService).Route.Master != tt.wantMaster || st.Service(testService).Route.Epoch != tt.wantEpoch {
				t.Fatalf("route = %s@%d, want %s@%d", st.Service(testService).Route.Master, st.Service(testService).Route.Epoch, tt.wantMaster, tt.wantEpoch)
			}
			if len(st.Events) != tt.wantEvents {
				t.Fatalf("events = %d, want %d: %+v", len(st.Events), tt.wantEvents, st.Events)
			}
		})
	}
}

func TestFSMAdminAndFailovers(t *testing.T) {
	f := newFSM(nil, testService)
	if res := applyTo(t, f, 1, command{Op: opAdmin, Addr: "r1:6379", Admin: AdminDrain, Time: t0}); res.err != nil {
		t.Fatal(res.err)
	}
	if res := applyTo(t, f, 2, command{Op: opAdmin, Addr: "r1:6379", Admin: "bogus", Time: t0}); res.err == nil {
		t.Fatal("bogus admin state accepted")
	}
	if got := f.state().Service(testService).Admin["r1:6379"]; got != AdminDrain {
		t.Fatalf("admin = %q, want drain", got)
	}
	applyTo(t, f, 3, command{Op: opAdmin, Addr: "r1:6379", Admin: AdminReady, Time: t0})
	if _, ok := f.state().Service(testService).Admin["r1:6379"]; ok {
		t.Fatal("ready did not clear the admin entry")
	}

	res := applyTo(t, f, 10, command{Op: opFailoverRequest, Reason: "upgrade", Node: "n2", Time: t0})
	if res.err != nil || res.id != 10 {
		t.Fatalf("request = %+v, want id 10", res)
	}
	if res := applyTo(t, f, 11, command{Op: opFailoverRequest, Reason: "again", Time: t0}); !errors.Is(res.err, ErrFailoverPending) {
		t.Fatalf("second request err = %v, want ErrFailoverPending", res.err)
	}
	if res := applyTo(t, f, 12, command{Op: opFailoverComplete, ID: 99, Time: t0}); !errors.Is(res.err, ErrUnknownFailover) {
		t.Fatalf("complete unknown err = %v, want ErrUnknownFailover", res.err)
	}
	done := t0.Add(3 * time.Second)
	if res := applyTo(t, f, 13, command{Op: opFailoverComplete, ID: 10, Result: "ok", Time: done}); res.err != nil {
		t.Fatal(res.err)
	}
	if res := applyTo(t, f, 14, command{Op: opFailoverComplete, ID: 10, Result: "ok", Time: done}); !errors.Is(res.err, ErrFailoverDone) {
		t.Fatalf("complete twice err = %v, want ErrFailoverDone", res.err)
	}
	st := f.state()
	if _, ok := st.Service(testService).PendingFailover(); ok {
		t.Fatal("failover still pending")
	}
	fr := st.Service(testService).Failovers[0]
	if fr.Status != FailoverCompleted || fr.Result != "ok" || fr.RequestedBy != "n2" || !fr.Completed.Equal(done) {
		t.Fatalf("failover = %+v", fr)
	}
	last := st.Events[len(st.Events)-1]
	if last.Kind != EventFailover || last.Duration != 3*time.Second {
		t.Fatalf("last event = %+v, want failover lasting 3s", last)
	}
}

func TestFSMBoundedHistory(t *testing.T) {
	f := newFSM(nil, testService)
	for i := range MaxEvents + 50 {
		applyTo(t, f, uint64(i+1), command{Op: opEvent, Event: &Event{Kind: EventVIPMove, Message: fmt.Sprint(i)}})
	}
	idx := uint64(1000)
	for range MaxFailovers + 10 {
		idx++
		applyTo(t, f, idx, command{Op: opFailoverRequest, Time: t0})
		idx++
		applyTo(t, f, idx, command{Op: opFailoverComplete, ID: idx - 1, Time: t0})
	}
	st := f.state()
	if len(st.Events) != MaxEvents {
		t.Fatalf("events = %d, want %d", len(st.Events), MaxEvents)
	}
	if len(st.Service(testService).Failovers) != MaxFailovers {
		t.Fatalf("failovers = %d, want %d", len(st.Service(testService).Failovers), MaxFailovers)
	}
	if last := st.Service(testService).Failovers[len(st.Service(testService).Failovers)-1]; last.ID != idx-1 {
		t.Fatalf("newest failover id = %d, want %d (oldest must be dropped)", last.ID, idx-1)
	}
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

func TestFSMSnapshotRestore(t *testing.T) {
	f := newFSM(nil, testService)
	applyTo(t, f, 1, route("a:6379", 4))
	applyTo(t, f, 2, command{Op: opAdmin, Addr: "r2:6379", Admin: AdminMaintenance, Time: t0})
	applyTo(t, f, 3, command{Op: opFailoverRequest, Reason: "r", Time: t0})
	applyTo(t, f, 4, command{Op: opEvent, Event: &Event{Time: t0, Kind: EventVIPMove, Node: "n1", Message: "vip to n1", Duration: time.Second}})
	want := f.state()

	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	changed := 0
	g := newFSM(func() { changed++ }, testService)
	applyTo(t, g, 1, route("z:1", 1)) // replaced by the restore
	if err := g.Restore(io.NopCloser(&sink)); err != nil {
		t.Fatal(err)
	}
	if got := g.state(); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored state differs:\n got %+v\nwant %+v", got, want)
	}
	if changed != 2 {
		t.Fatalf("onChange called %d times, want 2 (apply + restore)", changed)
	}
	// The restored FSM still enforces the epoch.
	if res := applyTo(t, g, 5, route("b:6379", 3)); !errors.Is(res.err, ErrStaleEpoch) {
		t.Fatalf("after restore: err = %v, want ErrStaleEpoch", res.err)
	}
	if err := g.Restore(io.NopCloser(bytes.NewBufferString("{not json"))); err == nil {
		t.Fatal("restore of garbage succeeded")
	}
}

func TestStateCloneIsDeep(t *testing.T) {
	f := newFSM(nil, testService)
	applyTo(t, f, 1, command{Op: opAdmin, Addr: "r1", Admin: AdminDrain, Time: t0})
	applyTo(t, f, 2, command{Op: opFailoverRequest, Reason: "r", Time: t0})
	s := f.state()
	s.Services[testService].Admin["r1"] = AdminReady
	s.Services[testService].Failovers[0].Status = "x"
	s.Events[0].Kind = "x"
	c := s.Clone()
	c.Services[testService].Admin["r1"] = AdminMaintenance
	if st := f.state(); st.Service(testService).Admin["r1"] != AdminDrain || st.Events[0].Kind != EventAdmin ||
		st.Service(testService).Failovers[0].Status != FailoverPending || s.Services[testService].Admin["r1"] != AdminReady {
		t.Fatal("State() shares memory with the FSM")
	}
}
