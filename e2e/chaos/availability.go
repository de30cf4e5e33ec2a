package chaos

import (
	"slices"
	"time"
)

// Availability is how much of a run writes went through.
type Availability struct {
	// Fraction of the run's buckets in which at least one write was
	// acknowledged (any client).
	Fraction float64
	// LongestGap is the longest time between two acknowledged writes.
	LongestGap time.Duration
	// ErrorsPerClientPerFault: the most client errors (fail or unknown) a
	// single client saw in one fault's window (its start to 5 s after its
	// end).
	ErrorsPerClientPerFault int
	WorstFault              string
}

// MeasureAvailability computes Availability over [from, to].
func MeasureAvailability(ops []Op, faults []Window, from, to int64, bucket time.Duration) Availability {
	var a Availability
	if to <= from || bucket <= 0 {
		return a
	}
	n := int((to-from)/bucket.Nanoseconds()) + 1
	ok := make([]bool, n)
	var acks []int64
	for _, o := range ops {
		if !o.IsWrite() || o.Outcome != OK || o.Complete < from || o.Complete > to {
			continue
		}
		ok[(o.Complete-from)/bucket.Nanoseconds()] = true
		acks = append(acks, o.Complete)
	}
	good := 0
	for _, b := range ok {
		if b {
			good++
		}
	}
	a.Fraction = float64(good) / float64(n)
	slices.Sort(acks)
	prev := from
	for _, t := range acks {
		a.LongestGap = max(a.LongestGap, time.Duration(t-prev))
		prev = t
	}
	a.LongestGap = max(a.LongestGap, time.Duration(to-prev))
	for _, f := range faults {
		per := map[int]int{}
		for _, o := range ops {
			if o.Outcome != OK && o.Complete >= f.Start && o.Complete <= f.End+int64(5*time.Second) {
				per[o.Client]++
			}
		}
		for _, c := range per {
			if c > a.ErrorsPerClientPerFault {
				a.ErrorsPerClientPerFault, a.WorstFault = c, f.Kind+" "+f.Target
			}
		}
	}
	return a
}
