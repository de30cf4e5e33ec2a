package topology

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
)

// runUntilStopped runs fn (a Watcher's or a Group's Run) and returns a
// stop function that cancels it and checks that it returns promptly. The
// test's cleanup stops it too.
func runUntilStopped(t *testing.T, run func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return within 5s of cancel")
		}
	}
	t.Cleanup(stop)
	return stop
}

// monitorSecond makes the Sentinels of set also monitor a second master
// (with one replica) under name, and waits until each sees its replica
// and its peers.
func monitorSecond(t *testing.T, set *redistest.Set, name string) (master, replica *redistest.Server) {
	t.Helper()
	ctx := context.Background()
	master = redistest.StartServer(t, redistest.ServerOptions{})
	replica = redistest.StartServer(t, redistest.ServerOptions{ReplicaOf: master.Addr})
	testutil.Eventually(t, 15*time.Second, "replica "+replica.Addr+" link up", func() bool {
		info, err := replica.Client().Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	})
	host, port, _ := net.SplitHostPort(master.Addr)
	quorum := strconv.Itoa(len(set.Sentinels)/2 + 1)
	for _, s := range set.Sentinels {
		c := s.Client()
		if err := c.Do(ctx, "SENTINEL", "MONITOR", name, host, port, quorum).Err(); err != nil {
			t.Fatalf("sentinel monitor %s on %s: %v", name, s.Addr, err)
		}
		if err := c.Do(ctx, "SENTINEL", "SET", name, "down-after-milliseconds", "1000", "failover-timeout", "6000", "parallel-syncs", "1").Err(); err != nil {
			t.Fatalf("sentinel set %s on %s: %v", name, s.Addr, err)
		}
	}
	for _, s := range set.Sentinels {
		c := s.Client()
		testutil.Eventually(t, 20*time.Second, "sentinel "+s.Addr+" sees "+name+"'s replica and peers", func() bool {
			m, err := c.Do(ctx, "SENTINEL", "MASTER", name).Slice()
			if err != nil {
				return false
			}
			f := map[string]string{}
			for i := 0; i+1 < len(m); i += 2 {
				f[fmt.Sprint(m[i])] = fmt.Sprint(m[i+1])
			}
			return f["num-slaves"] == "1" && f["num-other-sentinels"] == strconv.Itoa(len(set.Sentinels)-1)
		})
	}
	return master, replica
}

// watcherConns counts, in a Sentinel's CLIENT LIST, the watchers'
// command connections (a poll ends with SENTINEL REPLICAS, which the
// test's own clients never send) and subscriptions (to exactly the
// watcher's channels). It asks on a connection of its own, closed at once.
func watcherConns(t *testing.T, s *redistest.Server) (cmd, sub int, list string) {
	t.Helper()
	c, err := dialRESP(context.Background(), s.Addr, credentials{}, time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", s.Addr, err)
	}
	defer c.close()
	v, err := c.do(time.Second, "CLIENT", "LIST")
	if err != nil {
		t.Fatalf("client list on %s: %v", s.Addr, err)
	}
	list = asString(v)
	wantSub := " sub=" + strconv.Itoa(len(sentinelChannels)) + " "
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, " cmd=sentinel|replicas ") {
			cmd++
		}
		if strings.Contains(line, wantSub) {
			sub++
		}
	}
	return cmd, sub, list
}

// waitConns waits until every Sentinel holds exactly want command
// connections and want subscriptions from watchers.
func waitConns(t *testing.T, sentinels []*redistest.Server, want int) {
	t.Helper()
	for _, s := range sentinels {
		var cmd, sub int
		var list string
		ok := false
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if cmd, sub, list = watcherConns(t, s); cmd == want && sub == want {
				ok = true
				break
			}
		}
		if !ok {
			t.Fatalf("sentinel %s: %d command connection(s) and %d subscription(s) from watchers, want %d each; CLIENT LIST:\n%s", s.Addr, cmd, sub, want, list)
		}
		t.Logf("sentinel %s: %d command connection(s), %d subscription(s)", s.Addr, cmd, sub)
	}
}

// TestGroupSharesSentinels: two masters watched by the same three
// Sentinels. Two lone watchers hold two command connections and two
// subscriptions on each Sentinel; a Group holds one of each and still
// follows both masters, and a failover of one is seen by that service only.
func TestGroupSharesSentinels(t *testing.T) {
	set := redistest.StartSet(t, redistest.SetOptions{Replicas: 1, MasterName: "alpha"})
	betaMaster, betaReplica := monitorSecond(t, set, "beta")
	cfgA := sentinelConfig(set)
	cfgB := cfgA
	cfgB.MasterName = "beta"

	// Control: one watcher per service, one pair of connections each.
	wa, _ := New(cfgA, nil)
	wb, _ := New(cfgB, nil)
	stopA := runUntilStopped(t, wa.Run)
	stopB := runUntilStopped(t, wb.Run)
	waitTopology(t, wa, set.Master.Addr, redistest.Addrs(set.Replicas))
	waitTopology(t, wb, betaMaster.Addr, []string{betaReplica.Addr})
	waitConns(t, set.Sentinels, 2)
	stopA()
	stopB()
	waitConns(t, set.Sentinels, 0)

	logs := &logBuf{}
	g, err := NewGroup([]Config{cfgA, cfgB}, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		t.Fatalf("NewGroup: %v", err)
	}
	if got := g.Services(); strings.Join(got, ",") != "alpha,beta" {
		t.Fatalf("Services() = %v", got)
	}
	if g.Service("gamma") != nil {
		t.Fatalf("Service(gamma) is not nil")
	}
	if err := g.Service("alpha").Run(context.Background()); err == nil {
		t.Fatalf("Run on a group's watcher did not fail")
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("group log:\n%s", logs.String())
		}
	})
	runUntilStopped(t, g.Run)
	alpha, beta := g.Service("alpha"), g.Service("beta")
	waitTopology(t, alpha, set.Master.Addr, redistest.Addrs(set.Replicas))
	waitTopology(t, beta, betaMaster.Addr, []string{betaReplica.Addr})
	oa := waitSentinels(t, alpha, set.Master.Addr)
	ob := waitSentinels(t, beta, betaMaster.Addr)
	if len(oa.Nodes) != 2 || len(ob.Nodes) != 2 {
		t.Errorf("alpha knows %d nodes, beta %d; want 2 each (no node of the other service)", len(oa.Nodes), len(ob.Nodes))
	}
	waitConns(t, set.Sentinels, 1)

	// A failover of alpha: alpha follows it, beta does not move.
	select {
	case <-beta.Changes():
	default:
	}
	start := time.Now()
	if err := alpha.Failover(context.Background()); err != nil {
		t.Fatalf("failover alpha: %v", err)
	}
	newA := set.Replicas[0].Addr
	var confirmed time.Duration
	for deadline := start.Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if o := beta.Observation(); o.Master != ob.Master || o.Epoch != ob.Epoch {
			t.Fatalf("beta moved during alpha's failover: master %q epoch %d, was %q %d", o.Master, o.Epoch, ob.Master, ob.Epoch)
		}
		if o := alpha.Observation(); o.Master == newA {
			confirmed = time.Since(start)
			if o.Epoch <= oa.Epoch {
				t.Errorf("alpha's new master at epoch %d, not above %d", o.Epoch, oa.Epoch)
			}
			break
		}
	}
	if confirmed == 0 {
		t.Fatalf("alpha's failover to %s not seen within 20s: %+v", newA, alpha.Observation())
	}
	t.Logf("alpha failover requested -> new master %s confirmed in %v", newA, confirmed)
	// Sentinels finish the failover (+switch-master, new config epoch);
	// beta still reports its master, and got no change hint.
	testutil.Eventually(t, 15*time.Second, "sentinels agree on alpha's new master", func() bool {
		return set.CurrentMaster() == newA
	})
	time.Sleep(time.Second)
	if o := beta.Observation(); o.Master != ob.Master || o.Epoch != ob.Epoch {
		t.Errorf("beta after alpha's failover: master %q epoch %d, want %q %d", o.Master, o.Epoch, ob.Master, ob.Epoch)
	}
	select {
	case <-beta.Changes():
		// A Sentinel busy with alpha's failover may time out a poll on
		// the shared link (a loaded machine): that changes beta's
		// Sentinel state and is worth a hint; anything else is not.
		if n := logs.count("sentinel poll failed", "service=beta"); n == 0 {
			t.Errorf("beta got a change hint from alpha's failover")
		} else {
			t.Logf("beta got a change hint after %d failed sentinel poll(s)", n)
		}
	default:
	}
	if n := logs.count("master changed", "service=beta"); n != 1 {
		t.Errorf("beta logged %d master changes, want 1 (the start)", n)
	}
	waitConns(t, set.Sentinels, 1)
}

// roleCalls reads how many ROLE commands a Redis node has served.
func roleCalls(t *testing.T, s *redistest.Server) int64 {
	t.Helper()
	info, err := s.Client().Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatalf("info commandstats on %s: %v", s.Addr, err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_role:calls="); ok {
			n, _ := strconv.ParseInt(v[:strings.IndexByte(v+",", ',')], 10, 64)
			return n
		}
	}
	return 0
}

// TestGroupSharesNodeProbes: two services that both know the same two
// Redis nodes. Two lone watchers send each node two ROLE probes per
// check_interval; a Group sends one.
func TestGroupSharesNodeProbes(t *testing.T) {
	set := redistest.StartSet(t, redistest.SetOptions{Replicas: 1, NoSentinel: true})
	const interval = 100 * time.Millisecond
	const window = 2 * time.Second
	cfgA := DefaultConfig()
	cfgA.MasterName = "a"
	cfgA.Nodes = []string{set.Master.Addr, set.Replicas[0].Addr}
	cfgA.CheckInterval = interval
	cfgB := cfgA
	cfgB.MasterName = "b"
	cfgB.Nodes = []string{set.Master.Addr} // the replica is found from the master's ROLE
	nodes := []*redistest.Server{set.Master, set.Replicas[0]}
	oneProbe := int64(window/interval) + 5 // one probe per interval, and slack

	// measure counts ROLE calls per node over the window, once both
	// watchers report the master and the replica.
	measure := func(ws ...*Watcher) []int64 {
		for _, w := range ws {
			waitTopology(t, w, set.Master.Addr, []string{set.Replicas[0].Addr})
		}
		before := make([]int64, len(nodes))
		for i, n := range nodes {
			before[i] = roleCalls(t, n)
		}
		time.Sleep(window)
		out := make([]int64, len(nodes))
		for i, n := range nodes {
			out[i] = roleCalls(t, n) - before[i]
		}
		return out
	}

	wa, _ := New(cfgA, nil)
	wb, _ := New(cfgB, nil)
	stopA := runUntilStopped(t, wa.Run)
	stopB := runUntilStopped(t, wb.Run)
	lone := measure(wa, wb)
	stopA()
	stopB()

	g, err := NewGroup([]Config{cfgA, cfgB}, nil)
	if err != nil {
		t.Fatalf("NewGroup: %v", err)
	}
	runUntilStopped(t, g.Run)
	grouped := measure(g.Service("a"), g.Service("b"))
	for i, n := range nodes {
		t.Logf("%s: ROLE calls in %v at check_interval %v: two lone watchers %d, group %d", n.Addr, window, interval, lone[i], grouped[i])
		if lone[i] <= oneProbe {
			t.Errorf("%s: two lone watchers sent %d ROLE in %v, want more than %d (two probes)", n.Addr, lone[i], window, oneProbe)
		}
		if grouped[i] > oneProbe || grouped[i] < int64(window/interval)/2 {
			t.Errorf("%s: group sent %d ROLE in %v, want one probe per %v (at most %d)", n.Addr, grouped[i], window, interval, oneProbe)
		}
	}
}

// TestGroupConnectionKeys: services share a connection only with the same
// address, credentials and TLS settings.
func TestGroupConnectionKeys(t *testing.T) {
	base := DefaultConfig()
	base.Sentinels = []string{"127.0.0.1:26379", "127.0.0.1:26380"}
	base.Nodes = []string{"127.0.0.1:6379"}
	a, b, c, d := base, base, base, base
	a.MasterName, b.MasterName, c.MasterName, d.MasterName = "a", "b", "c", "d"
	c.SentinelPassword = "other"              // own Sentinel connections, shared nodes
	c.Sentinels = []string{"127.0.0.1:26379"} // (one Sentinel)
	d.Password = "other"                      // own node connection, shared Sentinels
	g, err := NewGroup([]Config{a, b, c, d}, nil)
	if err != nil {
		t.Fatalf("NewGroup: %v", err)
	}
	if n := len(g.hub.sentinels); n != 3 {
		t.Errorf("%d Sentinel connections, want 3 (two shared by a, b, d; one for c)", n)
	}
	if n := len(g.hub.nodes); n != 2 {
		t.Errorf("%d node probes, want 2 (one shared by a, b, c; one for d)", n)
	}
	if g.Service("a").sentinels[0].link != g.Service("b").sentinels[0].link || g.Service("a").sentinels[0].link == g.Service("c").sentinels[0].link {
		t.Errorf("Sentinel links not shared as expected")
	}
	if _, err := NewGroup([]Config{a, a}, nil); err == nil {
		t.Errorf("NewGroup accepted a master name twice")
	}
	bad := a
	bad.CheckInterval = 0
	if _, err := NewGroup([]Config{bad}, nil); err == nil {
		t.Errorf("NewGroup accepted an invalid config")
	}
}
