package chaos

import (
	"fmt"
	"slices"
	"sort"
	"time"
)

// Loss classes of acknowledged RPUSH values missing from the final list.
const (
	// LostReplication: acknowledged within lag before a fault that took
	// the master away without telling it: Redis's asynchronous replication
	// had not copied it yet. Redis's behaviour, not the proxy's.
	LostReplication = "replication"
	// LostWiped: acknowledged before a fault that restarted the master
	// empty (Window.Wipes). Redis's behaviour without persistence.
	LostWiped = "wiped"
	// LostUnreplicated: acknowledged by the only master at that moment,
	// which had no replica connected, or whose replicas never got past
	// its offset before the write until it was lost (ReplSample, see
	// replIndex.unreplicated): Redis's asynchronous replication without
	// min-replicas-to-write, proven from the replication samples rather
	// than from the time to the next fault. Not the proxy's doing.
	LostUnreplicated = "unreplicated"
	// LostOther: any other acknowledged write that is gone, e.g. one that
	// a deposed master acknowledged. Must be 0.
	LostOther = "other"
)

// Lost is one acknowledged write missing at the end.
type Lost struct {
	Key, Value string
	Acked      int64  // Unix ns of the acknowledgement
	Class      string // one of the Lost* classes
	// Fault is the fault the loss is attributed to ("" for LostOther; for
	// LostUnreplicated the master and why), and BeforeFault how long
	// before its start the write was acknowledged.
	Fault       string
	BeforeFault time.Duration
}

// ListResult is the verdict of the list workload.
type ListResult struct {
	Acked      int            // acknowledged RPUSH values
	Lost       []Lost         // acknowledged, missing from the final lists
	ByClass    map[string]int // len(Lost) per class
	Duplicated []string       // values present more than once ("key value")
	Phantom    []string       // values present that no client pushed with an ok or unknown outcome
	FailedSeen []string       // values present although their RPUSH definitely failed
	ReadsBad   []string       // LRANGE results that are not a prefix-consistent view (a value vanished)
}

// OK tells whether nothing but replication losses were found.
func (r ListResult) OK() bool {
	return r.ByClass[LostOther] == 0 && len(r.Duplicated) == 0 && len(r.Phantom) == 0 &&
		len(r.FailedSeen) == 0 && len(r.ReadsBad) == 0
}

// CheckLists compares the acknowledged RPUSHes with the final lists (read
// from the final master after every fault healed). A missing value
// acknowledged from lag before the start of a fault that loses writes to
// lag after the fault was applied (Window.Applied: the fault takes effect
// somewhere in between) is a replication loss; one acknowledged before a fault that
// restarted the master empty is LostWiped; of the rest, one that the
// replication samples (repl, may be nil) prove was acknowledged by a
// master that never replicated it is LostUnreplicated; anything else
// missing is LostOther.
func CheckLists(ops []Op, final map[string][]string, faults []Window, lag time.Duration, repl []ReplSample) ListResult {
	res := ListResult{ByClass: map[string]int{}}
	idx := newReplIndex(repl)
	type push struct {
		outcome       string
		invoke, acked int64
	}
	pushes := map[string]map[string]push{} // key -> value -> push
	for _, o := range ops {
		if o.Kind != KindRPush {
			continue
		}
		if pushes[o.Key] == nil {
			pushes[o.Key] = map[string]push{}
		}
		pushes[o.Key][o.Value] = push{outcome: o.Outcome, invoke: o.Invoke, acked: o.Complete}
		if o.Outcome == OK {
			res.Acked++
		}
	}
	var losing []Window
	for _, f := range faults {
		if f.LosesWrites {
			losing = append(losing, f)
		}
	}
	keys := make([]string, 0, len(pushes))
	for k := range pushes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		present := map[string]int{}
		for _, v := range final[k] {
			present[v]++
		}
		for v, n := range present {
			p, pushed := pushes[k][v]
			switch {
			case n > 1:
				res.Duplicated = append(res.Duplicated, k+" "+v)
			case !pushed:
				res.Phantom = append(res.Phantom, k+" "+v)
			case p.outcome == Fail:
				res.FailedSeen = append(res.FailedSeen, k+" "+v)
			}
		}
		vals := make([]string, 0, len(pushes[k]))
		for v := range pushes[k] {
			vals = append(vals, v)
		}
		sort.Strings(vals)
		for _, v := range vals {
			p := pushes[k][v]
			if p.outcome != OK || present[v] > 0 {
				continue
			}
			l := Lost{Key: k, Value: v, Acked: p.acked, Class: LostOther}
			for _, f := range losing {
				// acknowledged at most lag before the fault began, or before it
				// took effect (within lag after its command returned)
				if p.acked >= f.Start-lag.Nanoseconds() && p.acked <= f.applied()+lag.Nanoseconds() {
					l.Class, l.Fault, l.BeforeFault = LostReplication, f.Kind+" "+f.Target, time.Duration(f.Start-p.acked)
					break
				}
			}
			for _, f := range faults {
				if l.Class == LostOther && f.Wipes && p.acked <= f.applied()+lag.Nanoseconds() {
					l.Class, l.Fault, l.BeforeFault = LostWiped, f.Kind+" "+f.Target, time.Duration(f.Start-p.acked)
				}
			}
			if l.Class == LostOther {
				if _, why, ok := idx.unreplicated(p.invoke, p.acked); ok {
					l.Class, l.Fault = LostUnreplicated, why
				}
			}
			res.Lost = append(res.Lost, l)
			res.ByClass[l.Class]++
		}
	}
	res.ReadsBad = checkListReads(ops, losing, lag)
	return res
}

// checkListReads: a list only grows, so a read must contain, as a prefix,
// every read of the same key that completed before it was sent, unless a
// fault that loses writes came in between. It works on the compact
// history (reads as prefixes of their client's chain), so its cost follows
// the history's size, not the sum of the lists' lengths.
func checkListReads(ops []Op, losing []Window, lag time.Duration) []string {
	all, err := decodeReads(ops)
	if err != nil {
		return []string{err.Error()}
	}
	byKey := map[string][]listRead{}
	for _, r := range all {
		k := ops[r.op].Key
		byKey[k] = append(byKey[k], r)
	}
	var p prefixes
	var bad []string
	for k, reads := range byKey {
		sort.Slice(reads, func(i, j int) bool { return ops[reads[i].op].Invoke < ops[reads[j].op].Invoke })
		byDone := slices.Clone(reads)
		sort.Slice(byDone, func(i, j int) bool { return ops[byDone[i].op].Complete < ops[byDone[j].op].Complete })
		var last *listRead // the longest read completed so far
		d := 0
		for _, r := range reads {
			o := ops[r.op]
			for d < len(byDone) && ops[byDone[d].op].Complete < o.Invoke {
				if last == nil || byDone[d].n >= last.n {
					last = &byDone[d]
				}
				d++
			}
			if last == nil || p.isPrefix(*last, r) {
				continue
			}
			lastDone := ops[last.op].Complete
			lossBetween := false
			for _, f := range losing {
				if f.Start-lag.Nanoseconds() <= o.Invoke && f.End >= lastDone-lag.Nanoseconds() {
					lossBetween = true
				}
			}
			if !lossBetween {
				bad = append(bad, fmt.Sprintf("%s: read of %d values at %d lost a value of the read of %d at %d",
					k, r.n, o.Invoke, last.n, lastDone))
			}
		}
	}
	sort.Strings(bad)
	return bad
}

func isPrefix(a, b []string) bool {
	return len(a) <= len(b) && slices.Equal(a, b[:len(a)])
}
