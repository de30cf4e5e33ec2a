//go:build linux

package proxy

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
)

func parkedNow(srv *Server) int64 { return srv.Stats().Listeners[0].Parked }

// TestIdleSessionsPark: idle sessions on shared connections give up their
// goroutine; a dedicated connection's session does not; a parked session
// answers its next command, follows a route change and ends when its
// client leaves.
func TestIdleSessionsPark(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	rs2 := redistest.StartServer(t, redistest.ServerOptions{})
	routes := newRoutes(rs.Addr)
	srv := startProxy(t, muxConfig(), routes)
	addr := srv.Addr().String()

	const plain, resp3, own = 30, 5, 5
	var clients []*rawClient
	for i := range plain + resp3 + own {
		c := dialRaw(t, addr)
		switch {
		case i < plain:
		case i < plain+resp3:
			c.send("HELLO", "3")
			if r := c.reply(); r[0] != '%' {
				t.Fatalf("HELLO 3: %q", r)
			}
		default:
			c.do("+OK\r\n", "SELECT", "2")
		}
		key := fmt.Sprintf("park:%d", i)
		c.do("+OK\r\n", "SET", key, key)
		clients = append(clients, c)
	}
	before := runtime.NumGoroutine()
	testutil.Eventually(t, 5*time.Second, "the idle sessions on shared connections are not parked", func() bool {
		return parkedNow(srv) == plain+resp3
	})
	time.Sleep(parkSweep * 3)
	if n := parkedNow(srv); n != plain+resp3 {
		t.Fatalf("parked = %d, want %d (sessions with their own connection stay)", n, plain+resp3)
	}
	if after := runtime.NumGoroutine(); after > before-(plain+resp3)+2 {
		t.Errorf("goroutines %d -> %d with %d sessions parked: their goroutines did not end", before, after, plain+resp3)
	}

	// Each answers its next command, in its own database and protocol.
	for i, c := range clients {
		key := fmt.Sprintf("park:%d", i)
		c.do(bulk(key), "GET", key)
	}
	if n := parkedNow(srv); n > 0 {
		t.Errorf("parked = %d right after every client sent a command", n)
	}

	// A route change reaches parked sessions: they follow it.
	testutil.Eventually(t, 5*time.Second, "sessions not parked again", func() bool { return parkedNow(srv) == plain+resp3 })
	if err := rs2.Client().Set(context.Background(), "park:0", "on the new master", 0).Err(); err != nil {
		t.Fatal(err)
	}
	routes.Set(rs2.Addr)
	testutil.Eventually(t, 5*time.Second, "route change did not reach the proxy", func() bool { return srv.route.Load().Master == rs2.Addr })
	clients[0].do(bulk("on the new master"), "GET", "park:0")
	clients[1].do("$-1\r\n", "GET", "park:1")

	// Clients that leave while parked end their sessions.
	testutil.Eventually(t, 5*time.Second, "sessions not parked after the move", func() bool { return parkedNow(srv) >= plain+resp3-2 })
	for _, c := range clients[:10] {
		c.c.Close()
	}
	testutil.Eventually(t, 5*time.Second, "sessions of closed clients did not end", func() bool {
		return srv.Stats().Listeners[0].CurrentSessions == int64(len(clients)-10)
	})
}

// TestStopWithParkedSessions: stopping the server ends parked sessions
// too (their clients see the connection close) and Run returns.
func TestStopWithParkedSessions(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	srv, stop := runProxy(t, muxConfig(), newRoutes(rs.Addr))
	defer stop()
	var clients []*rawClient
	for range 20 {
		c := dialRaw(t, srv.Addr().String())
		c.do("+PONG\r\n", "PING")
		clients = append(clients, c)
	}
	testutil.Eventually(t, 5*time.Second, "sessions not parked", func() bool { return parkedNow(srv) == 20 })
	if err := stop(); err != nil {
		t.Fatalf("stopping with parked sessions: %v", err)
	}
	for _, c := range clients {
		c.expectClosed()
	}
}
