package node

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
	"github.com/redis/go-redis/v9"
)

// TestAgentTLS: redis.tls and proxy.tls wired through the agent: Redis and
// Sentinel on TLS only, TLS clients; writes go on after kill -9 of the
// master (Sentinel's failover, seen over TLS).
func TestAgentTLS(t *testing.T) {
	x := redistest.NewTLS(t)
	set := redistest.StartSet(t, redistest.SetOptions{TLS: x, Replicas: 1})
	cfg := agentConfig(t, set)
	cfg.Redis.TLS.Enabled, cfg.Redis.TLS.CAFile = true, x.CAFile
	cert, key := x.Issue(t, "proxy", "proxy")
	cfg.Proxy.TLS.Enabled, cfg.Proxy.TLS.CertFile, cfg.Proxy.TLS.KeyFile = true, cert, key
	n := startAgent(t, cfg)
	c := redis.NewClient(&redis.Options{
		Addr: n.ProxyAddr().String(), Protocol: 2, DisableIdentity: true, MaxRetries: -1,
		ReadTimeout: 10 * time.Second, DialTimeout: time.Second,
		TLSConfig: &tls.Config{RootCAs: x.Pool, ServerName: "127.0.0.1"},
	})
	defer c.Close()
	ctx := context.Background()
	testutil.Eventually(t, 15*time.Second, "a write through the TLS proxy", func() bool {
		return c.Set(ctx, "k", "before", 0).Err() == nil
	})
	if v, err := set.Master.Client().Get(ctx, "k").Result(); err != nil || v != "before" {
		t.Fatalf("master has %q, %v", v, err)
	}
	old := set.Master.Addr
	set.Master.Kill()
	testutil.Eventually(t, 30*time.Second, "writes reach a new master", func() bool {
		m := set.CurrentMaster()
		if m == "" || m == old || c.Set(ctx, "k", "after", 0).Err() != nil {
			return false
		}
		v, err := set.ByAddr(m).Client().Get(ctx, "k").Result()
		return err == nil && v == "after"
	})
}
