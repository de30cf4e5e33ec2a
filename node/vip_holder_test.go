package node

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redhaven/redhaven/cluster"
	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
	"github.com/redhaven/redhaven/proxy/topology"
	"github.com/redhaven/redhaven/vip"
)

// startVIPAgents is startAgents with the shared VIP in mode netlink on
// lo and the default cluster.vip_lease (1 s). The VIP managers are not
// run (vipAddressOff): the lease policy runs in full, but no address is
// added to the host. Root only (vip.New checks the capabilities).
func startVIPAgents(t *testing.T, set *redistest.Set, count int) []*Node {
	t.Helper()
	if os.Geteuid() != 0 {
		testutil.Require(t, "root", "the VIP managers (mode netlink) need root")
	}
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	cfgs := make([]Config, count)
	for i := range cfgs {
		cfgs[i] = agentConfig(t, set)
		cfgs[i].Cluster.Encrypt = key
		cfgs[i].NodeName = fmt.Sprintf("n%d", i+1)
		cfgs[i].Cluster.BootstrapExpect = count
		vc := vip.DefaultConfig()
		vc.Mode, vc.Address, vc.Interface = vip.ModeNetlink, "192.0.2.210/32", "lo"
		cfgs[i].VIP = vc
	}
	for i := range cfgs {
		cfgs[i].Cluster.Join = []string{cfgs[0].Cluster.Bind}
	}
	nodes := make([]*Node, count)
	for i := count - 1; i >= 0; i-- {
		nodes[i] = startAgentPrepared(t, cfgs[i], testLogger(t), func(n *Node) { n.vipAddressOff = true })
	}
	return nodes
}

// vipHolders returns each node's view of the shared VIP's lease holder.
func vipHolders(nodes []*Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.cluster.LeaseStatus(cluster.SharedVIP).Lease.Holder
	}
	return out
}

// nodeNamed returns the node called name, nil when none is.
func nodeNamed(nodes []*Node, name string) *Node {
	for _, n := range nodes {
		if n.cfg.NodeName == name {
			return n
		}
	}
	return nil
}

// leaseMoves sums a node's applied lease changes that move the VIP
// (grants, takeovers, releases).
func leaseMoves(n *Node) uint64 {
	c := n.cluster.LeaseChangeCounts(cluster.SharedVIP)
	return c[cluster.LeaseGrant] + c[cluster.LeaseTakeover] + c[cluster.LeaseRelease]
}

// waitVIPHolder waits until every agent routes master and agrees on one
// VIP holder whose manager is told to hold the address, and returns it.
func waitVIPHolder(t *testing.T, nodes []*Node, master string) *Node {
	t.Helper()
	var h *Node
	testutil.Eventually(t, 30*time.Second, "every agent routes the master and one node holds the VIP", func() bool {
		hs := vipHolders(nodes)
		h = nodeNamed(nodes, hs[0])
		return allEqual(committedMasters(nodes), master) && h != nil && allEqual(hs, hs[0]) &&
			h.sharedVIP().mgr.Status().Desired
	})
	return h
}

// vipWatch samples, every 10 ms until stop is closed, whether every
// node names holder as the VIP's holder and holder's manager is told to
// hold the address; it counts the samples that did not.
type vipWatch struct {
	samples, wrong atomic.Int64
	first          atomic.Pointer[string]
	done           chan struct{}
}

func watchVIPHolder(nodes []*Node, holder *Node, stop <-chan struct{}) *vipWatch {
	w := &vipWatch{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			w.samples.Add(1)
			hs := vipHolders(nodes)
			if !allEqual(hs, holder.cfg.NodeName) || !holder.sharedVIP().mgr.Status().Desired {
				if w.wrong.Add(1) == 1 {
					s := fmt.Sprintf("holders %v, VIP wanted on %s: %v", hs, holder.cfg.NodeName, holder.sharedVIP().mgr.Status().Desired)
					w.first.Store(&s)
				}
			}
		}
	}()
	return w
}

// TestVIPStaysWhenMasterRedisDies: three agents on loopback (real Raft,
// gossip, Redis and Sentinel; the VIP lease policy runs, no address is
// added). kill -9 of the master redis-server: every node is equally
// unable to route until Sentinel has promoted a replica and the leader
// has committed it, so the VIP lease must stay with its holder (no
// release, no takeover, the holder told to hold the address at every
// sample) until every agent routes the new master and 3 s after.
// Before, a holder that could not route released its lease after
// vip_lease/4 whatever the other nodes saw (make e2e: the VIP moved,
// 646 ms without it).
func TestVIPStaysWhenMasterRedisDies(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	set := redistest.StartSet(t, redistest.SetOptions{DownAfter: time.Second})
	nodes := startVIPAgents(t, set, 3)
	holder := waitVIPHolder(t, nodes, set.Master.Addr)
	// A follower holder: the new master reaches it by the leader's commit,
	// which may arrive before its own watcher has seen the promotion.
	if holder.cluster.IsLeader() {
		if err := holder.cluster.TransferLeadership(context.Background(), ""); err != nil {
			t.Fatalf("transfer leadership: %v", err)
		}
		testutil.Eventually(t, 15*time.Second, "another leader, the VIP still on "+holder.cfg.NodeName, func() bool {
			l := leaderOf(nodes)
			return l.cluster.IsLeader() && l != holder && allEqual(vipHolders(nodes), holder.cfg.NodeName)
		})
	}
	moves := make([]uint64, len(nodes))
	for i, n := range nodes {
		moves[i] = leaseMoves(n)
	}
	t.Logf("VIP held by %s (leader %s)", holder.cfg.NodeName, leaderOf(nodes).cfg.NodeName)

	// A loaded leader (make e2e ran at load 10-30): its watcher confirms
	// Sentinel's new master, and so commits it, 1.5 s late. Meanwhile
	// every node sees the Sentinels ahead of the committed master and
	// none routes.
	lateLeader(leaderOf(nodes), set.Master.Addr, 1500*time.Millisecond)
	stop := make(chan struct{})
	w := watchVIPHolder(nodes, holder, stop)
	killed := time.Now()
	set.Master.Kill()
	var newMaster string
	testutil.Eventually(t, 30*time.Second, "every agent routes one new master", func() bool {
		ms := committedMasters(nodes)
		newMaster = ms[0]
		return newMaster != "" && newMaster != set.Master.Addr && allEqual(ms, newMaster)
	})
	t.Logf("kill -9 -> every agent routes %s after %v", newMaster, time.Since(killed).Round(time.Millisecond))
	time.Sleep(3 * time.Second)
	close(stop)
	<-w.done
	t.Logf("%d samples of the VIP lease, %d not on %s alone", w.samples.Load(), w.wrong.Load(), holder.cfg.NodeName)
	if w.wrong.Load() > 0 {
		t.Errorf("the VIP lease left its holder after kill -9 of the master redis in %d samples; first: %s",
			w.wrong.Load(), *w.first.Load())
	}
	for i, n := range nodes {
		if got := leaseMoves(n); got != moves[i] {
			t.Errorf("%s applied %d lease grants/takeovers/releases after the kill, want 0 (counts %v)",
				n.cfg.NodeName, got-moves[i], n.cluster.LeaseChangeCounts(cluster.SharedVIP))
		}
	}
}

// lateLeader makes n's watcher report no master for late after it
// first confirms one other than old (a slow watcher): as leader, n
// commits the new master that much later.
func lateLeader(n *Node, old string, late time.Duration) {
	var since time.Time
	var mu sync.Mutex
	f := func(_ string, obs topology.Observation) topology.Observation {
		if obs.Master == "" || obs.Master == old {
			return obs
		}
		mu.Lock()
		defer mu.Unlock()
		if since.IsZero() {
			since = time.Now()
		}
		if time.Since(since) < late {
			obs.Master, obs.Reason = "", "test: confirmed late"
		}
		return obs
	}
	n.observeHook.Store(&f)
}

// seeMasterAsReplica makes n's watcher observation show master as a
// replica of replica (what a node whose connections to the master are
// redirected sees: its watcher contradicts the committed master), or
// restores it (on false).
func seeMasterAsReplica(n *Node, on bool, master, replica string) {
	if !on {
		n.observeHook.Store(nil)
		return
	}
	f := func(_ string, obs topology.Observation) topology.Observation {
		nodes := make([]topology.NodeState, len(obs.Nodes))
		copy(nodes, obs.Nodes)
		for i := range nodes {
			if nodes[i].Addr == master {
				nodes[i].Up, nodes[i].Role, nodes[i].MasterAddr, nodes[i].LinkUp = true, topology.RoleReplica, replica, true
			}
		}
		obs.Nodes = nodes
		return obs
	}
	n.observeHook.Store(&f)
}

// TestVIPHolderThatCannotRoute: three agents on loopback as in
// TestVIPStaysWhenMasterRedisDies. First every node's watcher contradicts
// the committed master (each sees it answer ROLE as a replica): no node
// routes, so the holder keeps the VIP lease and renews it (before, it
// released it after vip_lease/4 and nobody could take it: no VIP at all).
// Then only the holder's watcher contradicts it: the others route, so
// the holder releases its lease (a release, not an expiry) and a node
// that routes takes the VIP; the lease does not come back while the
// holder cannot route. Once with the Raft leader as the holder (it hands
// leadership to the node that routes), once with a follower holder (the
// leader routes and grants itself the lease).
func TestVIPHolderThatCannotRoute(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	for _, leads := range []bool{true, false} {
		t.Run(map[bool]string{true: "leader holder", false: "follower holder"}[leads], func(t *testing.T) {
			testVIPHolderThatCannotRoute(t, leads)
		})
	}
}

func testVIPHolderThatCannotRoute(t *testing.T, leads bool) {
	set := redistest.StartSet(t, redistest.SetOptions{DownAfter: 5 * time.Second})
	nodes := startVIPAgents(t, set, 3)
	master, replica := set.Master.Addr, set.Replicas[0].Addr
	holder := waitVIPHolder(t, nodes, master) // the leader takes the free lease
	if !leads {
		if err := holder.cluster.TransferLeadership(context.Background(), ""); err != nil {
			t.Fatalf("transfer leadership: %v", err)
		}
	}
	testutil.Eventually(t, 15*time.Second, "the holder leads: "+fmt.Sprint(leads), func() bool {
		l := leaderOf(nodes)
		return l.cluster.IsLeader() && (l == holder) == leads && allEqual(vipHolders(nodes), holder.cfg.NodeName)
	})
	lease := holder.cfg.Cluster.VIPLease
	t.Logf("VIP held by %s (leader %s), vip_lease %v", holder.cfg.NodeName, leaderOf(nodes).cfg.NodeName, lease)

	// 1. Nobody can route: the holder keeps the VIP.
	moves := make([]uint64, len(nodes))
	for i, n := range nodes {
		moves[i] = leaseMoves(n)
		seeMasterAsReplica(n, true, master, replica)
	}
	testutil.Eventually(t, 10*time.Second, "no agent routes", func() bool {
		return allEqual(committedMasters(nodes), "")
	})
	stop := make(chan struct{})
	w := watchVIPHolder(nodes, holder, stop)
	time.Sleep(3 * lease)
	close(stop)
	<-w.done
	if w.wrong.Load() > 0 {
		t.Errorf("no node could route, yet the VIP lease left its holder in %d of %d samples; first: %s",
			w.wrong.Load(), w.samples.Load(), *w.first.Load())
	}
	for i, n := range nodes {
		if got := leaseMoves(n); got != moves[i] {
			t.Errorf("%s applied %d lease grants/takeovers/releases while no node could route, want 0", n.cfg.NodeName, got-moves[i])
		}
	}

	// 2. Only the holder cannot route: it gives the VIP up.
	releases := holder.cluster.LeaseChangeCounts(cluster.SharedVIP)[cluster.LeaseRelease]
	takeovers := holder.cluster.LeaseChangeCounts(cluster.SharedVIP)[cluster.LeaseTakeover]
	for _, n := range nodes {
		if n != holder {
			seeMasterAsReplica(n, false, "", "")
		}
	}
	testutil.Eventually(t, 10*time.Second, "the other agents route again", func() bool {
		for _, n := range nodes {
			if n != holder && n.services[0].routes.Route().Master != master {
				return false
			}
		}
		return true
	})
	routing := time.Now()
	var next *Node
	testutil.Eventually(t, 15*time.Second, "another node holds the VIP lease", func() bool {
		hs := vipHolders(nodes)
		next = nodeNamed(nodes, hs[0])
		return next != nil && next != holder && allEqual(hs, hs[0])
	})
	t.Logf("only %s cannot route: VIP lease with %s %v after the others routed", holder.cfg.NodeName, next.cfg.NodeName,
		time.Since(routing).Round(time.Millisecond))
	c := holder.cluster.LeaseChangeCounts(cluster.SharedVIP)
	if c[cluster.LeaseRelease] != releases+1 || c[cluster.LeaseTakeover] != takeovers {
		t.Errorf("lease changes applied on the old holder: %d releases, %d takeovers; want 1 release, 0 takeovers",
			c[cluster.LeaseRelease]-releases, c[cluster.LeaseTakeover]-takeovers)
	}
	if next.services[0].routes.Route().Master != master {
		t.Errorf("the new holder %s does not route %s", next.cfg.NodeName, master)
	}
	testutil.Eventually(t, 5*time.Second, "VIP wanted on the new holder only", func() bool {
		return next.sharedVIP().mgr.Status().Desired && !holder.sharedVIP().mgr.Status().Desired
	})
	time.Sleep(2 * lease)
	if hs := vipHolders(nodes); !allEqual(hs, next.cfg.NodeName) {
		t.Errorf("VIP lease holders %v, want %s: it moved again while %s cannot route", hs, next.cfg.NodeName, holder.cfg.NodeName)
	}
}
