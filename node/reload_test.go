package node

import (
	"fmt"
	"log/slog"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/testutil"
	"github.com/redhaven/redhaven/proxy"
	"github.com/redhaven/redhaven/webui"
	"golang.org/x/crypto/bcrypt"
)

func TestChangedKeys(t *testing.T) {
	a := DefaultConfig()
	b := DefaultConfig()
	if got := ChangedKeys(a, b); len(got) != 0 {
		t.Fatalf("same config: %v", got)
	}
	b.Log.Level = "debug"
	b.Proxy.HoldTimeout = a.Proxy.HoldTimeout + time.Second
	b.Redis.Password = "secret"
	b.Redis.Sentinels = []string{"10.0.0.1:26379"}
	got := ChangedKeys(a, b)
	want := []string{"log.level", "proxy.hold_timeout", "redis.password", "redis.sentinels"}
	if !slices.Equal(got, want) {
		t.Fatalf("ChangedKeys = %v, want %v", got, want)
	}
	live, restart := SplitReload(got)
	if !slices.Equal(live, want[:2]) || !slices.Equal(restart, want[2:]) {
		t.Fatalf("SplitReload: live %v restart %v", live, restart)
	}
}

// The handed-over route is followed until Raft contact, a contradiction
// or its end, whichever comes first, and never again after.
func TestSeededRoute(t *testing.T) {
	n := &Node{logger: slog.New(slog.DiscardHandler)}
	in := &Inherited{Route: proxy.Route{Master: "10.0.0.1:6379", Epoch: 3}, RouteUntil: time.Now().Add(time.Hour)}
	n.seed = in.seed()
	empty := proxy.Route{}
	if r := n.seeded(empty, false, false); r.Master != "10.0.0.1:6379" {
		t.Fatalf("before contact: %+v", r)
	}
	if r := n.seeded(empty, false, true); r.Master != "" {
		t.Fatalf("contradicted: %+v", r)
	}
	if r := n.seeded(empty, false, false); r.Master != "" {
		t.Fatalf("after a contradiction the seed is gone: %+v", r)
	}
	n.seed = in.seed()
	if r := n.seeded(empty, true, false); r.Master != "" {
		t.Fatalf("in contact: the committed route rules: %+v", r)
	}
	expired := &Inherited{Route: in.Route, RouteUntil: time.Now().Add(-time.Millisecond)}
	if expired.seed() != nil {
		t.Fatal("an expired route is a seed")
	}
}

// TestApplyLive: a reload's live keys reach the running parts of a node:
// http.auth users (the web server asks for credentials from then on) and
// redis.max_replica_lag (the routing of read-only connections). The
// proxy's own live keys are tested in proxy (TestSetLive*).
func TestApplyLive(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NodeName = "live1"
	cfg.DataDir = t.TempDir()
	cfg.Redis.MasterName = "mymaster"
	cfg.Redis.Sentinels = []string{"127.0.0.1:1"}
	cfg.Proxy.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.AdminSocket = ""
	cfg.Cluster.Bind = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfg.Cluster.RaftBind = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfg.Cluster.BootstrapExpect = 1
	n, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("node.New: %v", err)
	}
	t.Cleanup(func() { _ = n.web.Close(); _ = n.proxy.Close() })
	status := func() int {
		rec := httptest.NewRecorder()
		n.web.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/stats", nil))
		return rec.Code
	}
	if got := status(); got != 200 {
		t.Fatalf("no http.auth: %d, want 200", got)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	next := cfg
	next.HTTP.Auth = []webui.User{{Name: "alice", PasswordHash: string(hash), Role: webui.RoleAdmin}}
	next.Redis.MaxReplicaLag = 4096
	live, restart := SplitReload(ChangedKeys(cfg, next))
	if !slices.Equal(live, []string{"http.auth", "redis.max_replica_lag"}) || len(restart) != 0 {
		t.Fatalf("SplitReload: live %v, restart %v", live, restart)
	}
	n.ApplyLive(next)
	if got := status(); got != 401 {
		t.Errorf("after the reload with http.auth users, no credentials: %d, want 401", got)
	}
	if got := n.maxReplicaLag.Load(); got != 4096 {
		t.Errorf("max_replica_lag after the reload: %d, want 4096", got)
	}
}
