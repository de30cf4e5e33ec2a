package chaos

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestReadRecorder(t *testing.T) {
	var r ReadRecorder
	for _, tc := range []struct {
		name  string
		key   string
		list  []string
		known int
		tail  []string
	}{
		{"first read: whole", "l", []string{"a", "b"}, 0, []string{"a", "b"}},
		{"grown: the new tail", "l", []string{"a", "b", "c"}, 2, []string{"c"}},
		{"unchanged: nothing new", "l", []string{"a", "b", "c"}, 3, []string{}},
		{"shrunk: whole", "l", []string{"a", "b"}, 0, []string{"a", "b"}},
		{"reordered: whole", "l", []string{"b", "a", "c"}, 0, []string{"b", "a", "c"}},
		{"a value replaced: whole", "l", []string{"b", "x", "c", "d"}, 0, []string{"b", "x", "c", "d"}},
		{"other key: its own first read", "m", []string{"a"}, 0, []string{"a"}},
		{"emptied: whole (empty)", "l", nil, 0, nil},
		{"after empty: whole", "l", []string{"z"}, 0, []string{"z"}},
	} {
		known, tail := r.Record(tc.key, slices.Clone(tc.list))
		if known != tc.known || !slices.Equal(tail, tc.tail) {
			t.Errorf("%s: Record(%v) = %d, %v; want %d, %v", tc.name, tc.list, known, tail, tc.known, tc.tail)
		}
	}
	// A tail must not keep the reply's array alive (the writer keeps every
	// tail until it stops).
	big := []string{"a", "b", "c", "d"}
	r.Record("n", big[:2])
	if _, tail := r.Record("n", big); &tail[0] == &big[2] {
		t.Error("the tail shares the reply's array")
	}
}

// randomHistory is a list workload like the chaos run's: clients push
// unique values and read the lists, with a crash that loses the last few
// values and, if anomalies, reads that lost, reordered or invented a value
// outside any crash.
func randomHistory(seed uint64, anomalies bool) ([]Op, map[string][]string, []Window) {
	rng := rand.New(rand.NewPCG(seed, 0))
	lists := map[string][]string{}
	keys := []string{"l:0", "l:1"}
	var ops []Op
	now := int64(0)
	crash := Window{Kind: "kill-redis", Target: "n1", Start: 1500 * ms, End: 1800 * ms, LosesWrites: true}
	crashed := false
	for seq := range 2500 {
		now += ms
		c := rng.IntN(6)
		k := keys[rng.IntN(len(keys))]
		if !crashed && now >= crash.Start {
			crashed = true
			for _, k := range keys {
				if n := len(lists[k]); n > 3 {
					lists[k] = lists[k][:n-3] // acked within the lag, gone
				}
			}
		}
		if now > crash.Start && now < crash.End {
			continue
		}
		o := Op{Client: c, Key: k, Invoke: now, Complete: now + ms/2, Outcome: OK}
		switch rng.IntN(3) {
		case 0:
			o.Kind, o.Value = KindRPush, fmt.Sprintf("c%d-%d", c, seq)
			switch rng.IntN(20) {
			case 0:
				o.Outcome = Fail
			case 1:
				o.Outcome = Unknown
				lists[k] = append(lists[k], o.Value)
			default:
				lists[k] = append(lists[k], o.Value)
			}
		default:
			o.Kind, o.List = KindLRange, slices.Clone(lists[k])
			if rng.IntN(30) == 0 {
				o.Outcome, o.List = Unknown, nil
			}
			if anomalies && len(o.List) > 4 {
				switch rng.IntN(200) {
				case 0: // a value vanished
					o.List = slices.Delete(o.List, 1, 2)
				case 1: // two swapped
					o.List[0], o.List[1] = o.List[1], o.List[0]
				case 2: // a value nobody pushed
					o.List = append(o.List, "zz")
				}
			}
		}
		ops = append(ops, o)
	}
	return ops, lists, []Window{crash}
}

func TestCompactReadsRoundTrip(t *testing.T) {
	for _, anomalies := range []bool{false, true} {
		full, _, _ := randomHistory(7, anomalies)
		compact := CompactReads(full)
		extending, whole := 0, 0
		for i, o := range compact {
			if o.Kind != KindLRange || o.Outcome != OK {
				if !reflect.DeepEqual(o, full[i]) {
					t.Fatalf("op %d changed: %+v -> %+v", i, full[i], o)
				}
				continue
			}
			if o.Known > 0 {
				extending++
			} else {
				whole++
			}
		}
		if extending == 0 || whole == 0 {
			t.Fatalf("anomalies %v: %d reads recorded as a tail, %d whole; want some of each", anomalies, extending, whole)
		}
		path := filepath.Join(t.TempDir(), "h.jsonl")
		if err := WriteOps(path, compact); err != nil {
			t.Fatal(err)
		}
		read, err := ReadOps(path)
		if err != nil {
			t.Fatal(err)
		}
		expanded, err := ExpandReads(read)
		if err != nil {
			t.Fatal(err)
		}
		for i := range full {
			if expanded[i].Known != 0 || !slices.Equal(expanded[i].List, full[i].List) {
				t.Fatalf("anomalies %v: op %d expands to %d+%v, recorded %v", anomalies, i, expanded[i].Known, expanded[i].List, full[i].List)
			}
		}
		fullPath := filepath.Join(t.TempDir(), "full.jsonl")
		if err := WriteOps(fullPath, full); err != nil {
			t.Fatal(err)
		}
		a, _ := os.Stat(fullPath)
		b, _ := os.Stat(path)
		for name, h := range map[string][]Op{"full": full, "compact": compact} {
			if n, err := FullSize(h); err != nil || n != a.Size() {
				t.Errorf("FullSize of the %s history: %d, %v; the file in full has %d bytes", name, n, err, a.Size())
			}
		}
		t.Logf("anomalies %v: %d reads as a tail, %d whole; history %d bytes in full, %d compact", anomalies, extending, whole, a.Size(), b.Size())
	}
}

// A shrunk or reordered read is stored whole, so the read check sees it
// in the compact history as in the full one.
func TestCompactReadsKeepAnomalies(t *testing.T) {
	for name, ops := range map[string][]Op{
		"shrunk":    {lrange("l", 0, 1, "a", "b"), lrange("l", 5, 6, "a")},
		"reordered": {lrange("l", 0, 1, "a", "b"), lrange("l", 5, 6, "b", "a", "c")},
		"replaced":  {lrange("l", 0, 1, "a", "b"), lrange("l", 3, 4, "a", "b", "c"), lrange("l", 5, 6, "a", "x", "c", "d")},
	} {
		compact := CompactReads(ops)
		last := compact[len(compact)-1]
		if last.Known != 0 || !slices.Equal(last.List, ops[len(ops)-1].List) {
			t.Errorf("%s: stored as %d+%v, want the whole list", name, last.Known, last.List)
		}
		if bad := checkListReads(compact, nil, 0); len(bad) != 1 {
			t.Errorf("%s: compact history flagged %v, want one", name, bad)
		}
	}
	// Another client's read is checked against the first client's longer
	// one: their chains differ.
	ops := []Op{lrange("l", 0, 1, "a", "b"), lrange("l", 2, 3, "a", "b", "c"),
		{Client: 1, Kind: KindLRange, Key: "l", List: []string{"a"}, Invoke: 1 * ms, Complete: 2 * ms, Outcome: OK},
		{Client: 1, Kind: KindLRange, Key: "l", List: []string{"a", "c"}, Invoke: 10 * ms, Complete: 11 * ms, Outcome: OK}}
	compact := CompactReads(ops)
	if compact[3].Known != 1 {
		t.Fatalf("client 1's second read stored as %d+%v, want its tail", compact[3].Known, compact[3].List)
	}
	if bad := checkListReads(compact, nil, 0); len(bad) != 1 || !strings.Contains(bad[0], "read of 2 values") {
		t.Errorf("a value of client 0's read missing from client 1's: flagged %v, want one", bad)
	}
}

func TestCompactReadsBadEncoding(t *testing.T) {
	ops := []Op{lrange("l", 0, 1, "a"), lrange("l", 2, 3, "b")}
	ops[1].Known = 2 // the previous read had 1 value
	if _, err := ExpandReads(ops); err == nil {
		t.Error("ExpandReads accepted a read extending more values than the previous one had")
	}
	if bad := checkListReads(ops, nil, 0); len(bad) != 1 || !strings.HasPrefix(bad[0], "history:") {
		t.Errorf("checkListReads: %v, want the history error", bad)
	}
}

// The checks give the same results on a history recorded in full and on
// its compact form.
func TestChecksSameOnCompactHistory(t *testing.T) {
	for _, anomalies := range []bool{false, true} {
		full, final, faults := randomHistory(11, anomalies)
		const lag = 100 * time.Millisecond
		a := CheckLists(full, final, faults, lag, nil)
		b := CheckLists(CompactReads(full), final, faults, lag, nil)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("anomalies %v: full %+v\ncompact %+v", anomalies, a, b)
		}
		if a.Acked == 0 || a.ByClass[LostReplication] == 0 {
			t.Fatalf("anomalies %v: nothing acked or lost at the crash: %+v", anomalies, a)
		}
		if anomalies != (len(a.ReadsBad) > 0) {
			t.Fatalf("anomalies %v: bad reads %v", anomalies, a.ReadsBad)
		}
		t.Logf("anomalies %v: acked %d, lost %v, bad reads %d", anomalies, a.Acked, a.ByClass, len(a.ReadsBad))
		ra, err := CheckRegister(full, faults, lag, time.Minute, "")
		if err != nil {
			t.Fatal(err)
		}
		rb, err := CheckRegister(CompactReads(full), faults, lag, time.Minute, "")
		if err != nil || !reflect.DeepEqual(ra, rb) {
			t.Fatalf("registers: full %+v, compact %+v, %v", ra, rb, err)
		}
		av := MeasureAvailability(full, faults, 0, 2500*ms, 100*time.Millisecond)
		if bv := MeasureAvailability(CompactReads(full), faults, 0, 2500*ms, 100*time.Millisecond); av != bv {
			t.Fatalf("availability: full %+v, compact %+v", av, bv)
		}
	}
}

// Long chains shared by several clients: 10000 reads of a list growing to
// 5000 values, every client's reads but its first stored as a tail
// (bounded generously: the race detector on a loaded host).
func TestCheckListReadsLongLists(t *testing.T) {
	var ops []Op
	var list []string
	rec := map[int]*ReadRecorder{}
	for i := range 15000 {
		now := int64(i) * ms
		if i%3 == 0 {
			list = append(list, fmt.Sprintf("v%d", i))
			continue
		}
		c := i % 8
		if rec[c] == nil {
			rec[c] = &ReadRecorder{}
		}
		known, tail := rec[c].Record("l", list)
		ops = append(ops, Op{Client: c, Kind: KindLRange, Key: "l", Known: known, List: tail, Invoke: now, Complete: now + ms/2, Outcome: OK})
	}
	start := time.Now()
	if bad := checkListReads(ops, nil, 0); len(bad) != 0 {
		t.Fatalf("flagged %v", bad[:1])
	}
	if d := time.Since(start); d > 60*time.Second {
		t.Errorf("took %v", d)
	}
}
