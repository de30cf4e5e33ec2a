package cluster

import (
	"errors"
	"testing"
)

// TestRouteResetApply: the reset clears a pinned route so that a lower
// epoch is accepted again; a reset that names another route, or one while
// a planned failover runs, changes nothing.
func TestRouteResetApply(t *testing.T) {
	reset := func(expect *RouteDecision) command {
		return command{Op: opRouteReset, Time: t0, Node: "n1", Reason: "test", Route: expect}
	}
	f := newFSM(nil, testService)
	if res := applyTo(t, f, 1, route("stranger:6379", 999999999)); res.err != nil {
		t.Fatal(res.err)
	}
	if res := applyTo(t, f, 2, route("real:6379", 7)); !errors.Is(res.err, ErrStaleEpoch) {
		t.Fatalf("lower epoch over the pinned route: %v, want ErrStaleEpoch", res.err)
	}
	if res := applyTo(t, f, 3, reset(&RouteDecision{Master: "stranger:6379", Epoch: 5})); !errors.Is(res.err, ErrRouteChanged) {
		t.Fatalf("reset naming another epoch: %v, want ErrRouteChanged", res.err)
	}
	if f.state().Service(testService).Route.Epoch != 999999999 {
		t.Fatalf("refused reset changed the route: %+v", f.state().Service(testService).Route)
	}
	if res := applyTo(t, f, 4, reset(&RouteDecision{Master: "stranger:6379", Epoch: 999999999})); res.err != nil || !res.changed {
		t.Fatalf("reset: %+v", res)
	}
	st := f.state()
	if st.Service(testService).Route.Master != "" || st.Service(testService).Route.Epoch != 0 || st.Service(testService).Route.DecidedBy != "n1" {
		t.Fatalf("route after reset: %+v", st.Service(testService).Route)
	}
	if last := st.Events[len(st.Events)-1]; last.Kind != EventRouteChange {
		t.Fatalf("no route_change event for the reset: %+v", last)
	}
	if res := applyTo(t, f, 5, reset(nil)); res.err != nil || res.changed {
		t.Fatalf("reset of an empty route: %+v, want a no-op", res)
	}
	if res := applyTo(t, f, 6, route("real:6379", 7)); res.err != nil {
		t.Fatalf("sentinel's epoch after the reset: %v", res.err)
	}
	if res := applyTo(t, f, 7, command{Op: opFailoverRequest, Time: t0, Node: "n1", Reason: "test"}); res.err != nil {
		t.Fatal(res.err)
	}
	if res := applyTo(t, f, 8, reset(nil)); !errors.Is(res.err, ErrFailoverPending) {
		t.Fatalf("reset during a planned failover: %v, want ErrFailoverPending", res.err)
	}
	if f.state().Service(testService).Route.Master != "real:6379" {
		t.Fatalf("route changed by a refused reset: %+v", f.state().Service(testService).Route)
	}
}
