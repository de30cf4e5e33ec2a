//go:build e2e

package e2e

import (
	"slices"
	"testing"
)

// TestVIPFigures checks the replay of the VIP samplers' history: time
// with two holders, longest time with none, clipped to the window.
func TestVIPFigures(t *testing.T) {
	for _, tc := range []struct {
		name            string
		hist            []vipChange
		from, to        int64
		doubleNs, gapNs int64
	}{
		{"one holder throughout", []vipChange{{0, "n1", true}}, 10, 100, 0, 0},
		{"move with a gap", []vipChange{{0, "n1", true}, {30, "n1", false}, {70, "n2", true}}, 10, 100, 0, 40},
		{"overlap", []vipChange{{0, "n1", true}, {30, "n2", true}, {45, "n1", false}}, 10, 100, 15, 0},
		{"gap open at the end", []vipChange{{0, "n1", true}, {80, "n1", false}}, 10, 100, 0, 20},
		{"clipped before from", []vipChange{{0, "n1", true}, {1, "n2", true}, {5, "n1", false}, {50, "n2", false}, {60, "n3", true}}, 10, 100, 0, 10},
		{"mixed", []vipChange{{0, "n1", false}, {0, "n2", false}, {100, "n1", true}, {500, "n1", false}, {800, "n2", true}, {900, "n1", true}, {950, "n1", false}}, 200, 1000, 50, 300},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, g := vipFigures(tc.hist, tc.from, tc.to)
			if d != float64(tc.doubleNs)/1e6 || g != float64(tc.gapNs)/1e6 {
				t.Errorf("vipFigures = double %v ms, gap %v ms; want %v, %v", d, g, float64(tc.doubleNs)/1e6, float64(tc.gapNs)/1e6)
			}
		})
	}
}

// TestWriterFigures checks the per-writer figures from a write log.
func TestWriterFigures(t *testing.T) {
	ms := int64(1e6)
	recs := []record{
		{seq: 1, send: 0, done: 1 * ms, ok: true, conn: 1},
		{seq: 2, send: 5 * ms, done: 6 * ms, ok: true, conn: 1},
		{seq: 3, send: 10 * ms, done: 12 * ms, class: "ERR", conn: 1}, // fault at 9 ms
		{seq: 4, send: 15 * ms, done: 1500 * ms, ok: true, conn: 1},
		{seq: 5, send: 1505 * ms, done: 1506 * ms, ok: true, conn: 1},
		{seq: 6, send: 1510 * ms, done: 1511 * ms, class: "eof", conn: 1},
		{seq: 7, send: 1515 * ms, done: 1516 * ms, ok: true, conn: 2},
	}
	present := map[int64]bool{1: true, 2: true, 3: true, 4: true, 7: true}
	f := figures(recs, 9*ms, present)
	if f.writes != 7 || f.acked != 5 || f.errs != 2 || f.maxErrsPerConn != 2 || f.erroredApplied != 1 {
		t.Errorf("counts: %+v", f)
	}
	if f.firstAckMs != 1491 || f.maxStallMs != 1494 {
		t.Errorf("firstAckMs %v, maxStallMs %v; want 1491, 1494", f.firstAckMs, f.maxStallMs)
	}
	if !slices.Equal(f.lost, []int64{5}) {
		t.Errorf("lost %v, want [5]", f.lost)
	}
	if got := f.classString(); got != "ERR:1,eof:1" {
		t.Errorf("classes %q", got)
	}
}
