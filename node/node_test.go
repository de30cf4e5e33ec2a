package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
)

// testLogger writes the agent's log to a file in the test's temp dir, and
// prints it when the test fails.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		if t.Failed() {
			b, _ := os.ReadFile(path)
			var lines []string
			for _, l := range strings.Split(string(b), "\n") {
				if !strings.Contains(l, "level=DEBUG") {
					lines = append(lines, l)
				}
			}
			if len(lines) > 80 {
				lines = lines[len(lines)-80:]
			}
			t.Logf("agent log (last lines):\n%s", strings.Join(lines, "\n"))
		}
	})
	return slog.New(slog.NewTextHandler(io.MultiWriter(f), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startAgent runs a node built with the same New that main uses.
func startAgent(t *testing.T, cfg Config) *Node {
	t.Helper()
	return startAgentLogger(t, cfg, testLogger(t))
}

// startAgentLogger is startAgent with the test's own logger.
func startAgentLogger(t *testing.T, cfg Config, logger *slog.Logger) *Node {
	t.Helper()
	return startAgentPrepared(t, cfg, logger, nil)
}

// startAgentPrepared is startAgentLogger with prepare (if not nil) called
// on the node between New and Run.
func startAgentPrepared(t *testing.T, cfg Config, logger *slog.Logger, prepare func(*Node)) *Node {
	t.Helper()
	n, err := New(cfg, logger)
	if err != nil {
		t.Fatalf("node.New: %v", err)
	}
	if prepare != nil {
		prepare(n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("node.Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("node.Run did not return within 15s of cancel")
		}
	})
	return n
}

func agentConfig(t *testing.T, set *redistest.Set) Config {
	cfg := DefaultConfig()
	cfg.NodeName = "test1"
	cfg.DataDir = t.TempDir()
	cfg.Redis.MasterName = set.MasterName
	cfg.Redis.Sentinels = redistest.Addrs(set.Sentinels)
	cfg.Redis.CheckInterval = 100 * time.Millisecond
	cfg.Proxy.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.AdminSocket = adminSocketPath(t)
	cfg.Cluster.Bind = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfg.Cluster.RaftBind = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfg.Cluster.BootstrapExpect = 1
	return cfg
}

// adminSocketPath is a fresh admin socket path for one agent: short (a
// socket path has at most 107 bytes, t.TempDir's can be longer), removed
// with its directory when the test ends.
func adminSocketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rh-node-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "admin.sock")
}

// client opens one persistent connection through the proxy: no retries,
// long read timeout (the proxy holds commands during a failover).
func client(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1,
		PoolSize: 1, MinIdleConns: 0, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		DialTimeout: time.Second,
	})
}

// TestFailoverUnderTraffic is the main scenario with real redis
// and Sentinel: kill -9 of the master under continuous writes on persistent
// connections; then the old master restarts and claims role:master.
func TestFailoverUnderTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	set := redistest.StartSet(t, redistest.SetOptions{DownAfter: time.Second})
	n := startAgent(t, agentConfig(t, set))
	addr := n.ProxyAddr().String()

	probe := client(addr)
	defer probe.Close()
	testutil.Eventually(t, 10*time.Second, "proxy routes a write", func() bool {
		return probe.Set(context.Background(), "ready", "1", 0).Err() == nil
	})

	// Writers: each its own connection, SET w<i>:<seq> every 5 ms.
	const writers = 4
	type result struct {
		acked  []string
		errors []string
	}
	results := make([]result, writers)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := client(addr)
			defer c.Close()
			for seq := 0; seq < 20000 && !stop.Load(); seq++ {
				key := fmt.Sprintf("w%d:%d", i, seq)
				if err := c.Set(context.Background(), key, seq, 0).Err(); err != nil {
					results[i].errors = append(results[i].errors, err.Error())
				} else {
					results[i].acked = append(results[i].acked, key)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}(i)
	}
	time.Sleep(time.Second) // traffic before the fault (not a synchronisation)
	oldMaster := set.Master
	killed := time.Now()
	oldMaster.Kill()

	// Writes must succeed again through the same connections.
	var newMaster string
	testutil.Eventually(t, 20*time.Second, "a new master confirmed by Sentinel", func() bool {
		newMaster = set.CurrentMaster()
		return newMaster != "" && newMaster != oldMaster.Addr
	})
	recovered := time.Now()
	testutil.Eventually(t, 20*time.Second, "writes through the proxy reach the new master", func() bool {
		return probe.Set(context.Background(), "after", "1", 0).Err() == nil
	})
	t.Logf("kill -> sentinel reports new master %v; -> probe write ok %v", recovered.Sub(killed), time.Since(killed))
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()

	nm := set.ByAddr(newMaster).Client()
	for i, r := range results {
		if len(r.errors) > 1 {
			t.Errorf("writer %d: %d errors, want at most 1 (the command in flight at the kill): %v", i, len(r.errors), r.errors)
		}
		if len(r.acked) < 100 {
			t.Errorf("writer %d: only %d acked writes", i, len(r.acked))
		}
		missing := 0
		for _, k := range r.acked {
			if nm.Exists(context.Background(), k).Val() != 1 {
				missing++
			}
		}
		if missing > 0 {
			t.Errorf("writer %d: %d of %d acknowledged writes missing on the new master", i, missing, len(r.acked))
		}
		t.Logf("writer %d: %d acked, %d errors %v", i, len(r.acked), len(r.errors), r.errors)
	}

	// The old master comes back as an empty master. Through redhaven no
	// write may land on it while it claims role:master.
	oldMaster.Restart()
	oc := oldMaster.Client()
	var landed, written atomic.Int64
	stop.Store(false)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for seq := 0; seq < 100000 && !stop.Load(); seq++ {
			c := client(addr) // a new connection each time, like a pool churning
			if c.Set(context.Background(), "p2:"+strconv.Itoa(seq), seq, 0).Err() == nil {
				written.Add(1)
			}
			c.Close()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	deadline := time.Now().Add(25 * time.Second)
	sawMaster := false
	for time.Now().Before(deadline) {
		role, err := oc.Do(context.Background(), "ROLE").Slice()
		if err != nil || len(role) == 0 || role[0] != "master" {
			if sawMaster {
				break // Sentinel has demoted it
			}
		} else {
			sawMaster = true
			keys, _ := oc.Keys(context.Background(), "p2:*").Result()
			if len(keys) > 0 {
				landed.Store(int64(len(keys)))
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if !sawMaster {
		t.Logf("old master was never seen as master after restart (Sentinel reconfigured it first)")
	}
	if landed.Load() > 0 {
		t.Errorf("%d writes landed on the restarted old master while it claimed role:master", landed.Load())
	}
	if written.Load() < 50 {
		t.Errorf("only %d writes succeeded while the old master was back", written.Load())
	}
	t.Logf("phase 2: %d writes acked, %d landed on the restarted old master", written.Load(), landed.Load())
}
