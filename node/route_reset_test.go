package node

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redhaven/redhaven/cluster"
	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
	"github.com/redhaven/redhaven/webui"
)

// TestRouteResetThroughFollower: a forged committed route (a stranger at
// an epoch Sentinel never reaches) pins every proxy to -MASTERDOWN; a
// route reset asked on a follower is forwarded to the leader, clears it,
// and the proxies route to Sentinel's master again. Also checks the
// status codes of refusals on real agents: 409 for a stale expected
// route, 404 for an unknown member.
func TestRouteResetThroughFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	set := redistest.StartSet(t, redistest.SetOptions{Replicas: 1})
	stranger := redistest.StartServer(t, redistest.ServerOptions{})
	nodes := startAgents(t, set, 3)
	ctx := context.Background()
	testutil.Eventually(t, 30*time.Second, "all agents route to the master", func() bool {
		return allEqual(committedMasters(nodes), set.Master.Addr)
	})
	leader := leaderOf(nodes)
	var follower *Node
	for _, n := range nodes {
		if n != leader {
			follower = n
		}
	}
	c := client(follower.ProxyAddr().String())
	defer c.Close()
	if err := c.Set(ctx, "before", "1", 0).Err(); err != nil {
		t.Fatalf("write through the follower before: %v", err)
	}
	forged := cluster.RouteDecision{Master: stranger.Addr, Epoch: 999999999, Reason: "forged by the test"}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := leader.Cluster().ProposeRoute(cctx, leader.Service(), forged); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "every proxy stops routing", func() bool {
		return allEqual(committedMasters(nodes), "")
	})
	// The leader cannot repair it by itself: Sentinel's epoch is lower.
	time.Sleep(300 * time.Millisecond)
	if st := leader.Cluster().State().Service(leader.Service()).Route; st.Master != stranger.Addr {
		t.Fatalf("committed route changed by itself: %+v", st)
	}

	admin := (*webAdmin)(follower)
	stale := int64(5)
	if _, err := admin.ResetRoute(ctx, stranger.Addr, &stale); !errors.Is(err, webui.ErrConflict) || !errors.Is(err, cluster.ErrRouteChanged) {
		t.Fatalf("reset naming another epoch: %v, want a 409 (route changed)", err)
	}
	if _, err := admin.RemoveMember(ctx, "nobody"); !errors.Is(err, webui.ErrNotFound) {
		t.Fatalf("remove unknown member: %v, want a 404", err)
	}
	start := time.Now()
	acted, err := admin.ResetRoute(ctx, forged.Master, &forged.Epoch)
	if err != nil || !acted.Forwarded || acted.Node != leader.cfg.NodeName {
		t.Fatalf("reset on the follower: %+v %v, want forwarded to %s", acted, err, leader.cfg.NodeName)
	}
	testutil.EventuallyEvery(t, 10*time.Second, 2*time.Millisecond, "the follower routes to sentinel's master again", func() bool {
		return follower.services[0].routes.Route().Master == set.Master.Addr
	})
	took := time.Since(start)
	testutil.Eventually(t, 10*time.Second, "every proxy routes to sentinel's master again", func() bool {
		return allEqual(committedMasters(nodes), set.Master.Addr)
	})
	if err := c.Set(ctx, "after", "1", 0).Err(); err != nil {
		t.Fatalf("write through the follower after the reset: %v", err)
	}
	if set.Master.Client().Exists(ctx, "after").Val() != 1 {
		t.Fatal("the write after the reset is not on sentinel's master")
	}
	t.Logf("route reset on follower %s, carried out by %s: the follower routes to %s again after %v",
		follower.cfg.NodeName, acted.Node, set.Master.Addr, took.Round(time.Millisecond))
	ev := leader.Cluster().State().Events
	found := false
	for _, e := range ev {
		found = found || strings.Contains(e.Message, "route reset (was master "+stranger.Addr)
	}
	if !found {
		t.Error("no route reset event in the history")
	}
	// The API's events name the service they are about.
	found = false
	for _, e := range (*webSource)(leader).Snapshot().Events {
		if strings.Contains(e.Message, "route reset (was master "+stranger.Addr) {
			found = true
			if e.Service == "" {
				t.Errorf("the API's route reset event names no service: %+v", e)
			}
		}
	}
	if !found {
		t.Error("no route reset event in the API's snapshot")
	}
}
