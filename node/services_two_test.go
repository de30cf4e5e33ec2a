package node

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redhaven/redhaven/cluster"
	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
)

// shareSentinels has a's Sentinels monitor b's master too and stops b's
// own, so that the same three Sentinels watch both sets (as in the usual
// deployment); it waits until each sees b's replica and its two peers.
func shareSentinels(t *testing.T, a, b *redistest.Set) {
	t.Helper()
	ctx := context.Background()
	host, port, _ := net.SplitHostPort(b.Master.Addr)
	for _, s := range b.Sentinels {
		s.Kill()
	}
	for _, s := range a.Sentinels {
		c := s.Client()
		for _, cmd := range [][]any{
			{"SENTINEL", "MONITOR", b.MasterName, host, port, "2"},
			{"SENTINEL", "SET", b.MasterName, "down-after-milliseconds", "1000"},
			{"SENTINEL", "SET", b.MasterName, "failover-timeout", "6000"},
		} {
			if err := c.Do(ctx, cmd...).Err(); err != nil {
				t.Fatalf("%s: %v: %v", s.Addr, cmd, err)
			}
		}
	}
	for _, s := range a.Sentinels {
		testutil.Eventually(t, 30*time.Second, "sentinel "+s.Addr+" sees "+b.MasterName+"'s replica and peers", func() bool {
			m, err := s.Client().Do(ctx, "SENTINEL", "MASTER", b.MasterName).Result()
			if err != nil {
				return false
			}
			f := map[string]string{}
			if kv, ok := m.(map[any]any); ok {
				for k, v := range kv {
					f[fmt.Sprint(k)] = fmt.Sprint(v)
				}
			} else if l, ok := m.([]any); ok {
				for i := 0; i+1 < len(l); i += 2 {
					f[fmt.Sprint(l[i])] = fmt.Sprint(l[i+1])
				}
			}
			return f["num-slaves"] == "1" && f["num-other-sentinels"] == "2"
		})
	}
	b.Sentinels = a.Sentinels
}

// writer SETs through a proxy listener in a loop until stopped and
// counts errors and the longest time between two successful writes.
type writer struct {
	c      *redis.Client
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	ok     int
	errs   []error
	maxGap time.Duration
}

func startWriter(addr, key string) *writer {
	w := &writer{stop: make(chan struct{}), done: make(chan struct{}),
		c: redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1,
			DialTimeout: time.Second, ReadTimeout: 10 * time.Second, PoolSize: 1})}
	go func() {
		defer close(w.done)
		last := time.Now()
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			err := w.c.Set(context.Background(), key, i, 0).Err()
			now := time.Now()
			w.mu.Lock()
			if err != nil {
				w.errs = append(w.errs, err)
			} else {
				w.ok++
				w.maxGap = max(w.maxGap, now.Sub(last))
				last = now
			}
			w.mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return w
}

func (w *writer) finish() (ok int, errs []error, maxGap time.Duration) {
	close(w.stop)
	<-w.done
	_ = w.c.Close()
	return w.ok, w.errs, w.maxGap
}

// checkWriters stops the writers of the service that failed over (moved)
// and of the other (untouched), logs what each saw, and checks that the
// untouched one saw no error and no gap of a second, and that both wrote.
func checkWriters(t *testing.T, moved, untouched string, wm, wu *writer) {
	t.Helper()
	okM, errsM, gapM := wm.finish()
	okU, errsU, gapU := wu.finish()
	t.Logf("%s (failed over): %d writes, %d errors, longest gap %v", moved, okM, len(errsM), gapM)
	t.Logf("%s (untouched): %d writes, %d errors, longest gap %v", untouched, okU, len(errsU), gapU)
	if len(errsU) > 0 {
		t.Errorf("%s's writer saw %d errors during %s's failover, first: %v", untouched, len(errsU), moved, errsU[0])
	}
	if gapU >= time.Second {
		t.Errorf("%s's writer waited %v between two writes during %s's failover, want < 1s", untouched, gapU, moved)
	}
	if okM == 0 || okU == 0 {
		t.Errorf("writes: %s %d, %s %d; want both writing", moved, okM, untouched, okU)
	}
}

// TestTwoServicesOneAgent: one agent routes two services (two Redis sets
// with their own master names, watched by the same three Sentinels, on two
// listeners), with real redis and Sentinel. A planned failover of one service does not disturb
// the other: its writer, running all along, sees no error and no long
// gap; nor does a kill -9 of the other's master (a Sentinel failover), nor
// draining one service's backend. /health/ready?service= answers per service, and a service whose
// committed master this node's watcher contradicts makes the node not
// ready for that service only, not ready overall, and not a VIP holder.
func TestTwoServicesOneAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	alpha := redistest.StartSet(t, redistest.SetOptions{MasterName: "alpha", Replicas: 1})
	beta := redistest.StartSet(t, redistest.SetOptions{MasterName: "beta", Replicas: 1})
	shareSentinels(t, alpha, beta)
	listenA := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	listenB := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	body := fmt.Sprintf(`node_name: two1
data_dir: %q
redis:
  sentinels: [%s]
  check_interval: 100ms
proxy:
  hold_timeout: 5s
http:
  listen: "127.0.0.1:0"
  admin_socket: %q
cluster:
  bootstrap_expect: 1
  bind: "127.0.0.1:%d"
  raft_bind: "127.0.0.1:%d"
services:
  - name: alpha
    listen: %q
  - name: beta
    listen: %q
`, t.TempDir(), quoted(redistest.Addrs(alpha.Sentinels)), adminSocketPath(t), testutil.FreePort(t), testutil.FreePort(t),
		listenA, listenB)
	cfg, _, err := Check(writeConfig(t, body), nil, nil)
	if err != nil {
		t.Fatalf("Check of two services: %v", err)
	}
	n := startAgent(t, cfg)
	if got := n.ServiceNames(); len(got) != 2 || got[0] != "alpha" || got[1] != "beta" {
		t.Fatalf("services %q, want alpha and beta", got)
	}
	sa, sb := n.services[0], n.services[1]
	testutil.Eventually(t, 30*time.Second, "the agent routes both services to their masters", func() bool {
		return sa.routes.Route().Master == alpha.Master.Addr && sb.routes.Route().Master == beta.Master.Addr
	})

	ready := func(query string) int {
		t.Helper()
		resp, err := http.Get("http://" + n.HTTPAddr().String() + "/health/ready" + query)
		if err != nil {
			t.Fatalf("GET /health/ready%s: %v", query, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, q := range []string{"", "?service=alpha", "?service=beta"} {
		if code := ready(q); code != 200 {
			t.Errorf("/health/ready%s = %d, want 200", q, code)
		}
	}
	if code := ready("?service=gamma"); code != 404 {
		t.Errorf("/health/ready?service=gamma = %d, want 404", code)
	}

	// The metrics carry both services (a frontend each, labelled).
	resp, err := http.Get("http://" + n.HTTPAddr().String() + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`redhaven_service_ready{service="alpha"} 1`, `redhaven_service_ready{service="beta"} 1`} {
		if resp.StatusCode != 200 || !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics (%d) lacks %s", resp.StatusCode, want)
		}
	}

	// Each listener writes to its own service's master.
	ctx := context.Background()
	for _, c := range []struct {
		listen string
		set    *redistest.Set
	}{{listenA, alpha}, {listenB, beta}} {
		pc := redis.NewClient(&redis.Options{Addr: c.listen, Protocol: 2, DisableIdentity: true, MaxRetries: -1, DialTimeout: time.Second})
		if err := pc.Set(ctx, "which", c.set.MasterName, 0).Err(); err != nil {
			t.Fatalf("SET through %s: %v", c.set.MasterName, err)
		}
		pc.Close()
		direct := c.set.Master.Client()
		if v, err := direct.Get(ctx, "which").Result(); err != nil || v != c.set.MasterName {
			t.Fatalf("on %s's master: %q, %v", c.set.MasterName, v, err)
		}
	}

	// A planned failover of alpha while writers run on both services.
	wa, wb := startWriter(listenA, "wa"), startWriter(listenB, "wb")
	time.Sleep(300 * time.Millisecond)
	oldA := sa.routes.Route()
	if _, err := (*webAdmin)(n).RequestFailover(ctx, "alpha"); err != nil {
		t.Fatalf("request failover of alpha: %v", err)
	}
	testutil.Eventually(t, 30*time.Second, "alpha routes to a new master", func() bool {
		r := sa.routes.Route()
		return r.Master != "" && r.Master != oldA.Master && r.Epoch > oldA.Epoch
	})
	time.Sleep(300 * time.Millisecond)
	checkWriters(t, "alpha", "beta", wa, wb)
	if r := sb.routes.Route(); r.Master != beta.Master.Addr {
		t.Errorf("beta's route moved to %+v during alpha's failover", r)
	}
	testutil.Eventually(t, 10*time.Second, "both services ready again", func() bool {
		return ready("?service=alpha") == 200 && ready("?service=beta") == 200 && n.sharedVIP().mayServe()
	})

	// An operator drains alpha's replica (the old master): beta's admin
	// states are untouched.
	if _, err := (*webAdmin)(n).SetBackendState(ctx, "alpha", oldA.Master, "drain"); err != nil {
		t.Fatalf("drain alpha's %s: %v", oldA.Master, err)
	}
	testutil.Eventually(t, 10*time.Second, "alpha's backend drained", func() bool {
		return n.Cluster().State().Service("alpha").Admin[oldA.Master] == cluster.AdminDrain
	})
	if adm := n.Cluster().State().Service("beta").Admin; len(adm) != 0 {
		t.Errorf("beta's admin states after draining alpha's backend: %v, want none", adm)
	}

	// kill -9 of beta's master: Sentinel fails beta over while alpha's
	// writer runs; alpha sees no error and no long gap.
	wa, wb = startWriter(listenA, "wa2"), startWriter(listenB, "wb2")
	time.Sleep(300 * time.Millisecond)
	oldB := sb.routes.Route()
	routeA := sa.routes.Route()
	beta.Master.Kill()
	testutil.Eventually(t, 60*time.Second, "beta routes to its new master", func() bool {
		r := sb.routes.Route()
		return r.Master != "" && r.Master != oldB.Master
	})
	time.Sleep(300 * time.Millisecond)
	checkWriters(t, "beta", "alpha", wb, wa)
	if r := sa.routes.Route(); r.Master != routeA.Master || r.Epoch != routeA.Epoch {
		t.Errorf("alpha's route moved to %+v during beta's failover (was %+v)", r, routeA)
	}

	// A committed master for alpha that this node's watcher does not know:
	// not ready for alpha only, not ready overall, no VIP here.
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	forged := cluster.RouteDecision{Master: "127.0.0.1:1", Epoch: 999999999, Reason: "forged by the test"}
	if err := n.Cluster().ProposeRoute(cctx, "alpha", forged); err != nil {
		t.Fatalf("commit forged route: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, "alpha not ready, beta ready", func() bool {
		return ready("?service=alpha") == 503 && ready("?service=beta") == 200 && ready("") == 503
	})
	if v := n.sharedVIP(); v.mayServe() || v.lease.mayServe.Load() || !sb.mayServe.Load() {
		t.Errorf("VIP rule: shared VIP mayServe %v, lease.mayServe %v, beta mayServe %v; want false, false, true",
			v.mayServe(), v.lease.mayServe.Load(), sb.mayServe.Load())
	}
	pc := redis.NewClient(&redis.Options{Addr: listenB, Protocol: 2, DisableIdentity: true, MaxRetries: -1, DialTimeout: time.Second})
	defer pc.Close()
	if err := pc.Set(ctx, "still", "1", 0).Err(); err != nil {
		t.Errorf("beta while alpha is not routed: %v", err)
	}
}
