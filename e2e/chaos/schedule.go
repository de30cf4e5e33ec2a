package chaos

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Fault kinds of the nemesis.
const (
	FaultKillRedis    = "kill-redis"    // kill -9 redis-server, restart it at the end
	FaultKillSentinel = "kill-sentinel" // kill -9 redis-sentinel, restart it at the end
	FaultKillAgent    = "kill-agent"    // kill -9 the agent, restart it at the end
	FaultPauseRedis   = "pause-redis"   // SIGSTOP redis-server, SIGCONT at the end
	FaultPauseAgent   = "pause-agent"   // SIGSTOP the agent, SIGCONT at the end
	FaultKillNode     = "kill-node"     // docker kill the container, start it and its daemons at the end
	FaultPartition    = "partition"     // cut the node from the network, reconnect at the end
	FaultNetem        = "netem"         // delay and loss on the node's interface (tc netem)
	FaultPlanned      = "planned-failover"
	FaultRolling      = "rolling-restart" // restart every agent in turn (SIGTERM, start)
)

// heavy faults take a node's Redis or the whole node away: at most one at
// a time, so that Sentinel and Raft keep a majority to recover with.
var heavy = map[string]bool{FaultKillRedis: true, FaultPauseRedis: true, FaultKillNode: true, FaultPartition: true}

// Fault is one entry of the schedule. Target is a node name, or "master"
// or "leader", resolved when the fault is applied.
type Fault struct {
	At       time.Duration `json:"at"` // from the start of the run
	Duration time.Duration `json:"duration"`
	Kind     string        `json:"kind"`
	Target   string        `json:"target"`
}

func (f Fault) String() string {
	return fmt.Sprintf("+%6.1fs %-16s %-6s for %4.1fs", f.At.Seconds(), f.Kind, f.Target, f.Duration.Seconds())
}

// Schedule makes the seeded random fault schedule of a run of length d
// over nodes: a new fault every 6-14 s, lasting 2-10 s, on a node picked
// at random or on the master's or leader's node. Faults may overlap, but a
// node has one fault at a time, at most two run at once, and at most one
// of them is heavy. The same seed gives the same schedule.
func Schedule(seed uint64, d time.Duration, nodes []string) []Fault {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	kinds := []struct {
		kind   string
		weight int
	}{
		{FaultKillRedis, 3}, {FaultKillSentinel, 1}, {FaultKillAgent, 2}, {FaultPauseRedis, 1},
		{FaultPauseAgent, 2}, {FaultKillNode, 2}, {FaultPartition, 2}, {FaultNetem, 1},
		{FaultPlanned, 2}, {FaultRolling, 1},
	}
	total := 0
	for _, k := range kinds {
		total += k.weight
	}
	pick := func() string {
		n := rng.IntN(total)
		for _, k := range kinds {
			if n < k.weight {
				return k.kind
			}
			n -= k.weight
		}
		return kinds[0].kind
	}
	targets := append([]string{"master", "master", "leader"}, nodes...)
	var out []Fault
	for at := 5 * time.Second; at < d-10*time.Second; at += time.Duration(6+rng.IntN(9)) * time.Second {
		for try := 0; try < 10; try++ {
			f := Fault{At: at, Kind: pick(), Target: targets[rng.IntN(len(targets))],
				Duration: time.Duration(2000+rng.IntN(8000)) * time.Millisecond}
			switch f.Kind {
			case FaultPlanned, FaultRolling:
				f.Target, f.Duration = "cluster", 0
			}
			if fits(out, f) {
				out = append(out, f)
				break
			}
		}
	}
	return out
}

// fits applies the overlap rules of Schedule. "master" and "leader" may
// name any node, so they count as touching every node.
func fits(sched []Fault, f Fault) bool {
	running, heavies := 0, 0
	for _, g := range sched {
		if g.At+g.Duration+time.Second <= f.At { // ended (with a second to settle)
			continue
		}
		if g.Kind == FaultPlanned || g.Kind == FaultRolling || f.Kind == FaultPlanned || f.Kind == FaultRolling {
			return false // cluster-wide actions run alone
		}
		running++
		if heavy[g.Kind] {
			heavies++
		}
		if g.Target == f.Target || !isNode(g.Target) || !isNode(f.Target) {
			return false
		}
	}
	return running < 2 && !(heavy[f.Kind] && heavies > 0)
}

func isNode(target string) bool {
	return target != "master" && target != "leader" && target != "cluster" && target != "replica"
}

// ScheduleCI is the short schedule CI runs (TestChaosCI): like Schedule,
// but only faults after which nothing acknowledged may be lost and the
// registers must stay linearizable, because the master's Redis keeps
// running and reachable. Planned failovers, rolling restarts, kill -9 and
// SIGSTOP of the agent on any node (the leader, the VIP's holder, the
// master's node), kill -9 of a Sentinel; and on a replica only (Target
// "replica": a node that is not Sentinel's master when the fault is
// applied): its Redis paused or killed, its node partitioned. No crash,
// pause or partition of the master's Redis or node, no netem (kernels
// without sch_netem cannot apply it). A "replica" fault touches every
// node for the overlap rules, so it runs alone.
func ScheduleCI(seed uint64, d time.Duration, nodes []string) []Fault {
	rng := rand.New(rand.NewPCG(seed, 0xc1))
	kinds := []struct {
		kind   string
		weight int
	}{
		{FaultPlanned, 2}, {FaultRolling, 1}, {FaultKillAgent, 2}, {FaultPauseAgent, 2},
		{FaultKillSentinel, 1}, {FaultPauseRedis, 1}, {FaultKillRedis, 1}, {FaultPartition, 2},
	}
	total := 0
	for _, k := range kinds {
		total += k.weight
	}
	pick := func() string {
		n := rng.IntN(total)
		for _, k := range kinds {
			if n < k.weight {
				return k.kind
			}
			n -= k.weight
		}
		return kinds[0].kind
	}
	targets := append([]string{"master", "leader"}, nodes...)
	var out []Fault
	for at := 5 * time.Second; at < d-10*time.Second; at += time.Duration(6+rng.IntN(9)) * time.Second {
		for try := 0; try < 10; try++ {
			f := Fault{At: at, Kind: pick(), Target: targets[rng.IntN(len(targets))],
				Duration: time.Duration(2000+rng.IntN(8000)) * time.Millisecond}
			switch f.Kind {
			case FaultPlanned, FaultRolling:
				f.Target, f.Duration = "cluster", 0
			case FaultPauseRedis, FaultKillRedis, FaultPartition:
				f.Target = "replica"
			}
			if fits(out, f) {
				out = append(out, f)
				break
			}
		}
	}
	return out
}

// CIKinds are the fault kinds ScheduleCI may pick.
var CIKinds = []string{FaultPlanned, FaultRolling, FaultKillAgent, FaultPauseAgent, FaultKillSentinel, FaultPauseRedis, FaultKillRedis, FaultPartition}

// FormatSchedule prints a schedule, one fault a line.
func FormatSchedule(seed uint64, sched []Fault) string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, %d faults\n", seed, len(sched))
	for _, f := range sched {
		b.WriteString(f.String() + "\n")
	}
	return b.String()
}

// The run TestChaosCI makes: a seed whose ScheduleCI has every kind of
// CIKinds in CIDuration (TestScheduleCI checks).
const (
	CISeed     = 2
	CIDuration = 150 * time.Second
)
