package topology

import (
	"strings"
	"testing"
	"time"
)

func TestObservationContradicts(t *testing.T) {
	stalled := func(n NodeState, lastErr string) NodeState {
		n.Stalled, n.LastError = true, lastErr
		return n
	}
	obs := func(ns ...NodeState) Observation { return Observation{Nodes: ns} }
	tests := []struct {
		name    string
		obs     Observation
		master  string
		want    bool
		wantWhy string // substring
	}{
		{"no committed master", obs(master(nA)), "", false, ""},
		{"confirmed master", obs(master(nA), replica(nB, nA, true)), nA, false, ""},
		{"stranger (not a known node)", obs(master(nA), replica(nB, nA, true)), nC, true, nC + " is not a redis node this watcher knows"},
		{"stranger, watcher knows nothing yet", obs(), nA, true, "not a redis node this watcher knows"},
		{"known replica", obs(master(nA), replica(nB, nA, true)), nB, true, nB + " answers ROLE as a replica of " + nA},
		{"known replica with its link down", obs(master(nA), replica(nB, nA, false)), nB, true, "as a replica of " + nA},
		{"replica that names no master", obs(replica(nB, "", false)), nB, true, nB + " answers ROLE as a replica"},
		{"stalled replica: its last answer stands", obs(stalled(replica(nB, nA, true), "BUSY")), nB, true, "as a replica"},
		{"down (refused) is no contradiction", obs(down(nA), master(nB)), nA, false, ""},
		{"BUSY master is no contradiction", obs(stalled(master(nA), "BUSY Redis is busy running a script.")), nA, false, ""},
		{"slow master (timeout) is no contradiction", obs(stalled(master(nA), "i/o timeout")), nA, false, ""},
		{"known, not checked yet", obs(NodeState{Addr: nA}), nA, false, ""},
		{"role unknown (sentinel at the address, auth failed)", obs(NodeState{Addr: nA, LastError: "auth failed", LastCheck: time.Unix(1, 0)}), nA, false, ""},
		{"another master elsewhere does not matter", obs(master(nA), master(nB)), nB, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			why, got := tc.obs.Contradicts(tc.master)
			if got != tc.want || !strings.Contains(why, tc.wantWhy) || (!got && why != "") {
				t.Fatalf("Contradicts(%q) = %q, %v; want %v with %q", tc.master, why, got, tc.want, tc.wantWhy)
			}
		})
	}
}

func TestObservationEpochAhead(t *testing.T) {
	withNew := func(s SentinelState, e int64) SentinelState { s.NewEpoch = e; return s }
	tests := []struct {
		name      string
		sentinels []SentinelState
		epoch     int64
		wantMax   int64
		want      bool
	}{
		{"no sentinel", nil, 999, 0, false},
		{"none reachable yet", []SentinelState{senDown(), senDown()}, 999, 0, false},
		{"at the sentinels' epoch", []SentinelState{sen(nA, 5), sen(nA, 5)}, 5, 5, false},
		{"below (an old route)", []SentinelState{sen(nA, 5)}, 4, 5, false},
		{"above every sentinel", []SentinelState{sen(nA, 5), sen(nA, 4), senDown()}, 999999999, 5, true},
		{"one ahead of config epochs, but a sentinel announced it (+new-epoch, failover under way)",
			[]SentinelState{withNew(sen(nA, 5), 6), sen(nA, 5)}, 6, 6, false},
		{"+new-epoch from an unreachable poller still counts", []SentinelState{withNew(senDown(), 7)}, 7, 7, false},
		{"ahead of +new-epoch too", []SentinelState{withNew(sen(nA, 5), 6)}, 7, 6, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gotMax, got := Observation{Sentinels: tc.sentinels}.EpochAhead(tc.epoch)
			if got != tc.want || gotMax != tc.wantMax {
				t.Fatalf("EpochAhead(%d) = %d, %v; want %d, %v", tc.epoch, gotMax, got, tc.wantMax, tc.want)
			}
		})
	}
}
