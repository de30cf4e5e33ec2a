package chaos

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

const ms = int64(time.Millisecond)

func set(client int, key, v string, inv, done int64, outcome string) Op {
	return Op{Client: client, Kind: KindSet, Key: key, Value: v, Invoke: inv * ms, Complete: done * ms, Outcome: outcome}
}

func get(client int, key, v string, inv, done int64) Op {
	return Op{Client: client, Kind: KindGet, Key: key, Value: v, Invoke: inv * ms, Complete: done * ms, Outcome: OK}
}

func TestCheckRegister(t *testing.T) {
	crash := Window{Kind: "kill-redis", Target: "n1", Start: 100 * ms, End: 200 * ms, LosesWrites: true}
	pause := Window{Kind: "pause-agent", Target: "n2", Start: 100 * ms, End: 200 * ms}
	for _, tc := range []struct {
		name   string
		ops    []Op
		faults []Window
		legal  bool
	}{
		{"sequential", []Op{set(0, "a", "1", 0, 1, OK), get(1, "a", "1", 2, 3), set(0, "a", "2", 4, 5, OK), get(1, "a", "2", 6, 7)}, nil, true},
		{"stale read", []Op{set(0, "a", "1", 0, 1, OK), set(0, "a", "2", 2, 3, OK), get(1, "a", "1", 4, 5)}, nil, false},
		{"read of a never written value", []Op{set(0, "a", "1", 0, 1, OK), get(1, "a", "9", 2, 3)}, nil, false},
		{"concurrent read may see either", []Op{set(0, "a", "1", 0, 1, OK), set(0, "a", "2", 2, 10, OK), get(1, "a", "1", 3, 4)}, nil, true},
		{"unknown write may appear later", []Op{set(0, "a", "1", 0, 1, OK), set(0, "a", "2", 2, 3, Unknown), get(1, "a", "2", 50, 51)}, nil, true},
		{"unknown write may never appear", []Op{set(0, "a", "1", 0, 1, OK), set(0, "a", "2", 2, 3, Unknown), get(1, "a", "1", 50, 51)}, nil, true},
		{"unknown write read, then an older value", []Op{set(0, "a", "1", 0, 1, OK), set(0, "a", "2", 2, 3, Unknown), get(1, "a", "2", 50, 51), get(1, "a", "1", 52, 53)}, nil, false},
		{"failed write must not appear", []Op{set(0, "a", "1", 0, 1, OK), set(0, "a", "2", 2, 3, Fail), get(1, "a", "2", 50, 51)}, nil, false},
		{"keys are independent", []Op{set(0, "a", "1", 0, 1, OK), set(0, "b", "2", 2, 3, OK), get(1, "a", "1", 4, 5), get(1, "b", "2", 4, 5)}, nil, true},
		// A write acknowledged just before the master was killed is lost by
		// asynchronous replication: allowed across a fault that loses writes...
		{"lost across a crash", []Op{set(0, "a", "1", 0, 1, OK), set(0, "a", "2", 90, 95, OK), get(1, "a", "1", 300, 301), get(1, "a", "1", 302, 303)}, []Window{crash}, true},
		// ...but not across a fault that does not (an agent pause).
		{"lost across an agent pause", []Op{set(0, "a", "1", 0, 1, OK), set(0, "a", "2", 90, 95, OK), get(1, "a", "1", 300, 301)}, []Window{pause}, false},
		// After the crash the segment starts unknown, but must be
		// linearizable from its first read on.
		{"stale read after a crash", []Op{set(0, "a", "1", 0, 1, OK), get(1, "a", "1", 300, 301), set(0, "a", "3", 302, 303, OK), get(1, "a", "1", 304, 305)}, []Window{crash}, false},
		// A write of unknown outcome never returns, so it overlaps the next
		// cut; it is read before that cut, in its own segment (seed 2, 10 min).
		{"unknown write read before the next crash", []Op{set(0, "a", "1", 0, 1, OK), set(0, "a", "2", 10, 20, Unknown), get(1, "a", "2", 12, 13), get(1, "a", "2", 300, 301)}, []Window{crash}, true},
		{"unknown write read before the next crash, then an older value", []Op{set(0, "a", "1", 0, 1, OK), set(0, "a", "2", 10, 20, Unknown), get(1, "a", "2", 12, 13), get(1, "a", "1", 30, 31)}, []Window{crash}, false},
		{"write overlapping a crash appears later", []Op{set(0, "a", "1", 0, 1, OK), set(0, "a", "2", 150, 400, Unknown), get(1, "a", "1", 300, 301), get(1, "a", "2", 500, 501)}, []Window{crash}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := CheckRegister(tc.ops, tc.faults, 50*time.Millisecond, 10*time.Second, "")
			if err != nil {
				t.Fatal(err)
			}
			if res.Linearizable() != tc.legal {
				t.Errorf("linearizable = %v, want %v (%+v)", res.Linearizable(), tc.legal, res)
			}
		})
	}
}

// Writes that overlapped a crash go to the next segment as unknown writes
// concurrent with all of it; thousands of them (seed 1) left porcupine
// undecided. Those nobody read are left out, so the check decides at once,
// and an illegal read in that segment is still found.
func TestCheckRegisterManyUnknownWrites(t *testing.T) {
	crash := Window{Kind: "kill-redis", Target: "n1", Start: 100 * ms, End: 200 * ms, LosesWrites: true}
	for _, legal := range []bool{true, false} {
		var ops []Op
		for i := range 400 { // overlap the crash, never read
			ops = append(ops, set(i%8, "a", fmt.Sprintf("x%d", i), 150, 150+int64(i), Unknown))
		}
		ops = append(ops, set(9, "a", "k", 90, 300, Unknown)) // overlaps, read later: kept
		ops = append(ops, get(10, "a", "k", 310, 311), set(10, "a", "y", 312, 313, OK), get(10, "a", "y", 314, 315))
		for i := range 200 {
			ops = append(ops, set(11, "a", fmt.Sprintf("z%d", i), 400+2*int64(i), 401+2*int64(i), OK))
		}
		if !legal {
			ops = append(ops, get(10, "a", "y", 900, 901)) // stale: z199 was written
		}
		start := time.Now()
		res, err := CheckRegister(ops, []Window{crash}, 50*time.Millisecond, 20*time.Second, "")
		if err != nil {
			t.Fatal(err)
		}
		// each write overlapping the crash is in both segments: 400 unread
		// in each, and k unread in the first
		if res.TimedOut != 0 || res.Linearizable() != legal || res.UnreadUnknown != 801 {
			t.Errorf("legal=%v: got %+v in %v, want decided, linearizable=%v, 801 unread unknown writes left out", legal, res, time.Since(start), legal)
		}
	}
}

func TestCheckRegisterVisualizes(t *testing.T) {
	dir := t.TempDir()
	ops := []Op{set(0, "a", "1", 0, 1, OK), set(0, "a", "2", 2, 3, OK), get(1, "a", "1", 4, 5)}
	res, err := CheckRegister(ops, nil, 0, 10*time.Second, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Visualized) != 1 {
		t.Fatalf("visualized %v, want one file", res.Visualized)
	}
	if fi, err := os.Stat(res.Visualized[0]); err != nil || fi.Size() == 0 {
		t.Errorf("visualisation %s: %v", res.Visualized[0], err)
	}
}

func push(client int, key, v string, done int64, outcome string) Op {
	return Op{Client: client, Kind: KindRPush, Key: key, Value: v, Invoke: (done - 1) * ms, Complete: done * ms, Outcome: outcome}
}

func lrange(key string, inv, done int64, vals ...string) Op {
	return Op{Kind: KindLRange, Key: key, List: vals, Invoke: inv * ms, Complete: done * ms, Outcome: OK}
}

func TestCheckLists(t *testing.T) {
	crash := Window{Kind: "kill-redis", Target: "n1", Start: 1000 * ms, End: 3000 * ms, LosesWrites: true}
	ops := []Op{
		push(0, "l", "a", 10, OK),
		push(0, "l", "b", 990, OK),       // 10 ms before the crash: replication loss
		push(0, "l", "c", 2000, OK),      // a second after the crash: must not be lost
		push(0, "l", "d", 2100, Unknown), // may or may not be there
		push(0, "l", "e", 2200, Fail),    // must not be there
		push(1, "l", "f", 2300, OK),
	}
	final := map[string][]string{"l": {"a", "d", "e", "f", "f", "zz"}}
	res := CheckLists(ops, final, []Window{crash}, 100*time.Millisecond, nil)
	if res.Acked != 4 {
		t.Errorf("acked %d, want 4", res.Acked)
	}
	if res.ByClass[LostReplication] != 1 || res.ByClass[LostOther] != 1 {
		t.Errorf("lost by class %v, want 1 replication (b) and 1 other (c): %+v", res.ByClass, res.Lost)
	}
	for _, l := range res.Lost {
		if (l.Value == "b") != (l.Class == LostReplication) {
			t.Errorf("lost %+v: wrong class", l)
		}
	}
	if !slices.Equal(res.Duplicated, []string{"l f"}) || !slices.Equal(res.Phantom, []string{"l zz"}) || !slices.Equal(res.FailedSeen, []string{"l e"}) {
		t.Errorf("duplicated %v, phantom %v, failed seen %v", res.Duplicated, res.Phantom, res.FailedSeen)
	}
	if res.OK() {
		t.Error("OK() with a lost write of class other")
	}
	clean := CheckLists(ops[:2], map[string][]string{"l": {"a"}}, []Window{crash}, 100*time.Millisecond, nil)
	if !clean.OK() || clean.ByClass[LostReplication] != 1 {
		t.Errorf("a replication loss only: OK %v, %+v", clean.OK(), clean)
	}
}

// Under load the fault's command (`docker exec kill`, `docker network
// disconnect`) returns a second or more after the nemesis began it, and
// the master acknowledges until it takes effect (seed 3, 30 min: ~380
// losses 0.5-1 s after the recorded start). The class follows the moment
// the command returned (Window.Applied), not the start alone.
func TestCheckListsApplied(t *testing.T) {
	crash := Window{Kind: "kill-redis", Target: "n1", Start: 1000 * ms, End: 5000 * ms, LosesWrites: true, Applied: 2200 * ms}
	ops := []Op{
		push(0, "l", "a", 950, OK),  // before the start: replication
		push(0, "l", "b", 1800, OK), // after the start, before the kill returned: replication
		push(0, "l", "c", 2600, OK), // within lag after it returned: replication
		push(0, "l", "d", 2900, OK), // later: other
		push(0, "l", "e", 4000, OK), // kept
	}
	final := map[string][]string{"l": {"e"}}
	res := CheckLists(ops, final, []Window{crash}, 500*time.Millisecond, nil)
	if want := map[string]int{LostReplication: 3, LostOther: 1}; !maps.Equal(res.ByClass, want) {
		t.Errorf("ByClass %v, want %v (%+v)", res.ByClass, want, res.Lost)
	}
	// without the moment it was applied, only the start counts
	crash.Applied = 0
	res = CheckLists(ops, final, []Window{crash}, 500*time.Millisecond, nil)
	if want := map[string]int{LostReplication: 1, LostOther: 3}; !maps.Equal(res.ByClass, want) {
		t.Errorf("no Applied: ByClass %v, want %v", res.ByClass, want)
	}
	// a wipe counts up to the moment it was applied too
	wipe := Window{Kind: "kill-node", Target: "n1", Start: 1000 * ms, End: 5000 * ms, Applied: 2200 * ms, Wipes: true}
	res = CheckLists(ops, final, []Window{wipe}, 500*time.Millisecond, nil)
	if want := map[string]int{LostWiped: 3, LostOther: 1}; !maps.Equal(res.ByClass, want) {
		t.Errorf("wipe: ByClass %v, want %v", res.ByClass, want)
	}
}

// seed 1: the master's Redis was killed, no failover happened (the
// Sentinels split their votes) and it was restarted empty: everything
// acknowledged before is gone, by Redis's doing; a write acknowledged
// after the restart and lost is still "other".
func TestCheckListsWiped(t *testing.T) {
	wipe := Window{Kind: "kill-redis", Target: "n1", Start: 1000 * ms, End: 3000 * ms, LosesWrites: true, Wipes: true}
	ops := []Op{push(0, "l", "a", 10, OK), push(0, "l", "b", 995, OK), push(0, "l", "c", 2500, OK), push(0, "l", "d", 2600, OK)}
	res := CheckLists(ops, map[string][]string{"l": {"d"}}, []Window{wipe}, 50*time.Millisecond, nil)
	want := map[string]int{LostWiped: 1, LostReplication: 1, LostOther: 1} // a, b, c
	if !maps.Equal(res.ByClass, want) || res.OK() {
		t.Fatalf("ByClass %v, OK %v; want %v, not OK", res.ByClass, res.OK(), want)
	}
	wipe.Wipes = false
	if res := CheckLists(ops, map[string][]string{"l": {"d"}}, []Window{wipe}, 50*time.Millisecond, nil); res.ByClass[LostWiped] != 0 {
		t.Fatalf("a fault that did not wipe: %v", res.ByClass)
	}
}

func TestCheckListReads(t *testing.T) {
	crash := Window{Kind: "kill-redis", Target: "n1", Start: 1000 * ms, End: 3000 * ms, LosesWrites: true}
	good := []Op{lrange("l", 0, 1, "a"), lrange("l", 2, 3, "a", "b"), lrange("l", 2, 4, "a")}
	if bad := checkListReads(good, nil, 0); len(bad) != 0 {
		t.Errorf("growing reads flagged: %v", bad)
	}
	shrunk := []Op{lrange("l", 0, 1, "a", "b"), lrange("l", 5, 6, "a")}
	if bad := checkListReads(shrunk, nil, 0); len(bad) != 1 {
		t.Errorf("a value vanished between two reads: flagged %v, want one", bad)
	}
	acrossCrash := []Op{lrange("l", 900, 950, "a", "b"), lrange("l", 3100, 3200, "a")}
	if bad := checkListReads(acrossCrash, []Window{crash}, 100*time.Millisecond); len(bad) != 0 {
		t.Errorf("a value lost across a crash flagged: %v", bad)
	}
}

func TestMeasureAvailability(t *testing.T) {
	ops := []Op{push(0, "l", "a", 100, OK), push(0, "l", "b", 200, OK), push(0, "l", "c", 900, OK),
		push(1, "l", "x", 500, Unknown), push(1, "l", "y", 600, Fail), push(0, "l", "z", 650, Fail)}
	f := Window{Kind: "kill-redis", Target: "n1", Start: 400 * ms, End: 450 * ms}
	a := MeasureAvailability(ops, []Window{f}, 0, 1000*ms, 100*time.Millisecond)
	if a.LongestGap != 700*time.Millisecond {
		t.Errorf("longest gap %v, want 700ms", a.LongestGap)
	}
	if a.Fraction < 0.27 || a.Fraction > 0.28 { // 3 of 11 buckets
		t.Errorf("fraction %v, want 3/11", a.Fraction)
	}
	if a.ErrorsPerClientPerFault != 2 || a.WorstFault != "kill-redis n1" {
		t.Errorf("errors per client per fault %d (%s), want 2", a.ErrorsPerClientPerFault, a.WorstFault)
	}
}

func TestOpsRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.jsonl")
	in := []Op{set(0, "a", "1", 0, 1, OK), lrange("l", 2, 3, "x", "y")}
	if err := WriteOps(path, in[:1]); err != nil {
		t.Fatal(err)
	}
	if err := WriteOps(path, in[1:]); err != nil {
		t.Fatal(err)
	}
	out, err := ReadOps(path)
	if err != nil || len(out) != 2 || out[0].Value != "1" || !slices.Equal(out[1].List, []string{"x", "y"}) {
		t.Errorf("read back %+v, %v", out, err)
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  string
		conn bool
		want string
	}{
		{"", false, OK},
		{"i/o timeout", true, Unknown},
		{"ERR redhaven: connection to master lost, command outcome unknown", false, Unknown},
		{"MASTERDOWN redhaven: no master available (held 5s)", false, Fail},
		{"READONLY You can't write against a read only replica.", false, Fail},
	} {
		if got := Classify(tc.err, tc.conn); got != tc.want {
			t.Errorf("Classify(%q, %v) = %s, want %s", tc.err, tc.conn, got, tc.want)
		}
	}
}

func TestSchedule(t *testing.T) {
	nodes := []string{"n1", "n2", "n3"}
	a := Schedule(42, 10*time.Minute, nodes)
	if !slices.Equal(a, Schedule(42, 10*time.Minute, nodes)) {
		t.Fatal("the same seed gave two schedules")
	}
	if slices.Equal(a, Schedule(43, 10*time.Minute, nodes)) {
		t.Error("seeds 42 and 43 gave the same schedule")
	}
	if len(a) < 30 {
		t.Errorf("%d faults in 10 minutes, want at least 30", len(a))
	}
	kinds := map[string]int{}
	for i, f := range a {
		kinds[f.Kind]++
		if f.At+f.Duration > 10*time.Minute {
			t.Errorf("fault %v runs past the end", f)
		}
		if !fits(a[:i], f) {
			t.Errorf("fault %v breaks the overlap rules", f)
		}
		running, heavies := 0, 0
		for _, g := range a[:i] {
			if g.At+g.Duration+time.Second > f.At {
				running++
				if heavy[g.Kind] {
					heavies++
				}
			}
		}
		if running > 1 || (heavy[f.Kind] && heavies > 0) {
			t.Errorf("fault %v starts with %d others running (%d heavy)", f, running, heavies)
		}
	}
	if len(kinds) < 8 {
		t.Errorf("only %d kinds of faults in 10 minutes: %v", len(kinds), kinds)
	}
	t.Log(FormatSchedule(42, a[:8]))
}
