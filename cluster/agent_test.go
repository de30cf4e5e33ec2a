package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redhaven/redhaven/cluster"
	"github.com/redhaven/redhaven/cluster/clustertest"
)

// svc is the one service of the agents under test (clustertest.Config
// leaves Services empty: the default service).
const svc = cluster.DefaultServiceName

const (
	formTimeout = 30 * time.Second // cluster formation on a loaded box
	// electBound is the generous bound asserted for a new leader after the
	// leader dies; the defaults aim for ~2s.
	electBound = 10 * time.Second
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitVoters waits until every running agent's configuration has exactly want.
func waitVoters(t *testing.T, c *clustertest.Cluster, want ...string) {
	t.Helper()
	slices.Sort(want)
	clustertest.Eventually(t, formTimeout, fmt.Sprintf("voters %v on every running node", want), func() bool {
		for _, a := range c.Running() {
			if !slices.Equal(clustertest.Voters(a), want) {
				return false
			}
		}
		return true
	})
}

func waitRoute(t *testing.T, c *clustertest.Cluster, master string, epoch int64) {
	t.Helper()
	clustertest.Eventually(t, formTimeout, fmt.Sprintf("route %s@%d on every running node", master, epoch), func() bool {
		for _, a := range c.Running() {
			if r := a.State().Service(svc).Route; r.Master != master || r.Epoch != epoch {
				return false
			}
		}
		return true
	})
}

func waitAllInContact(t *testing.T, c *clustertest.Cluster) {
	t.Helper()
	clustertest.Eventually(t, formTimeout, "every running node in contact", func() bool {
		for _, a := range c.Running() {
			if !a.InContact() {
				return false
			}
		}
		return true
	})
}

func names(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("n%d", i+1))
	}
	return out
}

func TestSingleNode(t *testing.T) {
	c := clustertest.New(t, 1, clustertest.Options{})
	c.StartAll()
	a := c.Nodes[0].Agent
	c.WaitLeader(formTimeout)
	waitAllInContact(t, c)
	if err := a.ProposeRoute(ctxT(t), svc, cluster.RouteDecision{Master: "10.0.0.1:6379", Epoch: 1, Reason: "sentinel"}); err != nil {
		t.Fatal(err)
	}
	st := a.State()
	if st.Service(svc).Route.Master != "10.0.0.1:6379" || st.Service(svc).Route.DecidedBy != "n1" || st.Service(svc).Route.Time.IsZero() {
		t.Fatalf("route = %+v", st.Service(svc).Route)
	}
	err := a.ProposeRoute(ctxT(t), svc, cluster.RouteDecision{Master: "10.0.0.2:6379", Epoch: 0})
	if !errors.Is(err, cluster.ErrStaleEpoch) {
		t.Fatalf("stale proposal err = %v, want ErrStaleEpoch", err)
	}
	if err := a.SetBackendAdmin(ctxT(t), svc, "10.0.0.3:6379", cluster.AdminDrain); err != nil {
		t.Fatal(err)
	}
	id, err := a.RequestFailover(ctxT(t), svc, "test")
	if err != nil || id == 0 {
		t.Fatalf("RequestFailover = %d, %v", id, err)
	}
	if err := a.CompleteFailover(ctxT(t), svc, id, "done"); err != nil {
		t.Fatal(err)
	}
	st = a.State()
	if st.Service(svc).Admin["10.0.0.3:6379"] != cluster.AdminDrain || st.Service(svc).Failovers[0].Status != cluster.FailoverCompleted {
		t.Fatalf("state = %+v", st)
	}
	if !slices.ContainsFunc(st.Events, func(e cluster.Event) bool { return e.Kind == cluster.EventLeaderChange }) {
		t.Fatalf("no leader_change event in %+v", st.Events)
	}
	ms := a.Members()
	if len(ms) != 1 || !ms[0].IsLeader || ms[0].Suffrage != "voter" || ms[0].GossipState != "alive" || ms[0].Version != "test" {
		t.Fatalf("members = %+v", ms)
	}
	if s := a.Stats(); s.RaftState != "Leader" || s.Voters != 1 || !s.InContact || s.Term == 0 {
		t.Fatalf("stats = %+v", s)
	}
}

// TestBootstrapAnyOrder starts three nodes in different orders, all joining
// through n1's address (so with n1 last, the others retry until it is up).
func TestBootstrapAnyOrder(t *testing.T) {
	for _, order := range [][]int{{0, 1, 2}, {2, 1, 0}, {1, 2, 0}} {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			c := clustertest.New(t, 3, clustertest.Options{})
			c.StartAll(order...)
			l := c.WaitLeader(formTimeout)
			waitVoters(t, c, names(3)...)
			waitAllInContact(t, c)
			leader := c.Nodes[l].Agent
			if err := leader.ProposeRoute(ctxT(t), svc, cluster.RouteDecision{Master: "m1:6379", Epoch: 7}); err != nil {
				t.Fatal(err)
			}
			waitRoute(t, c, "m1:6379", 7)
			follower := c.Nodes[(l+1)%3].Agent
			if err := follower.ProposeRoute(ctxT(t), svc, cluster.RouteDecision{Master: "m2:6379", Epoch: 8}); !errors.Is(err, cluster.ErrNotLeader) {
				t.Fatalf("follower ProposeRoute err = %v, want ErrNotLeader", err)
			}
			bootstrapped := 0
			for _, n := range c.Nodes {
				if got := len(n.Agent.Members()); got != 3 {
					t.Fatalf("%s sees %d members", n.Config.NodeName, got)
				}
				for _, line := range n.Logs.Matching("raft bootstrapped") {
					bootstrapped++
					if !strings.Contains(line, "servers=[n1 n2 n3]") {
						t.Fatalf("%s bootstrapped another configuration: %s", n.Config.NodeName, line)
					}
				}
			}
			if bootstrapped == 0 {
				t.Fatal("no node logged a bootstrap")
			}
		})
	}
}

// TestLeaderKill hard-stops the leader of a 5-node cluster twice (no
// leave) and measures the time until a new leader that all survivors
// follow; routing (ProposeRoute on the new leader) continues.
func TestLeaderKill(t *testing.T) {
	c := clustertest.New(t, 5, clustertest.Options{})
	c.StartAll()
	l := c.WaitLeader(formTimeout)
	waitVoters(t, c, names(5)...)
	waitAllInContact(t, c)
	var killed []int
	for round := 1; round <= 2; round++ {
		old := c.Nodes[l].Config.NodeName
		start := time.Now()
		c.Stop(l)
		killed = append(killed, l)
		l = c.WaitLeader(electBound, killed...)
		took := time.Since(start)
		t.Logf("round %d: leader %s killed, %s elected and followed by all survivors after %v",
			round, old, c.Nodes[l].Config.NodeName, took.Round(time.Millisecond))
		waitAllInContact(t, c)
		t.Logf("round %d: all survivors in contact after %v", round, time.Since(start).Round(time.Millisecond))
		epoch := int64(round)
		if err := c.Nodes[l].Agent.ProposeRoute(ctxT(t), svc, cluster.RouteDecision{Master: fmt.Sprintf("m%d:6379", round), Epoch: epoch}); err != nil {
			t.Fatalf("round %d: ProposeRoute on new leader: %v", round, err)
		}
		waitRoute(t, c, fmt.Sprintf("m%d:6379", round), epoch)
	}
	// The dead servers stay voters (dead_server_cleanup is off).
	if got := clustertest.Voters(c.Nodes[l].Agent); len(got) != 5 {
		t.Fatalf("voters = %v, want all 5 kept", got)
	}
}

// TestGracefulLeave: a follower and then the leader leave gracefully
// (leave_on_terminate); the configuration shrinks each time.
func TestGracefulLeave(t *testing.T) {
	c := clustertest.New(t, 4, clustertest.Options{BootstrapExpect: 4, Configure: func(_ int, cfg *cluster.Config) {
		cfg.LeaveOnTerminate = true
	}})
	c.StartAll()
	l := c.WaitLeader(formTimeout)
	waitVoters(t, c, names(4)...)

	f := (l + 1) % 4
	gone := c.Nodes[f].Config.NodeName
	c.Stop(f)
	remaining := slices.DeleteFunc(names(4), func(s string) bool { return s == gone })
	waitVoters(t, c, remaining...)
	l = c.WaitLeader(formTimeout, f)
	clustertest.Eventually(t, formTimeout, "member_leave event", func() bool {
		return slices.ContainsFunc(c.Nodes[l].Agent.State().Events, func(e cluster.Event) bool {
			return e.Kind == cluster.EventMemberLeave && e.Message == gone+" left"
		})
	})
	clustertest.Eventually(t, formTimeout, gone+" shown as left and not in the raft configuration", func() bool {
		return slices.ContainsFunc(c.Nodes[l].Agent.Members(), func(m cluster.Member) bool {
			return m.Name == gone && m.GossipState == cluster.GossipLeft && m.Suffrage == "none"
		})
	})

	leaderName := c.Nodes[l].Config.NodeName
	start := time.Now()
	c.Stop(l)
	remaining = slices.DeleteFunc(remaining, func(s string) bool { return s == leaderName })
	l2 := c.WaitLeader(formTimeout, f, l)
	t.Logf("leader %s left gracefully; %s leads after %v", leaderName, c.Nodes[l2].Config.NodeName, time.Since(start).Round(time.Millisecond))
	waitVoters(t, c, remaining...)
	waitAllInContact(t, c)
}

// TestLeaveAfterRemovalUnseen: a leaving follower that never received the
// entry removing it from the Raft configuration (the leader stops
// replicating to a server once it removes it, with one best-effort send
// that a loaded host can lose: make e2e's leave-rejoin failed so at load
// 40, "no leader for 1s") still leaves without an error: the leader
// confirms over the admin channel that it is no longer a voter. Here the
// send is lost for sure: the follower is isolated while the leader
// removes it.
func TestLeaveAfterRemovalUnseen(t *testing.T) {
	c, l, f := startThree(t)
	leader, fol := c.Nodes[l].Agent, c.Nodes[f].Agent
	name := c.Nodes[f].Config.NodeName
	fol.Isolate(true)
	clustertest.Eventually(t, formTimeout, name+" no longer alive in the leader's gossip", func() bool {
		for _, m := range leader.Members() {
			if m.Name == name {
				return m.GossipState != cluster.GossipAlive
			}
		}
		return true
	})
	if err := leader.RemoveMember(ctxT(t), name); err != nil {
		t.Fatalf("remove %s on the leader: %v", name, err)
	}
	if got := clustertest.Voters(leader); slices.Contains(got, name) {
		t.Fatalf("leader's voters after the removal: %v", got)
	}
	if got := clustertest.Voters(fol); !slices.Contains(got, name) {
		t.Fatalf("%s learned its removal while isolated (voters %v): the test shows nothing", name, got)
	}
	fol.MarkLeaving() // before gossip reaches the leader again: it must not add it back
	fol.Isolate(false)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	if err := fol.Leave(ctx); err != nil {
		t.Fatalf("leave after a removal it never saw: %v", err)
	}
	t.Logf("%s left after %v", name, time.Since(start).Round(time.Millisecond))
	if !c.Nodes[f].Logs.Contains("removal from the raft configuration confirmed by another member") {
		// The leader added it back (its gossip alive before its leave
		// intent) and removed it again, this time seen: not the case
		// under test.
		t.Skipf("%s learned its removal the usual way", name)
	}
}

// TestRestartRejoins hard-stops a follower, commits while it is down,
// restarts it with its data dir: it rejoins without a new bootstrap and
// catches up.
func TestRestartRejoins(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{})
	c.StartAll()
	l := c.WaitLeader(formTimeout)
	waitVoters(t, c, names(3)...)
	f := (l + 1) % 3
	c.Stop(f)
	if err := c.Nodes[l].Agent.ProposeRoute(ctxT(t), svc, cluster.RouteDecision{Master: "down:6379", Epoch: 3}); err != nil {
		t.Fatal(err)
	}
	c.Nodes[f].Logs = nil // fresh log capture for the restart
	c.Start(f)
	waitRoute(t, c, "down:6379", 3)
	waitVoters(t, c, names(3)...)
	waitAllInContact(t, c)
	logs := c.Nodes[f].Logs
	if !logs.Contains("existing_state=true") {
		t.Fatal("restarted node did not find its raft state")
	}
	if logs.Contains("raft bootstrapped") || logs.Contains("waiting for servers before bootstrap") {
		t.Fatal("restarted node went through bootstrap again")
	}
	// The seed (its join list names only itself) restarts: the others
	// reconnect to it.
	c.Stop(0)
	c.Start(0)
	clustertest.Eventually(t, formTimeout, "3 alive members on every node after the seed restarted", func() bool {
		for _, a := range c.Running() {
			alive := 0
			for _, m := range a.Members() {
				if m.GossipState == cluster.GossipAlive {
					alive++
				}
			}
			if alive != 3 {
				return false
			}
		}
		return true
	})
	waitAllInContact(t, c)
	// Restart the whole cluster from the data dirs.
	for i := range c.Nodes {
		c.Stop(i)
	}
	c.StartAll(2, 0, 1)
	c.WaitLeader(formTimeout)
	waitRoute(t, c, "down:6379", 3)
	waitAllInContact(t, c)
}

// TestWrongGossipKey: a node with another key cannot join, and the logs say
// why.
func TestWrongGossipKey(t *testing.T) {
	good, _ := cluster.GenerateKey()
	bad, _ := cluster.GenerateKey()
	c := clustertest.New(t, 3, clustertest.Options{BootstrapExpect: 2, Encrypt: good, Configure: func(i int, cfg *cluster.Config) {
		if i == 2 {
			cfg.Encrypt = bad
		}
	}})
	c.StartAll()
	c.WaitLeader(formTimeout, 2)
	clustertest.Eventually(t, formTimeout, "key mismatch warning on the seed and join failure on the intruder", func() bool {
		return c.Nodes[0].Logs.Contains("check cluster.encrypt") && c.Nodes[2].Logs.Contains("join failed")
	})
	for i, n := range c.Nodes[:2] {
		for _, m := range n.Agent.Members() {
			if m.Name == "n3" {
				t.Fatalf("node %d lists the intruder: %+v", i, m)
			}
		}
	}
	if got := len(c.Nodes[2].Agent.Members()); got != 1 {
		t.Fatalf("intruder sees %d members, want only itself", got)
	}
	if c.Nodes[2].Agent.InContact() {
		t.Fatal("intruder claims contact with a quorum")
	}
}

// TestIsolation cuts a follower, then the leader, off the network: the
// isolated node's InContact turns false within the bound while the
// majority keeps (or elects) a leader and stays in contact; after healing
// everyone is back in contact.
func TestIsolation(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{})
	c.StartAll()
	l := c.WaitLeader(formTimeout)
	waitVoters(t, c, names(3)...)
	waitAllInContact(t, c)
	bound := cluster.DefaultConfig().ContactBound

	check := func(iso int, what string) {
		t.Helper()
		start := time.Now()
		c.Nodes[iso].Agent.Isolate(true)
		clustertest.Eventually(t, 5*time.Second, what+": isolated node out of contact", func() bool {
			return !c.Nodes[iso].Agent.InContact()
		})
		took := time.Since(start)
		t.Logf("%s: InContact false after %v (contact_bound %v)", what, took.Round(time.Millisecond), bound)
		if took > 3*bound+time.Second {
			t.Errorf("%s: isolated node kept contact for %v", what, took)
		}
		nl := c.WaitLeader(electBound, iso)
		clustertest.Eventually(t, electBound, what+": majority in contact", func() bool {
			for i, n := range c.Nodes {
				if i != iso && !n.Agent.InContact() {
					return false
				}
			}
			return true
		})
		t.Logf("%s: majority leader %s, all majority nodes in contact after %v", what, c.Nodes[nl].Config.NodeName, time.Since(start).Round(time.Millisecond))
		if c.Nodes[iso].Agent.InContact() {
			t.Fatalf("%s: isolated node regained contact while isolated", what)
		}
		c.Nodes[iso].Agent.Isolate(false)
		c.WaitLeader(formTimeout)
		waitAllInContact(t, c)
		t.Logf("%s: healed, all in contact after %v", what, time.Since(start).Round(time.Millisecond))
	}
	check((l+1)%3, "follower isolated")
	l = c.WaitLeader(formTimeout)

	// While the leader is cut off, never two leaders that both claim
	// contact (which would let two proxies route by different decisions).
	stop := make(chan struct{})
	overlaps := make(chan int, 1)
	agents := c.Running()
	go func() {
		n := 0
		defer func() { overlaps <- n }()
		tk := time.NewTicker(2 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
			}
			routing := 0
			for _, a := range agents {
				if a.IsLeader() && a.InContact() {
					routing++
				}
			}
			if routing > 1 {
				n++
			}
		}
	}()
	check(l, "leader isolated")
	close(stop)
	if n := <-overlaps; n > 0 {
		t.Fatalf("two leaders in contact at once in %d samples", n)
	}
}

// TestDeadServerCleanup removes a failed voter after dead_server_cleanup,
// but never below a safe quorum.
func TestDeadServerCleanup(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{Configure: func(_ int, cfg *cluster.Config) {
		cfg.DeadServerCleanup = time.Second
	}})
	c.StartAll()
	l := c.WaitLeader(formTimeout)
	waitVoters(t, c, names(3)...)
	f := (l + 1) % 3
	gone := c.Nodes[f].Config.NodeName
	c.Stop(f)
	waitVoters(t, c, slices.DeleteFunc(names(3), func(s string) bool { return s == gone })...)
	clustertest.Eventually(t, formTimeout, "member_leave event for the failed server", func() bool {
		return slices.ContainsFunc(c.Nodes[l].Agent.State().Events, func(e cluster.Event) bool {
			return e.Kind == cluster.EventMemberLeave
		})
	})
	// It comes back: the leader adds it again.
	c.Start(f)
	waitVoters(t, c, names(3)...)
	waitAllInContact(t, c)
}

// TestAgentTwoServices: one agent with two services; writes name their
// service, "" is the first, and a service the leader does not know is
// refused before anything is committed.
func TestAgentTwoServices(t *testing.T) {
	c := clustertest.New(t, 1, clustertest.Options{Configure: func(_ int, cfg *cluster.Config) {
		cfg.Services = []string{"mymaster", "cache"}
	}})
	c.StartAll()
	a := c.Nodes[0].Agent
	c.WaitLeader(formTimeout)
	waitAllInContact(t, c)
	ctx := ctxT(t)
	if err := a.ProposeRoute(ctx, "mymaster", cluster.RouteDecision{Master: "10.0.0.1:6379", Epoch: 9}); err != nil {
		t.Fatal(err)
	}
	if err := a.ProposeRoute(ctx, "cache", cluster.RouteDecision{Master: "10.0.1.1:6379", Epoch: 2}); err != nil {
		t.Fatal(err)
	}
	if err := a.ProposeRoute(ctx, "", cluster.RouteDecision{Master: "10.0.0.2:6379", Epoch: 3}); !errors.Is(err, cluster.ErrStaleEpoch) {
		t.Fatalf(`"" is the default service: epoch 3 < 9 must be stale, got %v`, err)
	}
	ida, err := a.RequestFailover(ctx, "mymaster", "one")
	if err != nil {
		t.Fatal(err)
	}
	idb, err := a.RequestFailover(ctx, "cache", "two")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SetBackendAdmin(ctx, "cache", "10.0.1.2:6379", cluster.AdminDrain); err != nil {
		t.Fatal(err)
	}
	before := a.Stats().LastIndex
	for name, err := range map[string]error{
		"route":    a.ProposeRoute(ctx, "other", cluster.RouteDecision{Master: "x:1", Epoch: 1}),
		"admin":    a.SetBackendAdmin(ctx, "other", "x:1", cluster.AdminDrain),
		"failover": func() error { _, err := a.RequestFailover(ctx, "other", "x"); return err }(),
		"complete": a.CompleteFailover(ctx, "other", ida, "x"),
		"reset":    a.ResetRoute(ctx, "other", nil, "x"),
	} {
		if !errors.Is(err, cluster.ErrUnknownService) || !strings.Contains(err.Error(), `"other"`) {
			t.Errorf("%s of an unknown service: %v, want ErrUnknownService naming it", name, err)
		}
	}
	if after := a.Stats().LastIndex; after != before {
		t.Fatalf("refused writes reached the log: index %d -> %d", before, after)
	}
	st := a.State()
	m, k := st.Service("mymaster"), st.Service("cache")
	if m.Route.Master != "10.0.0.1:6379" || k.Route.Master != "10.0.1.1:6379" {
		t.Fatalf("routes: %+v / %+v", m.Route, k.Route)
	}
	pm, okm := m.PendingFailover()
	pk, okk := k.PendingFailover()
	if !okm || !okk || pm.ID != ida || pk.ID != idb {
		t.Fatalf("pending: %+v %v / %+v %v", pm, okm, pk, okk)
	}
	if len(m.Admin) != 0 || k.Admin["10.0.1.2:6379"] != cluster.AdminDrain {
		t.Fatalf("admin: %v / %v", m.Admin, k.Admin)
	}
	if !slices.Equal(st.ServiceNames(), []string{"cache", "mymaster"}) {
		t.Fatalf("services = %v", st.ServiceNames())
	}
}
