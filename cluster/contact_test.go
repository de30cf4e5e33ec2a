package cluster_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/redhaven/redhaven/cluster"
	"github.com/redhaven/redhaven/cluster/clustertest"
)

// TestLeaderSeesFollowerContact: on the leader, each follower's row has
// its last contact (heartbeats every heartbeat_timeout/10, so well under a
// second); a stopped follower's grows.
func TestLeaderSeesFollowerContact(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{})
	c.StartAll()
	l := c.WaitLeader(formTimeout)
	waitVoters(t, c, names(3)...)
	waitAllInContact(t, c)
	leader := c.Nodes[l].Agent
	byName := func() map[string]cluster.Member {
		out := map[string]cluster.Member{}
		for _, m := range leader.Members() {
			out[m.Name] = m
		}
		return out
	}
	for name, m := range byName() {
		if m.LastContact < 0 || m.LastContact > time.Second {
			t.Errorf("%s: last contact %v on the leader, want 0..1s", name, m.LastContact)
		}
	}
	stopped := (l + 1) % 3
	other := (l + 2) % 3
	c.Stop(stopped)
	time.Sleep(2 * time.Second)
	ms := byName()
	s, o := ms[c.Nodes[stopped].Config.NodeName], ms[c.Nodes[other].Config.NodeName]
	if s.LastContact < 1500*time.Millisecond {
		t.Errorf("stopped follower %s: last contact %v, want >= 1.5s", s.Name, s.LastContact)
	}
	if o.LastContact < 0 || o.LastContact > time.Second {
		t.Errorf("running follower %s: last contact %v, want 0..1s", o.Name, o.LastContact)
	}
	t.Logf("stopped follower %v, running follower %v", s.LastContact, o.LastContact)
}

// TestHealedFollowerContactWaitsForApply (issue 13): after a partition
// heals, a follower hears the leader's heartbeats before it has the
// entries committed meanwhile. It must not count as in contact (and so
// route writes) while its state still has the route from before the
// partition. The second round stalls the follower's log after the heal,
// so that heartbeats arrive for a while with nothing applied.
func TestHealedFollowerContactWaitsForApply(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{})
	c.StartAll()
	l := c.WaitLeader(formTimeout)
	waitVoters(t, c, names(3)...)
	waitAllInContact(t, c)
	leader := c.Nodes[l].Agent
	fi := (l + 1) % 3
	f := c.Nodes[fi].Agent
	t.Cleanup(func() { f.StallLog(false) })

	epoch := int64(1)
	propose := func() string {
		t.Helper()
		master := fmt.Sprintf("10.0.0.%d:6379", epoch)
		if err := leader.ProposeRoute(ctxT(t), svc, cluster.RouteDecision{Master: master, Epoch: epoch, Reason: "test"}); err != nil {
			t.Fatalf("propose %s@%d: %v", master, epoch, err)
		}
		epoch++
		return master
	}
	round := func(stall time.Duration) {
		t.Helper()
		a := propose()
		waitRoute(t, c, a, epoch-1)
		f.Isolate(true)
		clustertest.Eventually(t, 5*time.Second, "isolated follower out of contact", func() bool { return !f.InContact() })
		if c.WaitLeader(electBound, fi) != l {
			t.Skip("leadership moved while the follower was isolated")
		}
		b := propose()
		// As in the issue, the partition outlasts the leader's commit of
		// b by more than ContactBound: what the follower heard from the
		// leader before b committed no longer counts.
		time.Sleep(cluster.DefaultConfig().ContactBound + 100*time.Millisecond)
		if stall > 0 {
			f.StallLog(true)
			time.AfterFunc(stall, func() { f.StallLog(false) })
		}
		f.Isolate(false)
		healed := time.Now()

		// stale counts polls in contact with route a; runs, those right
		// after another such poll. A single one may be raft's
		// AppliedIndex running a moment ahead of the FSM (InContact).
		stale, runs, polls := 0, 0, 0
		prev := false
		var first time.Duration
		for time.Since(healed) < 5*time.Second {
			polls++
			in := f.InContact()
			m := f.State().Service(svc).Route.Master
			bad := in && m == a
			if bad {
				if stale == 0 {
					first = time.Since(healed)
				}
				stale++
				if prev {
					runs++
				}
			}
			prev = bad
			if in && m == b {
				break
			}
			time.Sleep(time.Millisecond)
		}
		t.Logf("stall %v: %d of %d polls in contact with the stale route %s (first after %v); route %q in contact %v after %v",
			stall, stale, polls, a, first, f.State().Service(svc).Route.Master, f.InContact(), time.Since(healed).Round(time.Millisecond))
		if runs > 0 {
			t.Errorf("stall %v: follower in contact with its stale route %s in %d polls, %d in a row (first %v after the heal)", stall, a, stale, runs, first)
		}
		clustertest.Eventually(t, formTimeout, "healed follower in contact with the new route", func() bool {
			return f.InContact() && f.State().Service(svc).Route.Master == b
		})
	}
	round(0)
	round(time.Second)
}
