package chaos

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRecheckSavedRun runs the checkers again on a saved run (the
// chaos.jsonl, final.json and faults.json that make chaos writes to
// dist/chaos; repl.jsonl, the replication samples, when the run has it), to diagnose a run after a checker change without running
// it again: CHAOS_RECHECK=dist/chaos go test -run TestRecheckSavedRun -v ./e2e/chaos
// (CHAOS_COMPACT=file also writes the history in compact form there).
func TestRecheckSavedRun(t *testing.T) {
	dir := os.Getenv("CHAOS_RECHECK")
	if dir == "" {
		t.Skip("CHAOS_RECHECK is not set")
	}
	ops, err := ReadOps(filepath.Join(dir, "chaos.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var final map[string][]string
	var faults []Window
	for name, v := range map[string]any{"final.json": &final, "faults.json": &faults} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err == nil {
			err = json.Unmarshal(b, v)
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	stored, whole := 0, 0
	if reads, err := decodeReads(ops); err == nil {
		for _, r := range reads {
			stored += len(ops[r.op].List)
			whole += r.n
		}
	}
	t.Logf("%d operations; LRANGE values stored %d, in the whole lists %d", len(ops), stored, whole)
	if fi, err := os.Stat(filepath.Join(dir, "chaos.jsonl")); err == nil {
		full, err := FullSize(ops)
		t.Logf("history %d bytes; recorded whole it would be %d bytes (%v)", fi.Size(), full, err)
	}
	if path := os.Getenv("CHAOS_COMPACT"); path != "" {
		// a history recorded in full (before ReadRecorder), rewritten compact
		if err := WriteOps(path, CompactReads(ops)); err != nil {
			t.Fatal(err)
		}
	}
	const lag = 500 * time.Millisecond // as in e2e TestChaos
	repl, err := ReadReplSamples(filepath.Join(dir, "repl.jsonl"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	t.Logf("%d replication samples", len(repl))
	lists := CheckLists(ops, final, faults, lag, repl)
	t.Logf("lists: acked %d, lost: %d replication, %d wiped, %d unreplicated, %d other; by class %v, duplicated %d, phantom %d, failed-but-present %d, reads that lost a value %d",
		lists.Acked, lists.ByClass[LostReplication], lists.ByClass[LostWiped], lists.ByClass[LostUnreplicated], lists.ByClass[LostOther],
		lists.ByClass, len(lists.Duplicated), len(lists.Phantom), len(lists.FailedSeen), len(lists.ReadsBad))
	unrepl := map[string]int{}
	for _, l := range lists.Lost {
		if l.Class == LostUnreplicated {
			unrepl[l.Fault]++
		}
	}
	for why, n := range unrepl {
		t.Logf("  unreplicated %d: %s", n, why)
	}
	for _, l := range lists.Lost {
		if l.Class == LostOther {
			t.Logf("  lost %s %s acked %s", l.Key, l.Value, time.Unix(0, l.Acked).UTC().Format("15:04:05.000"))
		}
	}
	start := time.Now()
	reg, err := CheckRegister(ops, faults, lag, 2*time.Minute, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("registers (%v): %+v linearizable=%v", time.Since(start).Round(time.Millisecond), reg, reg.Linearizable())
}
