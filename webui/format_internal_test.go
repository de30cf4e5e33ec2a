package webui

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestHuman(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"}, {-time.Second, "0s"}, {412 * time.Millisecond, "412ms"}, {59 * time.Second, "59s"},
		{3*time.Minute + 4*time.Second, "3m04s"}, {26*time.Hour + 12*time.Minute, "1d02h"}, {2*time.Hour + 5*time.Minute, "2h05m"},
	} {
		if got := human(tt.d); got != tt.want {
			t.Errorf("human(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
	if got := ago(time.Time{}, time.Now()); got != "-" {
		t.Errorf("ago(zero) = %q", got)
	}
}

func TestNumAndBytes(t *testing.T) {
	for _, tt := range []struct {
		v    any
		want string
	}{{int64(0), "0"}, {int64(999), "999"}, {int64(1000), "1,000"}, {uint64(98412377), "98,412,377"}, {int64(-1234567), "-1,234,567"}, {7, "7"}} {
		if got := num(tt.v); got != tt.want {
			t.Errorf("num(%v) = %q, want %q", tt.v, got, tt.want)
		}
	}
	for _, tt := range []struct {
		v    any
		want string
	}{{int64(0), "0 B"}, {uint64(1023), "1023 B"}, {uint64(1536), "1.5 KiB"}, {uint64(9_812_345_678), "9.1 GiB"}} {
		if got := humanBytes(tt.v); got != tt.want {
			t.Errorf("humanBytes(%v) = %q, want %q", tt.v, got, tt.want)
		}
	}
}

func TestStateClass(t *testing.T) {
	for state, want := range map[string]string{
		StateUp: "up", StateDown: "down", StateGoingUp: "goingup", StateGoingDown: "goingdown",
		StateMaint: "maint", StateDrain: "drain", "": "unknown", "weird": "unknown",
	} {
		if got := stateClass(state); got != want {
			t.Errorf("stateClass(%q) = %q, want %q", state, got, want)
		}
	}
}

func TestFailoverStats(t *testing.T) {
	var f FailoverStats
	f.Observe(400 * time.Millisecond)
	f.Observe(1800 * time.Millisecond)
	f.Observe(90 * time.Second)
	if f.Count != 3 || f.Sum != 400*time.Millisecond+1800*time.Millisecond+90*time.Second {
		t.Fatalf("count %d sum %v", f.Count, f.Sum)
	}
	want := []uint64{0, 1, 1, 2, 2, 2, 2, 2, 2, 2} // cumulative, 90s is only in +Inf
	for i, n := range want {
		if f.Buckets[i] != n {
			t.Errorf("bucket le=%v: %d, want %d", FailoverBuckets[i], f.Buckets[i], n)
		}
	}
	c := f.Clone()
	c.Buckets[0] = 99
	if f.Buckets[0] == 99 {
		t.Error("Clone shares buckets")
	}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	var back FailoverStats
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Count != 3 || back.Sum != f.Sum || len(back.Buckets) != len(FailoverBuckets) {
		t.Errorf("round trip: %+v from %s", back, b)
	}
	// Built from the events when no stats are kept.
	snap := Snapshot{Events: []Event{{Kind: EventFailover, Duration: time.Second}, {Kind: EventVIP, Duration: time.Hour}}}
	snap.normalize()
	count, sum, buckets := snap.failoverHistogram(&snap.Services[0])
	if count != 1 || math.Abs(sum-1) > 1e-9 || buckets[1] != 1 || buckets[0.5] != 0 {
		t.Errorf("from events: count %d sum %v buckets %v", count, sum, buckets)
	}
	// With several services, a service counts the events tagged with it;
	// untagged ones count for none of them.
	snap = Snapshot{Events: []Event{
		{Kind: EventFailover, Service: "cache", Duration: 300 * time.Millisecond},
		{Kind: EventFailover, Service: "cache", Duration: 2 * time.Second},
		{Kind: EventFailover, Service: "mymaster", Duration: time.Second},
		{Kind: EventFailover, Duration: time.Second},
	}, Services: []Service{{Name: "mymaster"}, {Name: "cache"}, {Name: "idle", Failovers: f}}}
	snap.normalize()
	for i, want := range []uint64{1, 2, 3} {
		if count, _, _ := snap.failoverHistogram(&snap.Services[i]); count != want || snap.Services[i].Summary.Failovers != want {
			t.Errorf("service %s: %d failovers, summary %d; want %d", snap.Services[i].Name, count, snap.Services[i].Summary.Failovers, want)
		}
	}
}

// TestNormalize: the single-service view of a multi-service snapshot, and
// the service made from a single-service one.
func TestNormalize(t *testing.T) {
	a := Service{Name: "mymaster", Ready: true, Route: Route{Master: "10.0.0.1:6379", Epoch: 3},
		Frontends: []Frontend{{Name: "rw", CurrentSessions: 3, CommandsPerSec: 10}, {Name: "ro", CurrentSessions: 2, CommandsPerSec: 5, Errors: 1}},
		Backends:  []Backend{{Addr: "10.0.0.1:6379", State: StateUp}, {Addr: "10.0.0.2:6379", State: StateDown}}}
	b := Service{Name: "cache", Route: Route{Master: "10.0.1.1:6379", Epoch: 9, Contradicted: "replica"}}
	snap := Snapshot{Ready: true, Services: []Service{a, b}}
	snap.normalize()
	if snap.Ready || snap.Route.Master != a.Route.Master || len(snap.Frontends) != 2 || len(snap.Backends) != 2 {
		t.Errorf("top level of two services: ready %v route %+v, %d frontends, %d backends", snap.Ready, snap.Route, len(snap.Frontends), len(snap.Backends))
	}
	got := snap.Services[0].Summary
	if got.State != ServiceReady || got.CurrentSessions != 5 || got.CommandsPerSec != 15 || got.Errors != 1 || got.BackendsUp != 1 || got.Backends != 2 {
		t.Errorf("summary of %s: %+v", a.Name, got)
	}
	if st := snap.Services[1].Summary.State; st != ServiceContradicted {
		t.Errorf("state of %s = %q, want %q", b.Name, st, ServiceContradicted)
	}
	for _, tt := range []struct {
		sv   Service
		want string
	}{
		{Service{Ready: true}, ServiceReady},
		{Service{}, ServiceNoMaster},
		{Service{Route: Route{Master: "x:1", Contradicted: "not known"}}, ServiceContradicted},
		{Service{Route: Route{Master: "x:1"}}, ServiceNotReady},
	} {
		if got := tt.sv.state(); got != tt.want {
			t.Errorf("state of %+v = %q, want %q", tt.sv, got, tt.want)
		}
	}
	// Services() lookups.
	if sv, err := snap.Service("cache"); err != nil || sv.Name != "cache" {
		t.Errorf(`Service("cache") = %v, %v`, sv, err)
	}
	if _, err := snap.Service(""); !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), `"mymaster", "cache"`) {
		t.Errorf(`Service("") with two services: %v; want a bad request naming both`, err)
	}
	if _, err := snap.Service("nope"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf(`Service("nope"): %v; want not found`, err)
	}
	// One service from the top-level fields; "" names it.
	one := Snapshot{Ready: true, Route: a.Route, Backends: a.Backends}
	one.normalize()
	if len(one.Services) != 1 || !one.Services[0].Ready || one.Services[0].Route != a.Route || len(one.Services[0].Backends) != 2 {
		t.Errorf("one service from the top level: %+v", one.Services)
	}
	if sv, err := one.Service(""); err != nil || sv.Route != a.Route {
		t.Errorf(`Service("") with one service = %v, %v`, sv, err)
	}
	// The Source's slice is not changed.
	src := []Service{a, b}
	snap = Snapshot{Services: src}
	snap.normalize()
	if src[0].Summary != (ServiceSummary{}) {
		t.Error("normalize wrote into the Source's services")
	}
}
