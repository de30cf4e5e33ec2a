//go:build e2e

package e2e

import "testing"

// TestVIPFigures checks the replay of the VIP samplers' history: time
// with two holders, longest time with none, clipped to the window.
func TestVIPFigures(t *testing.T) {
	for _, tc := range []struct {
		name            string
		hist            []vipChange
		from, to        int64
		doubleNs, gapNs int64
	}{
		{"one holder throughout", []vipChange{{0, "n1", true, 0}}, 10, 100, 0, 0},
		{"move with a gap", []vipChange{{0, "n1", true, 0}, {30, "n1", false, 0}, {70, "n2", true, 0}}, 10, 100, 0, 40},
		{"overlap", []vipChange{{0, "n1", true, 0}, {30, "n2", true, 0}, {45, "n1", false, 0}}, 10, 100, 15, 0},
		{"gap open at the end", []vipChange{{0, "n1", true, 0}, {80, "n1", false, 0}}, 10, 100, 0, 20},
		{"clipped before from", []vipChange{{0, "n1", true, 0}, {1, "n2", true, 0}, {5, "n1", false, 0}, {50, "n2", false, 0}, {60, "n3", true, 0}}, 10, 100, 0, 10},
		// n1 was last seen holding at 35 and saw itself without the VIP
		// at 45, n2 saw it at 30: not surely two holders; the gap figure
		// keeps what the samplers saw.
		{"overlap within a sampling round", []vipChange{{0, "n1", true, 0}, {30, "n2", true, 0}, {45, "n1", false, 25}}, 10, 100, 0, 0},
		{"overlap longer than a sampling round", []vipChange{{0, "n1", true, 0}, {30, "n2", true, 0}, {60, "n1", false, 50}}, 10, 100, 20, 0},
		{"mixed", []vipChange{{0, "n1", false, 0}, {0, "n2", false, 0}, {100, "n1", true, 0}, {500, "n1", false, 0}, {800, "n2", true, 0}, {900, "n1", true, 0}, {950, "n1", false, 0}}, 200, 1000, 50, 300},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, g := vipFigures(tc.hist, tc.from, tc.to)
			if d != float64(tc.doubleNs)/1e6 || g != float64(tc.gapNs)/1e6 {
				t.Errorf("vipFigures = double %v ms, gap %v ms; want %v, %v", d, g, float64(tc.doubleNs)/1e6, float64(tc.gapNs)/1e6)
			}
		})
	}
}
