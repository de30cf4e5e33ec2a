package node

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redhaven/redhaven/cluster"
	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
	"github.com/redhaven/redhaven/webui"
)

// httpGet fetches path from the agent's HTTP listener.
func httpGet(t *testing.T, n *Node, path string) string {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + n.HTTPAddr().String() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
	}
	return string(b)
}

// TestCommittedRouteContradicted: a committed route that the node's own
// watcher contradicts gets no traffic (DESIGN.md "Trust"). A route is
// committed through the cluster API, as a forged Raft entry would land:
// first to a redis-server on loopback that belongs to no Sentinel set (a
// stranger), at an epoch no Sentinel has reached, then to a known
// replica. Clients through the proxy are held and answered -MASTERDOWN,
// nothing reaches the stranger, and the snapshot, the JSON API and
// /metrics show the contradiction. Before, the proxy sent the writes to
// the stranger, and its answers went back to the clients.
func TestCommittedRouteContradicted(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	set := redistest.StartSet(t, redistest.SetOptions{Replicas: 1})
	stranger := redistest.StartServer(t, redistest.ServerOptions{})
	cfg := agentConfig(t, set)
	cfg.Proxy.HoldTimeout = 500 * time.Millisecond
	n := startAgent(t, cfg)
	ctx := context.Background()
	c := client(n.ProxyAddr().String())
	defer c.Close()
	testutil.Eventually(t, 10*time.Second, "proxy routes a write", func() bool {
		return c.Set(ctx, "ready", "1", 0).Err() == nil
	})
	snap := (*webSource)(n).Snapshot()
	if snap.Route.Contradicted != "" || snap.Route.EpochAhead {
		t.Fatalf("route to the real master flagged: %+v", snap.Route)
	}

	commit := func(master string, epoch int64) {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		d := cluster.RouteDecision{Master: master, Epoch: epoch, Reason: "forged by the test"}
		if err := n.Cluster().ProposeRoute(cctx, n.Service(), d); err != nil {
			t.Fatalf("commit route %+v: %v", d, err)
		}
	}
	// refused checks that a write through the proxy is held, then
	// answered -MASTERDOWN, and returns what the snapshot said.
	refused := func(key, wantWhy string) webui.Snapshot {
		t.Helper()
		var snap webui.Snapshot
		testutil.Eventually(t, 5*time.Second, "snapshot shows the contradiction "+wantWhy, func() bool {
			snap = (*webSource)(n).Snapshot()
			return strings.Contains(snap.Route.Contradicted, wantWhy) && !snap.Ready && n.services[0].routes.Route().Master == ""
		})
		start := time.Now()
		err := c.Set(ctx, key, "v", 0).Err()
		held := time.Since(start)
		if err == nil || !strings.HasPrefix(err.Error(), "MASTERDOWN") {
			t.Fatalf("SET %s through the proxy: err = %v, want MASTERDOWN", key, err)
		}
		if held < 400*time.Millisecond {
			t.Errorf("SET %s answered after %v, want held about hold_timeout (500ms) first", key, held)
		}
		return snap
	}

	// A stranger at an epoch far above Sentinel's.
	commit(stranger.Addr, 999999999)
	snap = refused("k1", stranger.Addr+" is not a redis node this watcher knows")
	if snap.Route.Master != stranger.Addr || !snap.Route.EpochAhead {
		t.Errorf("route %+v: want the stranger committed and flagged epoch_ahead", snap.Route)
	}
	sc := stranger.Client()
	if keys, err := sc.DBSize(ctx).Result(); err != nil || keys != 0 {
		t.Errorf("stranger holds %d keys (err %v), want 0", keys, err)
	}
	if stats := sc.Info(ctx, "commandstats").Val(); strings.Contains(stats, "cmdstat_set") {
		t.Errorf("a SET reached the stranger:\n%s", stats)
	}
	clients := sc.ClientList(ctx).Val()
	if lines := strings.Count(strings.TrimSpace(clients), "\n") + 1; lines != 1 {
		t.Errorf("stranger has %d client connections, want only the test's own:\n%s", lines, clients)
	}
	if set.Master.Client().Exists(ctx, "k1").Val() != 0 {
		t.Errorf("the refused write reached the real master")
	}
	metrics := httpGet(t, n, "/metrics")
	svc := `{service="` + set.MasterName + `"}`
	for _, want := range []string{"redhaven_route_contradicted" + svc + " 1", "redhaven_route_epoch_ahead" + svc + " 1", "redhaven_node_ready 0", "redhaven_service_ready" + svc + " 0"} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	var api struct {
		Route    webui.Route     `json:"route"`
		Services []webui.Service `json:"services"`
	}
	if err := json.Unmarshal([]byte(httpGet(t, n, "/api/v1/stats")), &api); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(api.Route.Contradicted, "not a redis node this watcher knows") || !api.Route.EpochAhead {
		t.Errorf("JSON route %+v: want contradicted and epoch_ahead", api.Route)
	}
	// The one service, named after redis.master_name, with the same route.
	if len(api.Services) != 1 || api.Services[0].Name != set.MasterName || api.Services[0].Route != api.Route ||
		api.Services[0].Summary.State != webui.ServiceContradicted {
		t.Errorf("JSON services %+v: want one, %s, contradicted", api.Services, set.MasterName)
	}
	if page := httpGet(t, n, "/"); !strings.Contains(page, "not routed here: "+stranger.Addr) {
		t.Errorf("stats page does not show the contradiction")
	}

	// A known replica: the watcher's own ROLE says replica.
	replica := set.Replicas[0]
	commit(replica.Addr, 1000000000)
	refused("k2", replica.Addr+" answers ROLE as a replica of "+set.Master.Addr)
	if replica.Client().Exists(ctx, "k2").Val() != 0 || set.Master.Client().Exists(ctx, "k2").Val() != 0 {
		t.Errorf("the refused write landed somewhere")
	}
	if !strings.Contains(httpGet(t, n, "/metrics"), "redhaven_route_contradicted"+svc+" 1\n") {
		t.Errorf("/metrics does not flag the replica route")
	}
}
