package proxy

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/testutil"
)

// TestContinuousTrafficFlips pipelines writes on several connections while
// the master moves back and forth (Redis's coordinated FAILOVER, then the
// route follows): no acknowledged write may be lost, and each connection
// sees at most one error per flip.
func TestContinuousTrafficFlips(t *testing.T) {
	a, b := pair(t)
	routes := newRoutes(a.Addr)
	cfg := testConfig()
	cfg.HoldTimeout = 5 * time.Second
	srv := startProxy(t, cfg, routes)
	ctx := context.Background()

	const workers, batch, flips = 4, 20, 4
	type result struct {
		acked  map[int]int // value -> list position (1-based) Redis reported
		errors []string
	}
	results := make([]result, workers)
	var stop atomic.Bool
	var total atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := &results[w]
			res.acked = map[int]int{}
			r := dialRaw(t, srv.Addr().String())
			key := fmt.Sprintf("list:%d", w)
			next := 0
			for !stop.Load() && next < 200000 {
				var out []byte
				for i := 0; i < batch; i++ {
					out = appendCommandStrings(out, "RPUSH", key, strconv.Itoa(next+i))
				}
				if _, err := r.c.Write(out); err != nil {
					res.errors = append(res.errors, "write: "+err.Error())
					return
				}
				for i := 0; i < batch; i++ {
					s, err := r.replyWithin(15 * time.Second)
					if err != nil {
						res.errors = append(res.errors, "read: "+err.Error())
						return
					}
					if strings.HasPrefix(s, ":") {
						n, _ := strconv.Atoi(strings.TrimSpace(s[1:]))
						res.acked[next+i] = n
						total.Add(1)
					} else {
						res.errors = append(res.errors, strings.TrimSpace(s))
					}
				}
				next += batch
			}
		}()
	}
	waitAcked := func(more int64) {
		t.Helper()
		target := total.Load() + more
		testutil.Eventually(t, 20*time.Second, fmt.Sprintf("%d more acknowledged writes", more), func() bool { return total.Load() >= target })
	}
	master, replica := a, b
	for i := 0; i < flips; i++ {
		waitAcked(500)
		host, port, _ := net.SplitHostPort(replica.Addr)
		// FAILOVER wants the replica online as the master sees it (a
		// replica reports its link up a moment earlier; flaked once)
		testutil.Eventually(t, 10*time.Second, "replica online at the master", func() bool {
			return strings.Contains(infoField(t, master.Client(), "replication", "slave0"), "state=online")
		})
		if err := master.Client().Do(ctx, "FAILOVER", "TO", host, port, "TIMEOUT", "5000").Err(); err != nil {
			t.Fatalf("FAILOVER: %v", err)
		}
		testutil.Eventually(t, 10*time.Second, "failover done", func() bool {
			return role(master.Client()) == "slave" && role(replica.Client()) == "master"
		})
		routes.Set(replica.Addr)
		master, replica = replica, master
	}
	waitAcked(500)
	stop.Store(true)
	wg.Wait()

	for w, res := range results {
		if len(res.errors) > flips {
			t.Errorf("worker %d: %d errors for %d flips: %v", w, len(res.errors), flips, res.errors)
		}
		vals, err := master.Client().LRange(ctx, fmt.Sprintf("list:%d", w), 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		lost := 0
		for v, pos := range res.acked {
			if pos < 1 || pos > len(vals) || vals[pos-1] != strconv.Itoa(v) {
				lost++
			}
		}
		if lost > 0 {
			t.Errorf("worker %d: %d of %d acknowledged writes missing or misplaced", w, lost, len(res.acked))
		}
		t.Logf("worker %d: %d acknowledged, %d errors %v, list length %d", w, len(res.acked), len(res.errors), res.errors, len(vals))
	}
	st := srv.Stats()
	t.Logf("stats: %+v", st)
	if st.Listeners[0].Resent == 0 {
		t.Errorf("no command was resent after -READONLY: the test did not exercise the failover path")
	}
}
