package proxy

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
)

// A reload changes hold_timeout and max_clients of a running proxy.
func TestSetLive(t *testing.T) {
	cfg := testConfig()
	cfg.HoldTimeout = 10 * time.Second
	srv := startProxy(t, cfg, newRoutes("")) // no master: commands are held
	c := dialRaw(t, srv.Addr().String())
	l := cfg.Live()
	l.HoldTimeout, l.MaxClients = 200*time.Millisecond, 1
	srv.SetLive(l)
	start := time.Now()
	c.send("GET", "k")
	c.expect(replyMasterDown(false, 200*time.Millisecond))
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("held %s with hold_timeout 200ms", d)
	}
	second := dialRaw(t, srv.Addr().String())
	second.expect(ReplyMaxClients)
}

// A reload turns on client_idle_timeout for clients already connected:
// an idle one is closed, counted from its last input.
func TestSetLiveIdleTimeout(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	cfg := testConfig() // client_idle_timeout 0: never
	srv := startProxy(t, cfg, newRoutes(rs.Addr))
	idle := dialRaw(t, srv.Addr().String())
	idle.do("+PONG\r\n", "PING")
	time.Sleep(300 * time.Millisecond)
	if n := srv.Stats().ClientsClosed["idle_timeout"]; n != 0 {
		t.Fatalf("closed for idle_timeout before the reload: %d", n)
	}
	l := cfg.Live()
	l.ClientIdleTimeout = 500 * time.Millisecond
	srv.SetLive(l)
	if got := idle.closedAfter(); got != "" {
		t.Errorf("idle client got %q before the close, want nothing", got)
	}
	if n := srv.Stats().ClientsClosed["idle_timeout"]; n != 1 {
		t.Errorf("clients closed for idle_timeout = %d, want 1", n)
	}
}

// A reload changes prefer_replica: read-only sessions pick the new
// preferred replica, or spread again when it is cleared.
func TestSetLivePreferReplica(t *testing.T) {
	cfg := testConfig()
	cfg.ReadonlyListen = "127.0.0.1:0"
	// no session connects: nothing is dialled
	srv := startProxy(t, cfg, newRoutes("10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"))
	testutil.Eventually(t, 5*time.Second, "the route with both replicas", func() bool {
		r := srv.route.Load()
		return r != nil && len(r.Replicas) == 2
	})
	ro := &listener{readonly: true}
	targets := func() map[string]int {
		got := map[string]int{}
		for id := range uint64(4) {
			got[srv.target(&session{srv: srv, l: ro, id: id})]++
		}
		return got
	}
	if got := targets(); got["10.0.0.2:6379"] != 2 || got["10.0.0.3:6379"] != 2 {
		t.Fatalf("without prefer_replica: %v, want both replicas", got)
	}
	l := cfg.Live()
	l.PreferReplica = "10.0.0.3:6379"
	srv.SetLive(l)
	if got := targets(); got["10.0.0.3:6379"] != 4 {
		t.Errorf("prefer_replica 10.0.0.3:6379 after the reload: %v", got)
	}
	l.PreferReplica = ""
	srv.SetLive(l)
	if got := targets(); got["10.0.0.2:6379"] != 2 {
		t.Errorf("prefer_replica cleared: %v, want both replicas again", got)
	}
}

// A reload sets proxy.auth_timeout lower: a client already connected
// that has not authenticated is closed, counted from its connection.
func TestSetLiveAuthTimeout(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	cfg := testConfig()
	cfg.Password = "proxypw" // auth_timeout 10 s
	srv := startProxy(t, cfg, newRoutes(rs.Addr))
	silent := dialRaw(t, srv.Addr().String())
	authed := dialRaw(t, srv.Addr().String())
	authed.do("+OK\r\n", "AUTH", "proxypw")
	l := cfg.Live()
	l.AuthTimeout = 300 * time.Millisecond
	srv.SetLive(l)
	start := time.Now()
	if got := silent.closedAfter(); got != ReplyAuthTimeout {
		t.Errorf("unauthenticated client got %q before the close, want %q", got, ReplyAuthTimeout)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("closed %v after the reload, want about 0.3 s (auth_timeout 10 s before)", d)
	}
	authed.do("+PONG\r\n", "PING")
}

// A reload sets proxy.max_clients_per_ip where there was none: the
// clients already connected count (none closed), new ones above it are
// refused.
func TestSetLiveMaxClientsPerIP(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	cfg := testConfig() // max_clients_per_ip 0: no limit
	srv := startProxy(t, cfg, newRoutes(rs.Addr))
	a := dialRaw(t, srv.Addr().String())
	a.do("+PONG\r\n", "PING")
	b := dialRaw(t, srv.Addr().String())
	b.do("+PONG\r\n", "PING")
	l := cfg.Live()
	l.MaxClientsPerIP = 2
	srv.SetLive(l)
	c := dialRaw(t, srv.Addr().String())
	if got := c.closedAfter(); got != ReplyMaxClientsPerIP {
		t.Errorf("third client after the reload got %q, want %q", got, ReplyMaxClientsPerIP)
	}
	a.do("+PONG\r\n", "PING")
	b.do("+PONG\r\n", "PING")
	l.MaxClientsPerIP = 0
	srv.SetLive(l)
	d := dialRaw(t, srv.Addr().String())
	d.do("+PONG\r\n", "PING")
}

// A reload lowers proxy.client_output_limit: a client that does not read
// its replies is closed at the new limit.
func TestSetLiveClientOutputLimit(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	cfg := testConfig() // client_output_limit 1 GiB
	srv := startProxy(t, cfg, newRoutes(rs.Addr))
	l := cfg.Live()
	l.ClientOutputLimit = 1 << 20
	srv.SetLive(l)
	c, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// commands the proxy refuses itself: its answers, never read (64 MiB
	// in: far below 1 GiB, far above 1 MiB)
	chunk := bytes.Repeat(appendCommandStrings(nil, "REPLICAOF", "NO", "ONE"), 2048)
	for sent := 0; sent < 64<<20; sent += len(chunk) {
		_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write(chunk); err != nil {
			break
		}
	}
	testutil.Eventually(t, 10*time.Second, "the client that does not read closed", func() bool { return sessionsNow(srv) == 0 })
	if n := srv.Stats().ClientsClosed["output_limit"]; n != 1 {
		t.Errorf("clients closed for output_limit = %d, want 1", n)
	}
}
