package cluster_test

import (
	"errors"
	"testing"
	"time"

	"github.com/redhaven/redhaven/cluster"
	"github.com/redhaven/redhaven/cluster/clustertest"
)

// TestLeaseAcrossLeadership: three in-process agents. The leader takes the
// free lease; Raft leadership moves away without moving the lease; the
// holder, now a follower, renews through the new leader (gossip); while it
// renews nobody may take the lease over; once it stops (a pause) the
// leader takes it over only after length*(1+skew) since it last saw a
// renewal; a clean release frees it at once and the next grant needs no
// probe.
func TestLeaseAcrossLeadership(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{Configure: func(_ int, cfg *cluster.Config) {
		cfg.VIPLease = 500 * time.Millisecond
	}})
	c.StartAll()
	l := c.WaitLeader(formTimeout)
	waitVoters(t, c, names(3)...)
	waitAllInContact(t, c)
	holder := c.Nodes[l].Agent
	name := holder.Name()

	probe, err := holder.AcquireLease(ctxT(t), cluster.SharedVIP)
	if err != nil {
		t.Fatalf("AcquireLease on the leader with a free lease: %v", err)
	}
	if !probe {
		t.Error("a first grant (never released) must ask for a probe")
	}
	for _, n := range c.Nodes {
		clustertest.Eventually(t, 5*time.Second, n.Config.NodeName+" sees the lease", func() bool {
			return n.Agent.LeaseStatus(cluster.SharedVIP).Lease.Holder == name
		})
	}
	// The lease is 500 ms and nobody renews it yet: under load the waits
	// above can outlast it, so the holder renews before the check.
	clustertest.Eventually(t, 5*time.Second, "the holder's own renewal puts its HeldUntil in the future", func() bool {
		_ = holder.RenewLease(ctxT(t), cluster.SharedVIP)
		return time.Until(holder.LeaseStatus(cluster.SharedVIP).HeldUntil) > 0
	})

	// Leadership moves; the lease stays.
	if err := holder.TransferLeadership(ctxT(t), ""); err != nil {
		t.Fatalf("transfer leadership: %v", err)
	}
	nl := c.WaitLeader(electBound)
	if nl == l {
		t.Fatal("leadership did not move")
	}
	leader := c.Nodes[nl].Agent
	if got := leader.LeaseStatus(cluster.SharedVIP).Lease.Holder; got != name {
		t.Fatalf("lease holder after the leadership move = %q, want %s", got, name)
	}

	// The follower holder renews through the new leader for 2 lease
	// lengths; every takeover attempt meanwhile fails.
	end := time.Now().Add(time.Second)
	prev := holder.LeaseStatus(cluster.SharedVIP).HeldUntil
	extended := 0
	for time.Now().Before(end) {
		if err := holder.RenewLease(ctxT(t), cluster.SharedVIP); err != nil {
			t.Fatalf("RenewLease on the follower holder: %v", err)
		}
		time.Sleep(125 * time.Millisecond)
		if hu := holder.LeaseStatus(cluster.SharedVIP).HeldUntil; hu.After(prev) {
			extended++
			prev = hu
		}
		// Under load a renewal can reach the leader late enough that it
		// judges the lease expired; the FSM then refuses the takeover
		// because a renewal was applied since (ErrLeaseChanged). Or
		// leadership moved on (ErrNotLeader). Either way the holder
		// keeps it.
		_, err := leader.AcquireLease(ctxT(t), cluster.SharedVIP)
		if !errors.Is(err, cluster.ErrLeaseHeld) && !errors.Is(err, cluster.ErrLeaseChanged) && !errors.Is(err, cluster.ErrNotLeader) {
			t.Fatalf("AcquireLease while the holder renews: %v, want ErrLeaseHeld, ErrLeaseChanged or ErrNotLeader", err)
		}
		if got := leader.LeaseStatus(cluster.SharedVIP).Lease.Holder; got != name {
			t.Fatalf("lease holder %q while %s renews", got, name)
		}
	}
	if extended < 2 {
		t.Fatalf("HeldUntil extended %d times in 8 renewals through gossip, want at least 2 (most on a quiet machine)", extended)
	}

	// The holder stops renewing (paused). Its own lease ends first; the
	// leader takes over only after it judges the lease expired.
	paused := time.Now()
	heldUntil := holder.LeaseStatus(cluster.SharedVIP).HeldUntil
	var took time.Time
	clustertest.Eventually(t, 5*time.Second, "takeover after expiry", func() bool {
		_, err := leader.AcquireLease(ctxT(t), cluster.SharedVIP)
		if err == nil {
			took = time.Now()
			return true
		}
		if !errors.Is(err, cluster.ErrLeaseHeld) {
			t.Fatalf("AcquireLease: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
		return false
	})
	if took.Before(heldUntil) {
		t.Fatalf("taken over at %v, before the holder's own lease ended (%v)", took, heldUntil)
	}
	t.Logf("holder paused; its lease ended %v later; taken over %v after the pause",
		heldUntil.Sub(paused).Round(time.Millisecond), took.Sub(paused).Round(time.Millisecond))
	if time.Since(paused) > 3*time.Second {
		t.Errorf("takeover took %v, want about 0.55 s", time.Since(paused))
	}
	clustertest.Eventually(t, 5*time.Second, "old holder sees the takeover", func() bool {
		st := holder.LeaseStatus(cluster.SharedVIP)
		return st.Lease.Holder == leader.Name() && st.HeldUntil.IsZero()
	})
	// The paused holder wakes and renews: refused by the FSM.
	_ = holder.RenewLease(ctxT(t), cluster.SharedVIP)
	time.Sleep(200 * time.Millisecond)
	if got := leader.LeaseStatus(cluster.SharedVIP).Lease.Holder; got != leader.Name() {
		t.Fatalf("a stale renewal moved the lease back to %q", got)
	}

	// Clean release by the (leader) holder; the lease is free at once, and
	// the next grant needs no probe.
	if err := leader.ReleaseLease(ctxT(t), cluster.SharedVIP); err != nil {
		t.Fatalf("ReleaseLease: %v", err)
	}
	if st := leader.LeaseStatus(cluster.SharedVIP).Lease; st.Holder != "" || !st.Released {
		t.Fatalf("after release: %+v", st)
	}
	probe, err = leader.AcquireLease(ctxT(t), cluster.SharedVIP)
	if err != nil || probe {
		t.Fatalf("grant after a clean release: probe=%v err=%v, want no probe", probe, err)
	}
	// A follower cannot grant.
	if _, err := holder.AcquireLease(ctxT(t), cluster.SharedVIP); !errors.Is(err, cluster.ErrNotLeader) {
		t.Fatalf("AcquireLease on a follower: %v, want ErrNotLeader", err)
	}
}

// TestServiceLeaseAgent: a service's own VIP lease through the agents:
// the leader takes it while another node holds the shared lease, a
// follower holder renews it through the leader (gossip) without touching
// the shared lease, it is released on its own, and a service the leader
// is not configured with has no lease.
func TestServiceLeaseAgent(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{Configure: func(_ int, cfg *cluster.Config) {
		cfg.VIPLease = 500 * time.Millisecond
		cfg.Services = []string{"mymaster", "cache"}
	}})
	c.StartAll()
	l := c.WaitLeader(formTimeout)
	waitVoters(t, c, names(3)...)
	waitAllInContact(t, c)
	first := c.Nodes[l].Agent
	if _, err := first.AcquireLease(ctxT(t), cluster.SharedVIP); err != nil {
		t.Fatalf("shared lease: %v", err)
	}
	if _, err := first.AcquireLease(ctxT(t), "nope"); !errors.Is(err, cluster.ErrUnknownService) {
		t.Fatalf("lease of an unknown service: %v, want ErrUnknownService", err)
	}
	if err := first.TransferLeadership(ctxT(t), ""); err != nil {
		t.Fatalf("transfer leadership: %v", err)
	}
	leader := c.Nodes[c.WaitLeader(electBound)].Agent
	if leader == first {
		t.Fatal("leadership did not move")
	}
	if _, err := leader.AcquireLease(ctxT(t), cluster.SharedVIP); !errors.Is(err, cluster.ErrLeaseHeld) {
		t.Fatalf("shared lease on the new leader: %v, want ErrLeaseHeld", err)
	}
	if _, err := leader.AcquireLease(ctxT(t), "cache"); err != nil {
		t.Fatalf("cache's lease while the shared one is held elsewhere: %v", err)
	}
	for _, n := range c.Nodes {
		clustertest.Eventually(t, 5*time.Second, n.Config.NodeName+" sees both leases", func() bool {
			return n.Agent.LeaseStatus("cache").Lease.Holder == leader.Name() &&
				n.Agent.LeaseStatus(cluster.SharedVIP).Lease.Holder == first.Name()
		})
	}
	// The follower holder of the shared lease renews it through the
	// leader; the service lease is the leader's and stays so.
	prev := first.LeaseStatus(cluster.SharedVIP).HeldUntil
	clustertest.Eventually(t, 5*time.Second, "the follower's shared renewal", func() bool {
		_ = first.RenewLease(ctxT(t), cluster.SharedVIP)
		return first.LeaseStatus(cluster.SharedVIP).HeldUntil.After(prev)
	})
	if err := first.RenewLease(ctxT(t), "cache"); err != nil {
		t.Fatalf("sending a renewal of a lease this node does not hold: %v", err)
	}
	if got := leader.LeaseStatus("cache").Lease.Holder; got != leader.Name() {
		t.Fatalf("cache's lease holder %q after a non-holder's renewal", got)
	}
	// The lease is 500 ms and nobody renews it here: under load the waits
	// above can outlast it, so the holder renews before the check.
	clustertest.Eventually(t, 5*time.Second, "the cache holder's own renewal puts its HeldUntil in the future", func() bool {
		_ = leader.RenewLease(ctxT(t), "cache")
		return time.Until(leader.LeaseStatus("cache").HeldUntil) > 0
	})
	if err := leader.ReleaseLease(ctxT(t), "cache"); err != nil {
		t.Fatalf("release cache's lease: %v", err)
	}
	if ls := leader.LeaseStatus("cache").Lease; ls.Holder != "" || !ls.Released {
		t.Fatalf("cache lease after release %+v", ls)
	}
	if got := leader.LeaseStatus(cluster.SharedVIP).Lease.Holder; got != first.Name() {
		t.Fatalf("shared lease holder %q after cache's release, want %s", got, first.Name())
	}
	if n := leader.LeaseChangeCounts("cache"); n[cluster.LeaseGrant] != 1 || n[cluster.LeaseRelease] != 1 {
		t.Errorf("cache lease changes %v", n)
	}
}

// TestGrantLeaseAgent: the leader grants a service's own VIP lease to
// another node (GrantLease): only to a node whose routed note says it
// takes such grants, never the shared VIP's, never while the lease is
// held; every node sees the grantee as the holder, named as granted by
// the leader; the grantee's lease counts only from its own first renewal
// (HeldUntil zero before), sent through the leader like any renewal; a
// grant after the grantee's clean release needs no probe; a follower
// cannot grant.
func TestGrantLeaseAgent(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{Configure: func(i int, cfg *cluster.Config) {
		// Leadership must stay put for the test (the machine is loaded),
		// and the grantee's lease must not expire before it renews.
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 2*time.Second, 2*time.Second, 2*time.Second
		cfg.ContactBound = 2 * time.Second
		cfg.VIPLease = 5 * time.Second
		cfg.Services = []string{"mymaster", "cache"}
		if i != 2 {
			cfg.VIPServices = []string{"cache"} // n3 has no own VIP for cache
		}
	}})
	c.StartAll()
	l := c.WaitLeader(formTimeout)
	waitVoters(t, c, names(3)...)
	waitAllInContact(t, c)
	if l == 2 { // n3 must follow: it is the node that takes no grants
		if err := c.Nodes[2].Agent.TransferLeadership(ctxT(t), c.Nodes[0].Config.NodeName); err != nil {
			t.Fatalf("transfer leadership: %v", err)
		}
		if l = c.WaitLeader(electBound); l == 2 {
			t.Fatal("leadership did not move")
		}
		waitAllInContact(t, c)
	}
	leader := c.Nodes[l].Agent
	var grantee, other *cluster.Agent // grantee takes grants, other does not
	for i, n := range c.Nodes {
		switch {
		case i == l:
		case i == 2:
			other = n.Agent
		default:
			grantee = n.Agent
		}
	}
	d := cluster.RouteDecision{Master: "10.0.0.1:6379", Epoch: 3, DecidedBy: leader.Name(), Time: time.Now()}
	for _, n := range c.Nodes {
		n.Agent.NoteRouted("cache", d, d.Master, true)
	}
	// The leader learns the notes by asking (as grantToPeer does).
	clustertest.Eventually(t, 10*time.Second, "the leader has the followers' notes", func() bool {
		return len(leader.PeersRouting("cache", d, time.Second)) == 2
	})
	if !leader.TakesLeaseGrants(grantee.Name(), "cache") || leader.TakesLeaseGrants(other.Name(), "cache") {
		t.Fatalf("takes grants: %s %v, %s %v", grantee.Name(), leader.TakesLeaseGrants(grantee.Name(), "cache"),
			other.Name(), leader.TakesLeaseGrants(other.Name(), "cache"))
	}
	if err := leader.GrantLease(ctxT(t), "cache", other.Name(), "test"); !errors.Is(err, cluster.ErrNoGrantee) {
		t.Fatalf("grant to a node without cache's VIP: %v, want ErrNoGrantee", err)
	}
	if err := leader.GrantLease(ctxT(t), cluster.SharedVIP, grantee.Name(), "test"); err == nil {
		t.Fatal("the shared VIP's lease granted to another node")
	}
	if err := leader.GrantLease(ctxT(t), "nope", grantee.Name(), "test"); !errors.Is(err, cluster.ErrUnknownService) {
		t.Fatalf("grant of an unknown service's lease: %v, want ErrUnknownService", err)
	}
	if err := grantee.GrantLease(ctxT(t), "cache", grantee.Name(), "test"); !errors.Is(err, cluster.ErrNotLeader) {
		t.Fatalf("grant on a follower: %v, want ErrNotLeader", err)
	}

	if err := leader.GrantLease(ctxT(t), "cache", grantee.Name(), "test"); err != nil {
		t.Fatalf("grant of the free lease: %v", err)
	}
	for _, n := range c.Nodes {
		clustertest.Eventually(t, 5*time.Second, n.Config.NodeName+" sees the grant", func() bool {
			l := n.Agent.LeaseStatus("cache").Lease
			return l.Holder == grantee.Name() && l.GrantedBy == leader.Name() && !l.AfterRelease
		})
	}
	if st := grantee.LeaseStatus("cache"); !st.HeldUntil.IsZero() {
		t.Fatalf("the grantee's lease counts before any renewal of its own: HeldUntil %v", st.HeldUntil)
	}
	// Held: no other grant, no grant to the leader itself.
	if _, err := leader.AcquireLease(ctxT(t), "cache"); !errors.Is(err, cluster.ErrLeaseHeld) {
		t.Fatalf("AcquireLease of the granted lease: %v, want ErrLeaseHeld", err)
	}
	sent := time.Now()
	clustertest.Eventually(t, 5*time.Second, "the grantee's own renewal counts", func() bool {
		_ = grantee.RenewLease(ctxT(t), "cache")
		return !grantee.LeaseStatus("cache").HeldUntil.IsZero()
	})
	if hu := grantee.LeaseStatus("cache").HeldUntil; hu.Before(sent.Add(5 * time.Second)) {
		t.Fatalf("HeldUntil %v counts from before the grantee's first renewal (%v)", hu, sent)
	}
	// Released and granted to the same node again at once, several times:
	// a copy of a release resent meanwhile must not release the new grant
	// (each release names the holding it ends).
	const rounds = 8
	for i := range rounds {
		if err := grantee.ReleaseLease(ctxT(t), "cache"); err != nil {
			t.Fatalf("round %d: the grantee's release: %v", i, err)
		}
		clustertest.Eventually(t, 5*time.Second, "the leader sees the release", func() bool {
			l := leader.LeaseStatus("cache").Lease
			return l.Holder == "" && l.Released
		})
		if err := leader.GrantLease(ctxT(t), "cache", grantee.Name(), "test"); err != nil {
			t.Fatalf("round %d: grant after the release: %v", i, err)
		}
		clustertest.Eventually(t, 5*time.Second, "the grantee sees the grant after the release", func() bool {
			l := grantee.LeaseStatus("cache").Lease
			return l.Holder == grantee.Name() && l.AfterRelease
		})
		time.Sleep(100 * time.Millisecond) // stale copies, if any, commit meanwhile
		if l := leader.LeaseStatus("cache").Lease; l.Holder != grantee.Name() {
			t.Fatalf("round %d: the new grant to %s was released: %+v", i, grantee.Name(), l)
		}
	}
	if n := leader.LeaseChangeCounts("cache"); n[cluster.LeaseGrant] != rounds+1 || n[cluster.LeaseRelease] != rounds {
		t.Errorf("cache lease changes %v, want %d grants and %d releases", n, rounds+1, rounds)
	}
	if h := leader.LeaseStatus(cluster.SharedVIP).Lease.Holder; h != "" {
		t.Errorf("the shared lease has holder %q", h)
	}
}
