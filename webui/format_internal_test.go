package webui

import (
	"encoding/json"
	"math"
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
	count, sum, buckets := snap.failoverHistogram()
	if count != 1 || math.Abs(sum-1) > 1e-9 || buckets[1] != 1 || buckets[0.5] != 0 {
		t.Errorf("from events: count %d sum %v buckets %v", count, sum, buckets)
	}
}
