package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
)

// TestSingleServiceAgent: an agent configured with one entry of
// services: (its own master name, listener, client password and Redis
// password; redis.master_name left at its default "mymaster", which the
// Sentinels do not know) routes and serves that service, with real redis
// and Sentinel.
func TestSingleServiceAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	set := redistest.StartSet(t, redistest.SetOptions{MasterName: "cache", Replicas: 1, Password: "redis-pw"})
	listen := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	sentinels := redistest.Addrs(set.Sentinels)
	body := fmt.Sprintf(`node_name: svc1
data_dir: %q
redis:
  sentinels: ["%s"]
  check_interval: 100ms
http:
  listen: "127.0.0.1:0"
  admin_socket: %q
cluster:
  bootstrap_expect: 1
  bind: "127.0.0.1:%d"
  raft_bind: "127.0.0.1:%d"
services:
  - name: cache
    listen: %q
    password: client-pw
    redis_password: redis-pw
`, t.TempDir(), sentinels[0], adminSocketPath(t), testutil.FreePort(t), testutil.FreePort(t), listen)
	cfg, _, err := Check(writeConfig(t, body), nil, nil)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	n := startAgent(t, cfg)
	testutil.Eventually(t, 30*time.Second, "the agent routes to the service's master", func() bool {
		return n.services[0].routes.Route().Master == set.Master.Addr
	})
	ctx := context.Background()
	noAuth := redis.NewClient(&redis.Options{Addr: listen, Protocol: 2, DisableIdentity: true, MaxRetries: -1, DialTimeout: time.Second})
	defer noAuth.Close()
	if err := noAuth.Set(ctx, "k", "v", 0).Err(); err == nil {
		t.Fatal("SET without AUTH succeeded; the service's password is not required")
	}
	c := redis.NewClient(&redis.Options{Addr: listen, Password: "client-pw", Protocol: 2, DisableIdentity: true, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	if err := c.Set(ctx, "svc-key", "through-cache", 0).Err(); err != nil {
		t.Fatalf("SET through the service: %v", err)
	}
	direct := redis.NewClient(&redis.Options{Addr: set.Master.Addr, Password: "redis-pw", Protocol: 2, DisableIdentity: true})
	defer direct.Close()
	if v, err := direct.Get(ctx, "svc-key").Result(); err != nil || v != "through-cache" {
		t.Fatalf("on the master: %q, %v", v, err)
	}
}
