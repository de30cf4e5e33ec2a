package node

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/redhaven/redhaven/cluster"
	"github.com/redhaven/redhaven/cluster/clustertest"
	"github.com/redhaven/redhaven/e2e/testutil"
	"github.com/redhaven/redhaven/vip"
)

// TestUnhealthyHolderReleasesLease: three nodes on real Raft
// (clustertest) run the VIP lease policy (leaseLoop) with VIP managers in
// mode netlink on lo that are never run (no address is added: the test
// follows the lease and what each manager is told). The lease goes to the
// leader; leadership moves away, the follower holder keeps renewing.
// When the holder turns unhealthy (cannot route) it releases the lease
// at once, and the healthy leader holds it well before the lease could
// have run out (vip_lease + 10% after the last renewal arrived).
func TestUnhealthyHolderReleasesLease(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	const lease = time.Second
	c := clustertest.New(t, 3, clustertest.Options{Configure: func(_ int, cfg *cluster.Config) {
		cfg.VIPLease = lease
	}})
	c.StartAll()
	c.WaitLeader(30 * time.Second)

	ctx, cancel := context.WithCancel(context.Background())
	nodes := make([]*Node, len(c.Nodes))
	done := make(chan struct{}, len(nodes))
	t.Cleanup(func() {
		cancel()
		for range nodes {
			<-done
		}
	})
	for i, cn := range c.Nodes {
		vc := vip.DefaultConfig()
		vc.Mode, vc.Address, vc.Interface = vip.ModeNetlink, "192.0.2.100/32", "lo"
		mgr, err := vip.New(vc, nil)
		if err != nil {
			testutil.Require(t, "root", "vip manager on lo: "+err.Error())
		}
		cfg := DefaultConfig()
		cfg.NodeName, cfg.Cluster, cfg.VIP = cn.Config.NodeName, cn.Config, vc
		v := &vipSlot{key: cluster.SharedVIP, cfg: vc, mgr: mgr, logger: slog.New(slog.DiscardHandler)}
		v.lease.leave = make(chan chan struct{})
		v.lease.mayServe.Store(true)
		n := &Node{cfg: cfg, logger: slog.New(slog.DiscardHandler), cluster: cn.Agent, vips: []*vipSlot{v}}
		nodes[i] = n
		go func() {
			_ = n.leaseLoop(ctx, v)
			done <- struct{}{}
		}()
	}
	holderIs := func(name string) func() bool {
		return func() bool {
			for _, n := range nodes {
				if n.cluster.LeaseStatus(cluster.SharedVIP).Lease.Holder != name {
					return false
				}
			}
			return true
		}
	}
	leader := func() int {
		for i, n := range nodes {
			if n.cluster.IsLeader() {
				return i
			}
		}
		return -1
	}
	var h int
	testutil.Eventually(t, 10*time.Second, "the leader holds the lease", func() bool {
		h = leader()
		return h >= 0 && holderIs(nodes[h].cfg.NodeName)()
	})
	holder := nodes[h]
	if !holder.sharedVIP().mgr.Status().Desired {
		t.Fatal("the holder's VIP manager is not told to hold the address")
	}
	// Leadership moves; the follower holder keeps the lease by renewing.
	if err := holder.cluster.TransferLeadership(ctx, ""); err != nil {
		t.Fatalf("transfer leadership: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, "a new leader", func() bool { l := leader(); return l >= 0 && l != h })
	time.Sleep(2 * lease)
	if got := holder.cluster.LeaseStatus(cluster.SharedVIP).Lease.Holder; got != holder.cfg.NodeName {
		t.Fatalf("lease holder %q after the leadership move, want %s (renewing)", got, holder.cfg.NodeName)
	}
	next := nodes[leader()]

	sick := time.Now()
	holder.sharedVIP().lease.mayServe.Store(false) // its proxy cannot route
	testutil.Eventually(t, 10*time.Second, "the healthy leader holds the lease", holderIs(next.cfg.NodeName))
	moved := time.Since(sick)
	t.Logf("holder unable to route; lease with %s after %v (lease %v)", next.cfg.NodeName, moved.Round(time.Millisecond), lease)
	if moved >= lease {
		t.Errorf("the lease moved after %v, not faster than the lease (%v): no release?", moved, lease)
	}
	if n := holder.cluster.LeaseChangeCounts(cluster.SharedVIP)[cluster.LeaseRelease]; n != 1 {
		t.Errorf("%d releases applied on the old holder, want 1 (a release, not a takeover)", n)
	}
	testutil.Eventually(t, 5*time.Second, "VIP wanted on the new holder only", func() bool {
		return next.sharedVIP().mgr.Status().Desired && !holder.sharedVIP().mgr.Status().Desired
	})
	// It does not take the lease back while unhealthy, and a healthy
	// holder keeps it.
	time.Sleep(2 * lease)
	if !holderIs(next.cfg.NodeName)() {
		t.Errorf("lease holder changed again: %q", holder.cluster.LeaseStatus(cluster.SharedVIP).Lease.Holder)
	}
}
