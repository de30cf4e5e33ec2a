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
	n, s := &Node{}, &service{logger: slog.New(slog.DiscardHandler)}
	in := &InheritedService{Route: proxy.Route{Master: "10.0.0.1:6379", Epoch: 3}, RouteUntil: time.Now().Add(time.Hour)}
	s.seed = in.seed()
	empty := proxy.Route{}
	if r := n.seeded(s, empty, false, false); r.Master != "10.0.0.1:6379" {
		t.Fatalf("before contact: %+v", r)
	}
	if r := n.seeded(s, empty, false, true); r.Master != "" {
		t.Fatalf("contradicted: %+v", r)
	}
	if r := n.seeded(s, empty, false, false); r.Master != "" {
		t.Fatalf("after a contradiction the seed is gone: %+v", r)
	}
	s.seed = in.seed()
	if r := n.seeded(s, empty, true, false); r.Master != "" {
		t.Fatalf("in contact: the committed route rules: %+v", r)
	}
	expired := &InheritedService{Route: in.Route, RouteUntil: time.Now().Add(-time.Millisecond)}
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
	t.Cleanup(func() { _ = n.web.Close(); closeServices(n.services) })
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
	if got := n.services[0].maxReplicaLag.Load(); got != 4096 {
		t.Errorf("max_replica_lag after the reload: %d, want 4096", got)
	}
}

// TestChangedKeysServices: a key of a service entry is named by its
// entry; it is live when the shared key it sets is (the single service is
// applied to the sections, which ApplyLive reads).
func TestChangedKeysServices(t *testing.T) {
	ptr := func(d time.Duration) *time.Duration { return &d }
	listen := ":7000"
	a := DefaultConfig()
	a.Services = []ServiceEntry{{Name: "a", Listen: &listen, HoldTimeout: ptr(time.Second)}}
	a = a.ApplyServices()
	b := DefaultConfig()
	b.Services = []ServiceEntry{{Name: "a", Listen: &listen, HoldTimeout: ptr(2 * time.Second)}}
	b = b.ApplyServices()
	got := ChangedKeys(a, b)
	if want := []string{"proxy.hold_timeout", "services[0].hold_timeout"}; !slices.Equal(got, want) {
		t.Fatalf("ChangedKeys = %v, want %v", got, want)
	}
	if live, restart := SplitReload(got); len(live) != 2 || len(restart) != 0 {
		t.Fatalf("SplitReload: live %v restart %v", live, restart)
	}
	other := ":7100"
	c := DefaultConfig()
	c.Services = []ServiceEntry{{Name: "a", Listen: &other, HoldTimeout: ptr(time.Second)}}
	c = c.ApplyServices()
	got = ChangedKeys(a, c)
	if live, restart := SplitReload(got); len(live) != 0 || !slices.Equal(restart, []string{"proxy.listen", "services[0].listen"}) {
		t.Fatalf("listen change: live %v restart %v", live, restart)
	}
	c.Services = append(c.Services, ServiceEntry{Name: "b"})
	if got := ChangedKeys(a, c); !slices.Contains(got, "services") {
		t.Fatalf("a service added: %v", got)
	}
	if _, restart := SplitReload([]string{"services", "services[0].name", "http.auth"}); !slices.Equal(restart, []string{"services", "services[0].name"}) {
		t.Fatalf("restart %v", restart)
	}
}
