package chaos

import (
	"maps"
	"strings"
	"testing"
	"time"
)

// sampled returns a node's replication samples every 150 ms in [from, to)
// ms, each taking 5 ms; state gives the sample at t ms.
func sampled(node string, from, to int64, state func(t int64) ReplSample) []ReplSample {
	var out []ReplSample
	for t := from; t < to; t += 150 {
		s := state(t)
		s.Node, s.Sent, s.Done = node, t*ms, (t+5)*ms
		out = append(out, s)
	}
	return out
}

var down = ReplSample{Err: "dial tcp: i/o timeout"}

func master(id string, offset int64, sentinel string, epoch int64, replicaOffsets ...int64) ReplSample {
	return ReplSample{Role: "master", ReplID: id, Offset: offset, Replicas: len(replicaOffsets), ReplicaOffsets: replicaOffsets,
		SentinelMaster: sentinel, SentinelEpoch: epoch}
}

func replica(of, id string, offset int64, sentinel string, epoch int64) ReplSample {
	return ReplSample{Role: "slave", Master: of, ReplID: id, Offset: offset, LinkUp: true, SentinelMaster: sentinel, SentinelEpoch: epoch}
}

// seed3 is the seed-3 timeline (FINDINGS.md): n1, the old master, is
// partitioned; n3 is down; Sentinel promoted n2 (epoch 1), which has no
// replica at all; n2's Redis is killed at 6 s and n1, back at 7 s, is
// promoted at 8.4 s with its old data. n1 answers master from 7 s to
// 7.75 s although Sentinel names n2 (deposed).
func seed3() []ReplSample {
	var all []ReplSample
	all = append(all, sampled("n1", 0, 12000, func(t int64) ReplSample {
		switch {
		case t < 7000:
			return down
		case t < 7750:
			return master("A", 9000, "n2", 1)
		case t < 8400:
			r := replica("n2", "A", 9000, "n2", 1)
			r.LinkUp = false // SYNC: connection refused
			return r
		}
		return master("C", 9000+t-8400, "n1", 2)
	})...)
	all = append(all, sampled("n2", 0, 12000, func(t int64) ReplSample {
		switch {
		case t < 6000:
			return master("B", 5000+t, "n2", 1)
		case t < 8000:
			return down
		case t < 9000:
			return master("B2", t-8000, "n1", 2) // restarted empty
		}
		return replica("n1", "C", 9000+t-8400, "n1", 2)
	})...)
	all = append(all, sampled("n3", 0, 12000, func(t int64) ReplSample {
		if t < 9000 {
			return down
		}
		return replica("n1", "C", 9000+t-8400, "n1", 2)
	})...)
	return all
}

// inSync: n1 is the master with n2 connected and in sync (its offset
// follows n1's); n1's Redis dies at 5 s and Sentinel promotes n2 at 6 s.
func inSync(replicaOffset func(t int64) int64) []ReplSample {
	var all []ReplSample
	all = append(all, sampled("n1", 0, 10000, func(t int64) ReplSample {
		if t >= 5000 {
			return down
		}
		return master("A", 1000+t, "n1", 0, replicaOffset(t-1000)) // REPLCONF ACK lags
	})...)
	all = append(all, sampled("n2", 0, 10000, func(t int64) ReplSample {
		if t >= 6000 {
			return master("D", 6000, "n2", 1)
		}
		return replica("n1", "A", replicaOffset(t), "n1", 0)
	})...)
	return all
}

func TestUnreplicated(t *testing.T) {
	stuck := func(int64) int64 { return 500 }
	following := func(t int64) int64 { return 1000 + t }
	twoMasters := append(inSync(stuck), sampled("n3", 0, 10000, func(t int64) ReplSample {
		return master("E", 100, "n1", 0)
	})...)
	steady := sampled("n1", 0, 10000, func(t int64) ReplSample { return master("A", 1000+t, "n1", 0) })
	for _, tc := range []struct {
		name     string
		samples  []ReplSample
		inv, ack int64 // ms
		want     bool
		reason   string
	}{
		{"seed 3: the only master had no replica", seed3(), 2990, 3000, true, "master n2 had no replica connected"},
		{"seed 3: a write just before the kill", seed3(), 5800, 5810, true, "master n2 had no replica connected"},
		// n1 answers master but Sentinel already names n2: deposed, not this class
		{"seed 3: the deposed master", seed3(), 7100, 7110, false, ""},
		// a write acked while a replica was connected and in sync, then
		// lost: the replica had it, so the loss is something else
		{"replica connected and in sync", inSync(following), 2990, 3000, false, ""},
		{"replica connected, never got past the write", inSync(stuck), 2990, 3000, true, "replicas stayed at or below offset"},
		{"two masters", twoMasters, 2990, 3000, false, ""},
		{"the master was never lost", steady, 2990, 3000, false, ""},
		{"no sample before the write", seed3(), 1, 10, false, ""},
		{"no samples", nil, 2990, 3000, false, ""},
		// the master is cut off right after the ack (a partition): still its ack
		{"cut off right after the ack", cutOff(), 2990, 3000, true, "master n2 had no replica connected"},
		// the deposed n3 and the restarted n1 answer master too, but their
		// offsets did not move over the write: n2 alone acknowledged it
		{"stale masters with flat offsets", staleMasters(false), 2990, 3000, true, "master n2 had no replica connected"},
		{"a stale master's offset moved over the write", staleMasters(true), 2990, 3000, false, ""},
		// n1's offset moved before the write (1.8 s) only: it had a backlog
		{"stale masters, just after n1's one move", staleMasters(false), 1990, 2000, true, "master n2 had no replica connected"},
		// the Sentinel on n3 led the failover and reports the old master at
		// the new epoch until it ends; the other two name n2 (seed 3, 3 min)
		{"failover leader's report of the old master at the new epoch", leaderTransient(), 2990, 3000, true, "master n2 had no replica connected"},
		// two Sentinels, one of them the leader: its report is flagged
		{"two Sentinels, the leader's report flagged", leaderTransientOfTwo(true), 2990, 3000, true, "master n2 had no replica connected"},
		{"two Sentinels, the leader's report not flagged", leaderTransientOfTwo(false), 2990, 3000, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, why, ok := newReplIndex(tc.samples).unreplicated(tc.inv*ms, tc.ack*ms)
			if ok != tc.want || !strings.Contains(why, tc.reason) {
				t.Errorf("unreplicated = %q %q %v, want %v %q", m, why, ok, tc.want, tc.reason)
			}
		})
	}
}

// CheckLists keeps the earlier classes first and proves the new one only
// for what is left; a loss the samples do not explain stays "other".
func TestCheckListsUnreplicated(t *testing.T) {
	kill := Window{Kind: "kill-redis", Target: "n2", Start: 6000 * ms, End: 13000 * ms, LosesWrites: true}
	ops := []Op{
		push(0, "l", "a", 3000, OK), // n2, no replica: unreplicated
		push(1, "l", "b", 5900, OK), // 100 ms before the kill: replication
		push(2, "l", "c", 7110, OK), // the deposed n1: other
		push(3, "l", "d", 9500, OK), // kept
	}
	final := map[string][]string{"l": {"d"}}
	res := CheckLists(ops, final, []Window{kill}, 500*time.Millisecond, seed3())
	want := map[string]int{LostUnreplicated: 1, LostReplication: 1, LostOther: 1}
	if !maps.Equal(res.ByClass, want) || res.OK() {
		t.Fatalf("ByClass %v, OK %v; want %v, not OK", res.ByClass, res.OK(), want)
	}
	for _, l := range res.Lost {
		if l.Value == "a" && (l.Class != LostUnreplicated || !strings.Contains(l.Fault, "n2")) {
			t.Errorf("lost %+v", l)
		}
	}
	// without the samples the same loss is "other"
	if res := CheckLists(ops, final, []Window{kill}, 500*time.Millisecond, nil); res.ByClass[LostOther] != 2 {
		t.Errorf("without samples: %v", res.ByClass)
	}
}

func TestParseReplInfo(t *testing.T) {
	nodes := map[string]string{"10.0.0.11": "n1", "10.0.0.12": "n2"}
	var m ReplSample
	ParseReplInfo(&m, "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=10.0.0.12,port=6379,state=online,offset=1234,lag=0\r\n"+
		"slave1:ip=10.0.0.13,port=6379,state=wait_bgsave,offset=0,lag=1\r\nmaster_failover_state:no-failover\r\n"+
		"master_replid:abc\r\nmaster_replid2:0000\r\nmaster_repl_offset:1300\r\nsecond_repl_offset:-1\r\n", nodes)
	if m.Role != "master" || m.Replicas != 2 || len(m.ReplicaOffsets) != 2 || m.ReplicaOffsets[0] != 1234 || m.ReplID != "abc" || m.Offset != 1300 {
		t.Errorf("master: %+v", m)
	}
	var r ReplSample
	ParseReplInfo(&r, "# Replication\r\nrole:slave\r\nmaster_host:10.0.0.11\r\nmaster_port:6379\r\nmaster_link_status:up\r\n"+
		"slave_repl_offset:1290\r\nconnected_slaves:0\r\nmaster_replid:abc\r\nmaster_repl_offset:1290\r\n", nodes)
	if r.Role != "slave" || r.Master != "n1" || !r.LinkUp || r.Offset != 1290 || r.ReplID != "abc" || r.Replicas != 0 {
		t.Errorf("replica: %+v", r)
	}
	var s ReplSample
	ParseSentinelMaster(&s, map[string]string{"name": "mymaster", "ip": "10.0.0.12", "port": "6379", "config-epoch": "7"}, nodes)
	if s.SentinelMaster != "n2" || s.SentinelEpoch != 7 {
		t.Errorf("sentinel: %+v", s)
	}
	var l ReplSample
	ParseSentinelMaster(&l, map[string]string{"name": "mymaster", "ip": "10.0.0.11", "config-epoch": "8", "flags": "master,failover_in_progress"}, nodes)
	if l.SentinelMaster != "n1" || l.SentinelEpoch != 8 || !l.SentinelFailover || s.SentinelFailover {
		t.Errorf("a failover's leader: %+v (and %+v)", l, s)
	}
}

// staleMasters is the seed-3 5-min timeline (FINDINGS.md, 02:17:20): n2
// is Sentinel's master (epoch 9), with no replica, and takes the writes;
// n3, deposed at 1 s, and n1, restarted at 1.5 s, still answer master,
// their offsets flat (a Sentinel hello moved n1's once, at 1.8 s). n2
// dies at 6 s; Sentinel promotes n3 (epoch 10) at 7 s. moving makes n3's
// offset move at 2.95-3.05 s (it may have taken a write then).
func staleMasters(moving bool) []ReplSample {
	var all []ReplSample
	all = append(all, sampled("n1", 0, 10000, func(t int64) ReplSample {
		switch {
		case t < 1500:
			return down
		case t < 1800:
			return master("R", 100, "n2", 9)
		case t < 7000:
			return master("R", 150, "n2", 9)
		}
		return replica("n3", "F", 2000+t-7000, "n3", 10)
	})...)
	all = append(all, sampled("n2", 0, 10000, func(t int64) ReplSample {
		if t >= 6000 {
			return down
		}
		return master("B", 5000+t, "n2", 9)
	})...)
	all = append(all, sampled("n3", 0, 10000, func(t int64) ReplSample {
		switch {
		case t < 1000:
			return master("E", 1000+t, "n3", 8)
		case t >= 7000:
			return master("F", 2000+t-7000, "n3", 10)
		case moving && t >= 2950:
			return master("E", 2100, "n2", 9)
		}
		return master("E", 2000, "n2", 9)
	})...)
	return all
}

// leaderTransient is staleMasters(false) with n3's Sentinel reporting
// its old master, n3, at the new epoch 9 from 1 s to 4 s.
func leaderTransient() []ReplSample {
	all := staleMasters(false)
	for i, s := range all {
		if s.Node == "n3" && s.Sent >= 1000*ms && s.Sent < 4000*ms {
			all[i].SentinelMaster, all[i].SentinelEpoch = "n3", 9
		}
	}
	return all
}

// leaderTransientOfTwo is leaderTransient with n1's Sentinel not
// answering; flagged: n3's reports of the old master carry
// failover_in_progress.
func leaderTransientOfTwo(flagged bool) []ReplSample {
	all := leaderTransient()
	for i, s := range all {
		if s.Node == "n1" {
			all[i].SentinelMaster, all[i].SentinelEpoch = "", 0
		}
		if s.Node == "n3" && s.SentinelMaster == "n3" && s.SentinelEpoch == 9 {
			all[i].SentinelFailover = flagged
		}
	}
	return all
}

// cutOff is seed3 with n2 unreachable from 3.05 s on.
func cutOff() []ReplSample {
	all := seed3()
	for i, s := range all {
		if s.Node == "n2" && s.Sent >= 3050*ms && s.Sent < 8000*ms {
			all[i] = ReplSample{Node: "n2", Sent: s.Sent, Done: s.Done, Err: down.Err}
		}
	}
	return all
}
