package probe

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestAnalyze checks a writer's figures from a write log, e2e's view
// (fault only) and the failover benchmark's (fault, then the old master
// restarted on port 7001).
func TestAnalyze(t *testing.T) {
	ms := int64(1e6)
	recs := []Record{
		{Seq: 1, Send: 0, Done: 1 * ms, OK: true, Conn: 1, Port: 7001},
		{Seq: 2, Send: 5 * ms, Done: 6 * ms, OK: true, Conn: 1, Port: 7001},
		{Seq: 3, Send: 10 * ms, Done: 12 * ms, Class: "ERR", Conn: 1}, // fault at 9 ms
		{Seq: 4, Send: 15 * ms, Done: 1500 * ms, OK: true, Conn: 1, Port: 7002},
		{Seq: 5, Send: 1505 * ms, Done: 1506 * ms, OK: true, Conn: 1, Port: 7002},
		{Seq: 6, Send: 1510 * ms, Done: 1511 * ms, Class: "eof", Conn: 1},
		{Seq: 7, Send: 1515 * ms, Done: 1516 * ms, OK: true, Conn: 2, Port: 7001}, // phase 2 from 1512 ms
	}
	present := map[int64]bool{1: true, 2: true, 3: true, 4: true, 6: false}
	f := Analyze(recs, Window{Fault: 9 * ms}, present)
	if f.Writes != 7 || f.Acked != 5 || f.Errors != 2 || f.MaxErrorsPerConn != 2 || f.ErroredApplied != 1 {
		t.Errorf("counts: %+v", f)
	}
	if f.FirstAckMs() != 1491 || f.MaxStallMs != 1494 {
		t.Errorf("FirstAckMs %v, MaxStallMs %v; want 1491, 1494", f.FirstAckMs(), f.MaxStallMs)
	}
	if !slices.Equal(f.Lost, []int64{5, 7}) || f.LostBefore != 0 || f.LostAfter != 2 {
		t.Errorf("lost %v (before %d, after %d), want [5 7] (0, 2)", f.Lost, f.LostBefore, f.LostAfter)
	}
	if got := ClassString(f.Classes, ","); got != "ERR:1,eof:1" {
		t.Errorf("classes %q", got)
	}

	w := Window{Fault: 9 * ms, Phase2: 1512 * ms, Phase2Port: 7001}
	g := Analyze(recs, w, present)
	if g.ErrorsAfter != 2 || g.Phase2Acked != 1 || g.Phase2ViaOld != 1 || g.Phase2ViaOldLost != 1 || g.LostFailover != 1 {
		t.Errorf("phases: %+v", g)
	}
	if got := w.MsAfter(g.LastAckBefore); got != "-3.0" {
		t.Errorf("last ack before the fault %s ms, want -3.0", got)
	}
	if got := ClassString(g.PortsAfter, " "); got != "7002:2" {
		t.Errorf("acks per backend after the fault %q, want 7002:2", got)
	}
	if none := Analyze(recs[:2], Window{Fault: 9 * ms}, nil); none.FirstAckMs() != -1 || none.Lost != nil {
		t.Errorf("no write after the fault: FirstAckMs %v, lost %v", none.FirstAckMs(), none.Lost)
	}
}

// TestLogRoundTrip: what Format writes, ReadLog reads back, with commas
// and newlines in error texts kept out of the fields.
func TestLogRoundTrip(t *testing.T) {
	in := []Record{
		{Seq: 1, Send: 10, Done: 20, OK: true, Port: 6379, Conn: 1},
		{Seq: 2, Send: 30, Done: 40, Class: "MASTERDOWN", Msg: "MASTERDOWN no master, held 5s\nretry", Conn: 2},
	}
	var b bytes.Buffer
	b.WriteString(Header + "\n")
	for _, r := range in {
		r.Format(&b)
	}
	path := filepath.Join(t.TempDir(), "w.csv")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := ReadLog(path)
	if err != nil {
		t.Fatal(err)
	}
	in[1].Msg = "MASTERDOWN no master; held 5s retry"
	if !slices.Equal(out, in) {
		t.Errorf("read back %+v, want %+v", out, in)
	}
	if err := os.WriteFile(path, []byte("seq,send_ns\n1,2\n"), 0o644); err == nil {
		if _, err := ReadLog(path); err == nil {
			t.Error("ReadLog accepted a log with another header")
		}
	}
}
