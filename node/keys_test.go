package node

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
)

// TestKeyRotationUnderTraffic: the cluster key is rotated (install, use,
// remove of the old one) from a follower's admin API while clients write
// through every agent's proxy: no client error, and every agent keeps
// routing (issue 11: "key rotation with no interruption of routing").
func TestKeyRotationUnderTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	set := redistest.StartSet(t, redistest.SetOptions{})
	nodes := startAgents(t, set, 3)
	testutil.Eventually(t, 30*time.Second, "every agent routes to the master", func() bool {
		return allEqual(committedMasters(nodes), set.Master.Addr)
	})
	oldKey := nodes[0].cfg.Cluster.Encrypt
	newKey, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var mu sync.Mutex
	var acked int
	var errs []string
	var maxPause time.Duration
	for i, n := range nodes {
		wg.Add(1)
		go func(i int, addr string) {
			defer wg.Done()
			c := client(addr)
			defer c.Close()
			for seq := 0; seq < 50000 && !stop.Load(); seq++ {
				start := time.Now()
				err := c.Set(context.Background(), fmt.Sprintf("kr%d:%d", i, seq), seq, 0).Err()
				took := time.Since(start)
				mu.Lock()
				if err != nil {
					errs = append(errs, err.Error())
				} else {
					acked++
				}
				maxPause = max(maxPause, took)
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}(i, n.ProxyAddr().String())
	}
	time.Sleep(300 * time.Millisecond)
	follower := nodes[0]
	for _, n := range nodes {
		if !n.cluster.IsLeader() {
			follower = n
		}
	}
	admin := (*webAdmin)(follower)
	for _, step := range []struct{ op, key string }{{"install", newKey}, {"use", newKey}, {"remove", oldKey}} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		res, err := admin.RotateKey(ctx, step.op, step.key)
		cancel()
		if err != nil || len(res) != 3 {
			t.Fatalf("keys %s: %+v %v", step.op, res, err)
		}
		for _, r := range res {
			if r.Error != "" {
				t.Fatalf("keys %s on %s: %s", step.op, r.Node, r.Error)
			}
		}
		time.Sleep(500 * time.Millisecond) // traffic between the steps
	}
	testutil.Eventually(t, 10*time.Second, "every agent still routes, in contact", func() bool {
		for _, n := range nodes {
			if !n.cluster.InContact() {
				return false
			}
		}
		return allEqual(committedMasters(nodes), set.Master.Addr)
	})
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if len(errs) > 0 {
		t.Errorf("%d client errors during the key rotation, want 0: %v", len(errs), errs[:min(len(errs), 5)])
	}
	if acked == 0 {
		t.Fatal("no write acknowledged")
	}
	t.Logf("key rotation from follower %s under traffic: %d writes acked through 3 agents, %d errors, longest client pause %v",
		follower.cfg.NodeName, acked, len(errs), maxPause.Round(time.Millisecond))
}
