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

	probe, err := holder.AcquireLease(ctxT(t))
	if err != nil {
		t.Fatalf("AcquireLease on the leader with a free lease: %v", err)
	}
	if !probe {
		t.Error("a first grant (never released) must ask for a probe")
	}
	for _, n := range c.Nodes {
		clustertest.Eventually(t, 5*time.Second, n.Config.NodeName+" sees the lease", func() bool {
			return n.Agent.LeaseStatus().Lease.Holder == name
		})
	}
	if hu := holder.LeaseStatus().HeldUntil; time.Until(hu) <= 0 {
		t.Fatalf("holder's HeldUntil %v is not in the future", hu)
	}

	// Leadership moves; the lease stays.
	if err := holder.TransferLeadership(ctxT(t), ""); err != nil {
		t.Fatalf("transfer leadership: %v", err)
	}
	nl := c.WaitLeader(electBound)
	if nl == l {
		t.Fatal("leadership did not move")
	}
	leader := c.Nodes[nl].Agent
	if got := leader.LeaseStatus().Lease.Holder; got != name {
		t.Fatalf("lease holder after the leadership move = %q, want %s", got, name)
	}

	// The follower holder renews through the new leader for 2 lease
	// lengths; every takeover attempt meanwhile fails.
	end := time.Now().Add(time.Second)
	prev := holder.LeaseStatus().HeldUntil
	extended := 0
	for time.Now().Before(end) {
		if err := holder.RenewLease(ctxT(t)); err != nil {
			t.Fatalf("RenewLease on the follower holder: %v", err)
		}
		time.Sleep(125 * time.Millisecond)
		if hu := holder.LeaseStatus().HeldUntil; hu.After(prev) {
			extended++
			prev = hu
		}
		if _, err := leader.AcquireLease(ctxT(t)); !errors.Is(err, cluster.ErrLeaseHeld) {
			t.Fatalf("AcquireLease while the holder renews: %v, want ErrLeaseHeld", err)
		}
	}
	if extended < 4 {
		t.Fatalf("HeldUntil extended %d times in 8 renewals through gossip, want most", extended)
	}

	// The holder stops renewing (paused). Its own lease ends first; the
	// leader takes over only after it judges the lease expired.
	paused := time.Now()
	heldUntil := holder.LeaseStatus().HeldUntil
	var took time.Time
	clustertest.Eventually(t, 5*time.Second, "takeover after expiry", func() bool {
		_, err := leader.AcquireLease(ctxT(t))
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
		st := holder.LeaseStatus()
		return st.Lease.Holder == leader.Name() && st.HeldUntil.IsZero()
	})
	// The paused holder wakes and renews: refused by the FSM.
	_ = holder.RenewLease(ctxT(t))
	time.Sleep(200 * time.Millisecond)
	if got := leader.LeaseStatus().Lease.Holder; got != leader.Name() {
		t.Fatalf("a stale renewal moved the lease back to %q", got)
	}

	// Clean release by the (leader) holder; the lease is free at once, and
	// the next grant needs no probe.
	if err := leader.ReleaseLease(ctxT(t)); err != nil {
		t.Fatalf("ReleaseLease: %v", err)
	}
	if st := leader.LeaseStatus().Lease; st.Holder != "" || !st.Released {
		t.Fatalf("after release: %+v", st)
	}
	probe, err = leader.AcquireLease(ctxT(t))
	if err != nil || probe {
		t.Fatalf("grant after a clean release: probe=%v err=%v, want no probe", probe, err)
	}
	// A follower cannot grant.
	if _, err := holder.AcquireLease(ctxT(t)); !errors.Is(err, cluster.ErrNotLeader) {
		t.Fatalf("AcquireLease on a follower: %v, want ErrNotLeader", err)
	}
}
