package topology

import (
	"strings"
	"testing"
	"time"
)

const (
	nA = "10.0.0.1:6379"
	nB = "10.0.0.2:6379"
	nC = "10.0.0.3:6379"
)

func sen(master string, epoch int64) SentinelState {
	return SentinelState{Addr: "s", Reachable: true, Master: master, Epoch: epoch}
}

func senDown() SentinelState { return SentinelState{Addr: "s", LastError: "dial: refused"} }

func master(addr string) NodeState {
	return NodeState{Addr: addr, Up: true, Role: RoleMaster, LinkUp: true, LastCheck: time.Unix(1, 0)}
}

func replica(addr, of string, linkUp bool) NodeState {
	return NodeState{Addr: addr, Up: true, Role: RoleReplica, MasterAddr: of, LinkUp: linkUp, LastCheck: time.Unix(1, 0)}
}

func down(addr string) NodeState {
	return NodeState{Addr: addr, LastError: "dial tcp " + addr + ": connection refused", LastCheck: time.Unix(1, 0)}
}

func nodes(ns ...NodeState) map[string]NodeState {
	m := map[string]NodeState{}
	for _, n := range ns {
		m[n.Addr] = n
	}
	return m
}

func TestDecideSentinel(t *testing.T) {
	healthy := nodes(master(nA), replica(nB, nA, true), replica(nC, nA, true))
	failedOver := nodes(down(nA), master(nB), replica(nC, nB, true))
	restarted := nodes(master(nA), master(nB), replica(nC, nB, true))
	tests := []struct {
		name       string
		sentinels  []SentinelState
		nodes      map[string]NodeState
		cand       candidate
		prev       decision
		wantMaster string
		wantEpoch  int64
		wantOwner  string
		wantReason string // substring
	}{
		{
			name:       "all agree",
			sentinels:  []SentinelState{sen(nA, 0), sen(nA, 0), sen(nA, 0)},
			nodes:      healthy,
			wantMaster: nA, wantEpoch: 0, wantOwner: nA, wantReason: "3/3 sentinels at epoch 0",
		},
		{
			name:      "stalled master (BUSY or slow) is still the master",
			sentinels: []SentinelState{sen(nA, 3), sen(nA, 3), sen(nA, 3)},
			nodes: nodes(NodeState{Addr: nA, Up: true, Role: RoleMaster, LinkUp: true, Stalled: true, LastCheck: time.Unix(1, 0),
				LastError: "BUSY Redis is busy running a script."}, replica(nB, nA, true)),
			prev:       decision{Owner: nA, Epoch: 3, Master: nA},
			wantMaster: nA, wantEpoch: 3, wantOwner: nA, wantReason: "role confirmed",
		},
		{
			name:       "majority at highest epoch",
			sentinels:  []SentinelState{sen(nB, 5), sen(nB, 5), sen(nA, 4)},
			nodes:      failedOver,
			prev:       decision{Owner: nA, Epoch: 4},
			wantMaster: nB, wantEpoch: 5, wantOwner: nB, wantReason: "2/3 sentinels at epoch 5",
		},
		{
			name:       "minority at lower epoch disagrees",
			sentinels:  []SentinelState{sen(nA, 5), sen(nA, 5), sen(nB, 4)},
			nodes:      nodes(master(nA), master(nB)),
			prev:       decision{Owner: nA, Epoch: 5, Master: nA},
			wantMaster: nA, wantEpoch: 5, wantOwner: nA,
		},
		{
			name:       "minority at higher epoch and previous master dead: no master",
			sentinels:  []SentinelState{sen(nB, 5), sen(nA, 4), sen(nA, 4)},
			nodes:      failedOver,
			prev:       decision{Owner: nA, Epoch: 4},
			wantMaster: "", wantEpoch: 4, wantOwner: nA, wantReason: "no majority of 3 reachable sentinels at epoch 5",
		},
		{
			name:       "minority at higher epoch disagrees with live previous master",
			sentinels:  []SentinelState{sen(nB, 5), sen(nA, 4), sen(nA, 4)},
			nodes:      restarted,
			prev:       decision{Owner: nA, Epoch: 4, Master: nA},
			wantMaster: "", wantEpoch: 4, wantOwner: nA, wantReason: "no majority",
		},
		{
			name:       "majority of reachable only",
			sentinels:  []SentinelState{sen(nB, 5), senDown(), senDown()},
			nodes:      failedOver,
			prev:       decision{Owner: nA, Epoch: 4},
			wantMaster: nB, wantEpoch: 5, wantOwner: nB, wantReason: "1/1 sentinels",
		},
		{
			name:       "no sentinel reachable",
			sentinels:  []SentinelState{senDown(), senDown()},
			nodes:      healthy,
			prev:       decision{Owner: nA, Epoch: 0, Master: nA},
			wantMaster: "", wantEpoch: 0, wantOwner: nA, wantReason: "no sentinel reachable",
		},
		{
			name:       "epoch never backwards: stale majority for old master refused",
			sentinels:  []SentinelState{sen(nA, 4), sen(nA, 4), sen(nA, 4)},
			nodes:      restarted,
			prev:       decision{Owner: nB, Epoch: 5, Master: nB},
			wantMaster: nB, wantEpoch: 5, wantOwner: nB, wantReason: "kept at epoch 5",
		},
		{
			name:       "epoch never backwards: old master refused even when the new one is down",
			sentinels:  []SentinelState{sen(nA, 4), sen(nA, 4), sen(nA, 4)},
			nodes:      nodes(master(nA), down(nB)),
			prev:       decision{Owner: nB, Epoch: 5, Master: nB},
			wantMaster: "", wantEpoch: 5, wantOwner: nB, wantReason: "master " + nB + " not confirmed: down",
		},
		{
			name:       "restarted old master at new epoch majority",
			sentinels:  []SentinelState{sen(nB, 5), sen(nB, 5), sen(nB, 5)},
			nodes:      restarted,
			prev:       decision{Owner: nB, Epoch: 5, Master: nB},
			wantMaster: nB, wantEpoch: 5, wantOwner: nB,
		},
		{
			name:       "unconfirmed: sentinel master is a replica",
			sentinels:  []SentinelState{sen(nA, 1), sen(nA, 1), sen(nA, 1)},
			nodes:      nodes(replica(nA, nB, true), master(nB)),
			wantMaster: "", wantEpoch: 0, wantOwner: "", wantReason: "sentinel master " + nA + " not confirmed: role replica",
		},
		{
			name:       "unconfirmed: sentinel master down",
			sentinels:  []SentinelState{sen(nA, 4), sen(nA, 4), sen(nA, 4)},
			nodes:      failedOver,
			prev:       decision{Owner: nA, Epoch: 4, Master: nA},
			wantMaster: "", wantEpoch: 4, wantOwner: nA, wantReason: "sentinel master " + nA + " not confirmed: down (connection refused)",
		},
		{
			name:       "unconfirmed: not checked yet",
			sentinels:  []SentinelState{sen(nA, 0)},
			nodes:      nodes(),
			wantMaster: "", wantReason: "not confirmed: not checked yet",
		},
		{
			name:       "failover candidate confirmed before sentinels switch",
			sentinels:  []SentinelState{sen(nA, 4), sen(nA, 4), sen(nA, 4)},
			nodes:      failedOver,
			cand:       candidate{Addr: nB, Epoch: 5},
			prev:       decision{Owner: nA, Epoch: 4},
			wantMaster: nB, wantEpoch: 5, wantOwner: nB, wantReason: "failover at epoch 5",
		},
		{
			name:       "failover candidate not yet master: hold, even if old master lives",
			sentinels:  []SentinelState{sen(nA, 4), sen(nA, 4), sen(nA, 4)},
			nodes:      healthy,
			cand:       candidate{Addr: nB, Epoch: 5},
			prev:       decision{Owner: nA, Epoch: 4, Master: nA},
			wantMaster: "", wantEpoch: 4, wantOwner: nA, wantReason: "failover candidate " + nB + " not confirmed: role replica",
		},
		{
			name:       "failover candidate at stale epoch ignored",
			sentinels:  []SentinelState{sen(nA, 4), sen(nA, 4), sen(nA, 4)},
			nodes:      nodes(master(nA), master(nB)),
			cand:       candidate{Addr: nB, Epoch: 3},
			prev:       decision{Owner: nA, Epoch: 4, Master: nA},
			wantMaster: nA, wantEpoch: 4, wantOwner: nA,
		},
		{
			name:       "sentinels disagree at the same epoch",
			sentinels:  []SentinelState{sen(nA, 4), sen(nB, 4), sen(nA, 3)},
			nodes:      nodes(master(nA), master(nB)),
			wantMaster: "", wantReason: "sentinels disagree at epoch 4",
		},
		{
			name:       "same owner reported at a lower epoch keeps the floor epoch",
			sentinels:  []SentinelState{sen(nB, 5), sen(nB, 5), sen(nB, 5)},
			nodes:      failedOver,
			prev:       decision{Owner: nB, Epoch: 6, Master: nB},
			wantMaster: nB, wantEpoch: 6, wantOwner: nB,
		},
		{
			name:       "sentinel with unknown master name counts as reachable",
			sentinels:  []SentinelState{sen(nA, 0), {Addr: "s", Reachable: true, LastError: "ERR No such master"}, {Addr: "s", Reachable: true}},
			nodes:      healthy,
			wantMaster: "", wantReason: "no majority of 3 reachable sentinels at epoch 0",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := decide(decideInput{UseSentinel: true, Sentinels: tc.sentinels, Nodes: tc.nodes, Candidate: tc.cand, Prev: tc.prev})
			if got.Master != tc.wantMaster || got.Epoch != tc.wantEpoch || got.Owner != tc.wantOwner {
				t.Errorf("got master=%q epoch=%d owner=%q (%s), want master=%q epoch=%d owner=%q",
					got.Master, got.Epoch, got.Owner, got.Reason, tc.wantMaster, tc.wantEpoch, tc.wantOwner)
			}
			if !strings.Contains(got.Reason, tc.wantReason) {
				t.Errorf("reason %q does not contain %q", got.Reason, tc.wantReason)
			}
			if got.Epoch < tc.prev.Epoch {
				t.Errorf("epoch went backwards: %d < %d", got.Epoch, tc.prev.Epoch)
			}
		})
	}
}

// TestDecideSentinelSequence replays a failover and a restarted old master
// step by step, feeding each decision into the next.
func TestDecideSentinelSequence(t *testing.T) {
	steps := []struct {
		name       string
		sentinels  []SentinelState
		nodes      map[string]NodeState
		cand       candidate
		wantMaster string
		wantEpoch  int64
	}{
		{"start", []SentinelState{sen(nA, 0), sen(nA, 0), sen(nA, 0)}, nodes(master(nA), replica(nB, nA, true), replica(nC, nA, true)), candidate{}, nA, 0},
		{"master killed", []SentinelState{sen(nA, 0), sen(nA, 0), sen(nA, 0)}, nodes(down(nA), replica(nB, nA, false), replica(nC, nA, false)), candidate{}, "", 0},
		{"candidate named", []SentinelState{sen(nA, 0), sen(nA, 0), sen(nA, 0)}, nodes(down(nA), replica(nB, nA, false), replica(nC, nA, false)), candidate{nB, 1}, "", 0},
		{"candidate promoted", []SentinelState{sen(nA, 0), sen(nA, 0), sen(nA, 0)}, nodes(down(nA), master(nB), replica(nC, nA, false)), candidate{nB, 1}, nB, 1},
		{"leader switched", []SentinelState{sen(nB, 1), sen(nA, 0), sen(nA, 0)}, nodes(down(nA), master(nB), replica(nC, nB, true)), candidate{}, nB, 1},
		{"old master restarted as master", []SentinelState{sen(nB, 1), sen(nA, 0), sen(nA, 0)}, nodes(master(nA), master(nB), replica(nC, nB, true)), candidate{}, nB, 1},
		{"all switched", []SentinelState{sen(nB, 1), sen(nB, 1), sen(nB, 1)}, nodes(master(nA), master(nB), replica(nC, nB, true)), candidate{}, nB, 1},
		{"old master converted", []SentinelState{sen(nB, 1), sen(nB, 1), sen(nB, 1)}, nodes(replica(nA, nB, true), master(nB), replica(nC, nB, true)), candidate{}, nB, 1},
	}
	var prev decision
	for _, st := range steps {
		got := decide(decideInput{UseSentinel: true, Sentinels: st.sentinels, Nodes: st.nodes, Candidate: st.cand, Prev: prev})
		if got.Master != st.wantMaster || got.Epoch != st.wantEpoch {
			t.Fatalf("%s: got master=%q epoch=%d (%s), want %q epoch %d", st.name, got.Master, got.Epoch, got.Reason, st.wantMaster, st.wantEpoch)
		}
		if got.Master == nA && st.wantEpoch > 0 {
			t.Fatalf("%s: old master chosen", st.name)
		}
		prev = got
	}
}

func TestDecideRoles(t *testing.T) {
	tests := []struct {
		name       string
		nodes      map[string]NodeState
		prev       decision
		wantMaster string
		wantEpoch  int64
		wantReason string
	}{
		{"one claimer", nodes(master(nA), replica(nB, nA, true)), decision{}, nA, 1, "only node with role master"},
		{"one claimer unchanged keeps epoch", nodes(master(nA), replica(nB, nA, true)), decision{Owner: nA, Epoch: 1, Master: nA}, nA, 1, ""},
		{"master moved bumps epoch", nodes(down(nA), master(nB)), decision{Owner: nA, Epoch: 1, Master: nA}, nB, 2, ""},
		{"no claimer", nodes(down(nA), replica(nB, nA, false)), decision{Owner: nA, Epoch: 1, Master: nA}, "", 1, "no node claims master"},
		{"two claim, replicas settle it", nodes(master(nA), master(nB), replica(nC, nB, true)), decision{Owner: nB, Epoch: 2, Master: nB}, nB, 2, "replicas follow " + nB},
		{"two claim, replica link down does not settle", nodes(master(nA), master(nB), replica(nC, nB, false)), decision{Owner: nB, Epoch: 2, Master: nB}, "", 2, "2 nodes claim master and replicas do not settle it"},
		{"two claim, no replicas", nodes(master(nA), master(nB)), decision{}, "", 0, "2 nodes claim master and replicas do not settle it"},
		{"two claim, replicas split", nodes(master(nA), master(nB), replica(nC, nB, true), replica("10.0.0.4:6379", nA, true)), decision{}, "", 0, "do not settle"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := decide(decideInput{Nodes: tc.nodes, Prev: tc.prev})
			if got.Master != tc.wantMaster || got.Epoch != tc.wantEpoch {
				t.Errorf("got master=%q epoch=%d (%s), want %q epoch %d", got.Master, got.Epoch, got.Reason, tc.wantMaster, tc.wantEpoch)
			}
			if !strings.Contains(got.Reason, tc.wantReason) {
				t.Errorf("reason %q does not contain %q", got.Reason, tc.wantReason)
			}
		})
	}
}
