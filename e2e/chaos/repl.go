package chaos

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ReplSample is one `INFO replication` of one node's Redis, taken by the
// workload's replication sampler (writer chaos -redis) every ~150 ms from
// the client container, so that a lost write can be traced to a master
// that had nobody to replicate it to.
type ReplSample struct {
	Node string `json:"node"`
	Sent int64  `json:"sent"` // Unix ns: INFO sent (the state is at or after it)
	Done int64  `json:"done"` // Unix ns: reply received (the state is at or before it)
	Err  string `json:"err,omitempty"`
	Role string `json:"role,omitempty"` // master or slave
	// ReplID and Offset: master_replid and master_repl_offset (on a
	// replica, the offset it has processed, in its master's offset space).
	ReplID string `json:"replid,omitempty"`
	Offset int64  `json:"offset"`
	// Master: a replica's master_host as a node name (the address when it
	// is not one of the nodes); LinkUp: master_link_status:up.
	Master string `json:"master,omitempty"`
	LinkUp bool   `json:"link_up,omitempty"`
	// Replicas: a master's connected_slaves; ReplicaOffsets: the offsets
	// its replicas last acknowledged (REPLCONF ACK, once a second).
	Replicas       int     `json:"replicas,omitempty"`
	ReplicaOffsets []int64 `json:"replica_offsets,omitempty"`
	// SentinelMaster and SentinelEpoch: the same node's Sentinel's master
	// (node name; "" when the Sentinel did not answer) and config-epoch
	// (SENTINEL MASTER), asked right after INFO.
	SentinelMaster string `json:"sentinel_master,omitempty"`
	SentinelEpoch  int64  `json:"sentinel_epoch,omitempty"`
	// SentinelFailover: that Sentinel's flags say failover_in_progress (it
	// leads a failover: until it ends it reports the old master's address
	// with the new epoch).
	SentinelFailover bool `json:"sentinel_failover,omitempty"`
}

func (s ReplSample) master() bool { return s.Err == "" && s.Role == "master" }

// ParseReplInfo fills a sample from the text of `INFO replication`;
// nodes maps an IP address to its node name (for a replica's master_host).
func ParseReplInfo(s *ReplSample, info string, nodes map[string]string) {
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch {
		case k == "role":
			s.Role = v
		case k == "master_replid":
			s.ReplID = v
		case k == "master_repl_offset":
			s.Offset, _ = strconv.ParseInt(v, 10, 64)
		case k == "master_host":
			s.Master = v
			if n, ok := nodes[v]; ok {
				s.Master = n
			}
		case k == "master_link_status":
			s.LinkUp = v == "up"
		case k == "connected_slaves":
			s.Replicas, _ = strconv.Atoi(v)
		case strings.HasPrefix(k, "slave") && strings.Contains(v, "offset="):
			// slave0:ip=10.0.0.12,port=6379,state=online,offset=123,lag=0
			for _, f := range strings.Split(v, ",") {
				if o, ok := strings.CutPrefix(f, "offset="); ok {
					n, _ := strconv.ParseInt(o, 10, 64)
					s.ReplicaOffsets = append(s.ReplicaOffsets, n)
				}
			}
		}
	}
}

// ParseSentinelMaster fills the Sentinel fields of a sample from the
// field/value reply of SENTINEL MASTER.
func ParseSentinelMaster(s *ReplSample, fields map[string]string, nodes map[string]string) {
	ip, ok := fields["ip"]
	if !ok {
		return
	}
	s.SentinelMaster = ip
	if n, ok := nodes[ip]; ok {
		s.SentinelMaster = n
	}
	s.SentinelEpoch, _ = strconv.ParseInt(fields["config-epoch"], 10, 64)
	s.SentinelFailover = strings.Contains(fields["flags"], "failover_in_progress")
}

// ReadReplSamples reads a JSON-lines file of samples.
func ReadReplSamples(path string) ([]ReplSample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []ReplSample
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for line := 1; sc.Scan(); line++ {
		var s ReplSample
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

// replIndex holds the samples per node, sorted by Sent.
type replIndex map[string][]ReplSample

func newReplIndex(samples []ReplSample) replIndex {
	idx := replIndex{}
	for _, s := range samples {
		idx[s.Node] = append(idx[s.Node], s)
	}
	for _, ss := range idx {
		sort.Slice(ss, func(i, j int) bool { return ss[i].Sent < ss[j].Sent })
	}
	return idx
}

// replMaxAge: a sample farther than this from the write tells nothing
// about the moment of the write (the sampler runs every ~150 ms).
const replMaxAge = time.Second

// replGrace: replicas' samples up to this long after the master's last
// sample as master still count (a replica may have received the write
// just before its master was lost).
const replGrace = time.Second

// unreplicated tells whether the replication samples prove that a write
// invoked at inv and acknowledged at ack was acknowledged by a master
// that no replica had copied it from:
//   - exactly one Redis was master around the write: every other node's
//     last successful sample before the write, each one up to the
//     acknowledgement and its first one after say replica (a node that
//     did not answer cannot have acknowledged: a partition or a kill cuts
//     the clients off too), or was a master whose offset did not move
//     over the write (flatMaster: a deposed or restarted Redis that
//     still answers master but takes no writes);
//   - that master was the same (same replication ID) from a sample
//     completed before the write was sent to one sent after its
//     acknowledgement (or it stopped answering right after it: a
//     partition or a kill), and it was the master of the highest Sentinel
//     epoch reported by then (not a deposed one; sentinelMaster);
//   - neither the offset of a replica on its history (same replication
//     ID: a replica adopts its master's at a sync) nor a replica offset
//     the master reported ever went past the master's offset before the
//     write, until the master was lost (its first successful sample that
//     no longer shows it master with that ID, or the first Sentinel that
//     names another master at a higher epoch) plus replGrace. With no
//     replica connected that holds trivially.
//
// A master that stays master with the same ID to the end is not taken as
// lost. It returns the master and the reason.
func (idx replIndex) unreplicated(inv, ack int64) (string, string, bool) {
	maxAge := replMaxAge.Nanoseconds()
	var master string
	var before ReplSample
	for node, ss := range idx {
		// the last successful sample completed before the invocation
		b := -1
		for i, s := range ss {
			if s.Done > inv {
				break
			}
			if s.Err == "" {
				b = i
			}
		}
		if b < 0 || ss[b].Done < inv-maxAge {
			if idx.masterBetween(node, inv-maxAge, ack+maxAge) {
				return "", "", false // a master at some point, with no sample to place it
			}
			continue // unreachable around the write
		}
		if !ss[b].master() {
			if idx.masterBetween(node, ss[b].Sent, ack) {
				return "", "", false
			}
			// the first successful sample after the ack must not show a master either
			for _, s := range ss[b+1:] {
				if s.Sent >= ack && s.Err == "" {
					if s.master() && s.Sent <= ack+maxAge {
						return "", "", false
					}
					break
				}
			}
			continue
		}
		if idx.flatMaster(node, b, ack) {
			continue // its offset did not move over the write: it cannot have acknowledged it
		}
		if master != "" {
			return "", "", false // two masters: which one acknowledged is not known
		}
		// a master before the write: it must still be, with the same ID,
		// at its first sample sent after the acknowledgement
		found := false
		for _, s := range ss[b+1:] {
			if s.Err != "" {
				if s.Sent >= ack && s.Sent <= ack+maxAge {
					found = true // cut off or killed right after: no role change seen
					break
				}
				continue
			}
			if !s.master() || s.ReplID != ss[b].ReplID {
				return "", "", false
			}
			if s.Sent >= ack {
				if s.Sent > ack+maxAge {
					return "", "", false
				}
				found = true
				break
			}
		}
		if !found {
			return "", "", false
		}
		master, before = node, ss[b]
	}
	legit, epoch := idx.sentinelMaster(ack)
	if master == "" || legit != master {
		return "", "", false
	}
	// The write's offset is above before.Offset. Follow the master until
	// it is lost and its replicas until replGrace after that.
	lost := int64(-1)
	maxReplicas := 0
	for _, s := range idx[master] {
		if s.Sent < before.Sent || s.Err != "" {
			continue // a failed sample is not a change (a partition shows as the role that follows it)
		}
		if !s.master() || s.ReplID != before.ReplID {
			lost = s.Done
			break
		}
		maxReplicas = max(maxReplicas, s.Replicas)
		for _, o := range s.ReplicaOffsets {
			if o > before.Offset {
				return "", "", false
			}
		}
	}
	// or Sentinel named another master at a higher epoch (a master killed
	// for good answers no sample again)
	for _, ss := range idx {
		for _, s := range ss {
			if s.Done > ack && s.SentinelMaster != "" && s.SentinelMaster != master && s.SentinelEpoch > epoch {
				if lost < 0 || s.Done < lost {
					lost = s.Done
				}
				break
			}
		}
	}
	if lost < 0 {
		return "", "", false // still the same master at the end: the write was not lost by a failover
	}
	for node, ss := range idx {
		if node == master {
			continue
		}
		for _, s := range ss {
			if s.Sent < before.Sent || s.Sent > lost+replGrace.Nanoseconds() {
				continue
			}
			// a replica on the master's history (same replication ID) past
			// the offset before the write may have it
			if s.Err == "" && s.Role == "slave" && s.ReplID == before.ReplID && s.Offset > before.Offset {
				return "", "", false
			}
		}
	}
	reason := fmt.Sprintf("master %s had no replica connected", master)
	if maxReplicas > 0 {
		reason = fmt.Sprintf("master %s: its replicas stayed at or below offset %d, before the write", master, before.Offset)
	}
	return master, reason, true
}

// flatMaster tells whether node, master at its sample b (the last one
// completed before the write was sent), provably did not acknowledge a
// write acknowledged at ack: every successful sample of it up to its first
// one sent at or after ack (within replMaxAge) is master with the same
// replication ID and the same offset. A write a master acknowledges moves
// its offset, but only once it has a replication backlog (Redis keeps none
// until a replica has connected), so the offset must also be seen to move,
// or a replica connected, earlier on the same replication ID: a master
// that never showed either is not ruled out (it may have no backlog).
// These are the stale masters of a failover (the deposed one until
// Sentinel reconfigures it, a restarted one), which answer "master" next
// to the real one (seed 3, 5 min: 1826 losses left in "other").
func (idx replIndex) flatMaster(node string, b int, ack int64) bool {
	ss := idx[node]
	s0 := ss[b]
	after := false
	for _, s := range ss[b+1:] {
		if s.Err != "" {
			continue
		}
		if !s.master() || s.ReplID != s0.ReplID || s.Offset != s0.Offset {
			return false
		}
		if s.Sent >= ack {
			after = s.Sent <= ack+replMaxAge.Nanoseconds()
			break
		}
	}
	if !after {
		return false
	}
	if s0.Replicas > 0 {
		return true
	}
	for _, s := range ss[:b] {
		if s.Err == "" && s.ReplID == s0.ReplID && (s.Offset < s0.Offset || (s.master() && s.Replicas > 0)) {
			return true // it has a backlog: its offset moves with every write
		}
	}
	return false
}

// sentinelMaster is the master of the highest Sentinel config-epoch in
// the Sentinels' latest reports (each node's last sample with a Sentinel
// answer completed by at): the master no proxy may leave (a Redis that
// still answers master after a failover it missed is deposed, and its
// acknowledgements are not this class). When the reports at that epoch
// name different masters, the one most of them name. The Sentinel that
// leads a failover reports the old master's address with the new epoch
// until its failover ends (from +promoted-slave to +switch-master; seed
// 3, 3 min: 12 s, while the other two named the promoted one): a report
// flagged failover_in_progress is left out. "" when no Sentinel answered
// or no master has most of those reports.
func (idx replIndex) sentinelMaster(at int64) (string, int64) {
	epoch := int64(-1)
	var latest []ReplSample
	for _, ss := range idx {
		var last *ReplSample
		for i, s := range ss {
			if s.Done > at {
				break
			}
			if s.SentinelMaster != "" && !s.SentinelFailover {
				last = &ss[i]
			}
		}
		if last != nil {
			latest = append(latest, *last)
			epoch = max(epoch, last.SentinelEpoch)
		}
	}
	votes, n := map[string]int{}, 0
	for _, s := range latest {
		if s.SentinelEpoch == epoch {
			votes[s.SentinelMaster]++
			n++
		}
	}
	for m, v := range votes {
		if 2*v > n {
			return m, epoch
		}
	}
	return "", epoch
}

// masterBetween tells whether a successful sample of node sent in
// [from, to] shows a master.
func (idx replIndex) masterBetween(node string, from, to int64) bool {
	for _, s := range idx[node] {
		if s.Sent >= from && s.Sent <= to && s.master() {
			return true
		}
	}
	return false
}
