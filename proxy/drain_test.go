package proxy

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redis/go-redis/v9"
)

// A clean stop closes each client connection right after a reply, so a
// pooled client dials again before its next command and none fails, also
// one that is idle between its commands: the
// "VIP" (which proxy a dial reaches) moves from A to B when A's stop gate
// opens, as when the holder's VIP moves to the next node.
func TestStopDrainsAtCommandBoundaries(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	routes := newRoutes(rs.Addr)
	a, stopA := runProxy(t, testConfig(), routes)
	b := startProxy(t, testConfig(), routes)
	gate := make(chan struct{})
	a.SetStopGate(func() <-chan struct{} { return gate })
	var moved atomic.Bool
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		addr := a.Addr().String()
		if moved.Load() {
			addr = b.Addr().String()
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}

	// a partial command before the stop, completed during the drain: it is
	// answered, then the connection closes
	partial := dialRaw(t, a.Addr().String())
	cmd := string(appendCommandStrings(nil, "SET", "drain-partial", "v"))
	partial.write(cmd[:9])
	// a blocking command in flight at the stop: answered, then closed
	blocked := dialRaw(t, a.Addr().String())
	blocked.send("BLPOP", "drain-list", "5")
	time.Sleep(50 * time.Millisecond)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t0 := time.Now()
	const workers = 12 // 4 of them paced, as a writer with a cadence
	var (
		wg      sync.WaitGroup
		acks    [workers]int64
		errs    atomic.Int64
		firstEr atomic.Value
		onB     atomic.Int64
	)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := redis.NewClient(&redis.Options{Addr: "vip:6380", Dialer: dial, PoolSize: 1, MaxRetries: -1})
			defer c.Close()
			key := fmt.Sprintf("drain-%d", i)
			for ctx.Err() == nil {
				_, err := c.Incr(context.Background(), key).Result()
				if err != nil {
					if errs.Add(1) == 1 {
						firstEr.Store(err)
					}
					if errs.Load() <= 5 {
						t.Logf("error %v after the start (the stop at 500ms): %v", time.Since(t0).Round(time.Millisecond), err)
					}
					time.Sleep(10 * time.Millisecond)
					continue
				}
				acks[i]++
				if moved.Load() {
					onB.Add(1)
				}
				if i >= 8 {
					// idle between commands: a drain that closed an idle
					// connection could cross the next command
					time.Sleep(3 * time.Millisecond)
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	stopped := make(chan error, 1)
	stopAt := time.Now()
	go func() { stopped <- stopA() }()
	time.Sleep(100 * time.Millisecond)
	partial.write(cmd[9:])
	partial.expect("+OK\r\n")
	partial.expectClosed()
	rs.Client().RPush(context.Background(), "drain-list", "x")
	blocked.expect("*2\r\n" + bulk("drain-list") + bulk("x"))
	blocked.expectClosed()
	time.Sleep(200 * time.Millisecond)
	// The VIP leaves A (no new connection reaches A), then A's gate
	// opens: the node opens it once the address is gone.
	moved.Store(true)
	time.Sleep(20 * time.Millisecond)
	close(gate)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	took := time.Since(stopAt)
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()

	if n := errs.Load(); n != 0 {
		t.Errorf("%d commands failed across the stop; first: %v", n, firstEr.Load())
	}
	for i := range workers {
		got, err := rs.Client().Get(context.Background(), fmt.Sprintf("drain-%d", i)).Int64()
		if err != nil || got != acks[i] {
			t.Errorf("worker %d: %d acknowledged, redis has %d (%v)", i, acks[i], got, err)
		}
	}
	if onB.Load() == 0 {
		t.Error("no command answered by B after the move")
	}
	if took > 4*time.Second {
		t.Errorf("the stop took %v", took)
	}
	if c, err := net.DialTimeout("tcp", a.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("A still accepts after its stop")
	}
	t.Logf("stop took %v; %d commands on B after the move; acks %v", took.Round(time.Millisecond), onB.Load(), acks)
}
