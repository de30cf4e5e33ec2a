package proxy

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
	"github.com/redis/go-redis/v9"
)

func TestReadonlyListener(t *testing.T) {
	m := redistest.StartServer(t, redistest.ServerOptions{})
	r1 := redistest.StartServer(t, redistest.ServerOptions{ReplicaOf: m.Addr})
	r2 := redistest.StartServer(t, redistest.ServerOptions{ReplicaOf: m.Addr})
	routes := newRoutes(m.Addr, r1.Addr, r2.Addr)
	cfg := testConfig()
	cfg.ReadonlyListen = "127.0.0.1:0"
	cfg.PreferReplica = r2.Addr
	srv := startProxy(t, cfg, routes)
	if srv.ReadonlyAddr() == nil {
		t.Fatal("no read-only listener")
	}
	ctx := context.Background()
	port := func(c *redis.Client) string {
		v, err := c.ConfigGet(ctx, "port").Result()
		if err != nil {
			return "err: " + err.Error()
		}
		return v["port"]
	}
	_, p1, _ := net.SplitHostPort(r1.Addr)
	_, p2, _ := net.SplitHostPort(r2.Addr)
	_, pm, _ := net.SplitHostPort(m.Addr)

	ro := proxyClient(t, srv.ReadonlyAddr().String(), &redis.Options{PoolSize: 1})
	if got := port(ro); got != p2 {
		t.Fatalf("read-only session on port %s, want preferred replica %s", got, p2)
	}
	if err := ro.Set(ctx, "x", "1", 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "READONLY") {
		t.Fatalf("write on read-only listener: %v, want READONLY from the replica", err)
	}
	// the preferred replica leaves: sessions move to another replica
	routes.Set(m.Addr, r1.Addr)
	testutil.Eventually(t, 5*time.Second, "moved to r1", func() bool { return port(ro) == p1 })
	// no replica: reads go to the master
	routes.Set(m.Addr)
	testutil.Eventually(t, 5*time.Second, "moved to master", func() bool { return port(ro) == pm })
	// the read-write listener is unaffected
	rw := proxyClient(t, srv.Addr().String(), nil)
	if got := port(rw); got != pm {
		t.Fatalf("rw on %s", got)
	}
	st := srv.Stats()
	if len(st.Listeners) != 2 || st.Listeners[1].Name != "ro" || st.Listeners[1].Commands == 0 {
		t.Fatalf("stats: %+v", st.Listeners)
	}
}
