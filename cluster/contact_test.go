package cluster_test

import (
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
