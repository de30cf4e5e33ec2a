package proxy

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
)

// A connection to the old master whose dial completes after the route
// moved carries nothing: the command waiting for it goes to the new
// master (found by make chaos: a session's dial to the deposed master
// completed after the route change and its writes went there for 1.5 s).
// The dial is held open by a stopped redis: the proxy's dial waits for a
// PING answer (a new shared connection always; a 1:1 one after a lost
// connection).
func TestDialCompletedAfterRouteChangeCarriesNothing(t *testing.T) {
	oldMaster := redistest.StartServer(t, redistest.ServerOptions{})
	newMaster := redistest.StartServer(t, redistest.ServerOptions{})
	routes := newRoutes(oldMaster.Addr)
	cfg := testConfig()
	cfg.DialTimeout = 5 * time.Second // the PING check waits for the stopped redis
	cfg.HoldTimeout = 10 * time.Second
	srv := startProxy(t, cfg, routes)

	pid := oldMaster.PID()
	stopped := false
	stop := func() {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatalf("SIGSTOP: %v", err)
		}
		stopped = true
	}
	cont := func() {
		if stopped {
			stopped = false
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				t.Errorf("SIGCONT: %v", err)
			}
		}
	}
	defer cont()
	if cfg.Multiplex {
		// Retiring the shared connections (as a changed password does)
		// makes the next command need a new one.
		c := dialRaw(t, srv.Addr().String())
		c.do("+OK\r\n", "SET", "before", "1")
		stop()
		srv.retireMux(oldMaster.Addr, "test: a new shared connection is needed")
	} else {
		// Lose the proxy's connection to the old master. Retried: the
		// kill may meet only a connection the proxy was closing itself.
		testutil.Eventually(t, 10*time.Second, "the proxy noticed a lost connection to the old master", func() bool {
			c := dialRaw(t, srv.Addr().String())
			defer c.c.Close()
			c.do("+OK\r\n", "SET", "before", "1")
			if _, err := oldMaster.Client().Do(context.Background(), "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Result(); err != nil {
				t.Fatalf("CLIENT KILL: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
			return srv.backendStatsFor(oldMaster.Addr).lost.Load()
		})
		stop()
	}

	c := dialRaw(t, srv.Addr().String())
	c.send("SET", "during", "1") // its dial to the old master hangs in the PING check
	time.Sleep(300 * time.Millisecond)
	routes.Set(newMaster.Addr)
	time.Sleep(300 * time.Millisecond)
	cont() // the old master answers the PING: the dial completes now
	c.expect("+OK\r\n")

	if n := oldMaster.Client().Exists(context.Background(), "during").Val(); n != 0 {
		t.Errorf("the write went to the old master, after the route had moved to %s", newMaster.Addr)
	}
	if n := newMaster.Client().Exists(context.Background(), "during").Val(); n != 1 {
		t.Errorf("the write is not on the new master %s", newMaster.Addr)
	}
}
